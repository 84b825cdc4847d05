"""Loading the original implementation's checkpoints (``latest_net_G.pth``) safely and with actionable errors."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor

from .generator import SPADEGenerator

StateDict = Mapping[str, Tensor]


def load_state_dict_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a plain state dict saved with ``torch.save``, with ``weights_only=True``: tensors only, no code runs.

    A leading ``module.`` on every key (a ``DataParallel`` save) is removed.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TypeError(f"{os.fspath(path)!r} must hold a state dict (a mapping of names to tensors)")
    return strip_prefix(state, "module.")


def strip_prefix(state_dict: StateDict, prefix: str) -> dict[str, Tensor]:
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

    The key names already match (spectral-norm ``weight_orig`` / ``weight_u`` / ``weight_v``, batch-norm buffers
    under ``norm_*.param_free_norm.``, ``fc`` as a Conv2d or, for VAE models, a Linear), so this is
    ``generator.load_state_dict(state, strict=True)`` after checks that turn the usual mistakes (wrong label_nc, VAE
    or not, ngf, upsampling mode, spectral or norm setting) into a ``ValueError`` saying which argument to change.
    Files are read with ``torch.load(weights_only=True)``.

    Returns:
        ``generator``, loaded.
    """
    state = load_state_dict_file(source, map_location) if isinstance(source, (str, os.PathLike)) else dict(source)
    state = strip_prefix(state, "module.")
    problems = _describe_mismatch(generator, state)
    if problems:
        raise ValueError("checkpoint does not fit this SPADEGenerator: " + "; ".join(problems))
    generator.load_state_dict(state, strict=True)
    return generator


def _describe_mismatch(generator: SPADEGenerator, state: dict[str, Tensor]) -> list[str]:
    own = generator.state_dict()
    problems = []
    fc = state.get("fc.weight")
    if fc is not None:
        if fc.dim() == 2 and not generator.use_vae:
            problems.append(f"fc is a Linear({fc.shape[1]}, {fc.shape[0]}) (a VAE model): build with use_vae=True")
        elif fc.dim() == 4 and generator.use_vae:
            problems.append("fc is a Conv2d (the model starts from the mask): build with use_vae=False")
    seg = state.get("head_0.norm_0.mlp_shared.0.weight")
    if seg is not None and seg.shape[1] != generator.label_nc:
        problems.append(
            f"checkpoint has label_nc={seg.shape[1]} semantic channels (classes + dontcare + instance edges), "
            f"generator has label_nc={generator.label_nc}"
        )
    head = state.get("head_0.conv_0.bias")
    own_head = own["head_0.conv_0.bias"]
    if head is not None and head.shape != own_head.shape:
        problems.append(f"checkpoint has ngf={head.shape[0] // 16}, generator has ngf={own_head.shape[0] // 16}")
    has_up_4, own_up_4 = any(k.startswith("up_4.") for k in state), hasattr(generator, "up_4")
    if has_up_4 != own_up_4:
        wanted = "'most'" if has_up_4 else "'normal' or 'more'"
        problems.append(
            f"checkpoint needs num_upsampling_layers={wanted}, generator has {generator.num_upsampling_layers!r}"
        )
    spectral = "head_0.conv_0.weight_orig" in state
    if spectral != ("head_0.conv_0.weight_orig" in own):
        problems.append(f"checkpoint has spectral={spectral}: build with spectral={spectral}")
    batch = "head_0.norm_0.param_free_norm.running_mean" in state
    if batch != ("head_0.norm_0.param_free_norm.running_mean" in own):
        wanted = "'batch' or 'sync_batch'" if batch else "a norm without running statistics ('instance', ...)"
        problems.append(f"checkpoint needs norm={wanted}")
    if not problems:
        shapes = [
            f"{k}: checkpoint {tuple(v.shape)}, generator {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ]
        if shapes:
            hint = " (crop_size, aspect_ratio, num_upsampling_layers or z_dim?)" if shapes[0].startswith("fc.") else ""
            problems.append("shape mismatch" + hint + ": " + ", ".join(shapes[:5]))
    return problems
