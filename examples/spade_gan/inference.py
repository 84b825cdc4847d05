"""Synthesis from label maps with a trained generator: our training checkpoints or the original ``latest_net_G.pth``.

Inputs are read as the original test pipeline reads them: the label PNG's stored values are the ids; maps are resized
with nearest-neighbour sampling to the generator's output size; with ``contain_dontcare`` the id 255 becomes
``label_nc``; ids are range-checked (the error names the file); the semantic map is the one-hot encoding plus, where
the model uses instance maps, the edge map of the (resized) instance ids. The generator runs in eval mode and images
are written as ``(y + 1) / 2 * 255``, clipped, as 8-bit RGB PNGs named like the label files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .checkpoint import load_original_generator, strip_prefix
from .checkpointing import FORMAT
from .data.errors import LabelRangeError
from .data.io import read_image, read_instance, read_label
from .data.presets import PRESETS
from .data.semantics import check_label_range, instance_edges, map_dontcare, to_semantics
from .data.transforms import Geometry, apply_to_ids, apply_to_image
from .encoder import ConvEncoder, reparameterize
from .generator import SPADEGenerator
from .logging_utils import to_uint8


class SynthesisError(ValueError):
    """A problem with synthesize.py's inputs, phrased for the command line."""


@dataclass(frozen=True)
class ModelSpec:
    """What the generator looks like and how its inputs are made."""

    label_nc: int
    contain_dontcare: bool
    use_instance: bool
    ngf: int
    num_upsampling_layers: str
    crop_size: int
    aspect_ratio: float
    use_vae: bool
    z_dim: int
    norm: str
    spectral: bool = True

    @property
    def semantic_nc(self) -> int:
        return self.label_nc + int(self.contain_dontcare) + int(self.use_instance)


@dataclass
class LoadedModel:
    """A generator in eval mode, its encoder (VAE checkpoints of ours only) and its spec."""

    spec: ModelSpec
    generator: SPADEGenerator
    encoder: ConvEncoder | None
    source: str  # "train_spade" or "original"


def load_model(
    path: str | os.PathLike[str],
    *,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the generator for ``path`` and load it (``weights_only=True``).

    A ``train_spade.py`` checkpoint carries its configuration. For an original generator state dict the ``preset``
    (or, without one, the preset whose semantic channel count matches the file) gives the dataset defaults;
    architecture details the file reveals (VAE input, ``ngf``, ``most`` upsampling, batch-norm buffers) are read
    from it. ``overrides`` (ngf, crop_size, aspect_ratio, num_upsampling_layers; ``None`` values ignored) win.
    """
    path = Path(path)
    if not path.is_file():
        raise SynthesisError(f"--checkpoint {path}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    encoder_state = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        cfg = state["config"]
        spec = ModelSpec(
            label_nc=int(cfg["label_nc"]),
            contain_dontcare=bool(cfg["contain_dontcare"]),
            use_instance=bool(cfg["use_instance"]),
            ngf=int(cfg["ngf"]),
            num_upsampling_layers=str(cfg["num_upsampling_layers"]),
            crop_size=int(cfg["crop_size"]),
            aspect_ratio=float(cfg["aspect_ratio"]),
            use_vae=bool(cfg["use_vae"]),
            z_dim=int(cfg["z_dim"]),
            norm=str(cfg["norm"]),
        )
        g_state, encoder_state, source = state["G"], state.get("E"), "train_spade"
    elif isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values()):
        g_state, source = strip_prefix(state, "module."), "original"
        spec = _spec_from_original(g_state, preset)
    else:
        raise SynthesisError(
            f"--checkpoint {path}: neither a train_spade.py checkpoint nor a generator state dict (latest_net_G.pth)"
        )
    spec = replace(spec, **overrides)
    try:
        generator = SPADEGenerator(
            spec.semantic_nc,
            ngf=spec.ngf,
            num_upsampling_layers=spec.num_upsampling_layers,  # type: ignore[arg-type]
            crop_size=spec.crop_size,
            aspect_ratio=spec.aspect_ratio,
            use_vae=spec.use_vae,
            z_dim=spec.z_dim,
            norm=spec.norm,  # type: ignore[arg-type]
            spectral=spec.spectral,
        )
        load_original_generator(generator, g_state)
    except ValueError as exc:
        raise SynthesisError(f"--checkpoint {path}: {exc}") from exc
    encoder = None
    if spec.use_vae and encoder_state is not None:
        encoder = ConvEncoder(spec.crop_size, ngf=spec.ngf, z_dim=spec.z_dim)
        encoder.load_state_dict(encoder_state)
        encoder.to(device).eval()
    generator.to(device).eval()
    return LoadedModel(spec, generator, encoder, source)


def _spec_from_original(state: dict[str, Tensor], preset_name: str | None) -> ModelSpec:
    seg = state.get("head_0.norm_0.mlp_shared.0.weight")
    if seg is None or "head_0.conv_0.bias" not in state:
        raise SynthesisError("the state dict has no head_0 block: not a SPADE generator (latest_net_G.pth)")
    channels = int(seg.shape[1])
    if preset_name is None:
        matches = [name for name, p in PRESETS.items() if p.semantic_nc == channels]
        if len(matches) != 1:
            raise SynthesisError(
                f"the generator takes {channels} semantic channels; pass --preset "
                f"({', '.join(f'{n}: {p.semantic_nc}' for n, p in PRESETS.items())})"
            )
        preset_name = matches[0]
    if preset_name not in PRESETS:
        raise SynthesisError(f"--preset {preset_name!r}: expected one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]
    fc = state.get("fc.weight")
    use_vae = fc is not None and fc.dim() == 2
    return ModelSpec(
        label_nc=preset.label_nc,
        contain_dontcare=preset.contain_dontcare,
        use_instance=preset.use_instance,
        ngf=int(state["head_0.conv_0.bias"].shape[0]) // 16,
        num_upsampling_layers="most" if any(k.startswith("up_4.") for k in state) else preset.num_upsampling_layers,
        crop_size=preset.crop_size,
        aspect_ratio=preset.aspect_ratio,
        use_vae=use_vae,
        z_dim=int(fc.shape[1]) if use_vae and fc is not None else 256,
        norm="sync_batch" if "head_0.norm_0.param_free_norm.running_mean" in state else "instance",
        spectral="head_0.conv_0.weight_orig" in state,
    )


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


def semantic_input(label_path: Path, spec: ModelSpec, size: tuple[int, int], instance_dir: Path | None) -> Tensor:
    """The (1, semantic_nc, H, W) input for one label file, as the original test pipeline builds it."""
    geometry = Geometry(resize=size, crop=(0, 0, *size), flip=False)
    label = torch.from_numpy(read_label(label_path))
    label = map_dontcare(label, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare)
    check_label_range(label, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare, source=str(label_path))
    label = torch.from_numpy(apply_to_ids(label.numpy(), geometry).copy())
    edges = None
    if spec.use_instance:
        assert instance_dir is not None
        instance = read_instance(instance_file(label_path, instance_dir))
        edges = instance_edges(torch.from_numpy(apply_to_ids(instance, geometry).copy()))[None, None]
    return to_semantics(label[None, None], edges, label_nc=spec.label_nc, contain_dontcare=spec.contain_dontcare)


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
    instance_dir = Path(instances) if instances is not None else None
    if spec.use_instance:
        if instance_dir is None:
            raise SynthesisError("this model uses instance edge maps: pass --instances DIR")
        if not instance_dir.is_dir():
            raise SynthesisError(f"--instances {instance_dir}: no such directory")
    if style is not None:
        if not spec.use_vae:
            raise SynthesisError(
                "--style needs a VAE generator (trained with --use-vae); this one starts from the mask"
            )
        if model.encoder is None:
            raise SynthesisError("--style needs the style encoder (E), which this checkpoint does not contain")
        if not Path(style).is_file():
            raise SynthesisError(f"--style {style}: no such file")
    size = g.output_size
    rng = torch.Generator().manual_seed(seed)
    style_stats = None
    if style is not None:
        assert model.encoder is not None
        image = apply_to_image(read_image(style), Geometry(resize=size, crop=(0, 0, *size), flip=False))
        style_stats = model.encoder(image[None].to(device))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        try:
            seg = semantic_input(path, spec, size, instance_dir).to(device)
        except LabelRangeError as exc:
            raise SynthesisError(str(exc)) from exc
        z = None
        if spec.use_vae:
            if style_stats is not None:
                mu, logvar = style_stats
                z = reparameterize(mu.cpu(), logvar.cpu(), generator=rng).to(device)
            else:
                z = torch.randn(1, spec.z_dim, generator=rng).to(device)
        image = to_uint8(g(seg, z))[0]
        target = out / f"{path.stem}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(target)
        written.append(target)
    return written
