"""The start the example scripts share: the repository's ``spadenorm`` is importable from a plain clone (no
``pip install -e .``), and :func:`flush_denormals` for their ``__main__`` block."""

from __future__ import annotations

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
