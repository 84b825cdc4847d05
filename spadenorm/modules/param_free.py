"""The parameter-free normalization that every conditional layer wraps, holding batch-norm buffers when needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .. import _backend, _validation
from .._core import BATCH_NORMS, Modulation, NormName, NormSpec, RunningStats

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


class BatchNormBuffers(nn.Module):
    """A module holding ``running_mean``, ``running_var`` and ``num_batches_tracked`` as ``torch.nn.BatchNorm2d``
    does (buffers under the same names, ``None`` when running statistics are not tracked)."""

    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def _register_running_stats(
        self, num_features: int | None, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> None:
        """Register the three buffers; ``num_features=None`` registers them as ``None``."""
        if num_features is None:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
            return
        self.register_buffer("running_mean", torch.zeros(num_features, device=device, dtype=dtype))
        self.register_buffer("running_var", torch.ones(num_features, device=device, dtype=dtype))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, counter 0 (a no-op without running statistics)."""
        if self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def _running_stats(self, momentum: float | None) -> RunningStats | None:
        """The buffers as the running-statistics state the backends update, or ``None`` without them."""
        if self.running_mean is None or self.running_var is None:
            return None
        return RunningStats(self.running_mean, self.running_var, momentum, self.num_batches_tracked)


class ParamFreeNorm(BatchNormBuffers):
    r"""The inner normalization of a conditional layer: :math:`\hat{x} = (x - \mu) / \sqrt{\sigma^2 + \epsilon}`
    with ``norm``'s statistics, without affine parameters unless ``affine=True``.

    For ``norm="batch"`` and ``"sync_batch"`` it holds ``running_mean``, ``running_var`` and ``num_batches_tracked``
    under torch's names, so it loads the state of a ``torch.nn.BatchNorm2d(affine=False)``; the other norms hold no
    state, like ``torch.nn.InstanceNorm2d(affine=False)``. Conditional layers keep one as ``param_free_norm`` and call
    :meth:`modulate`, which fuses normalization and modulation.

    With ``affine=True`` it keeps a per-channel ``weight`` w (ones) and ``bias`` b (zeros), as torch's norms do, and
    the modulation applies to :math:`\hat{x} w + b`: :math:`(\hat{x} w + b)(1 + \gamma) + \beta`, computed as
    :math:`\hat{x}(1 + \gamma') + \beta'` with :math:`\gamma' = w(1 + \gamma) - 1` and
    :math:`\beta' = b(1 + \gamma) + \beta` (the inner norm of MONAI's SPADE latent diffusion models).

    Args:
        num_features: C, the number of channels.
        norm: ``"instance"``, ``"batch"``, ``"sync_batch"``, ``"group"``, ``"layer"`` or ``"none"``.
        eps: added to the variance, >= 0.
        momentum: running-statistics factor, ``None`` for a cumulative average.
        num_groups: groups for ``norm="group"``.
        affine: keep a learnable per-channel weight and bias applied to the normalized input.
        device: device of the running statistics (batch norms) and of the affine parameters.
        dtype: dtype of the running statistics (batch norms) and of the affine parameters.

    Attributes:
        process_group: the ``torch.distributed`` group that ``"sync_batch"`` reduces over (``None``: the default).

    Shape:
        - x: (N, C, \\*spatial) with 1 to 3 spatial dimensions; output: the same, in x's memory format.

    Example:
        >>> import torch
        >>> norm = ParamFreeNorm(8, "batch")
        >>> sorted(norm.state_dict())
        ['num_batches_tracked', 'running_mean', 'running_var']
        >>> norm(torch.randn(4, 8, 5, 5)).shape
        torch.Size([4, 8, 5, 5])
    """

    def __init__(
        self,
        num_features: int,
        norm: NormName = "instance",
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        num_groups: int | None = None,
        affine: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = _validation.check_positive_int(num_features, "num_features")
        self.affine = _validation.check_bool(affine, "affine")
        spec = _validation.norm_spec(norm, num_groups, eps, num_features, None)
        self.norm: NormName = spec.norm
        self.num_groups = spec.num_groups
        self.eps = spec.eps
        self.momentum = _validation.check_momentum(momentum)
        self.process_group: ProcessGroup | None = None
        self._register_running_stats(num_features if spec.is_batch else None, device, dtype)
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))

    @property
    def tracks_running_stats(self) -> bool:
        return self.norm in BATCH_NORMS

    @property
    def spec(self) -> NormSpec:
        """The statistics this layer normalizes with (built once, again only when its attributes change)."""
        key = (self.norm, self.num_groups, self.eps, self.process_group if self.norm == "sync_batch" else None)
        if torch.compiler.is_compiling():  # traced once per graph: no cache to keep
            return NormSpec(*key)
        cached = self.__dict__.get("_spec")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_spec"] = (key, NormSpec(*key))
        return cached[1]

    @property
    def running(self) -> RunningStats | None:
        """The running statistics (batch norms), updated in place in training; ``None`` for the other norms (built
        once, again only when a buffer or the momentum changes)."""
        if self.norm not in BATCH_NORMS:
            return None
        if torch.compiler.is_compiling():
            return self._running_stats(self.momentum)
        buffers = self._buffers
        key = (buffers["running_mean"], buffers["running_var"], buffers["num_batches_tracked"], self.momentum)
        cached = self.__dict__.get("_running")
        if cached is None or any(a is not b for a, b in zip(cached[0], key, strict=True)):
            cached = self.__dict__["_running"] = (key, self._running_stats(self.momentum))
        return cached[1]

    def reset_parameters(self) -> None:
        """Running statistics reset; affine weight 1 and bias 0."""
        self.reset_running_stats()
        if self.weight is not None and self.bias is not None:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _with_affine(self, x: Tensor, gamma: Tensor | None, beta: Tensor | None) -> tuple[Tensor, Tensor]:
        """gamma and beta with the affine folded in: ``w (1 + gamma) - 1`` and ``b (1 + gamma) + beta``."""
        assert self.weight is not None
        assert self.bias is not None
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        w, b = self.weight.view(shape), self.bias.view(shape)
        gamma_eff = w - 1 if gamma is None else torch.addcmul(w - 1, gamma, w)
        beta_eff = b if gamma is None else torch.addcmul(b, gamma, b)
        return gamma_eff, beta_eff if beta is None else beta_eff + beta

    def check_input(self, x: object, ranks: tuple[int, ...] = (3, 4, 5)) -> Tensor:
        """Check activations for this layer: a floating-point tensor of one of ``ranks`` with ``num_features``
        channels, and more than one value per statistic in training (torch's own error otherwise)."""
        checked = _validation.check_input(x, ranks=ranks)
        _validation.check_channels(checked, self.num_features)
        _validation.check_batch_size(self.spec, checked, self.training)
        return checked

    def modulate(
        self,
        x: Tensor,
        gamma: Tensor | None,
        beta: Tensor | None,
        scale: Tensor | None = None,
        shift: Tensor | None = None,
    ) -> Tensor:
        """``(norm(x) * (1 + gamma) + beta) * (1 + scale) + shift`` for checked arguments.

        x has passed :meth:`check_input`; gamma/beta have x's rank (sizes 1 or x's); scale/shift are (N, C) or
        (1, C) as :func:`spadenorm._validation.check_scale_shift` returns them. The statistics follow this layer's
        ``norm`` and mode (running statistics in eval mode for batch norms).
        """
        if self.affine:
            gamma, beta = self._with_affine(x, gamma, beta)
        mod = Modulation(gamma, beta, None, scale, shift)
        return _backend.modulated_norm(x, mod, self.spec, self.running, self.training)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize x (N, C, \\*spatial); batch norms use running statistics in eval mode."""
        return self.modulate(self.check_input(x), None, None)

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"norm={self.norm!r}", f"eps={self.eps}"]
        if self.num_groups is not None:
            parts.append(f"num_groups={self.num_groups}")
        if self.tracks_running_stats:
            parts.append(f"momentum={self.momentum}")
        if self.affine:
            parts.append("affine=True")
        return ", ".join(parts)
