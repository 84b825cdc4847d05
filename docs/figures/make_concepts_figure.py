"""Draw docs/figures/modulation_maps.png: the scale map 1 + gamma that each layer applies to one channel.

One 64x64 label map with three classes goes through freshly initialised spadenorm layers (random weights, seed 0):
SPADE predicts a per-pixel scale from the map, CLADE looks one value up per class, conditional batch norm and AdaIN
apply one value to the whole channel. Only the shapes of the maps matter; the values are those of random weights.

Run from the repository root: ``python docs/figures/make_concepts_figure.py`` (needs matplotlib).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import spadenorm

OUT = Path(__file__).with_name("modulation_maps.png")
SIZE, CLASSES, CHANNELS = 64, 3, 4


def label_map() -> torch.Tensor:
    """Sky (0) above a wavy horizon, ground (1) below it, a road (2) running to the middle of the horizon."""
    v, u = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    horizon = 0.45 + 0.05 * torch.sin(6.0 * u)
    labels = torch.where(v < horizon, 0, 1)
    road = (v >= horizon) & ((u - 0.5).abs() < 0.05 + 0.4 * (v - horizon))
    return torch.where(road, 2, labels).long()[None]  # (1, H, W)


@torch.no_grad()
def scale_maps(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(1, CHANNELS, SIZE, SIZE)
    spade = spadenorm.SPADE(CHANNELS, label_nc=CLASSES, hidden_channels=16)
    segmap = spade.prepare_segmap(labels, x)
    spade_gamma = spade.mlp_gamma(spade.mlp_shared(segmap))[0, 0]

    clade = spadenorm.CLADE(CHANNELS, num_classes=CLASSES)
    clade.gamma_table.normal_(1.0, 0.5)  # CLADE scales by gamma itself, so 1 + (gamma - 1)
    clade_gamma = clade.gamma_table[labels[0], 0] - 1

    cbn = spadenorm.ConditionalBatchNorm2d(CHANNELS, num_classes=10)
    cbn.embedding.weight.normal_(0.0, 0.5)
    cbn_gamma = cbn.embedding(torch.tensor([3]))[0, 0].expand(SIZE, SIZE)

    style = 2.0 + 1.5 * torch.randn(1, CHANNELS, 16, 16)  # AdaIN: gamma = sigma(style) - 1
    adain_gamma = (style.var((2, 3), correction=0) + 1e-5).sqrt()[0, 0].sub(1).expand(SIZE, SIZE)
    return {
        "SPADE: per pixel,\npredicted from the map": 1 + spade_gamma,
        "CLADE: per class,\nlooked up in a table": 1 + clade_gamma,
        "conditional BN: per sample,\nfrom a class id": 1 + cbn_gamma,
        "AdaIN: per sample,\nfrom style statistics": 1 + adain_gamma,
    }


def main() -> None:
    labels = label_map()
    maps = scale_maps(labels)
    fig, axes = plt.subplots(1, 5, figsize=(12.5, 2.9), constrained_layout=True)
    palette = torch.tensor([[0.55, 0.72, 0.95], [0.50, 0.36, 0.20], [0.25, 0.25, 0.28]])
    axes[0].imshow(palette[labels[0]].numpy(), interpolation="nearest")
    axes[0].set_title("label map m\n(sky, ground, road)", fontsize=10)
    low = min(float(m.min()) for m in maps.values())
    high = max(float(m.max()) for m in maps.values())
    for ax, (title, scale) in zip(axes[1:], maps.items(), strict=True):
        image = ax.imshow(scale.numpy(), cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[1:], shrink=0.8, label="scale 1 + gamma, channel 0")
    fig.suptitle(
        "The scale each layer multiplies the normalized activations by (random weights, one channel)", fontsize=11
    )
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
