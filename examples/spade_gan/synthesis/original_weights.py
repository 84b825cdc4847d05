"""The original implementation's generator weights (``latest_net_G.pth``): reading, recognising and loading them.

Files are read with ``torch.load(weights_only=True)``: tensors only, opening a file never runs code from it. A
leading ``module.`` on every key (a ``DataParallel`` save) is removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeGuard

import torch
from torch import Tensor

from ..data.presets import PRESETS
from ..models.generator import SPADEGenerator
from ..models.spec import ModelSpec
from .strict_loading import load_generator_weights

StateDict = Mapping[str, Tensor]


def is_state_dict(obj: object) -> TypeGuard[StateDict]:
    """Whether ``obj`` is a non-empty mapping of names to tensors (what ``torch.save(net.state_dict())`` writes)."""
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def load_state_dict_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a plain state dict saved with ``torch.save``, with ``weights_only=True``, ``module.`` prefix removed.

    Raises:
        TypeError: the file holds something other than a state dict.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not is_state_dict(state):
        raise TypeError(
            f"{os.fspath(path)!r} must hold a state dict (a mapping of names to tensors), got a {type(state).__name__}"
        )
    return _strip_prefix(state, "module.")


def _strip_prefix(state_dict: StateDict, prefix: str) -> dict[str, Tensor]:
    """``state_dict`` with ``prefix`` removed from its keys when every key starts with it, else unchanged."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_original_generator(
    generator: SPADEGenerator,
    source: StateDict | str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
) -> SPADEGenerator:
    """Load an original ``latest_net_G.pth`` (a path or its state dict) into ``generator``, strictly.

    The key names already match, so this is ``generator.load_state_dict(state, strict=True)`` after the checks of
    :func:`~spade_gan.synthesis.strict_loading.load_generator_weights`, which turn the usual mistakes (wrong label_nc,
    VAE or not, ngf, upsampling mode, spectral or norm setting) into a ``ValueError`` saying which argument to
    change.

    Returns:
        ``generator``, loaded.
    """
    if isinstance(source, (str, os.PathLike)):
        state = load_state_dict_file(source, map_location)
    else:
        state = _strip_prefix(source, "module.")
    return load_generator_weights(generator, state)


def spec_from_original(state: StateDict, preset: str | None = None) -> ModelSpec:
    """The :class:`~spade_gan.models.spec.ModelSpec` of an original generator state dict.

    The dataset preset (``preset``, or without one the preset whose semantic channel count matches the file) gives
    the label layout and geometry; what the file itself reveals wins: ``ngf`` (from ``head_0``'s width), VAE input and
    ``z_dim`` (``fc`` as a Linear), ``most`` upsampling (an ``up_4`` block), batch-norm buffers, spectral norm and the
    SPADE layers' hidden width.

    Raises:
        ValueError: the state has no ``head_0`` block, ``preset`` is unknown, or no single preset matches.
    """
    state = _strip_prefix(state, "module.")
    seg = state.get("head_0.norm_0.mlp_shared.0.weight")
    if seg is None or "head_0.conv_0.bias" not in state:
        raise ValueError("the state dict has no head_0 block: not a SPADE generator (latest_net_G.pth)")
    preset_name = _preset_name(int(seg.shape[1]), preset)
    defaults = PRESETS[preset_name]
    fc = state.get("fc.weight")
    use_vae = fc is not None and fc.dim() == 2
    return ModelSpec(
        label_nc=defaults.label_nc,
        contain_dontcare=defaults.contain_dontcare,
        use_instance=defaults.use_instance,
        ngf=int(state["head_0.conv_0.bias"].shape[0]) // 16,
        num_upsampling_layers="most" if any(k.startswith("up_4.") for k in state) else defaults.num_upsampling_layers,
        crop_size=defaults.crop_size,
        aspect_ratio=defaults.aspect_ratio,
        use_vae=use_vae,
        z_dim=int(fc.shape[1]) if use_vae and fc is not None else ModelSpec.z_dim,
        norm="sync_batch" if "head_0.norm_0.param_free_norm.running_mean" in state else "instance",
        spectral="head_0.conv_0.weight_orig" in state,
        spade_hidden=int(seg.shape[0]),
    )


def _preset_name(channels: int, preset: str | None) -> str:
    """``preset`` checked against :data:`PRESETS`, or the one preset whose ``semantic_nc`` is ``channels``."""
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        return preset
    matches = [name for name, p in PRESETS.items() if p.semantic_nc == channels]
    if len(matches) != 1:
        known = ", ".join(f"{n}: {p.semantic_nc}" for n, p in PRESETS.items())
        raise ValueError(
            f"the generator takes {channels} semantic channels, which no single preset has; pass --preset ({known})"
        )
    return matches[0]
