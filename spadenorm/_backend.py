"""Per-call choice of the implementation behind :mod:`spadenorm.functional`.

The backend is resolved on every call, never once at import or module construction, from (first match wins):

1. the innermost active :func:`use_backend` context,
2. the value given to :func:`set_backend`,
3. the ``SPADENORM_BACKEND`` environment variable,
4. ``"auto"``.

``"torch"`` is the memory-lean PyTorch path (:mod:`spadenorm._eager`), available everywhere. ``"triton"`` is the
fused kernel path (:mod:`spadenorm.ops`): CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``, in fp16, bf16 or
fp32. ``"auto"`` picks ``"triton"`` for CUDA tensors when Triton is installed, else ``"torch"``.

Under ``torch.compile`` the choice is made while tracing and baked into the compiled graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Literal

import torch

__all__ = [
    "BACKENDS",
    "BackendName",
    "BackendUnavailableError",
    "get_backend",
    "resolve_backend",
    "set_backend",
    "use_backend",
]

BackendName = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
ENV_VAR = "SPADENORM_BACKEND"

_selected: list[str | None] = [None]
_context_stack: list[str] = []


class BackendUnavailableError(RuntimeError):
    """Raised when the requested backend cannot run the call (not installed, not built, wrong device)."""


def _check_name(name: object, source: str) -> str:
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name.lower()


def set_backend(name: BackendName | None) -> None:
    """Select the backend for all later calls; ``None`` returns to the environment variable or ``"auto"``.

    Example:
        >>> import spadenorm
        >>> spadenorm.set_backend("torch")
        >>> spadenorm.get_backend()
        'torch'
        >>> spadenorm.set_backend(None)
    """
    _selected[0] = None if name is None else _check_name(name, "backend")


@contextlib.contextmanager
def use_backend(name: BackendName) -> Iterator[None]:
    """Context manager selecting ``name`` inside the ``with`` block (nests; restores on exit).

    Example:
        >>> import spadenorm
        >>> with spadenorm.use_backend("torch"):
        ...     spadenorm.get_backend()
        'torch'
    """
    _context_stack.append(_check_name(name, "backend"))
    try:
        yield
    finally:
        _context_stack.pop()


def get_backend() -> str:
    """The backend name requested right now (before ``"auto"`` is resolved against a tensor)."""
    if _context_stack:
        return _context_stack[-1]
    if _selected[0] is not None:
        return _selected[0]
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"environment variable {ENV_VAR}")
    return "auto"


def _find_triton() -> bool:
    """Whether Triton can be imported, without importing it (an import hook that refuses it counts as absent)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


_TRITON_INSTALLED = _find_triton()
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_interpreter() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors through the interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(x: torch.Tensor) -> str:
    """The concrete implementation (``"torch"`` or ``"triton"``) that will run a call on ``x``.

    ``"auto"`` picks ``"triton"`` for CUDA tensors of fp16/bf16/fp32 when Triton is installed, else ``"torch"``.
    An explicit ``"triton"`` raises :class:`BackendUnavailableError` when it cannot run the call.
    """
    name = get_backend()
    runnable = _TRITON_INSTALLED and x.dtype in _TRITON_DTYPES
    if name == "triton":
        if not _TRITON_INSTALLED:
            raise BackendUnavailableError(
                f"backend 'triton' was requested (through set_backend, use_backend or {ENV_VAR}), but Triton is not "
                "installed; install it (pip install triton) or use 'torch' or 'auto'"
            )
        if x.dtype not in _TRITON_DTYPES:
            raise BackendUnavailableError(
                f"backend 'triton' supports x of dtype float16, bfloat16 or float32, got {x.dtype}; use 'torch'"
            )
        if not (x.is_cuda or triton_interpreter()):
            raise BackendUnavailableError(
                f"backend 'triton' runs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got x on {x.device}"
            )
        return "triton"
    if name == "auto" and runnable and x.is_cuda:
        return "triton"
    return "torch"
