"""Pairing label, photo and instance files by a key (the file stem under each dataset's naming rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetLayoutError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    """Files of one training pair: the label map, the photo and, where used, the instance map."""

    label: Path
    image: Path
    instance: Path | None = None


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a :class:`Path`; a :class:`DatasetLayoutError` naming it and ``what`` it holds if it is absent."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: expected a directory of {what}, but it does not exist")
    return path


def index_files(paths: Iterable[Path], key: Callable[[Path], str | None], what: str) -> dict[str, Path]:
    """Map ``key(path)`` to ``path`` for each path whose key is not ``None``; two files with one key are an error."""
    index: dict[str, Path] = {}
    for path in sorted(paths):
        k = key(path)
        if k is None:
            continue
        if k in index:
            raise DatasetLayoutError(f"{path}: two {what} files share the key {k!r} (the other is {index[k]})")
        index[k] = path
    return index


def pair_files(
    labels: dict[str, Path],
    images: dict[str, Path],
    instances: dict[str, Path] | None = None,
    *,
    naming: str = "",
) -> list[Sample]:
    """Join the three indices on their keys, sorted by key.

    Raises:
        DatasetLayoutError: naming the first label without a photo (or instance map), or photo without a label.
            ``naming`` (the layout's naming rule) is appended to the message.
    """
    hint = f" ({naming})" if naming else ""
    if not labels:
        raise DatasetLayoutError(f"no label files found{hint}")
    for key, path in labels.items():
        if key not in images:
            raise DatasetLayoutError(f"{path}: label file has no matching image (key {key!r}){hint}")
        if instances is not None and key not in instances:
            raise DatasetLayoutError(f"{path}: label file has no matching instance map (key {key!r}){hint}")
    for key, path in images.items():
        if key not in labels:
            raise DatasetLayoutError(f"{path}: image has no matching label file (key {key!r}){hint}")
    if instances is not None:
        for key, path in instances.items():
            if key not in labels:
                raise DatasetLayoutError(f"{path}: instance map has no matching label file (key {key!r}){hint}")
    return [Sample(labels[k], images[k], instances[k] if instances is not None else None) for k in sorted(labels)]


def image_files(root: Path) -> list[Path]:
    """Files under ``root`` (recursively) with an image extension, case-insensitive."""
    return [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def relative_stem(root: Path, suffix: str = "") -> Callable[[Path], str | None]:
    """A key function: the path relative to ``root`` without its extension and ``suffix`` (``None`` if it lacks it)."""

    def key(path: Path) -> str | None:
        rel = path.relative_to(root).with_suffix("").as_posix()
        if not rel.endswith(suffix):
            return None
        return rel[: len(rel) - len(suffix)]

    return key
