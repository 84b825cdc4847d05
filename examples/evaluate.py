"""Evaluate a generator on a dataset's validation split: alignment, FID / KID and segmenter scores, as a table and JSON.

    python examples/evaluate.py --checkpoint runs/spade/checkpoints/latest.pt --out runs/spade/eval
    python examples/evaluate.py --checkpoint runs/spade/checkpoints/latest.pt --out runs/spade/eval \\
        --inception-weights weights/pt_inception-2015-12-05-6726825d.pth
    python examples/evaluate.py --checkpoint ade20k_pretrained/latest_net_G.pth --preset ade20k --dataset ade20k \\
        --dataroot ADEChallengeData2016 --out results/ade --inception-weights weights/pt_inception-....pth \\
        --segmenter upernet_ade20k.ts --segmenter-size 256 256 --segmenter-input imagenet

Generates one image per validation label map (the images go to ``<out>/images/<index>.png``), then reports:

* alignment accuracy / mIoU: the built-in class read-back, built-in scenes only, needs no weights;
* FID and KID (``--inception-weights``): torch-fidelity's Inception on uint8 images at the dataset's crop size,
  resized to 299x299 inside the network (TensorFlow-1 bilinear), 2048-d pool features; FID over all images, KID
  over 100 subsets of min(1000, N) images; generated against the real images of the same label maps;
* segmenter accuracy / mIoU (``--segmenter``): a ``torch.export`` or TorchScript model you supply (see
  ``spade_gan/scoring/segmenter.py``).

``<out>/results.json`` holds the numbers and the protocol; it is written last, atomically, and a failed run leaves
none (the images are generated into a temporary folder). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from spade_gan import command_line  # the repository's spadenorm, from a plain clone too

if __name__ == "__main__":
    command_line.flush_denormals()

from spade_gan.data import DATASETS
from spade_gan.data.presets import PRESETS
from spade_gan.evaluation import EvaluationError, evaluate_checkpoint
from spade_gan.optional_packages import MissingPackageError


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``evaluate.py``."""
    p = command_line.parser(
        "evaluate.py", "Evaluate a SPADE generator on a validation split: alignment, FID/KID, segmenter mIoU."
    )
    p.add_argument("--checkpoint", required=True, help="train_spade.py checkpoint or original latest_net_G.pth")
    p.add_argument("--out", required=True, help="output folder: images/ and results.json")
    p.add_argument("--preset", choices=sorted(PRESETS), help="dataset defaults for an original state dict")
    g = p.add_argument_group("data (default: the checkpoint's dataset)")
    g.add_argument("--dataset", choices=DATASETS)
    g.add_argument("--dataroot", help="root folder of cityscapes / ade20k / coco")
    g.add_argument("--label-dir", help="custom dataset: folder of validation label PNGs")
    g.add_argument("--image-dir", help="custom dataset: folder of validation photos")
    g.add_argument("--instance-dir", help="custom dataset: folder of instance-id PNGs")
    g.add_argument("--num-images", type=int, help="evaluate the first N items (built-in scenes: default 64)")
    g = p.add_argument_group("metrics")
    g.add_argument("--inception-weights", help="torch-fidelity Inception file pt_inception-2015-12-05-6726825d.pth")
    g.add_argument("--kid-subsets", type=int, default=100)
    g.add_argument("--kid-subset-size", type=int, default=1000, help="capped by the number of images")
    g.add_argument("--segmenter", help="torch.export (.pt2) or TorchScript model: images -> logits (N, K, h, w)")
    g.add_argument("--segmenter-classes", help="JSON list: dataset id of each of the K outputs (-1: none)")
    g.add_argument("--segmenter-size", type=int, nargs=2, metavar=("H", "W"), help="resize images to this first")
    g.add_argument("--segmenter-input", choices=("unit", "imagenet", "tanh"), default="unit")
    g = p.add_argument_group("run")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--seed", type=int, default=0, help="seed of the VAE's z draws")
    g.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Evaluate as the command line says; 0 on success, 2 (with a message on stderr) for unusable inputs."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    partial = out / ".images.partial"
    shutil.rmtree(partial, ignore_errors=True)  # leftovers of an interrupted run
    try:
        results = evaluate_checkpoint(args, partial)
        table = results.pop("table")
        _publish(out, results, partial)
    except (EvaluationError, MissingPackageError, OSError) as exc:
        return command_line.report_error("evaluate.py", exc)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(table)
    print(f"wrote {out / 'results.json'} and {results['num_images']} images to {out / 'images'}")
    return 0


def _publish(out: Path, results: dict[str, Any], partial: Path) -> None:
    """Replace ``<out>/images`` by the finished images and write ``results.json`` atomically, last (an older
    ``results.json`` goes first, so no result outlives the images it described)."""
    (out / "results.json").unlink(missing_ok=True)
    images = out / "images"
    if images.exists():
        shutil.rmtree(images)
    os.replace(partial, images)
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")


if __name__ == "__main__":
    sys.exit(main())
