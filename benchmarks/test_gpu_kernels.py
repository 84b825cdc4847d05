"""GPU timings of normalize-and-modulate: the fused Triton kernels against eager and compiled original formulation.

Shapes: the SPADE generator's normalization inputs at batch 8 (ADE20K 256x256, ngf 64; Cityscapes 512x256 with
``more`` upsampling), instance statistics, spatial gamma/beta, fp32 and bf16. Implementations:

* ``eager``: ``F.instance_norm(x) * (1 + gamma) + beta``, the original formulation;
* ``compiled``: ``torch.compile`` of the same function (compiled once per dtype with dynamic shapes);
* ``spadenorm``: ``spadenorm.functional.modulated_norm`` with backend ``"triton"`` (the launch heuristic's choice);
* ``two-phase``: the same with the row-persistent kernels switched off, to calibrate that heuristic.

Each timed call ends with ``torch.cuda.synchronize()``. ``extra_info`` records the bytes the ideal fused kernel moves
(forward 4 x, backward 5 x the tensor size), the GB/s that implies, and its fraction of the device's copy bandwidth,
measured in the same session by ``copy_bandwidth``. Skipped without CUDA.

Run: ``benchmarks/gpu_suite.sh`` (or ``python -m pytest benchmarks/test_gpu_kernels.py --benchmark-enable``).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import spadenorm
from spadenorm.functional import class_modulated_norm, modulated_norm

from .shapes import ADE20K_256, CITYSCAPES_512, CONDITIONAL_MODELS, conditional_original

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BATCH = 8
SHAPES = [("ade20k", *s) for s in ADE20K_256] + [("cityscapes", *s) for s in CITYSCAPES_512]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@functools.cache
def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in GB/s (read + write) of a 1 GiB buffer, best of 20 after warm-up."""
    src = torch.empty(2**28, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        dst.copy_(src)
    best = float("inf")
    for _ in range(20):
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * src.element_size() / best / 1e9


def original(x, gamma, beta):
    return F.instance_norm(x) * (1 + gamma) + beta


@functools.cache
def compiled_original():
    return torch.compile(original, dynamic=True)


def fused(x, gamma, beta):
    with spadenorm.use_backend("triton"):
        return modulated_norm(x, gamma, beta, norm="instance")


def fused_two_phase(x, gamma, beta):
    """The partial-statistics path the launch rule takes for large tensors with few (n, channel) blocks.

    The backward of a call follows the path its forward took, so forward+backward times one path throughout.
    """
    from spadenorm.backends.triton import launch

    saved = launch.OVERRIDES.row_kernels
    launch.OVERRIDES.row_kernels = False
    try:
        return fused(x, gamma, beta)
    finally:
        launch.OVERRIDES.row_kernels = saved


IMPLS = {
    "eager": lambda: original,
    "compiled": compiled_original,
    "spadenorm": lambda: fused,
    "two-phase": lambda: fused_two_phase,
}


def _inputs(shape, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x, gamma, beta, dy = (torch.randn(shape, device="cuda", dtype=dtype, generator=gen) for _ in range(4))
    for t in (x, gamma, beta):
        t.requires_grad_(True)
    return x, gamma, beta, dy


def _record(benchmark, *, shape, dtype_name, impl, mode, ideal_bytes):
    benchmark.extra_info.update(
        device="cuda",
        device_name=torch.cuda.get_device_name(),
        torch=torch.__version__,
        shape=list(shape),
        dtype=dtype_name,
        impl=impl,
        mode=mode,
        ideal_bytes=ideal_bytes,
        copy_bandwidth_gbs=copy_bandwidth(),
    )


def _finish(benchmark, ideal_bytes):
    median = benchmark.stats.stats.median
    benchmark.extra_info["gbs"] = ideal_bytes / median / 1e9
    benchmark.extra_info["fraction_of_copy"] = benchmark.extra_info["gbs"] / copy_bandwidth()


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize(
    ("dataset", "layer", "channels", "height", "width"), SHAPES, ids=[f"{s[0]}-{s[1]}" for s in SHAPES]
)
@pytest.mark.parametrize("mode", ["forward", "backward", "forward+backward"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_instance_spade_modulation(benchmark, impl, mode, dataset, layer, channels, height, width, dtype_name):
    if impl in ("compiled", "two-phase") and mode != "forward+backward":
        pytest.skip("compared on forward+backward only (keeps the suite inside its time budget)")
    dtype = DTYPES[dtype_name]
    shape = (BATCH, channels, height, width)
    x, gamma, beta, dy = _inputs(shape, dtype)
    fn = IMPLS[impl]()
    size = x.numel() * x.element_size()
    ideal = {"forward": 4 * size, "backward": 5 * size, "forward+backward": 9 * size}[mode]

    if mode == "forward":

        def step():
            with torch.no_grad():
                fn(x, gamma, beta)
            torch.cuda.synchronize()

    elif mode == "backward":
        y = fn(x, gamma, beta)

        def step():
            torch.autograd.grad(y, (x, gamma, beta), dy, retain_graph=True)
            torch.cuda.synchronize()

    else:

        def step():
            torch.autograd.grad(fn(x, gamma, beta), (x, gamma, beta), dy)
            torch.cuda.synchronize()

    benchmark.group = f"{dataset} {layer} {channels}x{height}x{width} {dtype_name} {mode}"
    _record(benchmark, shape=shape, dtype_name=dtype_name, impl=impl, mode=mode, ideal_bytes=ideal)
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)
    benchmark.extra_info["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    _finish(benchmark, ideal)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("impl", ["spade", "clade"])
def test_class_table_forward_against_spatial(benchmark, impl, dtype_name):
    """CLADE's table lookup in the kernel against spatial SPADE modulation, forward, at the up_1 ADE20K shape."""
    dtype = DTYPES[dtype_name]
    shape = (BATCH, 512, 64, 64)
    x, gamma, beta, _ = _inputs(shape, dtype)
    labels = torch.randint(0, 151, (BATCH, 64, 64), device="cuda")
    tables = (torch.randn(151, 512, device="cuda", dtype=dtype), torch.randn(151, 512, device="cuda", dtype=dtype))

    def step():
        with torch.no_grad(), spadenorm.use_backend("triton"):
            if impl == "clade":
                class_modulated_norm(x, labels, *tables)
            else:
                modulated_norm(x, gamma, beta)
        torch.cuda.synchronize()

    benchmark.group = f"class tables vs spatial maps, forward, 8x512x64x64 {dtype_name}"
    size = x.numel() * x.element_size()
    _record(benchmark, shape=shape, dtype_name=dtype_name, impl=impl, mode="forward", ideal_bytes=4 * size)
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)
    _finish(benchmark, 4 * size)


@functools.cache
def _compiled_conditional_original():
    return torch.compile(conditional_original, dynamic=False)


def _conditional_fused(x, gamma, beta, scale, shift, norm, num_groups):
    with spadenorm.use_backend("triton"):
        return modulated_norm(x, gamma, beta, norm=norm, num_groups=num_groups, scale=scale, shift=shift)


@pytest.mark.parametrize("dtype_name", ["fp16", "bf16"])
@pytest.mark.parametrize("case", list(CONDITIONAL_MODELS))
@pytest.mark.parametrize("impl", ["eager", "compiled", "spadenorm"])
def test_conditional_model_forward_backward(benchmark, impl, case, dtype_name):
    """Forward+backward of today's conditional models' normalization (see ``shapes.CONDITIONAL_MODELS``)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    config = CONDITIONAL_MODELS[case]
    shape = config["shape"]
    gen = torch.Generator(device="cuda").manual_seed(0)
    x, gamma, beta, dy = (torch.randn(shape, device="cuda", dtype=dtype, generator=gen) for _ in range(4))
    scale = shift = None
    if config["second"]:
        scale, shift = (torch.randn(shape[:2], device="cuda", dtype=dtype, generator=gen) for _ in range(2))
    inputs = [t.requires_grad_(True) for t in (x, gamma, beta, scale, shift) if t is not None]
    fn = {"eager": conditional_original, "compiled": _compiled_conditional_original(), "spadenorm": _conditional_fused}
    fn = fn[impl]

    def step():
        torch.autograd.grad(fn(x, gamma, beta, scale, shift, config["norm"], config["num_groups"]), inputs, dy)
        torch.cuda.synchronize()

    size = x.numel() * x.element_size()
    benchmark.group = f"{case} {'x'.join(map(str, shape))} {dtype_name} forward+backward"
    _record(benchmark, shape=shape, dtype_name=dtype_name, impl=impl, mode="forward+backward", ideal_bytes=9 * size)
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)
    benchmark.extra_info["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    _finish(benchmark, 9 * size)
