"""The start the GAN's scripts (``train_spade.py``, ``synthesize.py``, ``evaluate.py``, ``ablation.py``, ``paint.py``)
share.

Importing this module makes the repository's ``spadenorm`` importable from a plain clone (no ``pip install -e .``), so
each script imports it before anything that imports spadenorm::

    from spade_gan import command_line

    if __name__ == "__main__":
        command_line.flush_denormals()

Then :func:`parser` starts each script's command line and :func:`report_error` reports an unusable input; the scripts
that load a generator take its architecture options from :func:`add_architecture_options` and hand them to
``load_model`` as :func:`architecture_overrides`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

try:
    import spadenorm  # noqa: F401
except ImportError:  # a clone without `pip install -e .`: use the repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def flush_denormals() -> None:
    """Flush denormal floats to zero for the rest of the process.

    The 0.02-gain initialisation and GAN training produce denormals that slow CPU convolutions down up to 10x. Call
    this first in a script's ``__main__`` block, before the first parallel op: OpenMP worker threads inherit the
    floating-point mode only when they are created.
    """
    torch.set_flush_denormal(True)


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser a script's command line starts from: ``prog`` in its messages, every default in ``--help``.

    Example:
        >>> parser("evaluate.py", "Evaluate a generator.").format_usage()
        'usage: evaluate.py [-h]\\n'
    """
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def report_error(prog: str, message: object) -> int:
    """Print ``<prog>: error: <message>`` on stderr, as argparse reports a bad argument, and return the exit status of
    an unusable input, 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def add_architecture_options(p: argparse.ArgumentParser) -> None:
    """``--ngf``, ``--crop-size``, ``--aspect-ratio`` and ``--num-upsampling-layers``: the generator architecture a
    script may override when it loads a checkpoint (``spade_gan.synthesis.loading.OVERRIDABLE``)."""
    p.add_argument("--ngf", type=int, help="generator width (original files: read from the file, 64 for releases)")
    p.add_argument("--crop-size", type=int, help="output width")
    p.add_argument("--aspect-ratio", type=float, help="output width / height")
    p.add_argument("--num-upsampling-layers", choices=("normal", "more", "most"))


def architecture_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`add_architecture_options` as ``load_model``'s ``overrides`` (``None``: not given)."""
    return {
        "ngf": args.ngf,
        "crop_size": args.crop_size,
        "aspect_ratio": args.aspect_ratio,
        "num_upsampling_layers": args.num_upsampling_layers,
    }
