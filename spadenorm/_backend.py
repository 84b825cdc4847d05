"""Per-call choice of the implementation, and the one call that runs it.

The backend is resolved on every call, never once at import or module construction, from (first match wins):

1. the innermost active :func:`use_backend` block of the calling thread,
2. the value given to :func:`set_backend` (process-wide),
3. the ``SPADENORM_BACKEND`` environment variable,
4. ``"auto"``.

``"torch"`` is the memory-lean PyTorch implementation (:mod:`spadenorm.backends.torch`), available everywhere.
``"triton"`` is the fused-kernel implementation (:mod:`spadenorm.backends.triton`): CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``, in fp16, bf16 or fp32. ``"auto"`` picks ``"triton"`` for CUDA tensors when Triton is
installed, else ``"torch"``. Under ``torch.compile`` the choice is made while tracing and baked into the graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from ._core import Modulation, NormSpec, RunningStats, modulate_empty, normalized_dtype_under_autocast

BackendName = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
ENV_VAR = "SPADENORM_BACKEND"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class BackendUnavailableError(RuntimeError):
    """Raised when the requested backend cannot run the call (not installed, not built, wrong device or dtype)."""


class _ProcessChoice:
    """The backend given to :func:`set_backend`, for every thread."""

    name: str | None = None


class _ThreadChoices(threading.local):
    """The :func:`use_backend` blocks open in the current thread, innermost last."""

    def __init__(self) -> None:
        self.stack: list[str] = []


_process_choice = _ProcessChoice()
_thread_choices = _ThreadChoices()


def _check_name(name: object, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a str, one of {BACKENDS}, got {type(name).__name__}")
    if name.lower() not in BACKENDS:
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
    _process_choice.name = None if name is None else _check_name(name, "backend")


@contextlib.contextmanager
def use_backend(name: BackendName) -> Iterator[None]:
    """Context manager selecting ``name`` inside the ``with`` block of this thread (nests; restores on exit).

    Example:
        >>> import spadenorm
        >>> with spadenorm.use_backend("torch"):
        ...     spadenorm.get_backend()
        'torch'
    """
    _thread_choices.stack.append(_check_name(name, "backend"))
    try:
        yield
    finally:
        _thread_choices.stack.pop()


_ENVIRON = getattr(os.environ, "_data", None)
_ENVIRON_KEY = os.environ.encodekey(ENV_VAR) if _ENVIRON is not None else None


def _environment_value() -> str | None:
    """``os.environ.get(ENV_VAR)``, read on every call, from the mapping behind ``os.environ`` where CPython has one:
    the public lookup encodes the name and decodes the value each time, which costs about 2 us per call in a loop of
    small layers; this reads the same entry, kept up to date by every change through ``os.environ``."""
    if _ENVIRON is None or torch.compiler.is_compiling():  # traced: the public lookup, guarded as one entry
        return os.environ.get(ENV_VAR)
    raw = _ENVIRON.get(_ENVIRON_KEY)
    return None if raw is None else os.environ.decodevalue(raw)


def get_backend() -> str:
    """The backend name requested right now (before ``"auto"`` is resolved against a tensor)."""
    if _thread_choices.stack:
        return _thread_choices.stack[-1]
    if _process_choice.name is not None:
        return _process_choice.name
    env = _environment_value()
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


def triton_interpreter() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors through the interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(x: Tensor) -> str:
    """The concrete implementation (``"torch"`` or ``"triton"``) that will run a call on ``x``.

    ``"auto"`` picks ``"triton"`` for CUDA tensors of fp16/bf16/fp32 when Triton is installed, else ``"torch"``.
    An explicit ``"triton"`` raises :class:`BackendUnavailableError` when it cannot run the call.
    """
    name = get_backend()
    if name == "triton":
        if not _TRITON_INSTALLED:
            raise BackendUnavailableError(
                f"backend 'triton' was requested (through set_backend, use_backend or {ENV_VAR}), but Triton is not "
                "installed; install it (pip install triton) or use 'torch' or 'auto'"
            )
        if x.dtype not in TRITON_DTYPES:
            raise BackendUnavailableError(
                f"backend 'triton' supports x of dtype float16, bfloat16 or float32, got {x.dtype}; use 'torch'"
            )
        if not (x.is_cuda or triton_interpreter()):
            raise BackendUnavailableError(
                f"backend 'triton' runs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got x on {x.device}"
            )
        return "triton"
    if name == "auto" and x.is_cuda and _TRITON_INSTALLED and x.dtype in TRITON_DTYPES:
        return "triton"
    return "torch"


def modulated_norm(x: Tensor, mod: Modulation, spec: NormSpec, running: RunningStats | None, training: bool) -> Tensor:
    """Run ``(norm(x) * (1 + gamma) + beta) * (1 + scale) + shift`` on the backend resolved for ``x``.

    Every argument is already checked and resolved (see :class:`~spadenorm._core.Modulation` for the shapes). In an
    autocast region the result has the dtype the original formulation would have (torch's own norm, promoted with
    the modulation): x is taken in float32 where torch's norm of the same kind would be. An x with a zero-sized
    dimension gets what torch's norms give it (:func:`~spadenorm._core.modulate_empty`), on every backend.
    """
    dtype = normalized_dtype_under_autocast(x, spec)
    if dtype != x.dtype:
        x = x.to(dtype)
    backend = resolve_backend(x)
    if x.numel() == 0:  # as torch's norms: an empty result, running estimates kept, the batch counted
        if running is not None and training:
            running.count_batch()
        return modulate_empty(x, mod)
    if torch.compiler.is_compiling():  # traced: plain imports, no module cache
        if backend == "triton":
            from .backends import triton as fused

            return fused.modulated_norm(x, mod, spec, running, training)
        from .backends import torch as lean

        return lean.modulated_norm(x, mod, spec, running, training)
    return _implementation(backend).modulated_norm(x, mod, spec, running, training)


_IMPLEMENTATIONS: dict[str, ModuleType] = {}


def _implementation(name: str) -> ModuleType:
    """``spadenorm.backends.<name>``, imported on first use (the Triton backend imports Triton), then kept."""
    module = _IMPLEMENTATIONS.get(name)
    if module is None:
        module = _IMPLEMENTATIONS[name] = importlib.import_module(f"spadenorm.backends.{name}")
    return module
