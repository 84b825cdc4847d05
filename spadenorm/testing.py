"""What users of spadenorm need in their own tests: the saved-for-backward byte counter and the reference check.

The reference check is flash-attention's error bound: an implementation in a low precision may differ from the
float64 reference by at most twice what the plain formula in that same precision does, plus a small absolute slack,

.. math::
    |y - y_{64}| \\le 2\\,|y_{lowp} - y_{64}| + \\mathrm{atol} \\cdot (1 + |y_{64}|),

elementwise, for the output and for every gradient, so one test scales from float64 to bfloat16.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .functional import modulated_norm
from .reference import modulated_norm_reference

__all__ = ["ATOL", "assert_within_reference_bound", "check_against_reference", "saved_tensor_bytes"]

ATOL: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 2e-2,
}
"""Absolute slack of the bound per dtype (covers values near zero)."""


def saved_tensor_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn(*args, **kwargs)`` runs.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; a storage saved several times (a tensor and its views)
    counts once. The graph ``fn`` builds is released when this returns.

    Example:
        >>> import torch
        >>> from spadenorm.functional import modulated_norm
        >>> x, gamma = torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 4, 8, 8, requires_grad=True)
        >>> saved_tensor_bytes(modulated_norm, x, gamma) <= 2 * x.numel() * 4 + 2 * 8 * 4  # x, gamma, fp32 stats
        True
    """
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    del out
    return sum(storages.values())


def assert_within_reference_bound(actual: Tensor, ref64: Tensor, ref_lowp: Tensor, what: str = "") -> None:
    """Assert ``|actual - ref64| <= 2 |ref_lowp - ref64| + atol (1 + |ref64|)`` elementwise.

    Args:
        actual: the result under test, in its own dtype.
        ref64: the float64 reference.
        ref_lowp: the plain reference computed in ``actual``'s dtype.
        what: a name for the failure message.

    Raises:
        AssertionError: naming the worst element, its error and the bound.
    """
    if actual.shape != ref64.shape or actual.dtype != ref_lowp.dtype:
        raise AssertionError(
            f"{what}: got shape {tuple(actual.shape)} dtype {actual.dtype}, expected shape {tuple(ref64.shape)} "
            f"dtype {ref_lowp.dtype}"
        )
    err = (actual.double() - ref64).abs()
    allowed = 2 * (ref_lowp.double() - ref64).abs() + ATOL[actual.dtype] * (1 + ref64.abs())
    if not bool((err <= allowed).all()):
        worst = (err - allowed).argmax()
        raise AssertionError(
            f"{what}: error {err.flatten()[worst].item():.3g} exceeds bound {allowed.flatten()[worst].item():.3g} "
            f"at flat index {worst.item()} (max error {err.max().item():.3g})"
        )


def check_against_reference(
    x: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    *,
    fn: Callable[..., Tensor] = modulated_norm,
    seed: int = 0,
    **norm_kwargs: Any,
) -> None:
    """Check ``fn(x, gamma, beta, **norm_kwargs)`` and its gradients against :mod:`spadenorm.reference`.

    ``fn`` defaults to :func:`spadenorm.functional.modulated_norm` on the backend selected now. The output and the
    gradients of every input that requires grad, for a random incoming gradient drawn with ``seed``, must lie within
    the bound of :func:`assert_within_reference_bound`.

    Args:
        x: activations (N, C, \\*spatial).
        gamma: as for :func:`~spadenorm.functional.modulated_norm`.
        beta: as for :func:`~spadenorm.functional.modulated_norm`.
        fn: the implementation under test, called like ``modulated_norm``.
        seed: seed of the incoming gradient.
        **norm_kwargs: ``norm``, ``num_groups``, ``eps``, ``running_mean``, ``running_var``, ``training``,
            ``scale``, ``shift``.

    Raises:
        AssertionError: naming the first quantity (``y``, ``dx``, ``dgamma``, ``dbeta``, ``dscale``, ``dshift``)
            outside the bound.

    Example:
        >>> import torch
        >>> from spadenorm.testing import check_against_reference
        >>> x = torch.randn(2, 3, 5, 5, dtype=torch.bfloat16, requires_grad=True)
        >>> check_against_reference(x, torch.randn(3, requires_grad=True), norm="group", num_groups=3)
    """
    candidates: list[tuple[str, object]] = [("dx", x), ("dgamma", gamma), ("dbeta", beta)]
    candidates += [("dscale", norm_kwargs.get("scale")), ("dshift", norm_kwargs.get("shift"))]
    named = [(name, t) for name, t in candidates if isinstance(t, Tensor)]
    inputs = [t for _, t in named if t.requires_grad]
    names = [name for name, t in named if t.requires_grad]
    y = fn(x, gamma, beta, **norm_kwargs)
    ref64 = modulated_norm_reference(x, gamma, beta, upcast=True, **norm_kwargs)
    ref_lowp = modulated_norm_reference(x, gamma, beta, upcast=False, **norm_kwargs)
    assert_within_reference_bound(y, ref64, ref_lowp, "y")
    if not inputs:
        return
    generator = torch.Generator(device=y.device).manual_seed(seed)  # drawn where y is: no host copy of a large dy
    dy = torch.randn(y.shape, generator=generator, dtype=torch.float64, device=y.device)
    grads = torch.autograd.grad(y, inputs, dy.to(y.dtype))
    grads64 = torch.autograd.grad(ref64, inputs, dy)
    grads_lowp = torch.autograd.grad(ref_lowp, inputs, dy.to(ref_lowp.dtype))
    for name, g, g64, glp in zip(names, grads, grads64, grads_lowp, strict=True):
        assert_within_reference_bound(g, g64.double(), glp, name)
