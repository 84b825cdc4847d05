"""Dataset presets of the original SPADE (label conventions, geometry, generator depth) as a frozen table.

The values follow the original's per-dataset defaults: Cityscapes 35 ids without dontcare plus instance edges, a
512x256 output from the ``fixed`` preprocessing and the ``more`` generator; ADE20K 150 ids (left unshifted, 0..150)
with dontcare, no instances; COCO-Stuff 182 ids with dontcare and instances; both 256x256 after resizing to 286 and a
random 256 crop. ``synthetic`` describes the built-in procedural scenes (:mod:`spade_gan.data.synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..models.generator import Upsampling

PreprocessMode = Literal["fixed", "resize_and_crop", "scale_shortside_and_crop", "none"]


@dataclass(frozen=True)
class Preset:
    """Defaults of one dataset.

    Attributes:
        name: the preset's key in :data:`PRESETS`.
        label_nc: number of real label ids, ``0 .. label_nc - 1``.
        contain_dontcare: id 255 marks "don't care" and becomes id ``label_nc`` (its own one-hot channel).
        use_instance: an instance edge map is appended as one more channel.
        aspect_ratio: output width / height.
        crop_size: output width in pixels (the height is ``round(crop_size / aspect_ratio)``).
        load_size: size the inputs are resized to before cropping (training); equal to ``crop_size`` at test time.
        preprocess: how inputs are resized and cropped, see :class:`spade_gan.data.transforms.Preprocess`.
        num_upsampling_layers: generator depth of the original configuration.
    """

    name: str
    label_nc: int
    contain_dontcare: bool
    use_instance: bool
    aspect_ratio: float
    crop_size: int
    load_size: int
    preprocess: PreprocessMode
    num_upsampling_layers: Upsampling

    @property
    def semantic_nc(self) -> int:
        """Channels of the generator's semantic input: ids, the dontcare channel and the instance edge channel."""
        return self.label_nc + int(self.contain_dontcare) + int(self.use_instance)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the generated images."""
        return round(self.crop_size / self.aspect_ratio), self.crop_size


PRESETS: dict[str, Preset] = {
    "cityscapes": Preset("cityscapes", 35, False, True, 2.0, 512, 512, "fixed", "more"),
    "ade20k": Preset("ade20k", 150, True, False, 1.0, 256, 286, "resize_and_crop", "normal"),
    "coco": Preset("coco", 182, True, True, 1.0, 256, 286, "resize_and_crop", "normal"),
    "synthetic": Preset("synthetic", 8, False, False, 1.0, 64, 64, "none", "normal"),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (one of ``cityscapes``, ``ade20k``, ``coco``, ``synthetic``).

    Raises:
        KeyError: for an unknown name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
