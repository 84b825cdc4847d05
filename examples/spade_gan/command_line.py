"""The start the GAN's scripts (``train_spade.py``, ``synthesize.py``, ``evaluate.py``, ``ablation.py``) share.

Importing this module makes the repository's ``spadenorm`` importable from a plain clone (no ``pip install -e .``), so
each script imports it before anything that imports spadenorm::

    from spade_gan import command_line

    if __name__ == "__main__":
        command_line.flush_denormals()

Then :func:`parser` starts each script's command line and :func:`report_error` reports an unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
