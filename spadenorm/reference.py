"""Plain-formula PyTorch reference of every op: the test oracle, differentiable through ordinary autograd.

It is written independently of the lean path (no custom autograd, no native norm kernels): two-pass centred
statistics, then ``x_hat * (1 + gamma) + beta``. With ``upcast=True`` (the default) everything runs in float64 and
the result is float64, for error bounds of the form ``|impl - ref64| <= 2 |ref_lowp - ref64| + atol``; with
``upcast=False`` it runs in the inputs' own precision.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._core import BATCH_NORMS

__all__ = ["OriginalSPADE", "adain_reference", "class_modulated_norm_reference", "modulated_norm_reference"]


def _reduction_view(x: Tensor, norm: str, num_groups: int | None) -> tuple[Tensor, tuple[int, ...]]:
    spatial = tuple(range(2, x.dim()))
    if norm == "instance":
        return x, spatial
    if norm in BATCH_NORMS:
        return x, (0, *spatial)
    if norm == "layer":
        return x, (1, *spatial)
    if norm == "group" and num_groups is not None:
        grouped = x.reshape(x.shape[0], num_groups, x.shape[1] // num_groups, *x.shape[2:])
        return grouped, tuple(range(2, grouped.dim()))
    raise ValueError(f"unknown norm {norm!r}")


def _as_rank(t: Tensor | None, x: Tensor) -> Tensor | None:
    """(C,) -> (1, C, 1, ...); tensors of x's rank unchanged."""
    if t is None or t.dim() == x.dim():
        return t
    return t.reshape((1, -1) + (1,) * (x.dim() - 2))


def _per_sample_channel(t: Tensor, x: Tensor) -> Tensor:
    """A scale or shift of shape (C,), (N|1, C) or x's rank with spatial sizes 1 -> (N|1, C, 1, ...)."""
    if t.dim() == x.dim():
        return t
    if t.dim() == 1:
        return t.reshape((1, -1) + (1,) * (x.dim() - 2))
    return t.reshape(t.shape[:2] + (1,) * (x.dim() - 2))


def _second_modulation(y: Tensor, scale: Tensor | None, shift: Tensor | None, upcast: bool) -> Tensor:
    """``y * (1 + scale) + shift``, each optional."""
    if scale is not None:
        y = y * (1 + _per_sample_channel(scale.double() if upcast else scale, y))
    if shift is not None:
        y = y + _per_sample_channel(shift.double() if upcast else shift, y)
    return y


def modulated_norm_reference(
    x: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    *,
    norm: str = "instance",
    num_groups: int | None = None,
    eps: float = 1e-5,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    training: bool = True,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    upcast: bool = True,
) -> Tensor:
    """``(normalize(x) * (1 + gamma) + beta) * (1 + scale) + shift`` by the textbook formulas.

    Running statistics are read, never updated; ``scale`` and ``shift`` are (C,), (N, C), (1, C) or of x's rank with
    spatial sizes 1.
    """
    if upcast:
        x = x.double()
        gamma, beta = (None if t is None else t.double() for t in (gamma, beta))
    gamma, beta = _as_rank(gamma, x), _as_rank(beta, x)
    if norm == "none":
        x_hat = x
    elif norm in BATCH_NORMS and not training:
        if running_mean is None or running_var is None:
            raise ValueError("training=False reads running_mean and running_var, got None")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = running_mean.to(x.dtype).reshape(shape)
        var = running_var.to(x.dtype).reshape(shape)
        x_hat = (x - mean) / torch.sqrt(var + eps)
    else:
        view, dims = _reduction_view(x, norm, num_groups)
        mean = view.mean(dims, keepdim=True)
        var = ((view - mean) ** 2).mean(dims, keepdim=True)
        x_hat = ((view - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    y = x_hat if gamma is None else x_hat * (1 + gamma)
    y = y if beta is None else y + beta
    return _second_modulation(y, scale, shift, upcast)


def class_modulated_norm_reference(
    x: Tensor, labels: Tensor, gamma_table: Tensor, beta_table: Tensor, *, upcast: bool = True, **norm_kwargs: Any
) -> Tensor:
    """CLADE by one-hot matrix products (no embedding lookup): ``(normalize(x) * gamma[l] + beta[l]) * (1 + scale)
    + shift``.

    ``labels`` must already have x's spatial size, (N, *spatial).
    """
    scale, shift = norm_kwargs.pop("scale", None), norm_kwargs.pop("shift", None)
    if upcast:
        gamma_table, beta_table = gamma_table.double(), beta_table.double()
    one_hot = torch.nn.functional.one_hot(labels.long(), gamma_table.shape[0]).to(gamma_table.dtype)
    gamma = torch.movedim(one_hot @ gamma_table, -1, 1)
    beta = torch.movedim(one_hot @ beta_table, -1, 1)
    x_hat = modulated_norm_reference(x, upcast=upcast, **norm_kwargs)
    return _second_modulation(x_hat * gamma + beta, scale, shift, upcast)


def adain_reference(content: Tensor, style: Tensor, eps: float = 1e-5, *, upcast: bool = True) -> Tensor:
    """Huang and Belongie's formula ``sigma_s * (c - mu_c) / sigma_c + mu_s`` with biased variances."""
    if upcast:
        content, style = content.double(), style.double()
    c_dims, s_dims = tuple(range(2, content.dim())), tuple(range(2, style.dim()))
    mu_c = content.mean(c_dims, keepdim=True)
    sigma_c = torch.sqrt(((content - mu_c) ** 2).mean(c_dims, keepdim=True) + eps)
    mu_s = style.mean(s_dims, keepdim=True)
    sigma_s = torch.sqrt(((style - mu_s) ** 2).mean(s_dims, keepdim=True) + eps)
    return sigma_s * (content - mu_c) / sigma_c + mu_s


class OriginalSPADE(nn.Module):
    """The original SPADE layer's formulation: a torch norm module, then ``* (1 + gamma) + beta`` in eager ops.

    Written from the published description of the original layer (paper and released architecture), with the
    original submodule names, so its state dict is interchangeable with :class:`spadenorm.SPADE`'s. It is the
    baseline of the benchmarks and the compatibility tests.

    Args:
        norm: ``"instance"`` (``InstanceNorm2d(affine=False)``) or ``"batch"`` (``BatchNorm2d(affine=False)``;
            the original's ``syncbatch`` is the same layer in one process).
        kernel_size: conv kernel size.
        norm_nc: channels of x.
        label_nc: channels of the segmentation map.
        hidden_channels: width of the shared embedding (128 in the original).
    """

    def __init__(self, norm: str, kernel_size: int, norm_nc: int, label_nc: int, hidden_channels: int = 128) -> None:
        super().__init__()
        if norm == "instance":
            self.param_free_norm: nn.Module = nn.InstanceNorm2d(norm_nc, affine=False)
        elif norm == "batch":
            self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        else:
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
        padding = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden_channels, kernel_size, padding=padding), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden_channels, norm_nc, kernel_size, padding=padding)
        self.mlp_beta = nn.Conv2d(hidden_channels, norm_nc, kernel_size, padding=padding)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(F.interpolate(segmap, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)
