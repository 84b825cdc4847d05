"""Train a small 3-D SPADE decoder on procedural label volumes, on the CPU, and report how well its volumes follow
held-out label volumes.

Every volume is generated on the fly (``volume3d.data``: a body with a skin, two tissue layers and two organs, each
class with its own intensity and texture); nothing is downloaded. The decoder (``volume3d.model``) turns a label
volume into an image volume through residual blocks whose normalizations are all ``spadenorm.SPADE(spatial_dims=3)``.
It is trained with an L1 loss against the real volume. At the end, each voxel's class is recovered from the
intensity of the generated volume (``volume3d.alignment``) and scored against the held-out labels, beside the
same score for the real volumes (the ceiling), uniform noise (chance) and real volumes against other volumes' labels
(what the layout alone explains). A figure with the middle slice of a few held-out volumes is saved.

Usage: ``python examples/volume_demo.py [--steps 600] [--out runs/volume_demo]`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the volume3d package beside this script

from volume3d.alignment import IntensityClassifier, alignment
from volume3d.data import NUM_CLASSES, ProceduralVolumes
from volume3d.model import VolumeDecoder

PALETTE = torch.tensor([[0, 0, 0], [230, 190, 150], [200, 80, 80], [240, 140, 60], [80, 120, 220], [120, 200, 110]])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=3, default=(16, 32, 32), metavar=("D", "H", "W"))
    parser.add_argument("--width", type=int, default=32, help="channels of the decoder's first stage")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val-volumes", type=int, default=16, help="held-out volumes for the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/volume_demo"))
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "width", "val_volumes"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if any(size % 4 for size in args.size):
        parser.error(f"--size must be divisible by 4 in every dimension, got {args.size}")
    return args


def stack(dataset: ProceduralVolumes, indices: range | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (N, D, H, W) and images (N, 1, D, H, W) of the given items."""
    labels, images = zip(*(dataset[i] for i in indices), strict=True)
    return torch.stack(labels), torch.stack(images)


def train(args: argparse.Namespace) -> tuple[VolumeDecoder, float]:
    """Train the decoder on an endless stream of training volumes; returns it and the seconds spent."""
    torch.manual_seed(args.seed)
    size = tuple(args.size)
    stream = ProceduralVolumes(args.steps * args.batch_size, size, seed=args.seed, split="train")
    model = VolumeDecoder(NUM_CLASSES, width=args.width, num_up=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    start = time.perf_counter()
    for step in range(args.steps):
        labels, images = stack(stream, range(step * args.batch_size, (step + 1) * args.batch_size))
        loss = (model(labels) - images).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  L1 {loss.item():.4f}", flush=True)
    return model, time.perf_counter() - start


def report(model: VolumeDecoder, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Alignment of generated, real, noise and mismatched volumes with the held-out labels."""
    size = tuple(args.size)
    fit_labels, fit_images = stack(ProceduralVolumes(16, size, seed=args.seed + 1, split="train"), range(16))
    classifier = IntensityClassifier.fit(fit_labels, fit_images, NUM_CLASSES)
    labels, real = stack(
        ProceduralVolumes(args.val_volumes, size, seed=args.seed, split="val"), range(args.val_volumes)
    )
    model.eval()
    with torch.no_grad():
        generated = model(labels)
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    rows = {
        "generated": alignment(classifier.predict(generated), labels, NUM_CLASSES),
        "real": alignment(classifier.predict(real), labels, NUM_CLASSES),
        "chance (uniform noise)": alignment(classifier.predict(noise), labels, NUM_CLASSES),
        "layout floor (real vs other labels)": alignment(classifier.predict(real), labels.roll(1, 0), NUM_CLASSES),
    }
    save_figure(labels[:4], generated[:4], real[:4], args.out / "mid_slices.png")
    return rows


def save_figure(labels: torch.Tensor, generated: torch.Tensor, real: torch.Tensor, path: Path) -> None:
    """One row per volume: the middle z-slice of the labels (colours), the generated and the real volume (grey)."""
    middle = labels.shape[1] // 2

    def grey(volume: torch.Tensor) -> torch.Tensor:
        return ((volume[0, middle].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[..., None].expand(-1, -1, 3)

    rows = [
        torch.cat([PALETTE[lab[middle]].to(torch.uint8), grey(gen), grey(img)], dim=1)
        for lab, gen, img in zip(labels, generated, real, strict=True)
    ]
    grid = torch.cat(rows, dim=0).repeat_interleave(4, 0).repeat_interleave(4, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.numpy()).save(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"3-D SPADE decoder on procedural volumes {tuple(args.size)}, batch {args.batch_size}, {args.steps} steps")
    model, seconds = train(args)
    print(f"trained {args.steps} steps in {seconds:.1f} s")
    rows = report(model, args)
    print(f"alignment on {args.val_volumes} held-out label volumes (voxel classes from intensity):")
    for name, scores in rows.items():
        print(f"  {name:36s} accuracy {scores['accuracy']:.3f}   mIoU {scores['miou']:.3f}")
    (args.out / "alignment.json").write_text(json.dumps({"seconds": seconds, "steps": args.steps, **rows}, indent=1))
    print(f"mid-slice figure: {args.out / 'mid_slices.png'}")


if __name__ == "__main__":
    main()
