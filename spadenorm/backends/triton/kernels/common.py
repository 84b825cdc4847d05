"""``@triton.jit`` helpers shared by the kernels: tile indices, modulation and label loads, the output and
input-gradient tile bodies, and the tile loops of the statistics and gradient sums (Chan-merged, centred).

With ``x_hat = x * rstd + offset`` (``offset = -mean * rstd``, fp32 per (n, c)), the modulated map
``z = x_hat * (1 + gamma) + beta`` and the output ``y = z * (1 + scale) + shift`` (scale, shift per (n, c)):

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


class Coefficients(enum.IntEnum):
    """Where the dx kernel gets its projection coefficients (host side; the kernels compare the constexprs below)."""

    ABSENT = 0  # none: statistics that do not depend on x (running estimates, identity)
    GIVEN = 1  # per-(n, c) tensors computed by the caller
    POOLED = 2  # pooled by each program from the sums kernel's partials


ABSENT: tl.constexpr = tl.constexpr(int(Coefficients.ABSENT))
GIVEN: tl.constexpr = tl.constexpr(int(Coefficients.GIVEN))
POOLED: tl.constexpr = tl.constexpr(int(Coefficients.POOLED))


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
def _row_channels(row, grid_c, C, channels_per_program, BLOCK_C: tl.constexpr):
    """Sample and channels of row ``row`` of a row-kernel launch: (N, grid_c) rows of channel blocks or groups.

    Returns n, c, c_mask and the int64 column offsets c2 [BLOCK_C, 1].
    """
    n = (row // grid_c).to(tl.int64)
    c = (row % grid_c) * channels_per_program + tl.arange(0, BLOCK_C)
    c_mask = (c < C) & (tl.arange(0, BLOCK_C) < channels_per_program)
    return n, c, c_mask, c.to(tl.int64)[:, None]


@triton.jit
def _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S: tl.constexpr, NEEDED: tl.constexpr):
    """[1, BLOCK_S] int64 class ids at positions s (zeros when no table is read)."""
    labels = tl.zeros([1, BLOCK_S], dtype=tl.int64)
    if NEEDED:
        labels = tl.load(lab_ptr + n * sln + s.to(tl.int64) * sls, mask=s_mask, other=0).to(tl.int64)[None, :]
    return labels


@triton.jit
def _vector_values(ptr, n, c, c_mask, sn, sc):
    """[BLOCK_C, 1] fp32 values of a VECTOR gamma or beta (constant over S), read once per program.

    The kernels pass them wherever the tensor goes (``if KIND == VECTOR: ptr = _vector_values(...)``) and
    :func:`_modulation` gives them back as they are, so no tile loads a broadcast tensor element by element.
    """
    return tl.load(ptr + n * sn + c.to(tl.int64) * sc, mask=c_mask, other=0.0).to(tl.float32)[:, None]


@triton.jit
def _modulation(
    ptr,  # gamma or beta: strided tensor (TENSOR), (K, C) table (TABLE) or [BLOCK_C, 1] values (VECTOR)
    n,
    c2,
    s2,
    labels,  # [1, BLOCK_S] class ids (TABLE)
    mask,
    sn,  # batch stride (tensor) or row stride (table)
    sc,
    ss,
    KIND: tl.constexpr,
):
    """fp32 values of gamma or beta at channels c2 (column) and positions s2 (row): [BLOCK_C, BLOCK_S], or the
    preloaded [BLOCK_C, 1] of a VECTOR."""
    if KIND == TENSOR:
        return tl.load(ptr + n * sn + c2 * sc + s2 * ss, mask=mask, other=0.0).to(tl.float32)
    elif KIND == TABLE:
        return tl.load(ptr + labels * sn + c2 * sc, mask=mask, other=0.0).to(tl.float32)
    else:
        return ptr


@triton.jit
def _per_channel(ptr, n, c, c_mask, sn, sc, BLOCK_C: tl.constexpr, PRESENT: tl.constexpr):
    """[BLOCK_C, 1] fp32 values of a per-(n, c) tensor at n * sn + c * sc (zeros when absent)."""
    if PRESENT:
        return tl.load(ptr + n * sn + c.to(tl.int64) * sc, mask=c_mask, other=0.0).to(tl.float32)[:, None]
    else:
        return tl.zeros([BLOCK_C, 1], dtype=tl.float32)


@triton.jit
def _scaled_grad(dz, g_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, sgn, sgc, sgs, sln, sls, GAMMA: tl.constexpr,
                 BLOCK_S: tl.constexpr):  # fmt: skip
    """g = dz * (1 + gamma) on a tile."""
    if GAMMA == NONE:
        return dz
    else:
        labels = _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S, GAMMA == TABLE)
        return dz + dz * _modulation(g_ptr, n, c2, s2, labels, mask, sgn, sgc, sgs, GAMMA)


@triton.jit
def _output_tile(x_ptr, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, shift,
                 sxn, sxc, sxs, syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls,
                 GAMMA: tl.constexpr, BETA: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                 BLOCK_S: tl.constexpr, EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Load x and store ``y = ((x * rstd + offset) * (1 + gamma) + beta) * (1 + scale) + shift`` for one tile.

    rstd, offset, scale, shift: [BLOCK_C, 1] fp32.
    """
    x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
    _store_output(x, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, shift,
                  syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA, BETA, HAS_SCALE, HAS_SHIFT, BLOCK_S,
                  EVICT_FIRST)  # fmt: skip


@triton.jit
def _store_output(x, y_ptr, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, shift,
                  syn, syc, sys_, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls,
                  GAMMA: tl.constexpr, BETA: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                  BLOCK_S: tl.constexpr, EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Store y for a tile of x already in registers (fp32); ``EVICT_FIRST`` streams y past the cache."""
    y = x * rstd + offset
    labels = _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S, GAMMA == TABLE or BETA == TABLE)
    if GAMMA != NONE:
        y = y + y * _modulation(g_ptr, n, c2, s2, labels, mask, sgn, sgc, sgs, GAMMA)
    if BETA != NONE:
        y = y + _modulation(b_ptr, n, c2, s2, labels, mask, sbn, sbc, sbs, BETA)
    if HAS_SCALE:
        y = y + y * scale
    if HAS_SHIFT:
        y = y + shift
    _store(y_ptr + n * syn + c2 * syc + s2 * sys_, y, mask, EVICT_FIRST)


@triton.jit
def _store(ptr, value, mask, EVICT_FIRST: tl.constexpr):
    """Masked store in ptr's dtype; ``EVICT_FIRST`` marks the lines to leave the cache first (written once, not
    read again by this program, unlike the row it came from)."""
    if EVICT_FIRST:
        tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask, eviction_policy="evict_first")
    else:
        tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _input_grad_tile(dy_ptr, x_ptr, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd,
                     offset, coef_x, coef_0, scale, sdn, sdc, sds, sxn, sxc, sxs, son, soc, sos, sgn, sgc, sgs, sln,
                     sls, GAMMA: tl.constexpr, FROM_INPUT: tl.constexpr, HAS_SCALE: tl.constexpr,
                     WRITE_DX: tl.constexpr, WRITE_DGAMMA: tl.constexpr, WRITE_DBETA: tl.constexpr,
                     BLOCK_S: tl.constexpr, EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Load dy and x and store dx, the spatial dgamma map and/or the spatial dbeta map for one tile.

    rstd, offset, coef_x, coef_0, scale: [BLOCK_C, 1] fp32.
    """
    dy = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
    _store_input_grads(dy, x, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd, offset,
                       coef_x, coef_0, scale, son, soc, sos, sgn, sgc, sgs, sln, sls, GAMMA, FROM_INPUT, HAS_SCALE,
                       WRITE_DX, WRITE_DGAMMA, WRITE_DBETA, BLOCK_S, EVICT_FIRST)  # fmt: skip


@triton.jit
def _store_input_grads(dy, x, g_ptr, lab_ptr, dx_ptr, dg_ptr, db_ptr, n, c2, s, s2, s_mask, mask, rstd, offset,
                       coef_x, coef_0, scale, son, soc, sos, sgn, sgc, sgs, sln, sls, GAMMA: tl.constexpr,
                       FROM_INPUT: tl.constexpr, HAS_SCALE: tl.constexpr, WRITE_DX: tl.constexpr,
                       WRITE_DGAMMA: tl.constexpr, WRITE_DBETA: tl.constexpr, BLOCK_S: tl.constexpr,
                       EVICT_FIRST: tl.constexpr):  # fmt: skip
    """Store the gradient tiles of dy and x already in registers (fp32)."""
    dz = dy
    if HAS_SCALE:
        dz = dy + dy * scale
    x_hat = x * rstd + offset
    out = n * son + c2 * soc + s2 * sos
    if WRITE_DGAMMA:
        _store(dg_ptr + out, dz * x_hat, mask, EVICT_FIRST)
    if WRITE_DBETA:
        _store(db_ptr + out, dz, mask, EVICT_FIRST)
    if WRITE_DX:
        g = _scaled_grad(dz, g_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, sgn, sgc, sgs, sln, sls, GAMMA, BLOCK_S)
        dx = g * rstd
        if FROM_INPUT:
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
def _moments(x_ptr, n, c2, c_mask, start, end, sxn, sxc, sxs, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
             STAGES: tl.constexpr):  # fmt: skip
    """Per-channel (count, mean, M2) of x over positions [start, end), tile by tile (STAGES-deep pipelined loads)."""
    count = tl.zeros([BLOCK_C], dtype=tl.float32)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for s0 in tl.range(start, end, BLOCK_S, num_stages=STAGES):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < end
        mask = c_mask[:, None] & s_mask[None, :]
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s.to(tl.int64)[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        count, mean, m2 = _merge_tile(count, mean, m2, x, mask, s_mask)
    return count, mean, m2


@triton.jit
def _grad_sums(dy_ptr, x_ptr, g_ptr, b_ptr, lab_ptr, n, c2, c_mask, rstd, offset, scale, start, end, sdn, sdc, sds,
               sxn, sxc, sxs, sgn, sgc, sgs, sbn, sbc, sbs, sln, sls, GAMMA: tl.constexpr, BETA: tl.constexpr,
               HAS_SCALE: tl.constexpr, NEED_Z: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
               STAGES: tl.constexpr):  # fmt: skip
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
        dy = tl.load(dy_ptr + n * sdn + c2 * sdc + s2 * sds, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + n * sxn + c2 * sxc + s2 * sxs, mask=mask, other=0.0).to(tl.float32)
        t_dz, t_dzx, t_g, t_gx, t_dy, t_dyz = _tile_grad_sums(
            dy, x, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, sgn, sgc, sgs, sbn, sbc,
            sbs, sln, sls, GAMMA, BETA, HAS_SCALE, NEED_Z, BLOCK_S,
        )  # fmt: skip
        sum_dz += t_dz
        sum_dzx += t_dzx
        sum_g += t_g
        sum_gx += t_gx
        sum_dy += t_dy
        sum_dyz += t_dyz
    return sum_dz, sum_dzx, sum_g, sum_gx, sum_dy, sum_dyz


@triton.jit
def _tile_grad_sums(dy, x, g_ptr, b_ptr, lab_ptr, n, c2, s, s2, s_mask, mask, rstd, offset, scale, sgn, sgc, sgs,
                    sbn, sbc, sbs, sln, sls, GAMMA: tl.constexpr, BETA: tl.constexpr, HAS_SCALE: tl.constexpr,
                    NEED_Z: tl.constexpr, BLOCK_S: tl.constexpr):  # fmt: skip
    """Per-channel sums over a tile of dz, dz * x_hat, g, g * x_hat, dy and (NEED_Z) dy * z.

    ``dz = dy * (1 + scale)``, ``g = dz * (1 + gamma)``, ``z = x_hat * (1 + gamma) + beta``; the last sum is 0
    without NEED_Z (beta is read only then). dy and x: fp32 tiles in registers, zero where masked.
    """
    x_hat = x * rstd + offset
    dz = dy
    if HAS_SCALE:
        dz = dy + dy * scale
    labels = _labels(lab_ptr, n, s, s_mask, sln, sls, BLOCK_S, GAMMA == TABLE or (NEED_Z and BETA == TABLE))
    g = dz
    z = x_hat
    if GAMMA != NONE:
        gamma = _modulation(g_ptr, n, c2, s2, labels, mask, sgn, sgc, sgs, GAMMA)
        g = dz + dz * gamma
        z = x_hat + x_hat * gamma
    sum_dyz = tl.zeros_like(tl.sum(dy, axis=1))
    if NEED_Z:
        if BETA != NONE:
            z = z + _modulation(b_ptr, n, c2, s2, labels, mask, sbn, sbc, sbs, BETA)
        sum_dyz = tl.sum(dy * z, axis=1)
    return (tl.sum(dz, axis=1), tl.sum(dz * x_hat, axis=1), tl.sum(g, axis=1), tl.sum(g * x_hat, axis=1),
            tl.sum(dy, axis=1), sum_dyz)  # fmt: skip
