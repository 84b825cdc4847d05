"""Paint a label map in the browser and watch a SPADE generator draw it: a local web page served by this script.

    python examples/paint.py                                    # the default run's runs/spade/checkpoints/latest.pt
    python examples/paint.py --checkpoint runs/vae/checkpoints/latest.pt --device cuda
    python examples/paint.py --checkpoint ade20k_pretrained/latest_net_G.pth --preset ade20k \\
        --val-labels ADEChallengeData2016/annotations/validation

Prints the page's URL (127.0.0.1 and a free port unless --host / --port say otherwise) and serves until Ctrl+C; it
opens no browser and writes no file. Checkpoints are read as synthesize.py reads them (``weights_only=True``).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import sys
from pathlib import Path

from spade_gan import command_line  # the repository's spadenorm, from a plain clone too

if __name__ == "__main__":
    command_line.flush_denormals()

from spade_gan.data.presets import PRESETS
from spade_gan.studio.renderer import Renderer, dataset_name
from spade_gan.studio.server import make_server
from spade_gan.studio.validation_maps import SYNTHETIC_VAL_MAPS, ValidationMaps
from spade_gan.synthesis.loading import SynthesisError, load_model

DEFAULT_CHECKPOINT = Path("runs/spade/checkpoints/latest.pt")
"""What ``python examples/train_spade.py`` writes with its defaults."""


def exposure_warning(host: str) -> str | None:
    """The warning ``--host`` deserves: ``None`` for a loopback address, else a sentence on the exposure."""
    if host == "localhost":
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return None
    return (
        f"warning: --host {host} lets other machines reach the studio; it has no authentication and runs the "
        "generator for anyone who can connect"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``paint.py``."""
    p = command_line.parser("paint.py", "Paint label maps in the browser; a SPADE generator draws them.")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="train_spade.py checkpoint (EMA weights when kept) or original latest_net_G.pth",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="dataset of an original state dict (default: the preset matching its channel count); names the classes",
    )
    command_line.add_architecture_options(p)
    p.add_argument("--val-labels", type=Path, help="folder of label PNGs to start paintings from")
    p.add_argument("--device", default="cpu", help="where the generator runs: cpu, cuda, cuda:1, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback exposes the page")
    p.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    p.add_argument("--log-requests", action="store_true", help="print one line per request")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve the studio until interrupted; 0 when stopped with Ctrl+C, 2 (with a message) for unusable inputs."""
    args = build_parser().parse_args(argv)
    if args.checkpoint == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_file():
        return command_line.report_error(
            "paint.py",
            f"{DEFAULT_CHECKPOINT} does not exist (run from the repository root); train the default run first with\n"
            "    python examples/train_spade.py\nor pass --checkpoint FILE",
        )
    try:
        model = load_model(
            args.checkpoint,
            preset=args.preset,
            overrides=command_line.architecture_overrides(args),
            device=args.device,
        )
        dataset = dataset_name(model, args.preset)
        count = SYNTHETIC_VAL_MAPS if dataset == "synthetic" else 0
        validation = ValidationMaps(count, args.val_labels)
        server = make_server(
            Renderer(model, dataset, args.checkpoint.name, validation), args.host, args.port, log=args.log_requests
        )
    except (SynthesisError, OSError, RuntimeError) as exc:
        return command_line.report_error("paint.py", exc)
    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    h, w = model.generator.output_size
    print(f"paint studio for {args.checkpoint} ({w}x{h}, {args.device}): {server.url}", flush=True)
    print("open that address in a browser; Ctrl+C stops the server", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
