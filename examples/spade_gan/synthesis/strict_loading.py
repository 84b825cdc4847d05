"""Strict loading of a generator state dict, with errors that name the constructor argument to change.

Training checkpoints and the original implementation's ``latest_net_G.pth`` store the generator under the same key
names (spectral-norm ``weight_orig`` / ``weight_u`` / ``weight_v``, batch-norm buffers under
``norm_*.param_free_norm.``, ``fc`` as a Conv2d or, for VAE models, a Linear), so one check serves both loaders:
:func:`spade_gan.synthesis.original_weights.load_original_generator` and the training-checkpoint path of
:func:`spade_gan.synthesis.loading.load_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from torch import Tensor, nn

from ..models.generator import SPADEGenerator

GeneratorModule = TypeVar("GeneratorModule", bound=nn.Module)


def load_generator_weights(generator: GeneratorModule, state: Mapping[str, Tensor]) -> GeneratorModule:
    """``generator.load_state_dict(state, strict=True)`` after checks that turn the usual mistakes into a
    ``ValueError`` saying what differs: for a SPADE generator, which constructor argument to change (label_nc, VAE or
    not, ngf, upsampling mode, spectral or norm setting, output geometry); for the other generators (CLADE, the
    pix2pixHD baselines), the missing, unexpected and mis-shaped keys.

    Returns:
        ``generator``, loaded.
    """
    state = dict(state)
    if isinstance(generator, SPADEGenerator) and generator.modulation == "spade":
        problems = _describe_mismatch(generator, state)
    else:
        problems = _key_mismatch(generator, state)
    if problems:
        raise ValueError(f"checkpoint does not fit this {type(generator).__name__}: " + "; ".join(problems))
    generator.load_state_dict(state, strict=True)
    return generator


def _key_mismatch(generator: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys (at most 5 of each), or nothing when ``state`` fits."""
    own = generator.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)}, generator {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing ({', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:5])})")
    if shapes:
        problems.append("shape mismatch: " + ", ".join(shapes[:5]))
    return problems


def _describe_mismatch(generator: SPADEGenerator, state: Mapping[str, Tensor]) -> list[str]:
    """What keeps ``state`` from loading into ``generator``, one phrase per constructor argument (empty: it fits)."""
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
    own_seg = own["head_0.norm_0.mlp_shared.0.weight"]
    if seg is not None and seg.shape[0] != own_seg.shape[0]:
        problems.append(f"checkpoint has spade_hidden={seg.shape[0]}, generator has spade_hidden={own_seg.shape[0]}")
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
