"""A map-style dataset over paired files: reads, validates, transforms and returns the shared item format.

Item format (shared with :class:`~spade_gan.data.synthetic.SyntheticScenes`):

* ``label``: int64 ``(1, H, W)``, ids ``0 .. label_nc - 1``, and ``label_nc`` for dontcare (raw 255) where on.
* ``instance``: float32 ``(1, H, W)`` instance edge map (1.0 on edges), only when instance maps are used; computed
  after resizing and cropping, as the original does.
* ``image``: float32 ``(3, H, W)`` in ``[-1, 1]``.
* ``path``: the label file's path as a string.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .io import read_image, read_instance, read_label
from .pairing import Sample
from .semantics import check_label_range, instance_edges, map_dontcare
from .transforms import Preprocess, apply_to_ids, apply_to_image, draw_geometry


class SegmentationFolder(Dataset):
    """Label/photo(/instance) pairs from disk in the shared item format.

    Args:
        samples: the file triples, e.g. from :func:`~spade_gan.data.layouts.cityscapes_samples`.
        label_nc: number of real label ids.
        contain_dontcare: id 255 is dontcare, mapped to ``label_nc``.
        preprocess: resize/crop/flip rule; train or test behaviour is ``preprocess.train``.
        generator: torch generator for the random crop and flip (the global one when ``None``).

    Label ids are checked when an item is read (a :class:`~spade_gan.data.errors.LabelRangeError` names the file).
    The transform is drawn from the label map's size and applied alike to the photo and the instance map.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        label_nc: int,
        contain_dontcare: bool,
        preprocess: Preprocess,
        generator: torch.Generator | None = None,
    ) -> None:
        if label_nc < 1:
            raise ValueError(f"label_nc: expected a positive int, got {label_nc!r}")
        self.samples = list(samples)
        self.label_nc = label_nc
        self.contain_dontcare = contain_dontcare
        self.preprocess = preprocess
        self.generator = generator
        self.use_instance = bool(self.samples) and self.samples[0].instance is not None

    @property
    def semantic_nc(self) -> int:
        """Channels of :func:`~spade_gan.data.semantics.to_semantics` for this dataset's items."""
        return self.label_nc + int(self.contain_dontcare) + int(self.use_instance)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sample = self.samples[index]
        label = torch.from_numpy(read_label(sample.label))
        label = map_dontcare(label, label_nc=self.label_nc, contain_dontcare=self.contain_dontcare)
        check_label_range(
            label, label_nc=self.label_nc, contain_dontcare=self.contain_dontcare, source=str(sample.label)
        )
        geometry = draw_geometry((label.shape[0], label.shape[1]), self.preprocess, self.generator)
        item: dict[str, torch.Tensor | str] = {
            "label": torch.from_numpy(apply_to_ids(label.numpy(), geometry).copy()).unsqueeze(0),
            "image": apply_to_image(read_image(sample.image), geometry),
            "path": str(sample.label),
        }
        if sample.instance is not None:
            instance = torch.from_numpy(apply_to_ids(read_instance(sample.instance), geometry).copy())
            item["instance"] = instance_edges(instance).unsqueeze(0)
        return item
