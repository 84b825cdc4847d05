"""How well an image volume follows a label volume: each voxel's class is recovered from its intensity and compared
with the labels, as voxel accuracy and mean IoU.

The classes' intensities are further apart than their textures are wide, so one Gaussian per class over the voxel
intensity (equal priors), fitted on real training volumes, tells them apart. Real held-out volumes score near the
top, uniform noise near chance; real volumes scored against other volumes' labels give the floor that the layout
alone explains (air, two thirds of the voxels, lies outside the body in every volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class IntensityClassifier:
    """Per-class Gaussians over the voxel intensity."""

    means: Tensor  # (K,)
    stds: Tensor  # (K,)

    @classmethod
    def fit(cls, labels: Tensor, images: Tensor, num_classes: int) -> IntensityClassifier:
        """Fit on (N, D, H, W) labels and (N, 1, D, H, W) real images."""
        feature = images[:, 0]
        means, stds = torch.zeros(num_classes), torch.ones(num_classes)
        for k in range(num_classes):
            values = feature[labels == k]
            if values.numel() > 1:
                means[k], stds[k] = values.mean(), values.std().clamp_min(1e-3)
        return cls(means, stds)

    def predict(self, images: Tensor) -> Tensor:
        """(N, 1, D, H, W) images -> (N, D, H, W) most likely class per voxel."""
        z = (images[:, 0, ..., None] - self.means) / self.stds
        return (-0.5 * z**2 - self.stds.log()).argmax(-1)


def alignment(predicted: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Voxel accuracy and mean IoU (over classes present in either) of predicted against true labels."""
    ious = []
    for k in range(num_classes):
        union = ((predicted == k) | (labels == k)).sum()
        if union:
            ious.append((((predicted == k) & (labels == k)).sum() / union).item())
    return {"accuracy": (predicted == labels).float().mean().item(), "miou": sum(ious) / len(ious)}
