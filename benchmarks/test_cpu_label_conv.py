"""CPU forward+backward of SPADE fed class ids (its first convolution by lookups) against the original formulation.

Cases, each at batch 1 unless said:

* ``test_spade_layer``: one SPADE layer at each ADE20K generator layer's input (``shapes.ADE20K_256``: 151 semantic
  channels, a 256x256 label map resized inside), ``sync_batch`` statistics (batch statistics in one process);
* ``test_generator``: the whole generator (``shapes.GENERATORS``): the ADE20K configuration (151 channels, ngf 64,
  256x256, spectral norm) and the reference GAN's default run (8 classes, ngf 16, 64x64, batch 8), in float32 and,
  for the default run, as that run executes on a CPU with fast bf16 (autocast to bf16, channels-last);
* ``test_lookup_crossover``: where the lookup starts to pay: one SPADE layer (64 channels, 128x128, batch 2) fed
  ids of 8 to 151 classes, with ``label_lookup=True`` against ``label_lookup=False`` (one-hot map and convolution),
  on the configured threads and on one: the measurement behind ``spadenorm.modules.spade.LOOKUP_MIN_CLASSES``;
* ``test_gamma_beta_fusion``: each ADE20K layer fed the ids, ``mlp_gamma`` and ``mlp_beta`` as two convolutions or
  as one with 2C outputs (``fuse_gamma_beta``), on one thread (the layer cases above time both on the configured
  threads).

Variants of the layer and generator cases, one model with the same weights: ``original`` (every SPADE an
:class:`spadenorm.reference.OriginalSPADE`, fed the contiguous float one-hot map, as the original data pipeline
builds it), ``spadenorm_map`` (spadenorm's SPADE fed that map: its convolution) and ``spadenorm`` (spadenorm's SPADE
fed the integer class ids: the first convolution by lookups, no one-hot map); for layers also ``spadenorm_fused``
(fed the ids, ``fuse_gamma_beta=True``: gamma and beta from one convolution). Outputs are checked to agree before
timing. The variants are timed in alternation (:mod:`benchmarks.alternation`); ``extra_info`` keeps every call's
wall-clock and CPU time, the per-round ratios spadenorm / original and spadenorm_map / original (the time relative
to the original), and the bytes autograd saves for backward in the forward (each storage once).

With ``--benchmark-disable`` (CI's smoke run) each case runs one round at a small stand-in size.

Run: ``python -m pytest benchmarks/test_cpu_label_conv.py -p no:randomly --benchmark-enable
--benchmark-json=benchmarks/results/cpu_label_conv.json``, then ``python benchmarks/report.py --label-conv
benchmarks/results/cpu_label_conv.json --write docs/benchmarks.md``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import spadenorm
from spadenorm import SPADE
from spadenorm.reference import OriginalSPADE
from spadenorm.testing import saved_tensor_bytes

from .alternation import alternate, ratios, to_original_formulation
from .shapes import ADE20K_256, GENERATORS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from spade_gan.models.generator import SPADEGenerator

LABEL_NC = 151
MAP_SIZE = 256
LAYER_ROUNDS = 9
GENERATOR_ROUNDS = 5
VARIANTS = ("original", "spadenorm_map", "spadenorm")
LAYER_VARIANTS = (*VARIANTS, "spadenorm_fused")
PRECISIONS = {"ade20k_256": ["fp32"], "default_64": ["fp32", "bf16"]}


def _one_hot(ids: torch.Tensor, classes: int) -> torch.Tensor:
    """The contiguous float (N, classes, H, W) map, as the original data pipeline builds it."""
    return F.one_hot(ids, classes).permute(0, 3, 1, 2).float().contiguous()


def _record(fixture: Any, times: dict, saved: dict[str, int], **info: Any) -> None:
    fixture.extra_info.update(
        impl="alternation",  # every variant in one benchmark
        times=times,
        saved_bytes=saved,
        **{
            f"{name}_{kind}_ratios": values
            for name in times
            if name != "original"
            for kind, values in ratios(times, name, "original").items()
        },
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        command="python -m pytest " + " ".join(sys.argv[1:]),
        **info,
    )


@pytest.mark.parametrize(("layer", "channels", "height", "width"), ADE20K_256, ids=[s[0] for s in ADE20K_256])
def test_spade_layer(benchmark, layer, channels, height, width):
    """One SPADE layer as the ADE20K generator runs it, forward and backward (gradients of x and every weight)."""
    smoke = benchmark.disabled
    if smoke:  # a stand-in of the same kind, a sixteenth of each size
        channels, height, width = max(channels // 16, 8), max(height // 16, 4), max(width // 16, 4)
    map_size = MAP_SIZE // 16 if smoke else MAP_SIZE
    torch.manual_seed(0)
    original = OriginalSPADE("batch", 3, channels, LABEL_NC)
    ours = SPADE(channels, LABEL_NC, norm="sync_batch")
    ours.load_state_dict(original.state_dict())
    fused = SPADE(channels, LABEL_NC, norm="sync_batch", fuse_gamma_beta=True)
    fused.load_state_dict(original.state_dict())
    ids = torch.randint(0, LABEL_NC, (1, map_size, map_size), generator=torch.Generator().manual_seed(1))
    seg = _one_hot(ids, LABEL_NC)
    x = torch.randn(1, channels, height, width, requires_grad=True)
    dy = torch.randn_like(x)
    variants = {
        "original": (original, seg),
        "spadenorm_map": (ours, seg),
        "spadenorm": (ours, ids),
        "spadenorm_fused": (fused, ids),
    }
    with spadenorm.use_backend("torch"):
        reference = original(x, seg)
        for name in LAYER_VARIANTS[1:]:
            module, segmap = variants[name]
            torch.testing.assert_close(module(x, segmap), reference, rtol=1e-4, atol=1e-4)
        saved = {name: saved_tensor_bytes(module, x, segmap) for name, (module, segmap) in variants.items()}

    def step(module: torch.nn.Module, segmap: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x, segmap).backward(dy)

        return call

    benchmark.group = f"SPADE layer {layer} {channels}x{height}x{width}, {LABEL_NC} classes"
    times = alternate(benchmark, {name: step(*v) for name, v in variants.items()}, LAYER_ROUNDS)
    _record(
        benchmark,
        times,
        saved,
        benchmark="label_conv_layer",
        case=f"SPADE layer {layer} {channels}x{height}x{width}",
        shape=[1, channels, height, width],
        activation_bytes=x.numel() * x.element_size(),
        precision="fp32",
    )


@pytest.mark.parametrize(
    ("config", "precision"), [(c, p) for c, ps in PRECISIONS.items() for p in ps], ids=lambda v: str(v)
)
def test_generator(benchmark, config, precision):
    """The generator's forward and backward (gradients of every weight), sync-batch SPADE, spectral norm."""
    cfg = dict(GENERATORS[config])
    if benchmark.disabled:  # a stand-in: the same classes, a narrow net at 64x64 (a 2x2 starting map)
        cfg.update(ngf=2, crop=64, batch=min(cfg["batch"], 2))
    classes, crop, batch = cfg["label_nc"], cfg["crop"], cfg["batch"]
    torch.manual_seed(0)
    ours = SPADEGenerator(classes, ngf=cfg["ngf"], crop_size=crop, norm="sync_batch", spectral=True)
    original = to_original_formulation(ours)
    generators = {"original": original, "spadenorm_map": copy.deepcopy(ours), "spadenorm": ours}
    ids = torch.randint(0, classes, (batch, crop, crop), generator=torch.Generator().manual_seed(1))
    seg = _one_hot(ids, classes)
    bf16 = precision == "bf16"
    if bf16:  # as train_spade.py runs on such a CPU: channels-last networks and inputs, bf16 autocast
        for g in generators.values():
            g.to(memory_format=torch.channels_last)
        seg = seg.contiguous(memory_format=torch.channels_last)
    inputs = {"original": seg, "spadenorm_map": seg, "spadenorm": ids}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    dy = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(2))

    with spadenorm.use_backend("torch"), autocast:
        # Same weights, same batch statistics and spectral-norm vectors: the outputs must agree before timing.
        reference = generators["original"](seg).float()
        for name in VARIANTS[1:]:
            diff = (generators[name](inputs[name]).float() - reference).abs().max().item()
            assert diff < (5e-2 if bf16 else 1e-4), f"{name} differs from the original formulation by {diff}"
        saved = {name: saved_tensor_bytes(generators[name], inputs[name]) for name in VARIANTS}

    def step(name: str) -> Callable[[], None]:
        generator, segmap = generators[name], inputs[name]

        def call() -> None:
            generator.zero_grad(set_to_none=True)
            with autocast:
                out = generator(segmap)
            out.float().backward(dy)

        return call

    benchmark.group = (
        f"generator {config}: {classes} classes, ngf {cfg['ngf']}, {crop}x{crop}, batch {batch}, {precision}"
    )
    times = alternate(benchmark, {name: step(name) for name in VARIANTS}, GENERATOR_ROUNDS)
    _record(
        benchmark,
        times,
        saved,
        benchmark="label_conv_generator",
        case=f"generator {config} {precision}",
        config=config,
        precision=precision,
        **cfg,
    )


@pytest.fixture
def threads(request):
    """torch's intra-op threads for one test (``None``: as configured), restored afterwards."""
    configured = torch.get_num_threads()
    if request.param is not None:
        torch.set_num_threads(request.param)
    yield torch.get_num_threads()
    torch.set_num_threads(configured)


@pytest.mark.parametrize("threads", [None, 1], indirect=True, ids=["threads-default", "threads-1"])
@pytest.mark.parametrize("classes", [8, 16, 32, 64, 151])
def test_lookup_crossover(benchmark, classes, threads):
    """The same layer fed the same ids, its first convolution by lookups or as the convolution of the one-hot map;
    on the configured threads and on one (whose process CPU time other jobs on the machine barely disturb)."""
    channels, size, batch = (8, 16, 1) if benchmark.disabled else (64, 128, 2)
    torch.manual_seed(0)
    layers = {
        "convolution": SPADE(channels, classes, norm="sync_batch", label_lookup=False),
        "lookup": SPADE(channels, classes, norm="sync_batch", label_lookup=True),
    }
    layers["lookup"].load_state_dict(layers["convolution"].state_dict())
    ids = torch.randint(0, classes, (batch, size, size), generator=torch.Generator().manual_seed(1))
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    dy = torch.randn_like(x)
    with spadenorm.use_backend("torch"):
        torch.testing.assert_close(layers["lookup"](x, ids), layers["convolution"](x, ids), rtol=1e-4, atol=1e-4)

    def step(layer: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x, ids).backward(dy)

        return call

    shape = f"{channels}x{size}x{size}, batch {batch}"
    benchmark.group = f"lookup crossover: SPADE {shape}, {classes} classes, {threads} threads"
    times = alternate(benchmark, {name: step(layer) for name, layer in layers.items()}, LAYER_ROUNDS)
    benchmark.extra_info.update(
        benchmark="label_conv_crossover",
        impl="alternation",
        classes=classes,
        shape=[batch, channels, size, size],
        times=times,
        **{f"lookup_{kind}_ratios": values for kind, values in ratios(times, "lookup", "convolution").items()},
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        command="python -m pytest " + " ".join(sys.argv[1:]),
    )


@pytest.mark.parametrize("threads", [1], indirect=True, ids=["threads-1"])
@pytest.mark.parametrize(("layer", "channels", "height", "width"), ADE20K_256, ids=[s[0] for s in ADE20K_256])
def test_gamma_beta_fusion(benchmark, layer, channels, height, width, threads):
    """Two convolutions for gamma and beta against one with 2C outputs, the layer fed the ids."""
    if benchmark.disabled:
        channels, height, width = max(channels // 16, 8), max(height // 16, 4), max(width // 16, 4)
    map_size = MAP_SIZE // 16 if benchmark.disabled else MAP_SIZE
    torch.manual_seed(0)
    layers = {"two": SPADE(channels, LABEL_NC, norm="sync_batch")}
    layers["one"] = SPADE(channels, LABEL_NC, norm="sync_batch", fuse_gamma_beta=True)
    layers["one"].load_state_dict(layers["two"].state_dict())
    ids = torch.randint(0, LABEL_NC, (1, map_size, map_size), generator=torch.Generator().manual_seed(1))
    x = torch.randn(1, channels, height, width, requires_grad=True)
    dy = torch.randn_like(x)

    def step(module: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x, ids).backward(dy)

        return call

    benchmark.group = f"gamma/beta fusion: SPADE layer {layer} {channels}x{height}x{width}, {threads} threads"
    times = alternate(benchmark, {name: step(module) for name, module in layers.items()}, LAYER_ROUNDS)
    benchmark.extra_info.update(
        benchmark="label_conv_fusion",
        impl="alternation",
        case=f"SPADE layer {layer} {channels}x{height}x{width}",
        times=times,
        **{f"one_{kind}_ratios": values for kind, values in ratios(times, "one", "two").items()},
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        command="python -m pytest " + " ".join(sys.argv[1:]),
    )
