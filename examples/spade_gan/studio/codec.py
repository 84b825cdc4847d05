"""What travels between the page and the server: label maps as base64 ids, label-map PNGs, images as PNGs.

* In JSON a label map is ``{"width": W, "height": H, "dtype": "uint8" | "uint16", "ids": base64}``: the row-major
  class ids, one byte each (two, little-endian, where a dataset has more than 256 ids). :func:`ids_payload` writes it,
  :func:`read_ids_payload` reads and checks it.
* A label-map PNG (download and upload) stores the ids themselves: an 8-bit palette PNG whose palette holds the
  dataset's colours (so it also looks right in an image viewer), or a 16-bit grey PNG beyond 256 ids. Ids a dataset
  stores as 255 ("unlabeled") are written as 255. :func:`read_label_png` also reads an RGB PNG in the dataset's
  colours, and maps of another size (resized with nearest-neighbour sampling, as the test pipeline does).

Everything is decoded in memory; nothing is written to disk.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from ..data.class_lists import ClassList
from ..data.transforms import Geometry, apply_to_ids
from .errors import StudioError

DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2")}
"""The id encodings of a label-map payload."""

MAX_PIXELS = 4096 * 4096
"""Largest image or label map (width x height) an upload may decode to."""

ID_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I")
"""PIL modes whose stored values are read as class ids (palette indices for ``P``, as the datasets' loaders do)."""


def ids_payload(ids: np.ndarray) -> dict[str, Any]:
    """The JSON form of an ``(H, W)`` integer map of ids in ``0 .. 65535``."""
    if ids.ndim != 2:
        raise ValueError(f"ids: expected an (H, W) map, got shape {ids.shape}")
    dtype = "uint8" if ids.size == 0 or int(ids.max()) < 256 else "uint16"
    data = np.ascontiguousarray(ids, dtype=DTYPES[dtype]).tobytes()
    height, width = ids.shape
    return {"width": width, "height": height, "dtype": dtype, "ids": base64.b64encode(data).decode("ascii")}


def read_ids_payload(payload: Any, size: tuple[int, int], *, field: str = "label map") -> np.ndarray:
    """The int64 ``(H, W)`` ids of a label-map payload, checked against the model's ``size`` ``(H, W)``.

    Raises:
        StudioError: a missing or mistyped field, another size than ``size``, an unknown dtype, ids that are not
            base64 or whose length does not match the size (400).
    """
    if not isinstance(payload, Mapping):
        raise StudioError(f"{field}: expected an object with width, height, dtype and ids")
    width, height = (_positive_int(payload, key, field) for key in ("width", "height"))
    if (height, width) != size:
        raise StudioError(f"{field} is {width}x{height}; this model draws {size[1]}x{size[0]} (width x height)")
    dtype = payload.get("dtype", "uint8")
    if dtype not in DTYPES:
        raise StudioError(f"{field}: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    text = payload.get("ids")
    if not isinstance(text, str):
        raise StudioError(f"{field}: ids must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise StudioError(f"{field}: ids are not valid base64") from None
    expected = width * height * DTYPES[dtype].itemsize
    if len(data) != expected:
        raise StudioError(f"{field}: {len(data)} bytes of ids; {width}x{height} {dtype} ids take {expected}")
    return np.frombuffer(data, dtype=DTYPES[dtype]).reshape(height, width).astype(np.int64)


def _positive_int(payload: Mapping[str, Any], key: str, field: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise StudioError(f"{field}: {key} must be a positive integer, got {value!r}")
    return value


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def label_png(ids: np.ndarray, classes: ClassList) -> bytes:
    """A PNG of the ``(H, W)`` ids a training set could use: palette indices (the dataset's colours in the palette)
    up to 256 ids, 16-bit grey beyond; ``classes.unlabeled`` is stored as 255."""
    stored = ids.astype(np.int64)
    if classes.unlabeled is not None:
        stored = np.where(stored == classes.unlabeled, 255, stored)
    if classes.num_ids > 256 or int(stored.max(initial=0)) > 255:
        return png_bytes(Image.fromarray(stored.astype(np.uint16)))
    palette = np.zeros((256, 3), dtype=np.uint8)
    table = classes.colour_table()
    palette[: len(table)] = table
    if classes.unlabeled is not None:
        palette[255] = table[classes.unlabeled]
    image = Image.fromarray(stored.astype(np.uint8), mode="P")
    image.putpalette(palette.reshape(-1).tolist())
    return png_bytes(image)


def open_image(data: bytes, what: str) -> Image.Image:
    """``data`` opened (not yet decoded) as an image of at most :data:`MAX_PIXELS` pixels.

    Raises:
        StudioError: an empty body, data PIL cannot read, or an image too large (400).
    """
    if not data:
        raise StudioError(f"{what}: the request body is empty; send the file's bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise StudioError(f"{what}: not an image file PIL can read ({type(exc).__name__})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise StudioError(f"{what}: {width}x{height} is larger than {MAX_PIXELS} pixels")
    return image


def decoded(image: Image.Image, what: str, mode: str | None = None) -> np.ndarray:
    """The pixels of an opened image (converted to ``mode`` when given); a truncated file raises StudioError."""
    try:
        image.load()
        return np.asarray(image.convert(mode) if mode else image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise StudioError(f"{what}: the file is damaged or truncated ({type(exc).__name__})") from None


def read_label_png(data: bytes, classes: ClassList, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The int64 ``(H, W)`` ids of an uploaded label-map PNG at the model's ``size``, and how it was read.

    A PNG with one channel (8- or 16-bit grey, or palette indices) holds ids; an RGB(A) PNG holds the dataset's
    colours, each mapped to its class (a colour shared by several ids to the lowest; alpha is ignored). Ids stored
    as 255 become the dontcare id where the dataset has one. A map of another size is resized with
    nearest-neighbour sampling. Range checks are the caller's (the ids may still lie outside the model's).

    Returns:
        ``(ids, how)`` with ``how`` ``"ids"`` or ``"colours"``.

    Raises:
        StudioError: not a PNG, damaged, an unsupported mode, or a colour that is no class's (400).
    """
    image = open_image(data, "label map")
    if image.format != "PNG":
        raise StudioError(f"label map: expected a PNG file, got {image.format or 'an unknown format'}")
    if image.mode in ID_MODES:
        ids, how = decoded(image, "label map").astype(np.int64), "ids"
    elif image.mode in ("RGB", "RGBA"):
        ids, how = _colours_to_ids(decoded(image, "label map", "RGB"), classes), "colours"
    else:
        raise StudioError(f"label map: PIL mode {image.mode!r}; expected one channel of ids or RGB colours")
    if classes.contain_dontcare:
        ids = np.where(ids == 255, classes.label_nc, ids)
    if ids.shape != size:
        ids = apply_to_ids(ids, Geometry(resize=size, crop=(0, 0, *size), flip=False))
    return np.ascontiguousarray(ids), how


def _colours_to_ids(rgb: np.ndarray, classes: ClassList) -> np.ndarray:
    """Map every pixel's colour to its class id; unknown colours raise StudioError naming a few of them."""
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lookup: dict[int, int] = {}
    for c in reversed(classes.classes):  # the lowest id wins a shared colour
        lookup[(c.colour[0] << 16) | (c.colour[1] << 8) | c.colour[2]] = c.id
    colours, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(v) for v in colours if int(v) not in lookup]
    if unknown:
        shown = ", ".join(f"#{v:06x}" for v in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise StudioError(
            f"label map: {len(unknown)} colour(s) are no {classes.dataset} class's colour ({shown}); "
            "upload ids (a one-channel PNG) or the dataset's exact colours"
        )
    ids = np.array([lookup[int(v)] for v in colours], dtype=np.int64)
    return ids[inverse.reshape(packed.shape)]
