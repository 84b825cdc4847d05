"""Device-time measurement for the GPU benchmarks, and the label maps of the CLADE cases.

What :class:`DeviceTimer` measures: the GPU time of one call, from a CUDA event recorded just before the call's first
kernel to one recorded after its last, with the L2 cache flushed before every call (an untimed write of a 256 MB
buffer, several times the L2 of an H100/H200). Host time (Python, argument checks, launch overhead) is kept out of that
figure by letting the host run ahead: before each timed call a spin kernel (``torch.cuda._sleep``), longer than the
call's measured host time, holds the GPU while the host queues the call's kernels, so the GPU runs them back to back.
Each call reports whether the host did stay ahead (the start event had not been reached when the call was queued);
the median is taken over the calls that did, and :attr:`Timing.host_ahead` says how many did. A call that waits for
the GPU on the host (a synchronizing check) cannot be timed this way and shows ``host_ahead`` below 1. Work that makes
a call's input (the forward graph of a timed backward) is queued before the flush and is not timed.

The wall-clock "op" figure (Python included) is measured separately by the benchmarks (pytest-benchmark rounds, each
after an untimed flush and synchronization).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

FLUSH_BYTES = 256 * 2**20
"""Bytes written between timed calls to evict the previous call's data from L2."""

COPY_BYTES = 2**30
"""Size of the buffer of the copy-bandwidth reference (read once and written once per copy)."""


@dataclass(frozen=True)
class Timing:
    """Device times of repeated calls, in milliseconds.

    ``median_ms`` and the quartiles are over the calls during which the host stayed ahead of the GPU (all calls when
    fewer than half did; then ``host_ahead`` < 0.5 says that the figure includes host time).
    """

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    reps: int
    host_ahead: float
    lead_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize_times(times_ms: list[float], ahead: list[bool], lead_ms: float) -> Timing:
    """Median, quartiles and extremes of ``times_ms``, over the calls with the host ahead when at least half were.

    >>> summarize_times([1.0, 2.0, 3.0, 100.0], [True, True, True, False], 0.5).median_ms
    2.0
    >>> summarize_times([1.0, 2.0, 3.0, 100.0], [False] * 4, 0.5).median_ms
    2.5
    """
    if not times_ms:
        raise ValueError("no times to summarize")
    kept = [t for t, a in zip(times_ms, ahead, strict=True) if a]
    if 2 * len(kept) < len(times_ms):
        kept = list(times_ms)
    q1, _, q3 = statistics.quantiles(kept, n=4, method="inclusive") if len(kept) > 1 else (kept[0],) * 3
    return Timing(
        median_ms=statistics.median(kept),
        q1_ms=q1,
        q3_ms=q3,
        min_ms=min(kept),
        max_ms=max(kept),
        reps=len(times_ms),
        host_ahead=sum(ahead) / len(ahead),
        lead_ms=lead_ms,
    )


class DeviceTimer:
    """CUDA-event timing of a callable with the L2 flushed before each call (see the module docstring)."""

    def __init__(self, device: torch.device | str = "cuda", flush_bytes: int = FLUSH_BYTES) -> None:
        self.device = torch.device(device)
        self._flush = torch.empty(flush_bytes, dtype=torch.uint8, device=self.device)
        self._sleep = getattr(torch.cuda, "_sleep", None)
        self.cycles_per_ms = self._calibrate_sleep()

    def flush(self) -> None:
        """Write the flush buffer (queued on the current stream; returns at once)."""
        self._flush.fill_(0x5A)

    def flush_and_sync(self) -> None:
        """Flush L2 and wait for the GPU: the untimed setup of a wall-clock round."""
        self.flush()
        torch.cuda.synchronize(self.device)

    def _calibrate_sleep(self) -> float:
        """Spin-kernel cycles per millisecond (0 when ``torch.cuda._sleep`` is missing).

        The highest rate of a few tries after some work, so that the clock has ramped up: at a lower clock a lead
        lasts longer than planned, never shorter.
        """
        if self._sleep is None:
            return 0.0
        for _ in range(8):
            self.flush()
        cycles = 1 << 20
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        rates = []
        for _ in range(5):
            start.record()
            self._sleep(cycles)
            end.record()
            torch.cuda.synchronize(self.device)
            rates.append(cycles / max(start.elapsed_time(end), 1e-3))
        return max(rates)

    def time(
        self,
        run: Callable[[Any], object],
        *,
        prepare: Callable[[], Any] | None = None,
        reps: int = 25,
        warmup: int = 3,
    ) -> Timing:
        """Device time of ``run(prepare())``: ``warmup`` untimed calls, then ``reps`` timed ones after an L2 flush.

        ``prepare`` (untimed, queued before the flush) makes each call's input, such as a fresh forward graph for a
        backward. The host lead before each call is twice the longest host time of ``run`` in the warm-up calls after
        the first (which compiles), plus 50 us; it doubles for the next calls whenever the GPU catches up.
        """
        prepare = prepare or _nothing
        host_ms = 0.0
        for i in range(max(warmup, 2)):
            arg = prepare()
            torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            run(arg)
            if i > 0:
                host_ms = max(host_ms, (time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize(self.device)
        lead_ms = min(2 * host_ms + 0.05, 50.0)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        ahead = []
        for start, end in events:
            arg = prepare()
            self.flush()
            if self._sleep is not None:
                self._sleep(int(lead_ms * self.cycles_per_ms))
            start.record()
            run(arg)
            end.record()
            ahead.append(not start.query())
            if not ahead[-1]:
                lead_ms = min(2 * lead_ms, 50.0)
            del arg
        torch.cuda.synchronize(self.device)
        return summarize_times([s.elapsed_time(e) for s, e in events], ahead, lead_ms)


def _nothing() -> None:
    return None


def copy_bandwidth(timer: DeviceTimer, nbytes: int = COPY_BYTES, reps: int = 20) -> tuple[float, Timing]:
    """Device-to-device copy bandwidth in GB/s (bytes read plus bytes written), timed like the kernels.

    One ``nbytes`` buffer of random floats copied into another, the median over ``reps`` copies, each after the same
    L2 flush as the kernels: the ceiling that the kernels' achieved bandwidth is compared with.
    """
    src = torch.randn(nbytes // 4, device=timer.device)
    dst = torch.empty_like(src)
    timing = timer.time(lambda _: dst.copy_(src), reps=reps)
    return 2 * nbytes / (timing.median_ms * 1e-3) / 1e9, timing


# --------------------------------------------------------------------------------------------------------- label maps
def random_labels(
    n: int, h: int, w: int, num_classes: int, *, generator: torch.Generator, device: torch.device | str
) -> Tensor:
    """Independent uniform class ids per pixel (N, H, W): the worst case for per-pixel table gathers."""
    return torch.randint(0, num_classes, (n, h, w), generator=generator, device=device)


def blocky_labels(
    n: int,
    h: int,
    w: int,
    num_classes: int,
    *,
    generator: torch.Generator,
    device: torch.device | str,
    rectangles: int = 12,
) -> Tensor:
    """Piecewise-constant label maps (N, H, W), like a semantic segmentation's regions.

    Each map is a background class with ``rectangles`` axis-aligned rectangles of random classes painted over it,
    each side between 1/8 and 1/2 of the map's: a few large regions per image, so neighbouring pixels share a class
    (as in ADE20K or Cityscapes maps) rather than each pixel drawing its own.
    """

    def draw(low: int, high: int) -> Tensor:
        return torch.randint(low, high, (n, 1, 1), generator=generator, device=device)

    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    labels = draw(0, num_classes).expand(n, h, w).clone()
    for _ in range(rectangles):
        rh, rw = draw(max(1, h // 8), max(2, h // 2 + 1)), draw(max(1, w // 8), max(2, w // 2 + 1))
        u = torch.rand((2, n, 1, 1), generator=generator, device=device)
        y0 = (u[0] * (h - rh + 1)).long()
        x0 = (u[1] * (w - rw + 1)).long()
        inside = (ys >= y0) & (ys < y0 + rh) & (xs >= x0) & (xs < x0 + rw)
        labels = torch.where(inside, draw(0, num_classes), labels)
    return labels


LABEL_MAPS: dict[str, tuple[Callable[..., Tensor], int]] = {
    "blocky151": (blocky_labels, 151),
    "random151": (random_labels, 151),
    "blocky35": (blocky_labels, 35),
}
"""CLADE label maps by name: generator and class count (151: ADE20K, 35: Cityscapes)."""
