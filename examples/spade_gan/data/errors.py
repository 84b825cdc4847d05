"""Exceptions of the data pipeline: each names the offending file or argument, the expected and the actual value."""

from __future__ import annotations


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the expected layout: a missing folder, an unpaired or duplicated file."""


class LabelRangeError(ValueError):
    """A label map holds an id outside ``0 .. label_nc - 1`` (and is not the dontcare id 255 where that is on).

    The original SPADE let such ids reach ``scatter_`` and failed with "Invalid index in scatter"; here the message
    names the file (or the tensor) and the offending ids.
    """
