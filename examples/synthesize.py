"""Generate images from label maps with a SPADE generator: a train_spade.py checkpoint or an original latest_net_G.pth.

    python examples/synthesize.py --checkpoint runs/spade/checkpoints/latest.pt --labels LABEL_DIR --out OUT_DIR
    python examples/synthesize.py --checkpoint ade20k_pretrained/latest_net_G.pth --preset ade20k \\
        --labels ADEChallengeData2016/annotations/validation --out results/ade
    python examples/synthesize.py --checkpoint cityscapes/latest_net_G.pth --preset cityscapes \\
        --labels gtFine/val/frankfurt --instances gtFine/val/frankfurt --out results/cityscapes
    python examples/synthesize.py --checkpoint runs/vae/checkpoints/latest.pt --labels L --out O --style photo.jpg

Writes one RGB PNG per label PNG (same stem) at the generator's output size. Checkpoints are read with
``torch.load(weights_only=True)``: opening a file never runs code from it.
"""

from __future__ import annotations

import argparse
import sys

from spade_gan import command_line  # the repository's spadenorm, from a plain clone too

if __name__ == "__main__":
    command_line.flush_denormals()

from spade_gan.data.presets import PRESETS
from spade_gan.synthesis.inference import synthesize_folder
from spade_gan.synthesis.loading import SynthesisError, load_model


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``synthesize.py``."""
    p = command_line.parser("synthesize.py", "Synthesize images from label maps with a SPADE generator.")
    p.add_argument("--checkpoint", required=True, help="train_spade.py checkpoint or original latest_net_G.pth")
    p.add_argument("--labels", required=True, help="folder of label PNGs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--instances", help="folder of instance-id PNGs (models with instance maps)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="dataset defaults for an original state dict (default: the preset matching its channel count)",
    )
    command_line.add_architecture_options(p)
    p.add_argument("--style", help="style image for a VAE generator (encoded by its encoder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the VAE's z (different seeds: different styles)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    return p


def main(argv: list[str] | None = None) -> int:
    """Synthesize as the command line says; 0 on success, 2 (with a message on stderr) for unusable inputs."""
    args = build_parser().parse_args(argv)
    try:
        model = load_model(
            args.checkpoint,
            preset=args.preset,
            overrides=command_line.architecture_overrides(args),
            device=args.device,
        )
        written = synthesize_folder(
            model, args.labels, args.out, instances=args.instances, style=args.style, seed=args.seed
        )
    except (SynthesisError, OSError) as exc:
        return command_line.report_error("synthesize.py", exc)
    h, w = model.generator.output_size
    print(f"wrote {len(written)} images ({w}x{h}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
