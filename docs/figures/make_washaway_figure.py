"""Draw docs/figures/washaway.png: the wash-away probe of every ablation generator, seed 0.

Row 1: the eight uniform label maps (one class each, colourised); then one row per generator with its outputs for
those maps, read from the ``washaway.png`` grids that ``examples/ablation.py`` saves in each run folder (their second
row). Labels are drawn left of each row.

Run from the repository root after an ablation: ``python docs/figures/make_washaway_figure.py runs/ablation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).with_name("washaway.png")
GENERATORS = ("spade", "pix2pixhd", "concat", "clade")
LABEL_WIDTH = 90


def rows_of(grid: np.ndarray, pad: int = 2) -> list[np.ndarray]:
    """The image rows of a ``save_grid`` picture (tiles separated by ``pad`` white pixels)."""
    tile = (grid.shape[0] - pad) // 2 - pad  # two rows per probe grid
    return [grid[i * (tile + pad) : (i + 1) * (tile + pad)] for i in range(2)]  # each with the white gap above it


def main(root: Path) -> None:
    rows, names = [], []
    for generator in GENERATORS:
        grid = np.asarray(Image.open(root / generator / "seed0" / "washaway.png").convert("RGB"))
        labels, outputs = rows_of(grid)
        if not rows:
            rows.append(labels)
            names.append("label map")
        rows.append(outputs)
        names.append(generator)
    height = sum(r.shape[0] for r in rows)
    canvas = Image.new("RGB", (LABEL_WIDTH + rows[0].shape[1], height), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for name, row in zip(names, rows, strict=True):
        canvas.paste(Image.fromarray(row), (LABEL_WIDTH, top))
        draw.text((6, top + row.shape[0] // 2 - 6), name, fill="black")
        top += row.shape[0]
    canvas.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation"))
