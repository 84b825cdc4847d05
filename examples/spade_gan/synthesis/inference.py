"""Synthesis from a folder of label maps with a loaded generator (see :mod:`spade_gan.synthesis.loading`).

Inputs are read as the original test pipeline reads them: the label PNG's stored values are the ids; maps are resized
with nearest-neighbour sampling to the generator's output size; with ``contain_dontcare`` the id 255 becomes
``label_nc``; ids are range-checked (the error names the file); the generator's input is made from the ids and,
where the model uses instance maps, the edge map of the (resized) instance ids. The generator runs in eval mode and
images are written as ``(y + 1) / 2 * 255``, clipped, as 8-bit RGB PNGs named like the label files.

:func:`generate` is the one place label maps meet the generator; :func:`style_code` draws a VAE generator's z (around
the encoder's statistics of a style image, :func:`style_from_image`, or from N(0, I)). :func:`generator_function`
gives the same generator's images for collated batches of a dataset, the input of
:func:`~spade_gan.scoring.generator_scores.score_generator` (``evaluate.py`` and ``ablation.py``); the paint studio
(:mod:`spade_gan.studio`) calls :func:`generate` for each painted map.
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
from ..data.semantics import check_label_range, instance_edges, map_dontcare, semantic_ids
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


def label_input(
    label_path: Path, spec: ModelSpec, size: tuple[int, int], instance_dir: Path | None
) -> tuple[Tensor, Tensor | None]:
    """The ``(1, 1, H, W)`` int64 ids of one label file, ``(H, W) = size``, and where ``spec.use_instance`` the
    ``(1, 1, H, W)`` instance edge map (else ``None``), as the original test pipeline reads them. ``instance_dir`` is
    needed where ``spec.use_instance``."""
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
    return label[None, None], edges


def style_statistics(
    model: LoadedModel, style: str | os.PathLike[str] | None, size: tuple[int, int]
) -> tuple[Tensor, Tensor] | None:
    r"""The encoder's :math:`(\mu, \log\sigma^2)`, each ``(1, z_dim)``, of the ``style`` image resized to ``size``;
    ``None`` without a style image. A style image needs a VAE model whose checkpoint holds the encoder."""
    if style is None:
        return None
    path = Path(style)
    check_style_input(model)
    if not path.is_file():
        raise SynthesisError(f"--style {style}: no such file")
    return style_from_image(model, read_image(path), size)


def check_style_input(model: LoadedModel) -> None:
    """Raise :class:`SynthesisError` unless ``model`` takes a style image: a VAE generator with its encoder."""
    if not model.spec.use_vae:
        raise SynthesisError("--style needs a VAE generator (trained with --use-vae); this one starts from the mask")
    if model.encoder is None:
        raise SynthesisError("--style needs the style encoder (E), which this checkpoint does not contain")


@torch.no_grad()
def style_from_image(model: LoadedModel, image: Image.Image, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    r"""The encoder's :math:`(\mu, \log\sigma^2)`, each ``(1, z_dim)``, of an RGB ``image`` resized (bicubic) to
    ``size`` ``(H, W)``; see :func:`check_style_input` for the models that have one."""
    check_style_input(model)
    encoder = model.encoder
    assert encoder is not None  # checked above
    tensor = apply_to_image(image.convert("RGB"), Geometry(resize=size, crop=(0, 0, *size), flip=False))
    return encoder(tensor[None].to(next(encoder.parameters()).device))


def style_code(
    spec: ModelSpec, stats: tuple[Tensor, Tensor] | None, rng: torch.Generator, device: str | torch.device
) -> Tensor | None:
    """One ``(1, z_dim)`` z for a VAE generator (``None`` for the others): drawn around the encoder's ``stats`` when
    given, else from N(0, I); the draw comes from ``rng`` (a CPU generator), so a seed fixes it."""
    if not spec.use_vae:
        return None
    if stats is not None:
        return reparameterize(stats[0].cpu(), stats[1].cpu(), generator=rng).to(device)
    return torch.randn(1, spec.z_dim, generator=rng).to(device)


@torch.no_grad()
def generate(model: LoadedModel, label: Tensor, instance: Tensor | None = None, z: Tensor | None = None) -> Tensor:
    """Images ``(N, 3, H, W)`` in ``[-1, 1]`` for label maps: the one place label maps meet the generator.

    Args:
        model: the loaded generator.
        label: int64 ids ``(N, 1, H, W)`` or ``(N, H, W)`` on the generator's device, range-checked by the caller
            (raw 255 or mapped dontcare ids are both accepted).
        instance: where ``model.spec.use_instance``, the instance ids or the float edge map, same size; else ``None``.
        z: ``(N, z_dim)`` style codes for a VAE generator (see :func:`style_code`), else ``None``.
    """
    spec = model.spec
    ids, edges = semantic_ids(label, instance, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare)
    return model.generator(ids, z, extra=edges)


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
            label, edges = label_input(path, spec, size, instance_dir)
        except LabelRangeError as exc:
            raise SynthesisError(str(exc)) from exc
        z = style_code(spec, stats, rng, device)
        images = generate(model, label.to(device), None if edges is None else edges.to(device), z)
        target = out / f"{path.stem}.png"
        Image.fromarray(np.ascontiguousarray(to_uint8(images)[0])).save(target)
        written.append(target)
    return written


def generator_function(model: LoadedModel, seed: int, device: str | torch.device) -> GenerateFn:
    """Images for a collated batch: the semantic map of its labels (and instance edges) through the generator; a
    VAE generator draws z from N(0, I) with a generator seeded with ``seed`` (the same draws on every run)."""
    rng = torch.Generator().manual_seed(seed)
    spec = model.spec

    def images(batch: Mapping[str, Any]) -> torch.Tensor:
        label, instance = batch["label"].to(device), batch.get("instance")
        z = torch.randn(label.shape[0], spec.z_dim, generator=rng).to(device) if spec.use_vae else None
        return generate(model, label, None if instance is None else instance.to(device), z)

    return images
