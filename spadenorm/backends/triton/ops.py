"""The launchers of :mod:`.launch` as ``torch.library`` custom ops, with allocation-only fakes.

Registered ops are opaque to ``torch.compile`` (which would otherwise trace into Triton, or fail to under the
interpreter) and pass ``torch.library.opcheck``. Each op is its launcher, registered as it is (its signature and
annotations are the op's schema) under a guard that makes x's GPU current; its fake allocates exactly what the op
returns, with the same strides, from the arguments by name. Every argument is read; absent tensors are ``None``;
outputs never alias inputs. Autograd lives one layer up, in :mod:`.autograd`.

:func:`call` runs an op the cheap way where nothing observes the dispatcher: eager calls on plain tensors run the
launcher directly (no dispatcher round trip; the autograd function holds one device guard for all of them), while
``torch.compile``, export and any other tracing (a dispatch mode, tensor subclasses such as fake tensors) go
through the registered op.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor  # the launchers' annotations are resolved here, as the ops' schemas
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..._core import result_dtype
from . import launch
from .launch import grad_outputs_like
from .layout import output_like

_LAUNCHERS: dict[Any, Callable[..., Any]] = {}  # registered op -> its launcher
_MUTATED: dict[Any, tuple[int, ...]] = {}  # registered op -> positions of the arguments it mutates
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


NO_GUARD = contextlib.nullcontext()


def device_guard(t: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make ``t``'s GPU current while kernels launch (Triton launches on the current device); nothing to do when it
    already is, or for CPU tensors under the interpreter."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return NO_GUARD


def _op(launcher: Callable[..., Any], fake: Callable[[Any], Any], mutates_args: tuple[str, ...] = ()) -> Any:
    """Register ``launcher`` as the custom op ``spadenorm::<its name>`` with ``fake(arguments by name)``."""
    signature = inspect.signature(launcher)

    @functools.wraps(launcher)
    def guarded(*args: Any) -> Any:
        with device_guard(args[0]):
            return launcher(*args)

    op = torch.library.custom_op(f"spadenorm::{launcher.__name__}", guarded, mutates_args=mutates_args)
    op.register_fake(lambda *args: fake(SimpleNamespace(**signature.bind(*args).arguments)))
    _LAUNCHERS[op] = launcher
    _MUTATED[op] = tuple(list(signature.parameters).index(arg) for arg in mutates_args)
    return op


def eager(*tensors: Tensor | None) -> bool:
    """Whether ops on these tensors may run their launchers directly: not compiling, no dispatch mode, plain
    tensors only."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    for t in tensors:  # noqa: SIM110  (a loop: cheaper than all() over a generator, on every call)
        if t is not None and type(t) not in _PLAIN_TENSORS:
            return False
    return True


def call(op: Any, direct: bool, *args: Any) -> Any:
    """Call a registered op: its launcher when ``direct`` (from :func:`eager`), else through the dispatcher."""
    if not direct:
        return op(*args)
    out = _LAUNCHERS[op](*args)
    for position in _MUTATED[op]:  # as the dispatcher would: in-place updates bump the version counter
        if args[position] is not None:
            torch.autograd.graph.increment_version(args[position])
    return out


def _f32(t: Tensor, *shape: int) -> Tensor:
    return t.new_empty(shape, dtype=torch.float32)


partial_stats = _op(launch.partial_stats, lambda a: _f32(a.x, 2, a.x.shape[0], a.x.shape[1], a.launch[2]))
finalize_stats = _op(
    launch.finalize_stats,
    lambda a: _f32(a.moments, 2, a.launch[0], a.moments.shape[2]),
    mutates_args=("running_mean", "running_var"),
)
row_forward = _op(
    launch.row_forward,
    lambda a: (output_like(a.x, result_dtype(a.x, a.gamma, a.beta, a.scale, a.shift)), _f32(a.x, 2, *a.x.shape[:2])),
)
modulate = _op(launch.modulate, lambda a: output_like(a.x, result_dtype(a.x, a.gamma, a.beta, a.scale, a.shift)))
backward_sums = _op(launch.backward_sums, lambda a: _f32(a.x, 6, a.x.shape[0], a.x.shape[1], a.launch[2]))
backward_dx = _op(
    launch.backward_dx,
    lambda a: grad_outputs_like(a.x, a.gamma, a.beta, a.write_dx, a.write_dgamma, a.write_dbeta),
)
row_backward = _op(
    launch.row_backward,
    lambda a: (
        *grad_outputs_like(a.x, a.gamma, a.beta, a.write_dx, a.write_dgamma, a.write_dbeta),
        _f32(a.x, 4, *a.x.shape[:2]),
    ),
)
class_table_grads = _op(launch.class_table_grads, lambda a: _f32(a.x, 2, a.num_classes, a.x.shape[1]))
