"""The end-of-run alignment report: how well generated images follow held-out label maps, against reference levels.

Four rows, each scored with :class:`spade_gan.scoring.alignment.AlignmentMeter` (pixel accuracy and mIoU of the
classes read back from the images): the generated images; the real images; uniform noise (chance); and real images
scored against other scenes' maps (what the layout alone explains, the floor a generator's score is read against).
"""

from __future__ import annotations

import torch

from ..data.build import LabelledDataset
from ..scoring.alignment import AlignmentMeter
from ..scoring.generator_scores import item_batches
from .trainer import SPADETrainer

EVAL_SEED = 1234
"""Seed of the z draws (VAE) and the noise images of the evaluation and of the sample grids."""


def evaluate_generator(
    trainer: SPADETrainer, eval_set: LabelledDataset, batch_size: int = 16
) -> dict[str, dict[str, float]]:
    """``{row: {"accuracy": ..., "miou": ...}}`` for the four rows above, over every item of ``eval_set``."""
    generated, real_meter, noise_meter, layout_meter = (AlignmentMeter() for _ in range(4))
    g = torch.Generator().manual_seed(EVAL_SEED)
    for _, batch in item_batches(eval_set, batch_size):
        seg, _ = trainer.batch_inputs(batch)
        labels, real = batch["label"][:, 0], batch["image"]
        fake = trainer.generate(seg, generator=g).cpu()
        generated.update(fake, labels)
        real_meter.update(real, labels)
        noise_meter.update(torch.rand(real.shape, generator=g) * 2 - 1, labels)
        layout_meter.update(real, labels.roll(1, dims=0))
    return {
        "generated": generated.compute(),
        "real": real_meter.compute(),
        "chance (uniform noise)": noise_meter.compute(),
        "layout floor (real vs other maps)": layout_meter.compute(),
    }


def alignment_table(results: dict[str, dict[str, float]], num_maps: int, crop_size: int | None) -> str:
    """The results as printed at the end of a run: a title line, then one line per row.

    Example:
        >>> print(alignment_table({"real": {"accuracy": 0.97, "miou": 0.91}}, 64, 64))
        alignment on 64 held-out label maps (val split, 64px):
          real                               accuracy 0.970   mIoU 0.910
    """
    lines = [f"alignment on {num_maps} held-out label maps (val split, {crop_size}px):"]
    lines += [f"  {name:<34} accuracy {r['accuracy']:.3f}   mIoU {r['miou']:.3f}" for name, r in results.items()]
    return "\n".join(lines)
