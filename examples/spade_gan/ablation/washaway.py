"""The SPADE paper's "wash away" probe: uniform label maps, one per class, through a generator.

A uniform map is spatially constant. A generator that sees the map only at its input, through convolutions followed
by instance normalization, turns it into spatially constant features and the normalization subtracts them: every
class gives the same output. SPADE re-injects the map in every normalization layer, so the classes stay apart. The
probe measures how far apart they stay:

* ``pairwise_l1``: mean absolute difference between the outputs of two classes (images in ``[-1, 1]``), averaged
  over all pairs (``pairwise_l1_min``: the closest pair); 0 means the input was washed away;
* ``accuracy`` / ``miou``: the built-in alignment read-back of each output against its uniform map (synthetic
  scenes only; chance is about 1 / classes).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from ..data.semantics import to_semantics
from ..scoring.alignment import evaluate_alignment


def uniform_label_maps(num_classes: int, size: tuple[int, int]) -> Tensor:
    """``(num_classes, H, W)`` int64 maps, map ``k`` filled with class ``k``."""
    return torch.arange(num_classes).view(-1, 1, 1).expand(num_classes, *size).clone()


@torch.no_grad()
def washaway_probe(
    generator: nn.Module,
    *,
    label_nc: int,
    contain_dontcare: bool,
    size: tuple[int, int],
    alignment: bool,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Any], Tensor, Tensor]:
    """Run the probe on ``generator`` (put in eval mode; float32, no VAE).

    Returns:
        the scores (module docstring), the uniform maps ``(C, H, W)`` and the generated images ``(C, 3, H, W)``.
    """
    labels = uniform_label_maps(label_nc, size)
    seg = to_semantics(labels[:, None], None, label_nc=label_nc, contain_dontcare=contain_dontcare).to(device)
    was_training = generator.training
    generator.eval()
    try:
        images = generator(seg).float().cpu()
    finally:
        generator.train(was_training)
    pairs = [float((images[i] - images[j]).abs().mean()) for i, j in itertools.combinations(range(label_nc), 2)]
    scores: dict[str, Any] = {
        "pairwise_l1": sum(pairs) / len(pairs) if pairs else 0.0,
        "pairwise_l1_min": min(pairs) if pairs else 0.0,
    }
    if alignment:
        scores.update(evaluate_alignment(images, labels))
    return scores, labels, images
