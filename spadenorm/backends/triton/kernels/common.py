"""``@triton.jit`` helpers shared by the kernels: tile indices, modulation and label loads, the output and
input-gradient tile bodies, and the tile loops of the statistics and gradient sums (Chan-merged, centred).

Conventions of every kernel. Element (n, c, s) of a tensor (S: the flattened spatial positions) sits at
``ptr + n * st[0] + c * st[1] + s * st[2]`` for its stride tuple ``st`` (0 on broadcast dimensions); a label map
(N, S) at ``n * ls[0] + s * ls[1]``; a per-(n, c) scale or shift at ``n * ss[0] + c * ss[1]``; the fp32 statistics
(2, N or 1, C), ``rstd`` in plane 0 and ``offset = -mean * rstd`` in plane 1, at ``plane * st[0] + n * st[1] + c``
(row stride 0 for per-channel statistics). ``shape`` is (N, C, S). An absent tensor is ``None``, and the kernels
test ``ptr is not None`` at compile time (gamma and beta: their kind, see :func:`_per_channel_inputs`).

With ``x_hat = x * rstd + offset``, the modulated map ``z = x_hat * (1 + gamma) + beta`` and the output
``y = z * (1 + scale) + shift``:

* forward tile: ``y``;
* with ``dz = dy * (1 + scale)`` and ``g = dz * (1 + gamma)``, input-gradient tile:
  ``dx = g * rstd + x_hat * coef_x + coef_0`` (``coef_x = -rstd * mean_S(g * x_hat)``, ``coef_0 = -rstd *
  mean_S(g)`` when the statistics come from x), ``dgamma = dz * x_hat`` for a spatial gamma and ``dbeta = dz`` for a
  spatial beta under a scale (without one, dbeta is dy itself).
"""

from __future__ import annotations

import enum

import triton
import triton.language as tl


class Kind(enum.IntEnum):
    """How a kernel reads gamma or beta (host side; the kernels compare the constexprs below)."""

    NONE = 0  # absent: a None pointer, never read
    TENSOR = 1  # a strided tensor of x's rank varying over S (a full map)
    TABLE = 2  # a (K, C) class table, rows gathered by the label map
    VECTOR = 3  # a strided tensor constant over S (per (n, c), per channel): loaded once per program


NONE: tl.constexpr = tl.constexpr(int(Kind.NONE))
TENSOR: tl.constexpr = tl.constexpr(int(Kind.TENSOR))
TABLE: tl.constexpr = tl.constexpr(int(Kind.TABLE))
VECTOR: tl.constexpr = tl.constexpr(int(Kind.VECTOR))


class Strategy(enum.IntEnum):
    """How a call computes its statistics and output (host side; the row kernels compare the first three as the
    constexprs below)."""

    RESIDENT = 0  # row kernel: one row per program, the row one tile kept in registers
    SWEPT = 1  # row kernel: one row per program, two sweeps over the row
    PERSISTENT = 2  # row kernel: co-resident programs looping over rows; two sweeps; outputs stored evict-first
    SPLIT = 3  # partial statistics over spans of S, merged per reduction set, then the modulate kernel
    GIVEN = 4  # statistics that do not depend on x (running estimates, identity): the modulate kernel alone


RESIDENT: tl.constexpr = tl.constexpr(int(Strategy.RESIDENT))
SWEPT: tl.constexpr = tl.constexpr(int(Strategy.SWEPT))
PERSISTENT: tl.constexpr = tl.constexpr(int(Strategy.PERSISTENT))


@triton.jit
def _elementwise_tile(C, S, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Indices of an elementwise program's [BLOCK_C, BLOCK_S] tile on a one-axis grid.

    The program id enumerates (n, channel block, position block) with positions fastest, so no grid axis is bounded
    by the batch size. Returns n, c, s, c_mask, s_mask, mask and the int64 offsets c2 [BLOCK_C, 1], s2 [1, BLOCK_S].
    """
    pid = tl.program_id(0)  # < 2**31: the grid's axis-0 limit
    blocks_s = tl.cdiv(S, BLOCK_S)
    blocks_c = tl.cdiv(C, BLOCK_C)
    s = (pid % blocks_s) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = ((pid // blocks_s) % blocks_c) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = (pid // blocks_s // blocks_c).to(tl.int64)
    c_mask = c < C
    s_mask = s < S
    mask = c_mask[:, None] & s_mask[None, :]
    return n, c, s, c_mask, s_mask, mask, c.to(tl.int64)[:, None], s.to(tl.int64)[None, :]


@triton.jit
def _offsets(st, n, c2, s2):
    """Element offsets ``n * st[0] + c2 * st[1] + s2 * st[2]`` of a tile ([BLOCK_C, 1] c2, [1, BLOCK_S] s2)."""
    return n * st[0] + c2 * st[1] + s2 * st[2]


@triton.jit
def _statistics(stats_ptr, st, n, c, c_mask):
    """fp32 rstd and offset [BLOCK_C] of channels c of sample n from the (2, N or 1, C) statistics."""
    at = stats_ptr + n * st[1] + c
    return tl.load(at, mask=c_mask, other=0.0), tl.load(at + st[0], mask=c_mask, other=0.0)


@triton.jit
def _labels(lab_ptr, ls, n, s, s_mask, BLOCK_S: tl.constexpr, NEEDED: tl.constexpr):
    """[1, BLOCK_S] int64 class ids at positions s (zeros when no table is read)."""
    labels = tl.zeros([1, BLOCK_S], dtype=tl.int64)
    if NEEDED:
        labels = tl.load(lab_ptr + n * ls[0] + s.to(tl.int64) * ls[1], mask=s_mask, other=0).to(tl.int64)[None, :]
    return labels


@triton.jit
def _modulation(ptr, st, n, c2, s2, labels, mask, KIND: tl.constexpr):
    """fp32 values of gamma or beta at channels c2 (column) and positions s2 (row): [BLOCK_C, BLOCK_S], or the
    preloaded [BLOCK_C, 1] of a VECTOR. A TABLE's rows are picked by ``labels`` [1, BLOCK_S], with its row stride
    in ``st[0]``."""
    if KIND == TENSOR:
        return tl.load(ptr + _offsets(st, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
    elif KIND == TABLE:
        return tl.load(ptr + labels * st[0] + c2 * st[1], mask=mask, other=0.0).to(tl.float32)
    else:
        return ptr


@triton.jit
def _per_channel(ptr, st, n, c, c_mask):
    """[BLOCK_C, 1] fp32 values of a per-(n, c) tensor at ``n * st[0] + c * st[1]``: a scale, a shift, or a VECTOR
    gamma or beta (constant over S), read once per program."""
    return tl.load(ptr + n * st[0] + c.to(tl.int64) * st[1], mask=c_mask, other=0.0).to(tl.float32)[:, None]


@triton.jit
def _per_channel_inputs(g_ptr, gs, b_ptr, bs, scale_ptr, ss, shift_ptr, ts, n, c, c_mask, GAMMA: tl.constexpr,
                        BETA: tl.constexpr):  # fmt: skip
    """gamma, beta, scale and shift of channels c of sample n as the tile helpers take them, the per-(n, c) ones read
    once per program: a VECTOR gamma or beta as its [BLOCK_C, 1] fp32 values, which :func:`_modulation` gives back as
    they are (no tile loads a broadcast tensor element by element), another kind as its pointer; scale and shift as
    their [BLOCK_C, 1] fp32 values.

    Absent ones come back as the placeholder 0.0, never read: Triton 3.6 to 3.9 compile no None in a tuple returned
    from a jit function (the interpreter takes one). GAMMA and BETA say which of gamma and beta are absent; the caller
    turns an absent scale or shift back into the None that the tile helpers test: ``scale if scale_ptr is not None
    else None``, decided at compile time.
    """
    scale = 0.0
    if scale_ptr is not None:
        scale = _per_channel(scale_ptr, ss, n, c, c_mask)
    shift = 0.0
    if shift_ptr is not None:
        shift = _per_channel(shift_ptr, ts, n, c, c_mask)
    if GAMMA == VECTOR:
        g_ptr = _per_channel(g_ptr, gs, n, c, c_mask)
    elif GAMMA == NONE:
        g_ptr = 0.0
    if BETA == VECTOR:
        b_ptr = _per_channel(b_ptr, bs, n, c, c_mask)
    elif BETA == NONE:
        b_ptr = 0.0
    return g_ptr, b_ptr, scale, shift


@triton.jit
def _store(ptr, value, mask, EVICT_FIRST: tl.constexpr):
    """Masked store in ptr's dtype; ``EVICT_FIRST`` marks the lines to leave the cache first (written once, not
    read again by this program, unlike the row it came from)."""
    if EVICT_FIRST:
        tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask, eviction_policy="evict_first")
    else:
        tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_output(x, y_ptr, ys, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask, rstd, offset, scale,
                  shift, GAMMA: tl.constexpr, BETA: tl.constexpr, BLOCK_S: tl.constexpr,
                  EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Store ``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift`` for a tile of x in registers
    (fp32); rstd, offset, scale, shift: [BLOCK_C, 1] fp32 (scale and shift None when absent)."""
    y = x * rstd + offset
    labels = _labels(lab_ptr, ls, n, s, s_mask, BLOCK_S, GAMMA == TABLE or BETA == TABLE)
    if GAMMA != NONE:
        y = y + y * _modulation(g_ptr, gs, n, c2, s2, labels, mask, GAMMA)
    if BETA != NONE:
        y = y + _modulation(b_ptr, bs, n, c2, s2, labels, mask, BETA)
    if scale is not None:
        y = y + y * scale
    if shift is not None:
        y = y + shift
    _store(y_ptr + _offsets(ys, n, c2, s2), y, mask, EVICT_FIRST)


@triton.jit
def _store_input_grads(dy, x, g_ptr, gs, lab_ptr, ls, dx_ptr, dg_ptr, db_ptr, os, n, c2, s, s2, s_mask, mask, rstd,
                       offset, coef_x, coef_0, scale, GAMMA: tl.constexpr, BLOCK_S: tl.constexpr,
                       EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Store dx, the spatial dgamma map and the spatial dbeta map (those whose pointer is not None, strides os) of
    dy and x in registers (fp32). rstd, offset, scale: [BLOCK_C, 1] fp32 (scale None when absent); coef_x and coef_0
    [BLOCK_C, 1], or None for statistics that do not depend on x."""
    dz = dy
    if scale is not None:
        dz = dy + dy * scale
    x_hat = x * rstd + offset
    out = _offsets(os, n, c2, s2)
    if dg_ptr is not None:
        _store(dg_ptr + out, dz * x_hat, mask, EVICT_FIRST)
    if db_ptr is not None:
        _store(db_ptr + out, dz, mask, EVICT_FIRST)
    if dx_ptr is not None:
        g = dz
        if GAMMA != NONE:
            labels = _labels(lab_ptr, ls, n, s, s_mask, BLOCK_S, GAMMA == TABLE)
            g = dz + dz * _modulation(g_ptr, gs, n, c2, s2, labels, mask, GAMMA)
        dx = g * rstd
        if coef_x is not None:
            dx = dx + x_hat * coef_x + coef_0
        _store(dx_ptr + out, dx, mask, EVICT_FIRST)


@triton.jit
def _set_members(n, c, m, C, P, span, S, group_size, BATCH: tl.constexpr):
    """Flat (N, C, P) indices [BLOCK_C, BLOCK_M] of the partials ``m`` of each channel's set, and their counts."""
    part = (m % P)[None, :]
    if BATCH:
        row = (m // P).to(tl.int64)[None, :] * C + c.to(tl.int64)[:, None]
    else:
        row = n * C + ((c // group_size) * group_size).to(tl.int64)[:, None] + (m // P)[None, :]
    count = tl.minimum(span, S - part * span).to(tl.float32)
    return row * P + part, count


@triton.jit
def _merge_tile(count, mean, m2, x, mask, s_mask):
    """Chan et al.: merge per-channel (count, mean, M2) with a [BLOCK_C, BLOCK_S] tile's own, centred in registers."""
    tile_count = tl.sum(s_mask.to(tl.float32), axis=0)
    tile_mean = tl.sum(x, axis=1) / tile_count
    dev = tl.where(mask, x - tile_mean[:, None], 0.0)
    total = count + tile_count
    delta = tile_mean - mean
    mean = mean + delta * (tile_count / total)
    m2 = m2 + tl.sum(dev * dev, axis=1) + delta * delta * (count * tile_count / total)
    return total, mean, m2


@triton.jit
def _moments(x_ptr, xs, n, c2, c_mask, start, end, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
             STAGES: tl.constexpr):  # fmt: skip
    """Per-channel (count, mean, M2) of x over positions [start, end), tile by tile (STAGES-deep pipelined loads)."""
    count = tl.zeros([BLOCK_C], dtype=tl.float32)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for s0 in tl.range(start, end, BLOCK_S, num_stages=STAGES):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        x = tl.load(x_ptr + _offsets(xs, n, c2, s.to(tl.int64)[None, :]), mask=mask, other=0.0).to(tl.float32)
        count, mean, m2 = _merge_tile(count, mean, m2, x, mask, s_mask)
    return count, mean, m2


@triton.jit
def _grad_sums(dy_ptr, dys, x_ptr, xs, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, c_mask, rstd, offset, scale, start,
               end, GAMMA: tl.constexpr, BETA: tl.constexpr, NEED_Z: tl.constexpr, BLOCK_C: tl.constexpr,
               BLOCK_S: tl.constexpr, STAGES: tl.constexpr):  # fmt: skip
    """Per-channel sums over [start, end) of dz, dz * x_hat, g, g * x_hat, dy and (NEED_Z) dy * z, tile by tile
    (see :func:`_tile_grad_sums`; STAGES-deep pipelined loads)."""
    sum_dz = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dzx = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_g = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_gx = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dy = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dyz = tl.zeros([BLOCK_C], dtype=tl.float32)
    for s0 in tl.range(start, end, BLOCK_S, num_stages=STAGES):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        s2 = s.to(tl.int64)[None, :]
        dy = tl.load(dy_ptr + _offsets(dys, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + _offsets(xs, n, c2, s2), mask=mask, other=0.0).to(tl.float32)
        t_dz, t_dzx, t_g, t_gx, t_dy, t_dyz = _tile_grad_sums(dy, x, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2,
                                                              s_mask, mask, rstd, offset, scale, GAMMA, BETA, NEED_Z,
                                                              BLOCK_S)  # fmt: skip
        sum_dz += t_dz
        sum_dzx += t_dzx
        sum_g += t_g
        sum_gx += t_gx
        sum_dy += t_dy
        sum_dyz += t_dyz
    return sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz


@triton.jit
def _tile_grad_sums(dy, x, g_ptr, gs, b_ptr, bs, lab_ptr, ls, n, c2, s, s2, s_mask, mask, rstd, offset, scale,
                    GAMMA: tl.constexpr, BETA: tl.constexpr, NEED_Z: tl.constexpr, BLOCK_S: tl.constexpr):  # fmt: skip
    """Per-channel sums over a tile of dz, dz * x_hat, g, g * x_hat, dy and (NEED_Z) dy * z.

    ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``, ``z = x_hat * (1 + gamma) + beta``; the last sum is 0
    without NEED_Z (beta is read only then). dy and x: fp32 tiles in registers, zero where masked.
    """
    x_hat = x * rstd + offset
    dz = dy
    if scale is not None:
        dz = dy + dy * scale
    labels = _labels(lab_ptr, ls, n, s, s_mask, BLOCK_S, GAMMA == TABLE or (NEED_Z and BETA == TABLE))
    g = dz
    z = x_hat
    if GAMMA != NONE:
        gamma = _modulation(g_ptr, gs, n, c2, s2, labels, mask, GAMMA)
        g = dz + dz * gamma
        z = x_hat + x_hat * gamma
    sum_dyz = tl.zeros_like(tl.sum(dy, axis=1))
    if NEED_Z:
        if BETA != NONE:
            z = z + _modulation(b_ptr, bs, n, c2, s2, labels, mask, BETA)
        sum_dyz = tl.sum(dy * z, axis=1)
    return (tl.sum(dz, axis=1), tl.sum(dz * x_hat, axis=1), tl.sum(g, axis=1), tl.sum(g * x_hat, axis=1),
            tl.sum(dy, axis=1), sum_dyz)  # fmt: skip
