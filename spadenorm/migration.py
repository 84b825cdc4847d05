"""Helpers for code and checkpoints written for the original SPADE implementation."""

from __future__ import annotations

import re
from typing import NamedTuple

from ._core import NormName

__all__ = ["SpadeConfig", "parse_spade_config"]

_CONFIG = re.compile(r"(?:spectral)?spade(instance|syncbatch|batch)(\d+)x(\d+)")
_NORMS: dict[str, NormName] = {"instance": "instance", "batch": "batch", "syncbatch": "sync_batch"}


class SpadeConfig(NamedTuple):
    """The typed form of an original ``spade<norm><k>x<k>`` string."""

    norm: NormName
    kernel_size: int


def parse_spade_config(config: str) -> SpadeConfig:
    """Parse the original norm string, e.g. ``"spadesyncbatch3x3"`` -> ``SpadeConfig("sync_batch", 3)``.

    A leading ``"spectral"`` (as in the generator option ``spectralspadesyncbatch3x3``) is accepted and ignored: it
    puts spectral norm on the convolutions *around* the SPADE layers, not inside them.

    Example:
        >>> parse_spade_config("spectralspadeinstance5x5")
        SpadeConfig(norm='instance', kernel_size=5)
    """
    if not isinstance(config, str):
        raise TypeError(f"config must be a str such as 'spadesyncbatch3x3', got {type(config).__name__}")
    match = _CONFIG.fullmatch(config)
    if match is None or match.group(2) != match.group(3):
        raise ValueError(
            "config must look like 'spade<instance|batch|syncbatch><k>x<k>' (optionally prefixed with 'spectral'), "
            f"e.g. 'spadesyncbatch3x3', got {config!r}"
        )
    return SpadeConfig(_NORMS[match.group(1)], int(match.group(2)))
