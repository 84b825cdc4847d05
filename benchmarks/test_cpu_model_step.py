"""CPU training step of the reference SPADE GAN: spadenorm's SPADE layers against the original formulation.

One step is what the original trainer does per batch, without the optimizer updates (identical for both):

* generator step: ``fake = G(seg)``; the multi-scale discriminator on fake and real in one concatenated batch;
  ``hinge_G + feature_matching``; backward through D and G;
* discriminator step: ``fake = G(seg)`` without gradients; D on fake and real; ``hinge_D(fake) + hinge_D(real)``;
  backward through D.

The VGG perceptual loss is left out: its weights would be random here and its cost is the same for both variants.

The two variants are one model: ``spadenorm`` is ``spade_gan.SPADEGenerator`` as built (every normalization a
:class:`spadenorm.SPADE`), ``original`` is a deep copy in which every ``spadenorm.SPADE`` is replaced by a
:class:`spadenorm.reference.OriginalSPADE` carrying the same weights (see :func:`to_original_formulation`), and the
two are checked to give the same images before timing. The variants are timed in alternation, one step each per
round, the order swapped every round, so that changes in the machine's load hit both alike; ``extra_info`` keeps
each step's wall-clock and process CPU time and the per-round ratios original / spadenorm. It also records the bytes
autograd saves for backward during the generator step (each storage once, measured with
``torch.autograd.graph.saved_tensors_hooks``), for the whole step and for the generator's own forward.

Configuration: label_nc 8 (the synthetic scenes), ngf 16, ndf 16, crop 128, batch 2, spectral norm on, the SPADE
norm ``sync_batch`` (the original's ``spectralspadesyncbatch3x3``; one process, so plain batch statistics, which the
original formulation computes with ``BatchNorm2d``) or ``instance``.

Run: ``python -m pytest benchmarks/test_cpu_model_step.py --benchmark-enable
--benchmark-json=benchmarks/results/cpu_model.json`` then ``python benchmarks/report.py``.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pytest
import torch

import spadenorm
from spadenorm.reference import OriginalSPADE
from spadenorm.testing import saved_tensor_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from spade_gan.models.discriminator import MultiscaleDiscriminator
from spade_gan.models.generator import SPADEGenerator
from spade_gan.training.losses import (
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)

LABEL_NC = 8
NGF = 16
NDF = 16
CROP = 128
BATCH = 2
ROUNDS = 7  # pairs of steps
ORIGINAL_NORM = {"instance": "instance", "batch": "batch", "sync_batch": "batch"}


def to_original_formulation(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in which every ``spadenorm.SPADE`` is an ``OriginalSPADE`` of equal weights."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if not isinstance(module, spadenorm.SPADE):
            continue
        original = OriginalSPADE(
            ORIGINAL_NORM[module.param_free_norm.norm],
            module.mlp_gamma.kernel_size[0],
            module.num_features,
            module.label_nc,
            hidden_channels=module.mlp_gamma.in_channels,
        )
        original.load_state_dict(module.state_dict(), strict=True)
        original.train(module.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, original)
    return model


def build(norm: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """spadenorm generator, original-formulation generator (same weights), and one discriminator for each."""
    torch.manual_seed(0)
    generator = SPADEGenerator(LABEL_NC, ngf=NGF, crop_size=CROP, norm=norm, spectral=True)
    discriminator = MultiscaleDiscriminator(LABEL_NC + 3, ndf=NDF)
    return generator, to_original_formulation(generator), discriminator, copy.deepcopy(discriminator)


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, LABEL_NC, (BATCH, CROP, CROP), generator=generator)
    seg = torch.nn.functional.one_hot(labels, LABEL_NC).permute(0, 3, 1, 2).float()
    real = torch.rand(BATCH, 3, CROP, CROP, generator=generator) * 2 - 1
    return seg, real


def discriminate(discriminator, seg, fake, real):
    """D on fake and real in one batch (as the original), split back into the two halves per scale and feature."""
    out = discriminator(torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0))
    fake_pred = [[f[: fake.shape[0]] for f in scale] for scale in out]
    real_pred = [[f[fake.shape[0] :] for f in scale] for scale in out]
    return fake_pred, real_pred


def generator_loss(generator, discriminator, seg, real):
    fake = generator(seg)
    fake_pred, real_pred = discriminate(discriminator, seg, fake, real)
    return generator_hinge_loss(fake_pred) + feature_matching_loss(fake_pred, real_pred)


def training_step(generator, discriminator, seg, real):
    generator.zero_grad(set_to_none=True)
    discriminator.zero_grad(set_to_none=True)
    generator_loss(generator, discriminator, seg, real).backward()
    discriminator.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake = generator(seg)
    fake_pred, real_pred = discriminate(discriminator, seg, fake.detach(), real)
    d_loss = discriminator_hinge_loss(fake_pred, real=False) + discriminator_hinge_loss(real_pred, real=True)
    d_loss.backward()


def timed(fn, *args) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


@pytest.mark.parametrize("norm", ["sync_batch", "instance"])
def test_training_step(benchmark, norm):
    """Both variants in alternation (A B, then B A, ...): drifts in the machine's load hit both alike.

    pytest-benchmark times the pair; ``extra_info`` holds each variant's own wall-clock and CPU times per round and
    the per-round ratios original / spadenorm, from which the page's figures come.
    """
    ours, original, d_ours, d_original = build(norm)
    seg, real = make_batch()
    variants = {"original": (original, d_original), "spadenorm": (ours, d_ours)}
    with spadenorm.use_backend("torch"):
        # Same weights, same batch statistics: the two generators must agree before they are timed.
        diff = (ours(seg) - original(seg)).abs().max().item()
        assert diff < 1e-4, f"the two formulations differ by {diff}"
        saved = {
            impl: {
                "step_saved_bytes": saved_tensor_bytes(generator_loss, g, d, seg, real),
                "generator_saved_bytes": saved_tensor_bytes(g, seg),
            }
            for impl, (g, d) in variants.items()
        }
        for g, d in variants.values():  # warm-up
            training_step(g, d, seg, real)

    times: dict[str, dict[str, list[float]]] = {impl: {"wall_s": [], "cpu_s": []} for impl in variants}
    order = list(variants)

    def pair():
        with spadenorm.use_backend("torch"):
            for impl in order:
                wall, cpu = timed(training_step, *variants[impl], seg, real)
                times[impl]["wall_s"].append(wall)
                times[impl]["cpu_s"].append(cpu)
        order.reverse()

    benchmark.group = f"model step {norm}: G ngf {NGF} + D ndf {NDF}, {LABEL_NC} classes, {CROP}x{CROP}, batch {BATCH}"
    benchmark.pedantic(pair, rounds=ROUNDS, iterations=1)
    ratios = {
        f"{kind}_ratios": [o / s for o, s in zip(times["original"][kind], times["spadenorm"][kind], strict=True)]
        for kind in ("wall_s", "cpu_s")
    }
    benchmark.extra_info.update(
        benchmark="model_step",
        impl="pair",
        norm=norm,
        label_nc=LABEL_NC,
        ngf=NGF,
        ndf=NDF,
        crop=CROP,
        batch=BATCH,
        saved=saved,
        times=times,
        **ratios,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        command="python -m pytest " + " ".join(sys.argv[1:]),
    )
