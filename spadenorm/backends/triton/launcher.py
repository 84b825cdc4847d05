"""Launching a kernel: through Triton's ``kernel[grid](...)`` on the first launch of a variant, then the compiled
kernel directly.

``kernel[grid](*args)`` binds and specializes every argument and looks the variant up on every call (about 10 us of
Python for the row kernels' arguments). What it decides is fixed by what the launchers put in their cache key: each
int argument, each tensor's dtype and 16-byte alignment, which tensors are None, the constexprs and the warps. So
:func:`launch` keeps, per key, the compiled kernel that the first ``kernel[grid]`` returned and launches it as
``JITFunction.run`` does after its own cache hit: ``compiled.run(grid, stream, function, metadata, ..., *args)``.
That call is Triton's private API; it is used with the Triton versions whose ``JITFunction.run`` makes exactly that
call (:data:`DIRECT_VERSIONS`) and a compiled kernel that has its attributes; anything else (another version, the
interpreter, which returns no compiled kernel) goes through ``kernel[grid]`` every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import triton
from triton.runtime import driver

DIRECT_VERSIONS = ((3, 6), (3, 7), (3, 8), (3, 9))
"""Triton versions whose ``JITFunction.run`` launches a cached variant as :func:`launch` does (checked in their
sources: ``kernel.run(grid_0, grid_1, grid_2, stream, kernel.function, kernel.packed_metadata, launch_metadata,
launch_enter_hook, launch_exit_hook, *bound_args.values())``)."""


def _version() -> tuple[int, int]:
    major, minor = triton.__version__.split(".")[:2]
    return int(major), int(minor)


DIRECT = _version() in DIRECT_VERSIONS


class Variant:
    """What a launcher derives from the signature of its arguments, kept per key: the grid and warps, the
    transforms its inputs need (a layout copy, or None), the kernel's int and tuple arguments (sizes, strides), its
    constexprs, the dtype of its main output, and, from the second launch on, the compiled kernel."""

    __slots__ = ("compiled", "constexprs", "dtype", "grid", "ints", "num_warps", "transforms", "values")

    def __init__(self, launch: Any, transforms: tuple[Any, ...] | None, ints: tuple[Any, ...],
                 constexprs: dict[str, Any], dtype: Any) -> None:  # fmt: skip
        self.grid = tuple(launch.grid)  # launch: a plan.Launch
        self.num_warps = launch.num_warps
        self.transforms = None if transforms is None or all(t is None for t in transforms) else transforms
        self.ints = ints
        self.constexprs = constexprs
        self.dtype = dtype
        self.values = tuple(constexprs.values())
        self.compiled: Any = None


_VARIANTS: dict[tuple[Any, ...], Variant] = {}


def made(key: tuple[Any, ...], make: Callable[..., Variant], *args: Any) -> Variant:
    """``make(*args)``, kept as the variant of ``key`` (the launchers look ``_VARIANTS`` up themselves first)."""
    if len(_VARIANTS) > 4096:
        _VARIANTS.clear()
    v = _VARIANTS[key] = make(*args)
    return v


def launch(kernel: Any, v: Variant, args: Sequence[Any]) -> None:
    """``kernel[v.grid](*args, **v.constexprs, num_warps=v.num_warps)``, from the second launch of ``v`` on by the
    compiled kernel directly. ``v``'s key must determine Triton's specialization of ``args`` (see the module
    docstring). ``v.constexprs`` follow the kernel's other parameters, in order."""
    compiled = v.compiled
    if compiled is not None and DIRECT:
        active = driver.active
        stream = active.get_current_stream(active.get_current_device())
        knobs = triton.knobs.runtime
        enter = knobs.launch_enter_hook
        grid = v.grid
        # Triton 3.9 keeps its hooks in a chain that is never None: no metadata while the chain is empty
        hooked = enter is not None and getattr(enter, "calls", True) != []
        metadata = compiled.launch_metadata(grid, stream, *args, *v.values) if hooked else None
        compiled.run(grid[0], grid[1], grid[2], stream, compiled.function, compiled.packed_metadata, metadata, enter,
                     knobs.launch_exit_hook, *args, *v.values)  # fmt: skip
        return
    result = kernel[v.grid](*args, **v.constexprs, num_warps=v.num_warps)
    if DIRECT and all(hasattr(result, a) for a in ("run", "function", "packed_metadata", "launch_metadata")):
        v.compiled = result


def tensor_key(t: Any) -> tuple[Any, ...] | None:
    """What Triton specializes a tensor argument on, and what the launchers derive their int arguments from: shape,
    strides, dtype and whether its address is a multiple of 16 bytes (None for an absent tensor)."""
    if t is None:
        return None
    return t.shape, t.stride(), t.dtype, t.data_ptr() % 16 == 0


def clear() -> None:
    """Forget every variant (and its compiled kernel)."""
    _VARIANTS.clear()
