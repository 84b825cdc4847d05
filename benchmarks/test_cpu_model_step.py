"""CPU training step of the reference SPADE GAN: spadenorm's SPADE layers against the original formulation.

One step is what the original trainer does per batch, without the optimizer updates (identical for every variant):

* generator step: ``fake = G(...)``; the multi-scale discriminator on fake and real in one concatenated batch;
  ``hinge_G + feature_matching``; backward through D and G;
* discriminator step: ``fake = G(...)`` without gradients; D on fake and real; ``hinge_D(fake) + hinge_D(real)``;
  backward through D.

The VGG perceptual loss is left out: its weights would be random here and its cost is the same for every variant.

The variants are one model: ``spadenorm`` is ``spade_gan.SPADEGenerator`` as built (every normalization a
:class:`spadenorm.SPADE`) fed the class ids, as the trainer feeds it (every SPADE layer's first convolution by table
lookups); ``spadenorm_map`` is the same generator fed the one-hot map (its convolution, what the trainer passed
before the lookup); ``original`` is a deep copy in which every ``spadenorm.SPADE`` is a
:class:`spadenorm.reference.OriginalSPADE` carrying the same weights (:func:`alternation.to_original_formulation`),
fed the one-hot map. The discriminator always reads the one-hot map. The generators are checked to give the same
images before timing; the variants are timed in alternation (:mod:`benchmarks.alternation`), and ``extra_info`` keeps
each step's wall-clock and process CPU time and the per-round ratios original / spadenorm and original /
spadenorm_map. It also records the bytes autograd saves for backward during the generator step (each storage once,
measured with ``torch.autograd.graph.saved_tensors_hooks``), for the whole step and for the generator's own forward.

Configuration: label_nc 8 (the synthetic scenes), ngf 16, ndf 16, crop 128, batch 2, spectral norm on, the SPADE
norm ``sync_batch`` (the original's ``spectralspadesyncbatch3x3``; one process, so plain batch statistics, which the
original formulation computes with ``BatchNorm2d``) or ``instance``.

Run: ``python -m pytest benchmarks/test_cpu_model_step.py --benchmark-enable
--benchmark-json=benchmarks/results/cpu_model.json`` then ``python benchmarks/report.py``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

import spadenorm
from spadenorm.testing import saved_tensor_bytes

from .alternation import alternate, ratios, to_original_formulation

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
SMOKE_CROP = 64  # with --benchmark-disable (CI's smoke run): one round at this size
BATCH = 2
ROUNDS = 7  # rounds of one step per variant


def build(norm: str, crop: int = CROP) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """spadenorm generator, original-formulation generator (same weights), and one discriminator for each."""
    torch.manual_seed(0)
    generator = SPADEGenerator(LABEL_NC, ngf=NGF, crop_size=crop, norm=norm, spectral=True)
    discriminator = MultiscaleDiscriminator(LABEL_NC + 3, ndf=NDF)
    return generator, to_original_formulation(generator), discriminator, copy.deepcopy(discriminator)


def make_batch(crop: int = CROP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class ids (N, H, W), their one-hot map (N, label_nc, H, W; contiguous, as the data pipeline builds it) and the
    real images."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, LABEL_NC, (BATCH, crop, crop), generator=generator)
    seg = torch.nn.functional.one_hot(labels, LABEL_NC).permute(0, 3, 1, 2).float().contiguous()
    real = torch.rand(BATCH, 3, crop, crop, generator=generator) * 2 - 1
    return labels, seg, real


def discriminate(discriminator, seg, fake, real):
    """D on fake and real in one batch (as the original), split back into the two halves per scale and feature."""
    out = discriminator(torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0))
    fake_pred = [[f[: fake.shape[0]] for f in scale] for scale in out]
    real_pred = [[f[fake.shape[0] :] for f in scale] for scale in out]
    return fake_pred, real_pred


def generator_loss(generator, g_input, discriminator, seg, real):
    fake = generator(g_input)
    fake_pred, real_pred = discriminate(discriminator, seg, fake, real)
    return generator_hinge_loss(fake_pred) + feature_matching_loss(fake_pred, real_pred)


def training_step(generator, g_input, discriminator, seg, real):
    generator.zero_grad(set_to_none=True)
    discriminator.zero_grad(set_to_none=True)
    generator_loss(generator, g_input, discriminator, seg, real).backward()
    discriminator.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake = generator(g_input)
    fake_pred, real_pred = discriminate(discriminator, seg, fake.detach(), real)
    d_loss = discriminator_hinge_loss(fake_pred, real=False) + discriminator_hinge_loss(real_pred, real=True)
    d_loss.backward()


@pytest.mark.parametrize("norm", ["sync_batch", "instance"])
def test_training_step(benchmark, norm):
    """The variants in alternation (A B C, then C B A, ...): drifts in the machine's load hit all alike.

    pytest-benchmark times the rounds; ``extra_info`` holds each variant's own wall-clock and CPU times per round and
    the per-round ratios original / spadenorm (and original / spadenorm_map), from which the page's figures come.
    """
    crop = SMOKE_CROP if benchmark.disabled else CROP
    ours, original, d_ours, d_original = build(norm, crop)
    labels, seg, real = make_batch(crop)
    variants = {  # generator, its input, discriminator
        "original": (original, seg, d_original),
        "spadenorm": (ours, labels, d_ours),
        "spadenorm_map": (copy.deepcopy(ours), seg, copy.deepcopy(d_ours)),
    }
    with spadenorm.use_backend("torch"):
        # Same weights, same batch statistics: the generators must agree before they are timed.
        reference = original(seg)
        for name in ("spadenorm", "spadenorm_map"):
            diff = (variants[name][0](variants[name][1]) - reference).abs().max().item()
            assert diff < 1e-4, f"{name} differs from the original formulation by {diff}"
        saved = {
            name: {
                "step_saved_bytes": saved_tensor_bytes(generator_loss, g, g_in, d, seg, real),
                "generator_saved_bytes": saved_tensor_bytes(g, g_in),
            }
            for name, (g, g_in, d) in variants.items()
        }

    steps = {name: (lambda v=v: training_step(v[0], v[1], v[2], seg, real)) for name, v in variants.items()}
    benchmark.group = f"model step {norm}: G ngf {NGF} + D ndf {NDF}, {LABEL_NC} classes, {crop}x{crop}, batch {BATCH}"
    times = alternate(benchmark, steps, ROUNDS)
    ours_ratios = ratios(times, "original", "spadenorm")
    map_ratios = ratios(times, "original", "spadenorm_map")
    benchmark.extra_info.update(
        benchmark="model_step",
        impl="pair",
        norm=norm,
        label_nc=LABEL_NC,
        ngf=NGF,
        ndf=NDF,
        crop=crop,
        batch=BATCH,
        saved=saved,
        times=times,
        **{f"{kind}_ratios": values for kind, values in ours_ratios.items()},
        **{f"map_{kind}_ratios": values for kind, values in map_ratios.items()},
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        command="python -m pytest " + " ".join(sys.argv[1:]),
    )
