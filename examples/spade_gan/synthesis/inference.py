"""Synthesis from a folder of label maps with a loaded generator (see :mod:`spade_gan.synthesis.loading`).

Inputs are read as the original test pipeline reads them: the label PNG's stored values are the ids; maps are resized
with nearest-neighbour sampling to the generator's output size; with ``contain_dontcare`` the id 255 becomes
``label_nc``; ids are range-checked (the error names the file); the semantic map is the one-hot encoding plus, where
the model uses instance maps, the edge map of the (resized) instance ids. The generator runs in eval mode and images
are written as ``(y + 1) / 2 * 255``, clipped, as 8-bit RGB PNGs named like the label files.

:func:`generator_function` gives the same generator's images for collated batches of a dataset, the input of
:func:`~spade_gan.scoring.generator_scores.score_generator` (``evaluate.py`` and ``ablation.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.errors import LabelRangeError
from ..data.io import read_image, read_instance, read_label
from ..data.semantics import Semantics, check_label_range, instance_edges, map_dontcare, semantic_inputs
from ..data.transforms import Geometry, apply_to_ids, apply_to_image
from ..images import to_uint8
from ..models.encoder import reparameterize
from ..models.spec import ModelSpec
from ..scoring.generator_scores import GenerateFn
from .loading import LoadedModel, SynthesisError


def label_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The label PNGs of ``directory``, sorted by name. In a Cityscapes ``gtFine`` folder, where instance and colour
    maps sit beside the label maps, only the ``*_labelIds.png`` files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SynthesisError(f"--labels {directory}: no such directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if any(p.name.endswith("_labelIds.png") for p in files):
        files = [p for p in files if p.name.endswith("_labelIds.png")]
    if not files:
        raise SynthesisError(f"--labels {directory}: no .png label maps in it")
    return files


def instance_file(label: Path, directory: Path) -> Path:
    """The instance map for ``label``: the same name in ``directory``, or Cityscapes' ``*_instanceIds.png``."""
    for name in (label.name, label.name.replace("_labelIds", "_instanceIds")):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise SynthesisError(f"{label}: no instance map for it in --instances {directory} (looked for {label.name})")


def instance_directory(spec: ModelSpec, instances: str | os.PathLike[str] | None) -> Path | None:
    """``instances`` as a checked directory where the model uses instance maps, else ``None``."""
    if not spec.use_instance:
        return None
    if instances is None:
        raise SynthesisError("this model uses instance edge maps: pass --instances DIR")
    directory = Path(instances)
    if not directory.is_dir():
        raise SynthesisError(f"--instances {directory}: no such directory")
    return directory


def semantic_input(label_path: Path, spec: ModelSpec, size: tuple[int, int], instance_dir: Path | None) -> Semantics:
    """The semantic input for one label file at ``(H, W) = size``, as the original test pipeline builds it: ids
    ``(1, H, W)``, the edge map ``(1, 1, H, W)`` where the model uses instance maps, and the ``(1, semantic_nc, H,
    W)`` map of both. ``instance_dir`` is needed where ``spec.use_instance``."""
    geometry = Geometry(resize=size, crop=(0, 0, *size), flip=False)
    label = torch.from_numpy(read_label(label_path))
    label = map_dontcare(label, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare)
    check_label_range(label, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare, source=str(label_path))
    label = torch.from_numpy(apply_to_ids(label.numpy(), geometry).copy())
    edges = None
    if spec.use_instance:
        if instance_dir is None:
            raise SynthesisError(f"{label_path}: the model uses instance edge maps, but instance_dir is None")
        instance = read_instance(instance_file(label_path, instance_dir))
        edges = instance_edges(torch.from_numpy(apply_to_ids(instance, geometry).copy()))[None, None]
    return semantic_inputs(label[None, None], edges, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare)


def style_statistics(
    model: LoadedModel, style: str | os.PathLike[str] | None, size: tuple[int, int]
) -> tuple[Tensor, Tensor] | None:
    r"""The encoder's :math:`(\mu, \log\sigma^2)`, each ``(1, z_dim)``, of the ``style`` image resized to ``size``;
    ``None`` without a style image. A style image needs a VAE model whose checkpoint holds the encoder."""
    if style is None:
        return None
    if not model.spec.use_vae:
        raise SynthesisError("--style needs a VAE generator (trained with --use-vae); this one starts from the mask")
    encoder = model.encoder
    if encoder is None:
        raise SynthesisError("--style needs the style encoder (E), which this checkpoint does not contain")
    path = Path(style)
    if not path.is_file():
        raise SynthesisError(f"--style {style}: no such file")
    image = apply_to_image(read_image(path), Geometry(resize=size, crop=(0, 0, *size), flip=False))
    return encoder(image[None].to(next(encoder.parameters()).device))


@torch.no_grad()
def synthesize_folder(
    model: LoadedModel,
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    instances: str | os.PathLike[str] | None = None,
    style: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write one RGB PNG per label PNG of ``labels`` into ``out`` (same stem), at the generator's output size.

    With a VAE generator, z comes from the encoder on the ``style`` image when given (needs an encoder in the
    checkpoint), else from N(0, I); either way drawn from a generator seeded with ``seed`` (one draw per file, in
    name order), so the same seed gives the same images and different seeds different ones.
    """
    spec, g = model.spec, model.generator
    device = next(g.parameters()).device
    files = label_files(labels)
    instance_dir = instance_directory(spec, instances)
    size = g.output_size
    stats = style_statistics(model, style, size)
    rng = torch.Generator().manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        try:
            seg = semantic_input(path, spec, size, instance_dir)
        except LabelRangeError as exc:
            raise SynthesisError(str(exc)) from exc
        z = None
        if spec.use_vae:
            if stats is not None:
                z = reparameterize(stats[0].cpu(), stats[1].cpu(), generator=rng).to(device)
            else:
                z = torch.randn(1, spec.z_dim, generator=rng).to(device)
        target = out / f"{path.stem}.png"
        edges = None if seg.edges is None else seg.edges.to(device)
        image = g(seg.ids.to(device), z, extra=edges)
        Image.fromarray(np.ascontiguousarray(to_uint8(image)[0])).save(target)
        written.append(target)
    return written


def generator_function(model: LoadedModel, seed: int, device: str | torch.device) -> GenerateFn:
    """Images for a collated batch: the semantic map of its labels (and instance edges) through the generator; a
    VAE generator draws z from N(0, I) with a generator seeded with ``seed`` (the same draws on every run)."""
    rng = torch.Generator().manual_seed(seed)
    spec = model.spec

    @torch.no_grad()
    def generate(batch: Mapping[str, Any]) -> torch.Tensor:
        seg = semantic_inputs(
            batch["label"], batch.get("instance"), label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare
        )
        edges = None if seg.edges is None else seg.edges.to(device)
        z = torch.randn(seg.ids.shape[0], spec.z_dim, generator=rng).to(device) if spec.use_vae else None
        return model.generator(seg.ids.to(device), z, extra=edges)

    return generate
