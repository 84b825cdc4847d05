"""The built-in procedural dataset: outdoor-like scenes of 8 classes, generated from ``(seed, split, index)``.

A scene is laid out in resolution-free coordinates (``u`` across, ``v`` down, both in ``[0, 1]``): sky above a wavy
horizon, optionally a mountain ridge (rock) and buildings rising from it and tree crowns (vegetation) on it; below, a
ground of one class with smooth patches of another, optionally a lake (water) and a road running to a vanishing
point. The photo paints each class with its colour (slightly jittered per image) plus its pixel-scale texture (see
:mod:`spade_gan.data.scene_classes`) and a little sensor noise. The same ``(seed, split, index)`` gives the same
scene at every resolution and the same tensors on every call; train and val draw from disjoint random streams.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .scene_classes import (
    BUILDING,
    GROUND,
    NUM_CLASSES,
    ROAD,
    ROCK,
    SAND,
    SCENE_CLASSES,
    SKY,
    VEGETATION,
    WATER,
)

_SPLIT_STREAM = {"train": 0, "val": 1}
_COLOURS = np.array([c.colour for c in SCENE_CLASSES], dtype=np.float32)


class SyntheticScenes(Dataset):
    """Procedural label maps and photos in the shared item format (no ``instance`` key: no instance maps).

    Args:
        num_images: length of the dataset.
        size: ``(height, width)`` of every item, or one int for a square.
        seed: dataset seed; together with ``split`` and the index it fixes an item.
        split: ``"train"`` or ``"val"``; the two draw from disjoint random streams.

    Items: ``label`` int64 ``(1, H, W)`` with ids ``0 .. 7`` (see :data:`~spade_gan.data.scene_classes.CLASS_NAMES`),
    ``image`` float32 ``(3, H, W)`` in ``[-1, 1]``, ``path`` ``"synthetic/<split>/<seed>/<index>"``.
    Generating an item takes about 1 ms at 64x64 and 3-4 ms at 128x128 (numpy only, one core).
    """

    label_nc = NUM_CLASSES
    contain_dontcare = False
    use_instance = False
    semantic_nc = NUM_CLASSES

    def __init__(
        self,
        num_images: int,
        size: int | tuple[int, int] = (64, 64),
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if num_images < 0:
            raise ValueError(f"num_images: expected a non-negative int, got {num_images!r}")
        if isinstance(size, int):
            size = (size, size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size: expected (height, width) of positive ints, got {size!r}")
        if split not in _SPLIT_STREAM:
            raise ValueError(f"split: expected one of {sorted(_SPLIT_STREAM)}, got {split!r}")
        if seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.num_images = num_images
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        label, image = render_scene(self.seed, self.split, index, self.size)
        return {
            "label": torch.from_numpy(label).unsqueeze(0),
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)) * 2.0 - 1.0),
            "path": f"synthetic/{self.split}/{self.seed}/{index}",
        }


def render_scene(seed: int, split: str, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Label ids int64 ``(H, W)`` and photo float32 ``(H, W, 3)`` in ``[0, 1]`` of one scene."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split], index])
    h, w = size
    u = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    v = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    label = _layout(rng, u, v, aspect=w / h)
    image = _paint(rng, label, v)
    return label, image


def _waves(rng: np.random.Generator, n: int, low: float, high: float) -> list[tuple[float, float, float, float]]:
    """``n`` random plane waves (frequency in cycles per unit, direction, phase, weight)."""
    return [
        (rng.uniform(low, high), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0))
        for _ in range(n)
    ]


def _field(waves: list[tuple[float, float, float, float]], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sum of plane waves evaluated on the grid, normalised to ``[-1, 1]``."""
    total = sum(a * np.sin(2 * np.pi * f * (u * np.cos(d) + v * np.sin(d)) + p) for f, d, p, a in waves)
    return total / sum(a for *_, a in waves)


def _layout(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Label map ``(H, W)``; all random draws happen in a fixed order, independent of the resolution."""
    horizon_mean = rng.uniform(0.35, 0.6)
    horizon = horizon_mean + 0.03 * _field(_waves(rng, 2, 1.0, 3.0), u, 0.0 * u)
    below = v >= horizon
    label = np.where(below, 0, SKY).astype(np.int64)

    ground_classes = [GROUND, VEGETATION, SAND]
    base = ground_classes[rng.choice(3, p=[0.45, 0.3, 0.25])]
    patch = rng.choice([c for c in ground_classes if c != base])
    patch_field = _field(_waves(rng, 4, 1.5, 4.0), u, v)
    patch_threshold = rng.uniform(0.2, 0.7)
    label = np.where(below, np.where(patch_field > patch_threshold, patch, base), label)

    if rng.random() < 0.6:  # a mountain ridge behind the horizon
        height = rng.uniform(0.08, 0.25)
        ridge = horizon - height * (0.6 + 0.4 * _field(_waves(rng, 3, 1.0, 5.0), u, 0.0 * u))
        label = np.where(~below & (v >= ridge), ROCK, label)

    if rng.random() < 0.5:  # a lake with a wobbly shore
        cu, cv = rng.uniform(0.2, 0.8), horizon_mean + rng.uniform(0.1, 0.3)
        ru, rv = rng.uniform(0.15, 0.35), rng.uniform(0.05, 0.12)
        wobble = 0.15 * _field(_waves(rng, 3, 2.0, 6.0), u, v)
        lake = ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 < 1.0 + wobble
        label = np.where(below & lake, WATER, label)

    if rng.random() < 0.6:  # a road towards a vanishing point on the horizon
        vanish, bottom, width = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.5)
        t = np.clip((v - horizon_mean) / (1.0 - horizon_mean), 0.0, 1.0)
        road = np.abs(u - (vanish + (bottom - vanish) * t)) < 0.01 + 0.5 * width * t
        label = np.where(below & road, ROAD, label)

    for _ in range(rng.integers(1, 5) if rng.random() < 0.55 else 0):  # buildings standing on the horizon
        left, width = rng.uniform(0.0, 0.9), rng.uniform(0.06, 0.2)
        top, foot = horizon_mean - rng.uniform(0.1, 0.35), horizon_mean + rng.uniform(0.0, 0.05)
        box = (u >= left) & (u < left + width) & (v >= top) & (v < foot)
        label = np.where(box, BUILDING, label)

    for _ in range(rng.integers(1, 4) if rng.random() < 0.5 else 0):  # tree crowns on the horizon
        cu, cv, radius = rng.uniform(0.0, 1.0), horizon_mean - rng.uniform(0.0, 0.08), rng.uniform(0.04, 0.1)
        crown = ((u - cu) * aspect) ** 2 + (v - cv) ** 2 < radius**2
        label = np.where(crown, VEGETATION, label)
    return label


def _paint(rng: np.random.Generator, label: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Photo ``(H, W, 3)`` in ``[0, 1]``: jittered class colours plus each class's texture and sensor noise."""
    h, w = label.shape
    colours = _COLOURS + rng.uniform(-0.03, 0.03, size=_COLOURS.shape).astype(np.float32)
    white = rng.standard_normal((h, w)).astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, size=NUM_CLASSES)
    texture = np.empty((h, w), dtype=np.float32)
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=NUM_CLASSES))
    for c in present:
        spec = SCENE_CLASSES[c]
        mask = label == c
        if spec.texture == "gradient":
            field = np.broadcast_to(2.0 * v - 1.0, (h, w))[mask]
        elif spec.texture == "stripes":
            y, x = np.nonzero(mask)
            angle = np.deg2rad(spec.orientation)
            phase = (x * np.cos(angle) + y * np.sin(angle)) * (2 * np.pi / spec.period) + phases[c]
            field = np.sqrt(2.0) * np.sin(phase)
        else:
            field = (_box_blur(white, int(spec.period)) if spec.period > 1 else white)[mask]
        texture[mask] = spec.amplitude * field
    image = colours[label] + texture[..., None] + 0.01 * rng.standard_normal((h, w, 3)).astype(np.float32)
    return np.clip(image, 0.0, 1.0, out=image)


def _box_blur(field: np.ndarray, k: int) -> np.ndarray:
    """Mean over a ``k x k`` window (wrapping at the borders), rescaled to unit variance for white-noise input."""
    out = field.copy()
    for axis in (0, 1):
        out = sum(np.roll(out, s, axis=axis) for s in range(k)) / k
    return out * k
