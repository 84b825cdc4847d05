"""Launchers: plain Python that allocates the outputs and launches one kernel each, as its :class:`.plan.Launch`
says. They are the bodies of the registered ops (:mod:`.ops`), so their signatures are the ops' signatures.

Each launcher takes tensors of x's rank (gamma/beta with sizes 1 or x's) or, with ``labels`` (N, *spatial), (K, C)
class tables, and passes absent tensors to the kernel as ``None``; ``launch`` is a :class:`.plan.Launch` (as a list
through the dispatcher). What a launch derives from its arguments' signature (:mod:`.arguments`: transforms, strides,
kinds; the output dtype) is a :class:`.launcher.Variant`, made by the launcher's ``_*_variant`` function on the first
call with that signature and kept under a key that determines it. The fp32 statistics are one (2, N or 1, C) tensor:
``rstd`` and ``offset = -mean * rstd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..._core import result_dtype
from . import arguments as a
from .kernels.backward import _backward_dx_kernel, _backward_sums_kernel, _class_table_grad_kernel
from .kernels.modulate import _modulate_fwd_kernel
from .kernels.rows import _row_bwd_kernel, _row_fwd_kernel
from .kernels.statistics import _finalize_stats_kernel, _stats_partial_kernel
from .launcher import _VARIANTS, Variant, made, tensor_key
from .launcher import launch as _launch
from .layout import as_flattenable, cdiv, ncs_strides, output_like
from .plan import Launch

_f32 = torch.float32


def _per_nc(x: Tensor, planes: int, shape: tuple[int, int, int]) -> Tensor:
    """An fp32 (planes, N, C) tensor beside x; ``shape`` is the variant's (N, C, S) (plain ints: the cheapest
    allocation on every call)."""
    size = (planes, shape[0], shape[1])
    return x.new_empty(size) if x.dtype is _f32 else x.new_empty(size, dtype=_f32)


def partial_stats(x: Tensor, launch: list[int]) -> Tensor:
    """fp32 (2, N, C, P): mean and M2 of x over P spans of ``launch.span`` positions of S."""
    key = ("partial_stats", x.device, *launch, tensor_key(x))
    v = _VARIANTS.get(key) or made(key, _partial_stats_variant, x, launch)
    if v.transforms is not None:
        (x,) = a.transformed(v.transforms, x, x)
    moments = x.new_empty((2, x.shape[0], x.shape[1], launch[2]), dtype=_f32)
    _launch(_stats_partial_kernel, v, (x, moments, *v.ints))
    return moments


def _partial_stats_variant(x: Tensor, launch: list[int]) -> Variant:
    plan, xf = Launch(*launch), as_flattenable(x, x)
    return Variant(plan, (a.x_transform(x),), (a.shape(xf), plan.span, tuple(ncs_strides(xf))),
                   {"BLOCK_C": plan.block_c, "BLOCK_S": plan.block_s}, _f32)  # fmt: skip


def finalize_stats(
    moments: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    factor_tensor: Tensor | None,
    factor: float,
    eps: float,
    spatial: int,
    batch: bool,
    launch: list[int],
) -> Tensor:
    """fp32 (2, R, C) statistics from (2, N, C, P) partial moments: R = 1 for batch sets (a channel over the batch),
    else N for sets of ``launch.row_channels`` channels of a sample; running estimates (C,) of any float dtype are
    updated in place by ``factor`` (or the 0-d ``factor_tensor``)."""
    key = ("finalize_stats", moments.device, spatial, batch, *launch,
           *map(tensor_key, (moments, running_mean, running_var, factor_tensor)))  # fmt: skip
    v = _VARIANTS.get(key) or made(key, _finalize_variant, moments, running_mean, running_var, spatial, batch, launch)
    stats = moments.new_empty((2, launch[0], moments.shape[2]))
    _launch(_finalize_stats_kernel, v, (moments, stats, running_mean, running_var, factor_tensor, float(factor),
                                        float(eps), *v.ints))  # fmt: skip
    return stats


def _finalize_variant(moments: Tensor, running_mean: Tensor | None, running_var: Tensor | None, spatial: int,
                      batch: bool, launch: list[int]) -> Variant:  # fmt: skip
    plan = Launch(*launch)
    _, n, c, parts = moments.shape
    strides = (0, 0) if running_mean is None or running_var is None else (running_mean.stride(0), running_var.stride(0))
    return Variant(plan, None, ((n, c, spatial), (parts, plan.span), plan.row_channels, strides),
                   {"BATCH": batch, "BLOCK_C": plan.block_c, "BLOCK_M": plan.block_m}, _f32)  # fmt: skip


def row_forward(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    eps: float,
    launch: list[int],
) -> tuple[Tensor, Tensor]:
    """``(y, stats)``: per-sample statistics of x and the modulated output in one launch; fp32 (2, N, C) stats."""
    v = row_forward_variant(x, gamma, beta, labels, scale, shift, launch)
    return run_row_forward(v, x, gamma, beta, labels, scale, shift, eps)


def row_forward_variant(x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                        scale: Tensor | None, shift: Tensor | None, launch: Sequence[int]) -> Variant:  # fmt: skip
    """The variant :func:`row_forward` launches for these arguments (``launch``: a list or a plan.Launch)."""
    key = ("row_forward", x.device, *launch, *map(tensor_key, (x, gamma, beta, labels, scale, shift)))
    return _VARIANTS.get(key) or made(key, _forward_variant, x, gamma, beta, labels, scale, shift, None, launch)


def run_row_forward(v: Variant, x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                    scale: Tensor | None, shift: Tensor | None, eps: float) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`row_forward` with its variant ``v`` (of arguments with these tensors' signatures)."""
    if v.transforms is not None:
        x, gamma, beta, labels = a.transformed(v.transforms, x, x, gamma, beta, labels)
    y = torch.empty_like(x, dtype=v.dtype)  # x flattens: as output_like
    stats = _per_nc(x, 2, v.ints[0])
    _launch(_row_fwd_kernel, v, (x, y, stats, gamma, beta, labels, scale, shift, float(eps), *v.ints))
    return y, stats


def modulate(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    stats: Tensor,
    launch: list[int],
) -> Tensor:
    """``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift`` with fp32 (2, N or 1, C) stats."""
    key = ("modulate", x.device, *launch, *map(tensor_key, (x, gamma, beta, labels, scale, shift, stats)))
    v = _VARIANTS.get(key) or made(key, _forward_variant, x, gamma, beta, labels, scale, shift, stats, launch)
    if v.transforms is not None:
        x, gamma, beta, labels = a.transformed(v.transforms, x, x, gamma, beta, labels)
    y = torch.empty_like(x, dtype=v.dtype)
    _launch(_modulate_fwd_kernel, v, (x, y, stats, gamma, beta, labels, scale, shift, *v.ints))
    return y


def _forward_variant(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    shift: Tensor | None,
    stats: Tensor | None,
    launch: list[int],
) -> Variant:
    """The row forward's variant (``stats`` None: computed by the kernel), or the modulate kernel's."""  # fmt: skip
    plan, tables = Launch(*launch), labels is not None
    transforms = a.inputs(x, gamma, beta, labels, tables=tables)
    xf, g, b, lab = a.transformed(transforms, x, x, gamma, beta, labels)
    dtype = result_dtype(x, gamma, beta, scale, shift)
    (gs, gk), (bs, bk) = a.modulation(g, tables), a.modulation(b, tables)
    strides = (tuple(ncs_strides(xf)), tuple(ncs_strides(output_like(xf, dtype))))
    common = (gs, bs, a.label_strides(lab), a.pair(scale), a.pair(shift))
    constexprs = {"GAMMA": int(gk), "BETA": int(bk), "BLOCK_C": plan.block_c, "BLOCK_S": plan.block_s}
    if stats is not None:
        return Variant(plan, transforms, (a.shape(xf), *strides, a.stat_strides(stats), *common), constexprs, dtype)
    constexprs = {**constexprs, "PER_CHANNEL": bool(plan.per_channel), "STRATEGY": plan.strategy}
    constexprs = {name: constexprs[name] for name in ("GAMMA", "BETA", "PER_CHANNEL", "STRATEGY", "BLOCK_C", "BLOCK_S")}
    return Variant(plan, transforms, (a.shape(xf), plan.row_channels, *strides, *common), constexprs, dtype)


def backward_sums(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    stats: Tensor,
    need_z: bool,
    launch: list[int],
) -> Tensor:
    """fp32 (6, N, C, P): sums of dz, dz * x_hat, g, g * x_hat, dy and (``need_z``) dy * z per (n, c) and span of S.

    ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``, ``z = x_hat * (1 + gamma) + beta``; beta is read only for
    ``need_z`` (the scale's gradient), and the last sum is 0 without it.
    """
    beta = beta if need_z else None
    key = ("backward_sums", x.device, need_z, *launch, *map(tensor_key, (dy, x, gamma, beta, labels, scale, stats)))
    v = _VARIANTS.get(key) or made(key, _sums_variant, dy, x, gamma, beta, labels, scale, stats, need_z, launch)
    if v.transforms is not None:
        dy, x, gamma, beta, labels = a.transformed(v.transforms, x, dy, x, gamma, beta, labels)
    sums = x.new_empty((6, x.shape[0], x.shape[1], launch[2]), dtype=_f32)
    _launch(_backward_sums_kernel, v, (dy, x, stats, gamma, beta, labels, scale, sums, *v.ints))
    return sums


def _sums_variant(dy: Tensor, x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                  scale: Tensor | None, stats: Tensor, need_z: bool, launch: list[int]) -> Variant:  # fmt: skip
    plan, tables = Launch(*launch), labels is not None
    transforms = (a.x_transform(dy), *a.inputs(x, gamma, beta, labels, tables=tables))
    dyf, xf, g, b, lab = a.transformed(transforms, x, dy, x, gamma, beta, labels)
    (gs, gk), (bs, bk) = a.modulation(g, tables), a.modulation(b, tables)
    ints = (a.shape(xf), plan.span, tuple(ncs_strides(dyf)), tuple(ncs_strides(xf)), a.stat_strides(stats), gs, bs,
            a.label_strides(lab), a.pair(scale))  # fmt: skip
    constexprs = {"GAMMA": int(gk), "BETA": int(bk), "NEED_Z": need_z, "BLOCK_C": plan.block_c,
                  "BLOCK_S": plan.block_s}  # fmt: skip
    return Variant(plan, transforms, ints, constexprs, _f32)


def grad_outputs_like(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, write_dx: bool, write_dgamma: bool, write_dbeta: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """dx and the spatial dgamma and dbeta maps (x's layout), each empty (numel 0) when not written."""
    return _gradient_maps(as_flattenable(x, x), gamma, beta, write_dx, write_dgamma, write_dbeta)


def _gradient_maps(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, write_dx: bool, write_dgamma: bool, write_dbeta: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`grad_outputs_like` for an x whose spatial dimensions flatten."""
    dx = torch.empty_like(x) if write_dx else x.new_empty(0)
    dgamma = torch.empty_like(x, dtype=gamma.dtype) if write_dgamma and gamma is not None else x.new_empty(0)
    dbeta = torch.empty_like(x, dtype=beta.dtype) if write_dbeta and beta is not None else x.new_empty(0)
    return dx, dgamma, dbeta


def _written(*maps: Tensor) -> tuple[Tensor | None, ...]:
    """The maps a kernel writes: each map, or None where it is empty (not asked for)."""
    return tuple([t if t.numel() else None for t in maps])


def backward_dx(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    stats: Tensor,
    coef: Tensor | None,
    partials: Tensor | None,
    batch: bool,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
    launch: list[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, dbeta_map)``: ``dx = g * rstd + x_hat * coef_x + coef_0``, ``dz * x_hat`` for a spatial
    gamma and ``dz`` for a spatial beta; each empty when not asked for (beta is read for its dtype only).

    The coefficients are given (``coef``: fp32 (2, N or 1, C) coef_x, coef_0), or pooled by the kernel from the
    (6, N, C, P) ``partials`` of :func:`backward_sums` over each channel's set (the channel over the batch for
    ``batch``, else the ``launch.row_channels`` channels of its group), or absent (running statistics).
    """
    key = ("backward_dx", x.device, batch, write_dx, write_dgamma, write_dbeta, beta is None or beta.dtype, *launch,
           *map(tensor_key, (dy, x, gamma, labels, scale, stats, coef, partials)))  # fmt: skip
    v = _VARIANTS.get(key) or made(key, _dx_variant, dy, x, gamma, labels, scale, stats, coef, partials, batch, launch)
    if v.transforms is not None:
        dy, x, gamma, _, labels = a.transformed(v.transforms, x, dy, x, gamma, None, labels)
    maps = _gradient_maps(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    n, _, s = v.ints[0]
    set_size = float(n * s if batch else launch[7] * s)  # launch.row_channels: channels per set of a sample
    _launch(_backward_dx_kernel, v, (dy, x, stats, coef, partials, gamma, labels, scale, *_written(*maps), set_size,
                                     *v.ints))  # fmt: skip
    return maps


def _dx_variant(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    stats: Tensor,
    coef: Tensor | None,
    partials: Tensor | None,
    batch: bool,
    launch: list[int],
) -> Variant:
    plan, tables = Launch(*launch), labels is not None  # fmt: skip
    transforms = (a.x_transform(dy), *a.inputs(x, gamma, None, labels, tables=tables))
    dyf, xf, g, _, lab = a.transformed(transforms, x, dy, x, gamma, None, labels)
    gs, gk = a.modulation(g, tables)
    pool = (partials.shape[-1] if partials is not None else 1, plan.row_channels)
    ints = (a.shape(xf), pool, _map_strides(dyf, xf), a.stat_strides(stats), (0, 0) if coef is None else
            a.stat_strides(coef), gs, a.label_strides(lab), a.pair(scale))  # fmt: skip
    constexprs = {"GAMMA": int(gk), "BATCH": batch, "BLOCK_C": plan.block_c, "BLOCK_S": plan.block_s,
                  "BLOCK_M": plan.block_m}  # fmt: skip
    return Variant(plan, transforms, ints, constexprs, x.dtype)


def _map_strides(dy: Tensor, x: Tensor) -> tuple[tuple[int, ...], ...]:
    """(n, c, s) strides of dy, x and the gradient maps (allocated like x), one tuple argument of the backward
    kernels."""
    return tuple(ncs_strides(dy)), tuple(ncs_strides(x)), tuple(ncs_strides(output_like(x, x.dtype)))


def row_backward(
    dy: Tensor,
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    labels: Tensor | None,
    scale: Tensor | None,
    stats: Tensor,
    write_dx: bool,
    write_dgamma: bool,
    write_dbeta: bool,
    need_z: bool,
    launch: list[int],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dgamma_map, dbeta_map, sums)`` of per-sample statistics in one launch.

    sums: fp32 (4, N, C) of dz, dz * x_hat, dy and (``need_z``, reading beta) dy * z per (n, c).
    """
    beta_read = beta if need_z else None
    key = ("row_backward", x.device, write_dx, write_dgamma, write_dbeta, need_z, beta is None or beta.dtype, *launch,
           *map(tensor_key, (dy, x, gamma, beta_read, labels, scale)))  # fmt: skip
    v = _VARIANTS.get(key) or made(key, _row_backward_variant, dy, x, gamma, beta_read, labels, scale, need_z, launch)
    if v.transforms is not None:
        dy, x, gamma, beta_read, labels = a.transformed(v.transforms, x, dy, x, gamma, beta_read, labels)
    dx, dgamma, dbeta = _gradient_maps(x, gamma, beta, write_dx, write_dgamma, write_dbeta)
    sums = _per_nc(x, 4, v.ints[0])
    _launch(_row_bwd_kernel, v, (dy, x, stats, gamma, beta_read, labels, scale, *_written(dx, dgamma, dbeta), sums,
                                 *v.ints))  # fmt: skip
    return dx, dgamma, dbeta, sums


def _row_backward_variant(dy: Tensor, x: Tensor, gamma: Tensor | None, beta: Tensor | None, labels: Tensor | None,
                          scale: Tensor | None, need_z: bool, launch: list[int]) -> Variant:  # fmt: skip
    plan, tables = Launch(*launch), labels is not None
    transforms = (a.x_transform(dy), *a.inputs(x, gamma, beta, labels, tables=tables))
    dyf, xf, g, b, lab = a.transformed(transforms, x, dy, x, gamma, beta, labels)
    (gs, gk), (bs, bk) = a.modulation(g, tables), a.modulation(b, tables)
    ints = (a.shape(xf), plan.row_channels, _map_strides(dyf, xf), gs, bs, a.label_strides(lab), a.pair(scale))
    constexprs = {"GAMMA": int(gk), "BETA": int(bk), "PER_CHANNEL": bool(plan.per_channel), "NEED_Z": need_z,
                  "STRATEGY": plan.strategy, "BLOCK_C": plan.block_c, "BLOCK_S": plan.block_s}  # fmt: skip
    return Variant(plan, transforms, ints, constexprs, x.dtype)


def class_table_grads(
    dy: Tensor,
    x: Tensor,
    labels: Tensor,
    scale: Tensor | None,
    stats: Tensor,
    num_classes: int,
    launch: list[int],
) -> Tensor:
    """fp32 (2, K, C): per-class sums of dz * x_hat (the gamma table's gradient) and of dz (the beta table's)."""
    key = ("class_table_grads", x.device, num_classes, *launch, *map(tensor_key, (dy, x, labels, scale, stats)))
    v = _VARIANTS.get(key) or made(key, _table_variant, dy, x, labels, scale, stats, num_classes, launch)
    if v.transforms is not None:
        dy, x, labels = a.transformed(v.transforms, x, dy, x, labels)
    n, c = x.shape[:2]
    partial = x.new_zeros((2, n, launch[2], c, v.ints[2]), dtype=_f32)  # ints[2]: the classes padded to 16
    _launch(_class_table_grad_kernel, v, (dy, x, stats, labels, scale, partial, *v.ints))
    return partial.sum((1, 2))[..., :num_classes].transpose(1, 2).contiguous()


def _table_variant(dy: Tensor, x: Tensor, labels: Tensor, scale: Tensor | None, stats: Tensor, num_classes: int,
                   launch: list[int]) -> Variant:  # fmt: skip
    plan = Launch(*launch)
    transforms = (a.x_transform(dy), a.x_transform(x), a.labels_transform(labels))
    dyf, xf, lab = a.transformed(transforms, x, dy, x, labels)
    ints = (a.shape(xf), plan.span, cdiv(num_classes, 16) * 16, tuple(ncs_strides(dyf)), tuple(ncs_strides(xf)),
            a.stat_strides(stats), a.label_strides(lab), a.pair(scale))  # fmt: skip
    return Variant(plan, transforms, ints, {"BLOCK_C": plan.block_c, "BLOCK_S": plan.block_s}, _f32)
