"""The generator (and style encoder) of a checkpoint file, for synthesis: a training checkpoint or ``latest_net_G.pth``.

A training checkpoint carries its configuration, from which :meth:`TrainConfig.model_spec
<spade_gan.training.config.TrainConfig.model_spec>` gives the architecture; an original generator state dict is
described by :func:`~spade_gan.synthesis.original_weights.spec_from_original`. Either way the networks are built from
that :class:`~spade_gan.models.spec.ModelSpec` and loaded strictly. Files are read once, with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..models.encoder import ConvEncoder
from ..models.spec import Generator, ModelSpec
from ..training.checkpoints import is_train_checkpoint
from ..training.config import TrainConfig
from .original_weights import StateDict, is_state_dict, load_original_generator, spec_from_original
from .strict_loading import load_generator_weights

OVERRIDABLE = ("ngf", "crop_size", "aspect_ratio", "num_upsampling_layers")
"""Spec fields :func:`load_model` lets the caller override."""


class SynthesisError(ValueError):
    """A problem with synthesize.py's inputs, phrased for the command line."""


@dataclass
class LoadedModel:
    """A generator in eval mode, its encoder (VAE training checkpoints only) and its spec."""

    spec: ModelSpec
    generator: Generator
    encoder: ConvEncoder | None
    source: str
    """``"train_spade"`` or ``"original"``."""
    config: dict[str, Any] | None = None
    """The training configuration (:meth:`TrainConfig.to_dict`) of a ``train_spade`` checkpoint, else ``None``."""

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move the networks to ``device`` and put them in eval mode; returns ``self``."""
        self.generator.to(device).eval()
        if self.encoder is not None:
            self.encoder.to(device).eval()
        return self


def load_model(
    path: str | os.PathLike[str],
    *,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the generator for the checkpoint at ``path`` and load it.

    Args:
        path: a ``train_spade.py`` checkpoint or an original generator state dict (``latest_net_G.pth``).
        preset: dataset defaults for an original state dict (default: the preset whose semantic channel count
            matches the file); ignored for training checkpoints, which carry their configuration.
        overrides: values for the spec fields in :data:`OVERRIDABLE`; ``None`` values are ignored.
        device: where the networks go.

    Raises:
        SynthesisError: no such file, not a torch file, a file of neither kind, an unknown override, or weights that
            do not fit the spec (the message names the argument to change).
    """
    path = Path(path)
    if not path.is_file():
        raise SynthesisError(f"--checkpoint {path}: no such file")
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(changes) - set(OVERRIDABLE))
    if unknown:
        raise SynthesisError(f"overrides: expected keys among {OVERRIDABLE}, got {unknown}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise SynthesisError(
            f"--checkpoint {path}: not a file torch.load(weights_only=True) reads ({type(exc).__name__})"
        ) from exc
    try:
        if is_train_checkpoint(state):
            model = _trained_model(state, changes)
        elif is_state_dict(state):
            model = _original_model(state, preset, changes)
        else:
            raise ValueError("neither a train_spade.py checkpoint nor a generator state dict (latest_net_G.pth)")
    except ValueError as exc:
        raise SynthesisError(f"--checkpoint {path}: {exc}") from exc
    return model.to(device)


def _trained_model(state: dict[str, Any], changes: dict[str, Any]) -> LoadedModel:
    """The networks of a training checkpoint (its format already checked)."""
    spec = replace(TrainConfig.from_dict(state["config"]).model_spec(), **changes)  # validates the architecture
    weights = state["G_ema"] if state.get("G_ema") is not None else state["G"]  # the averaged weights when kept
    generator = load_generator_weights(spec.build_generator(), weights)
    encoder = spec.build_encoder() if state.get("E") is not None else None
    if encoder is not None:
        encoder.load_state_dict(state["E"])
    return LoadedModel(spec, generator, encoder, "train_spade", dict(state["config"]))


def _original_model(state: StateDict, preset: str | None, changes: dict[str, Any]) -> LoadedModel:
    """The generator of an original ``latest_net_G.pth`` state dict (no encoder: the release files hold G only)."""
    spec = replace(spec_from_original(state, preset), **changes)
    generator = load_original_generator(spec.spade_generator(), state)
    return LoadedModel(spec, generator, None, "original")
