"""Reading label, instance and photo files with PIL; every error names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_label(path: str | Path) -> np.ndarray:
    """Integer ids of a single-channel label PNG (8- or 16-bit, or palette indices) as int64 ``(H, W)``.

    This matches the original's ``ToTensor() * 255`` for 8-bit maps: the stored value is the id.
    """
    return _read_ids(path, "label")


def read_instance(path: str | Path) -> np.ndarray:
    """Integer instance ids of a single-channel PNG (Cityscapes' are 16-bit) as int64 ``(H, W)``."""
    return _read_ids(path, "instance")


def read_image(path: str | Path) -> Image.Image:
    """The photo at ``path`` as an RGB PIL image (grey and RGBA files are converted)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise OSError(f"{path}: cannot read image: {exc}") from exc


def _read_ids(path: str | Path, kind: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise OSError(f"{path}: cannot read {kind} map: {exc}") from exc
    if array.ndim != 2:
        raise ValueError(
            f"{path}: a {kind} map must have one channel of integer ids, got PIL mode {mode!r} with shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"{path}: a {kind} map must hold integers, got PIL mode {mode!r} ({array.dtype})")
    return array.astype(np.int64)
