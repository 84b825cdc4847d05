"""Images as files: the generator's ``[-1, 1]`` output as uint8 arrays, and PNG grids of image rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """Images ``(N, 3, H, W)`` in ``[-1, 1]`` to uint8 ``(N, H, W, 3)``: ``(y + 1) / 2 * 255``, clipped, truncated
    (the original's conversion)."""
    array = ((images.detach().float().cpu() + 1.0) / 2.0 * 255.0).clamp(0, 255).permute(0, 2, 3, 1).numpy()
    return array.astype(np.uint8)


def image_grid(rows: list[Tensor], pad: int = 2) -> np.ndarray:
    """A uint8 ``(H', W', 3)`` grid: one row per tensor in ``rows`` (each ``(N, 3, H, W)`` in ``[-1, 1]``), N columns,
    white ``pad``-pixel gaps."""
    if not rows:
        raise ValueError("rows: expected at least one batch of images")
    tiles = [to_uint8(r) for r in rows]
    n, h, w, _ = tiles[0].shape
    grid = np.full((len(tiles) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(tiles):
        for j in range(n):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top : top + h, left : left + w] = row[j]
    return grid


def save_grid(rows: list[Tensor], path: str | os.PathLike[str], pad: int = 2) -> np.ndarray:
    """Write the :func:`image_grid` of ``rows`` as a PNG (atomically) and return it.

    ``train_spade.py`` uses rows label (colourised), generated, real.
    """
    grid = image_grid(rows, pad)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid).save(tmp, format="PNG")
    os.replace(tmp, path)
    return grid
