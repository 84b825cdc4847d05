"""Procedural label volumes and their images: a body with a skin, two tissue layers and two organs, generated on the
fly from ``(seed, split, index)``.

A volume is laid out in resolution-free coordinates ``(z, y, x)`` in ``[0, 1]``: an ellipsoidal body in air, a skin
shell just inside its surface, the interior split into two tissue layers by a wavy surface across z, and two
ellipsoidal organs inside. Each class is painted with its intensity (jittered per volume) plus a texture of its own:

=====  ===========  =========  ==============================================
class  name         intensity  texture
=====  ===========  =========  ==============================================
0      air          -0.9       faint white noise
1      skin          0.6       white noise
2      tissue A      0.0       smooth blobs (noise blurred over 5 voxels)
3      tissue B      0.3       stripes along x
4      organ 1      -0.45      coarse speckle
5      organ 2       0.85      faint white noise
=====  ===========  =========  ==============================================

Intensities lie in about ``[-1, 1]``, one channel, as an MRI-like volume. Train and val draw from disjoint streams.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

CLASS_NAMES = ("air", "skin", "tissue A", "tissue B", "organ 1", "organ 2")
NUM_CLASSES = len(CLASS_NAMES)
INTENSITIES = (-0.9, 0.6, 0.0, 0.3, -0.45, 0.85)
_SPLITS = {"train": 0, "val": 1}


def _grid(size: tuple[int, int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Voxel-centre coordinates in [0, 1], each (D, H, W)."""
    axes = [(torch.arange(n, dtype=torch.float32) + 0.5) / n for n in size]
    return torch.meshgrid(*axes, indexing="ij")


def _ellipsoid(z: Tensor, y: Tensor, x: Tensor, centre: Tensor, radii: Tensor) -> Tensor:
    """(D, H, W) normalized squared distance: < 1 inside the ellipsoid."""
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2


def label_volume(size: tuple[int, int, int], gen: torch.Generator) -> Tensor:
    """(D, H, W) int64 class ids of one procedural volume."""
    z, y, x = _grid(size)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=gen)  # noqa: E731
    body = _ellipsoid(z, y, x, torch.stack([u(0.45, 0.55), u(0.45, 0.55), u(0.45, 0.55)]),
                      torch.stack([u(0.42, 0.48), u(0.40, 0.47), u(0.42, 0.48)]))  # fmt: skip
    labels = torch.zeros(size, dtype=torch.long)
    labels[body < 1] = 1
    interior = body < 0.72
    phase, tilt = u(0, 2 * math.pi), u(-0.15, 0.15)
    surface = u(0.4, 0.6) + tilt * (y - 0.5) + 0.06 * torch.sin(2 * math.pi * 2 * x + phase)
    labels[interior] = torch.where(z[interior] < surface[interior], 2, 3)
    for organ in (4, 5):
        centre = torch.stack([u(0.35, 0.65), u(0.35, 0.65), u(0.35, 0.65)])
        blob = _ellipsoid(z, y, x, centre, torch.stack([u(0.15, 0.24), u(0.15, 0.24), u(0.15, 0.24)]))
        labels[(blob < 1) & interior] = organ
    return labels


def _blur(t: Tensor, width: int) -> Tensor:
    return F.avg_pool3d(t[None, None], width, stride=1, padding=width // 2, count_include_pad=False)[0, 0]


def image_volume(labels: Tensor, gen: torch.Generator) -> Tensor:
    """(1, D, H, W) float intensities for a label volume: class intensity (jittered) plus the class texture."""
    size = labels.shape
    noise = lambda: torch.randn(size, generator=gen)  # noqa: E731
    x_index = torch.arange(size[2], dtype=torch.float32).expand(size)
    textures = (
        0.02 * noise(),
        0.06 * noise(),
        0.5 * _blur(noise(), 5),
        0.12 * torch.sin(x_index * (2 * math.pi / 4) + 6 * torch.rand((), generator=gen)),
        0.35 * _blur(noise(), 3),
        0.03 * noise(),
    )
    image = torch.zeros(size)
    for k, (level, texture) in enumerate(zip(INTENSITIES, textures, strict=True)):
        jitter = 0.05 * (2 * torch.rand((), generator=gen) - 1)
        image = torch.where(labels == k, level + jitter + texture, image)
    return image[None]


class ProceduralVolumes(Dataset):
    """Pairs ``(labels (D, H, W) int64, image (1, D, H, W) float32)``, the same for the same arguments and index.

    Args:
        num_volumes: length of the dataset.
        size: ``(D, H, W)`` of every volume.
        seed: dataset seed.
        split: ``"train"`` or ``"val"`` (disjoint random streams).

    Example:
        >>> labels, image = ProceduralVolumes(2, (8, 16, 16))[0]
        >>> labels.shape, image.shape, int(labels.max()) < NUM_CLASSES
        (torch.Size([8, 16, 16]), torch.Size([1, 8, 16, 16]), True)
    """

    def __init__(self, num_volumes: int, size: tuple[int, int, int], seed: int = 0, split: str = "train") -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
        self.num_volumes, self.size, self.seed, self.split = num_volumes, tuple(size), seed, split

    def __len__(self) -> int:
        return self.num_volumes

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.num_volumes:
            raise IndexError(f"index must be in [0, {self.num_volumes}), got {index}")
        gen = torch.Generator().manual_seed(((self.seed * 2 + _SPLITS[self.split]) << 20) + index)
        labels = label_volume(self.size, gen)  # type: ignore[arg-type]
        return labels, image_volume(labels, gen)
