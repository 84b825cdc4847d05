"""Train the SPADE GAN (Park et al. 2019) with spadenorm's SPADE layers.

Without arguments it trains a small model on the built-in synthetic scenes on the CPU (a few minutes on 2 cores)
and ends by printing how well generated images follow held-out label maps (the alignment metric of
``spade_gan.scoring.alignment``), next to the real images' score and the chance levels::

    python examples/train_spade.py
    python examples/train_spade.py --dataset ade20k --dataroot ADEChallengeData2016 --ngf 64 --crop-size 256 \\
        --batch-size 4 --epochs 50 --decay-epochs 50 --vgg-weights vgg19-dcbb9e9d.pth --out runs/ade
    torchrun --nproc_per_node=8 examples/train_spade.py ...      # DDP, sync-batch statistics across processes
    python examples/train_spade.py --out runs/ade --resume       # continue exactly where latest.pt left off

Outputs under ``--out``: ``checkpoints/latest.pt`` (+ the last ``--keep`` step files), ``samples/step_*.png`` (rows:
label, generated, real), ``log.jsonl`` (one JSON object of losses per logged step) and ``alignment.json``. The run
itself is :func:`spade_gan.training.run.train`; this script parses the command line and reports input errors.
"""

from __future__ import annotations

import sys

from spade_gan import command_line  # the repository's spadenorm, from a plain clone too

if __name__ == "__main__":
    command_line.flush_denormals()

from spade_gan.data.errors import DatasetLayoutError, LabelRangeError
from spade_gan.optional_packages import MissingPackageError
from spade_gan.scoring.fidelity import WeightsError
from spade_gan.training.checkpoints import CheckpointError
from spade_gan.training.config import ConfigError, config_from_args
from spade_gan.training.run import train


def main(argv: list[str] | None = None) -> int:
    """Train as the command line says; 0 on success, 2 (with a message on stderr) for unusable inputs."""
    cfg = config_from_args(argv)
    try:
        train(cfg)
    except (
        CheckpointError,
        ConfigError,
        DatasetLayoutError,
        LabelRangeError,
        WeightsError,
        FileNotFoundError,
        MissingPackageError,
    ) as exc:
        return command_line.report_error("train_spade.py", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
