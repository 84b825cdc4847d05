"""Run spadenorm's Triton backend on CPU tensors as it runs on a GPU, compiling each kernel variant a call launches
instead of launching it.

Inside :func:`compiling`, calls of the public API on CPU tensors take the Triton backend with the launch plan of the
given GPU (:class:`spadenorm.backends.triton.occupancy.Device`), and every ``kernel[grid](...)`` becomes Triton's
``kernel.run(..., warmup=True)``: the variant is specialized from the real arguments (dtypes, 16-byte alignment,
sizes, strides, constexprs), compiled for the active driver's target and stored in Triton's cache; nothing runs, and
the outputs hold whatever memory they were given. The torch operations between launches do run, on CPU.
``benchmarks/compile_check.py`` uses it with a stand-in driver; ``benchmarks/gpu_precompile.py`` with the GPU's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

import spadenorm
from spadenorm import _backend
from spadenorm.backends.triton import launch, launcher, plan, prepared
from spadenorm.backends.triton.occupancy import Device

KERNELS = (
    "_stats_partial_kernel",
    "_finalize_stats_kernel",
    "_row_fwd_kernel",
    "_modulate_fwd_kernel",
    "_backward_sums_kernel",
    "_backward_dx_kernel",
    "_row_bwd_kernel",
    "_class_table_grad_kernel",
)

Compiled = Callable[[str, dict[str, Any], Any], None]


class CompileOnly:
    """Stands in for a kernel: ``kernel[grid](...)`` compiles the variant, hands it to ``on_compiled(kernel name,
    constexprs and warps, compiled kernel)`` and launches nothing; a variant that does not build goes to
    ``failures``."""

    def __init__(self, kernel: Any, on_compiled: Compiled, failures: list[str]) -> None:
        self.kernel = kernel
        self.on_compiled = on_compiled
        self.failures = failures

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def compile_variant(*args: Any, **kwargs: Any) -> None:
            name = self.kernel.fn.__name__
            try:
                compiled = self.kernel.run(*args, grid=grid, warmup=True, **kwargs)
            except Exception as error:  # a variant that does not build: report it and go on
                self.failures.append(f"{name} {kwargs}: {type(error).__name__}: {str(error).splitlines()[0]}")
                return None
            self.on_compiled(name, kwargs, compiled)
            return None  # no compiled kernel for spadenorm's launcher to keep: every launch comes back here

        return compile_variant


def _clear_caches() -> None:
    plan._PLANS.clear()
    prepared.clear()
    launcher.clear()


@contextlib.contextmanager
def planned_as(device: Device) -> Iterator[None]:
    """Within the block, Triton-backend calls take CPU tensors and plan their launches for ``device``."""
    saved = (_backend.triton_interpreter, plan._device)
    _backend.triton_interpreter = lambda: True  # type: ignore[assignment]  # CPU tensors reach the Triton backend
    plan._device = lambda x: device  # type: ignore[assignment]
    _clear_caches()
    try:
        with spadenorm.use_backend("triton"):
            yield
    finally:
        _backend.triton_interpreter, plan._device = saved  # type: ignore[assignment]
        _clear_caches()


@contextlib.contextmanager
def _kernels_replaced(make: Callable[[Any], Any]) -> Iterator[None]:
    saved = {name: getattr(launch, name) for name in KERNELS}
    for name, kernel in saved.items():
        setattr(launch, name, make(kernel))
    try:
        yield
    finally:
        for name, kernel in saved.items():
            setattr(launch, name, kernel)


@contextlib.contextmanager
def compiling(device: Device, on_compiled: Compiled, failures: list[str]) -> Iterator[None]:
    """Within the block, Triton-backend calls on CPU tensors are planned for ``device`` and compile their kernels."""
    with _kernels_replaced(lambda kernel: CompileOnly(kernel, on_compiled, failures)), planned_as(device):
        yield


class Recorder:
    """Stands in for a kernel: ``kernel[grid](...)`` adds what Triton would specialize the launch on to ``seen``
    (pointer dtypes and 16-byte alignment, ints equal to 1 or divisible by 16, constexprs, warps) and runs nothing:
    the distinct entries are the variants a set of calls compiles."""

    def __init__(self, kernel: Any, seen: set[tuple[Any, ...]]) -> None:
        self.name = kernel.fn.__name__
        self.seen = seen

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.seen.add((self.name, _specialization(args), tuple(sorted(kwargs.items()))))

        return record


def _specialization(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_specialization(v) for v in value)
    if isinstance(value, torch.Tensor):
        return str(value.dtype), value.data_ptr() % 16 == 0
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value == 1, value % 16 == 0, value >= 2**31
    return type(value).__name__


@contextlib.contextmanager
def recording(device: Device, seen: set[tuple[Any, ...]]) -> Iterator[None]:
    """Within the block, Triton-backend calls on CPU tensors are planned for ``device`` and add their variants to
    ``seen`` (see :class:`Recorder`); nothing is compiled."""
    with _kernels_replaced(lambda kernel: Recorder(kernel, seen)), planned_as(device):
        yield
