"""The SPADE paper's central ablation on the built-in scenes: SPADE against input-only generators and CLADE.

    python examples/ablation.py --out runs/ablation
    python examples/ablation.py --out runs/ablation --seeds 0 1 2 \\
        --inception-weights pt_inception-2015-12-05-6726825d.pth
    python examples/ablation.py --out runs/quick --generators spade pix2pixhd -- --max-steps 100

Trains every generator of ``--generators`` with every seed of ``--seeds`` at ``train_spade.py``'s default budget
(arguments after ``--`` go to every training run), then reports per generator, as mean (min-max) over the seeds:
alignment accuracy / mIoU on the held-out maps, the wash-away probe (uniform single-class maps: alignment and the mean
pairwise L1 distance between the classes' outputs; 0 means the label map was washed away), FID / KID with
``--inception-weights``, the parameter count and the mean step time. The generators:

* ``spade``: the default SPADE generator;
* ``pix2pixhd``: the label map at the input only, encoder / residual blocks / decoder with instance norm, as many
  parameters as the SPADE generator (within a few percent);
* ``concat``: the same with the label map concatenated to every block's input;
* ``clade``: the SPADE generator with class-table modulation (CLADE) instead of SPADE's convolutions.

Writes ``<out>/<generator>/seed<k>/`` (a normal run folder plus ``ablation.json`` and ``washaway.png``) and
``<out>/ablation.json`` / ``<out>/ablation.md``. An interrupted ablation continues where it stopped when rerun.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch
from spade_gan import command_line  # the repository's spadenorm, from a plain clone too

if __name__ == "__main__":
    command_line.flush_denormals()

from spade_gan.ablation.runs import device_name, markdown_table, run_one, summarise
from spade_gan.models.baselines import BASELINES
from spade_gan.models.spec import GENERATORS
from spade_gan.optional_packages import MissingPackageError
from spade_gan.scoring.fidelity import WeightsError, load_inception


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``ablation.py`` (training arguments follow ``--``)."""
    p = command_line.parser(
        "ablation.py", "SPADE vs input-only (pix2pixHD), concat and CLADE generators on the built-in scenes."
    )
    p.add_argument("--out", default="runs/ablation", help="root folder of the runs and the report")
    p.add_argument("--generators", nargs="+", choices=GENERATORS, default=["spade", "pix2pixhd", "concat", "clade"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument(
        "--baseline-norm",
        choices=("instance", "batch"),
        default="instance",
        help="norm of the pix2pixhd / concat generators (pix2pixHD's is instance)",
    )
    p.add_argument(
        "--inception-weights", help="local Inception file for FID/KID (pt_inception-2015-12-05-6726825d.pth)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, train_args = build_parser().parse_args(argv[:split]), argv[split + 1 :]
    if any(a.split("=")[0] in ("--generator", "--seed", "--out", "--dataset") for a in train_args):
        return command_line.report_error(
            "ablation.py", "--generator, --seed, --out and --dataset are set by the ablation"
        )
    try:
        inception = load_inception(args.inception_weights) if args.inception_weights else None
    except (WeightsError, MissingPackageError) as exc:
        return command_line.report_error("ablation.py", exc)
    root = Path(args.out)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []
    for generator in args.generators:
        norm_args = ["--norm", args.baseline_norm] if generator in BASELINES else []
        results += [run_one(root, generator, seed, [*train_args, *norm_args], inception) for seed in args.seeds]
    rows = summarise(results)
    table = markdown_table(rows)
    report = {
        "command": "python examples/ablation.py " + " ".join(argv),
        "started": started.isoformat(timespec="seconds"),
        "machine": device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rows": rows,
        "runs": results,
    }
    (root / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (root / "ablation.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
