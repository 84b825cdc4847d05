"""A call prepared once per signature: its launch plan, the gradient kinds of gamma and beta, and the variant of its
row forward's launch, so that an eager call's forward in a loop pays one lookup for all of them.

The signature is what the plan and the variants depend on: every tensor's shape, strides, dtype and 16-byte alignment
(:func:`.launcher.tensor_key`), x's device, the statistics, the mode, whether the scale needs a gradient and the
overrides in force. The backward looks its launch up as its launcher always does, by the signatures of dy and of the
saved tensors as they come back (a saved-tensor hook such as ``save_on_cpu`` may return them in another layout).
Calls that are traced (``torch.compile``, a dispatch mode, tensor subclasses) prepare afresh and launch through the
registered ops, which find their variants themselves.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..._core import NormSpec
from . import launch, plan
from .launcher import Variant, tensor_key
from .plan import CallPlan


class PreparedCall:
    """A call's plan and gradient kinds, and its row forward's variant once launched (see the module docstring).

    Attributes:
        plan: the :class:`~.plan.CallPlan`.
        gamma_kind, beta_kind: how the gradient of gamma and of beta is formed: ``"table"`` (own kernel), ``"map"``
            (elementwise), ``"vector"`` (from the per-(n, c) sums) or ``"none"``.
        direct: prepared for an eager call (see :func:`.ops.eager`), whose forward launches directly; a traced
            call's is prepared afresh, with False.
    """

    __slots__ = ("_forward", "beta_kind", "direct", "gamma_kind", "plan")

    def __init__(self, call_plan: CallPlan, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                 direct: bool) -> None:  # fmt: skip
        self.plan = call_plan
        self.direct = direct
        self.gamma_kind = _grad_kind(gamma, labels)
        self.beta_kind = _grad_kind(beta, labels)
        self._forward: Variant | None = None

    def row_forward(self, x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                    scale: Tensor | None, shift: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:  # fmt: skip
        """:func:`.launch.row_forward` of the plan's row launch, on tensors of this call's signature."""
        v = self._forward
        if v is None:
            v = self._forward = launch.row_forward_variant(x, gamma, beta, labels, scale, shift, self.plan.forward[0])
        return launch.run_row_forward(v, x, gamma, beta, labels, scale, shift, eps)


_PREPARED: dict[tuple[Any, ...], PreparedCall] = {}


def prepare(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    spec: NormSpec,
    training: bool,
    need_z: bool,
    eager: bool,
) -> PreparedCall:
    """The prepared call for these arguments: kept per signature where ``eager`` (from :func:`.ops.eager`),
    prepared afresh otherwise."""
    if not eager:
        return PreparedCall(plan.plan_for(x, spec, training, labels is not None, need_z), gamma, beta, labels, False)
    key = (*map(tensor_key, (x, gamma, beta, labels, scale, shift)), x.device, spec.norm, spec.num_groups, training,
           need_z, plan.generation())  # fmt: skip
    prepared = _PREPARED.get(key)
    if prepared is None:
        if len(_PREPARED) > 4096:
            _PREPARED.clear()
        call_plan = plan.plan_for(x, spec, training, labels is not None, need_z)
        prepared = _PREPARED[key] = PreparedCall(call_plan, gamma, beta, labels, True)
    return prepared


def clear() -> None:
    """Forget every prepared call (with the variants it holds)."""
    _PREPARED.clear()


def _grad_kind(t: Tensor | None, labels: Tensor | None) -> str:
    if t is None:
        return "none"
    if labels is not None:
        return "table"
    return "map" if any(size != 1 for size in t.shape[2:]) else "vector"
