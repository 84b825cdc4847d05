"""Optional packages of the examples (torch-fidelity, tensorboard): imported on first use, with an error that says
what needs them and how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingPackageError(ImportError):
    """An optional package a requested feature needs is not installed (or does not load with this torch)."""


def import_optional(name: str, needed_for: str, install: str) -> ModuleType:
    """``importlib.import_module(name)``, or a :class:`MissingPackageError` naming ``needed_for`` and ``install``.

    Example:
        >>> try:
        ...     import_optional("no_such_package", "--feature", "pip install no-such-package")
        ... except MissingPackageError as exc:
        ...     print(str(exc).split(" (")[0])
        --feature needs no_such_package: pip install no-such-package
    """
    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a package failing to load against this torch (torchvision)
        raise MissingPackageError(f"{needed_for} needs {name}: {install} ({type(exc).__name__}: {exc})") from exc
