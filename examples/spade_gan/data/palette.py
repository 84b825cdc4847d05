"""Colours for label maps in sample grids."""

from __future__ import annotations

import torch
from torch import Tensor

from .scene_classes import SCENE_CLASSES


def label_palette(num_colours: int) -> Tensor:
    """``(num_colours, 3)`` float RGB in ``[0, 1]``: the synthetic classes' own colours first, then a fixed spread of
    distinct hues (golden-ratio steps) for further ids, e.g. for Cityscapes or ADE20K."""
    base = torch.tensor([c.colour for c in SCENE_CLASSES])
    if num_colours <= len(base):
        return base[:num_colours].clone()
    k = torch.arange(num_colours - len(base), dtype=torch.float32)
    hue = (k * 0.618034) % 1.0
    value = 0.55 + 0.4 * ((k * 0.381966) % 1.0)
    rgb = torch.stack([_hue_channel(hue, shift) for shift in (0.0, 4.0, 2.0)], dim=1) * value[:, None]
    return torch.cat([base, rgb])


def colorize_labels(label: Tensor, num_colours: int) -> Tensor:
    """Label ids ``(N, H, W)`` or ``(N, 1, H, W)`` to RGB images ``(N, 3, H, W)`` in ``[-1, 1]`` (like the photos)."""
    if label.dim() == 4:
        label = label[:, 0]
    colours = label_palette(num_colours).to(label.device)
    return colours[label.long().clamp(0, num_colours - 1)].permute(0, 3, 1, 2) * 2.0 - 1.0


def _hue_channel(hue: Tensor, shift: float) -> Tensor:
    """One RGB channel (shift 0, 4, 2 for R, G, B) of the fully saturated colour of ``hue`` in ``[0, 1)``."""
    return (((hue * 6.0 + shift) % 6.0 - 3.0).abs() - 1.0).clamp(0.0, 1.0)
