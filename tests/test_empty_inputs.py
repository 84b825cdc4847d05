"""Zero-sized inputs (an empty last batch of an uneven split, a zero-width crop) give what torch's norms give.

Torch's norms accept a zero-sized batch, channel or spatial dimension in training and eval: the result is empty, the
gradients of weight and bias are zeros, the running estimates stay and ``BatchNorm`` counts the batch. (From torch
2.14, ``F.group_norm`` alone refuses zero channels or positions, while accepting an empty batch.) Every statistics
kind of spadenorm does the same as torch's instance and batch norms, forward and backward, on both backends and
every torch version.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spadenorm
from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm2d
from spadenorm.functional import adain, class_modulated_norm, modulated_norm

BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not spadenorm._backend._TRITON_INSTALLED, reason="Triton is not installed"))]  # fmt: skip
SHAPES = [(0, 4, 5, 6), (2, 4, 0, 6), (2, 4, 0, 0), (2, 0, 5, 6), (0, 4, 3), (0, 4, 2, 3, 4)]
NORMS = {"instance": None, "batch": None, "sync_batch": None, "group": 2, "layer": None, "none": None}


def _torch_norm(x: torch.Tensor, norm: str, running: tuple[torch.Tensor, torch.Tensor] | None, training: bool):
    """What torch's own norm of the kind gives for x."""
    if norm in ("batch", "sync_batch"):
        mean, var = running if running is not None else (None, None)
        return F.batch_norm(x, mean, var, training=training)
    if norm == "instance":
        return F.instance_norm(x)
    if norm == "none":
        return x.clone()
    return F.group_norm(x, NORMS[norm] or 1)


# Eval mode changes only batch norms (running statistics).
MODES = [(norm, True) for norm in NORMS] + [("batch", False), ("sync_batch", False)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("norm", "training"), MODES, ids=[f"{n}-{'train' if t else 'eval'}" for n, t in MODES])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_modulated_norm_of_an_empty_input_is_torch_s(shape, norm, training, backend):
    c = shape[1]
    x = torch.randn(shape, requires_grad=True)
    gamma = torch.randn(c, requires_grad=True)  # per channel, so it has elements to get zero gradients
    beta = torch.randn(shape, requires_grad=True)  # a full map: as empty as x
    scale, shift = torch.randn(1, c, requires_grad=True), torch.randn(shape[0], c, requires_grad=True)
    kwargs: dict = {"norm": norm, "num_groups": NORMS[norm], "training": training}
    running = None
    if norm in ("batch", "sync_batch"):
        running = torch.full((c,), 0.5), torch.full((c,), 2.0)
        counter = torch.tensor(3)
        kwargs.update(running_mean=running[0], running_var=running[1], num_batches_tracked=counter)
    try:
        expected = _torch_norm(x.detach(), norm, None if running is None else (running[0].clone(), running[1].clone()),
                               training)  # fmt: skip
        assert expected.shape == x.shape
        assert expected.dtype == x.dtype
    except RuntimeError:  # torch >= 2.14's group norm refuses zero channels or positions; its other norms take them
        assert norm in ("group", "layer")
        assert 0 not in shape[:1]
    with spadenorm.use_backend(backend):
        y = modulated_norm(x, gamma, beta, scale=scale, shift=shift, **kwargs)
        y.sum().backward()
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert x.grad is not None
    assert x.grad.shape == x.shape
    for t in (gamma, beta, scale, shift):
        assert t.grad is not None
        assert torch.equal(t.grad, torch.zeros_like(t))
    if running is not None:
        assert torch.equal(running[0], torch.full((c,), 0.5))
        assert torch.equal(running[1], torch.full((c,), 2.0))
        assert int(counter) == (4 if training else 3)  # as torch.nn.BatchNorm2d counts an empty batch


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", ["instance", "batch", "sync_batch", "group"])
def test_the_modules_take_an_empty_batch_as_torch_s_norms_do(norm, backend):
    groups = 2 if norm == "group" else None
    x = torch.randn(0, 4, 6, 6, requires_grad=True)
    labels = torch.zeros(0, 12, 12, dtype=torch.uint8)
    spade = SPADE(4, label_nc=3, norm=norm, num_groups=groups, hidden_channels=8)
    clade = CLADE(4, num_classes=3, norm=norm, num_groups=groups)
    reference = torch.nn.BatchNorm2d(4, affine=False)
    with spadenorm.use_backend(backend):
        outputs = [spade(x, labels), clade(x, labels)]
        if norm == "batch":
            outputs.append(ConditionalBatchNorm2d(4, num_classes=3)(x, torch.zeros(0, dtype=torch.long)))
        if norm == "instance":
            outputs += [AdaIN()(x, torch.randn(1, 4, 3, 3)), adain(x, torch.randn(1, 4, 3, 3))]
            outputs.append(class_modulated_norm(x, labels, torch.ones(3, 4), torch.zeros(3, 4)))
        sum(out.sum() for out in outputs).backward()
    reference(x.detach())
    for out in outputs:
        assert out.shape == x.shape
    for layer in (spade, clade):
        for name, p in layer.named_parameters():
            assert p.grad is not None, name
            assert torch.equal(p.grad, torch.zeros_like(p)), name
        if norm in ("batch", "sync_batch"):
            buffers = dict(layer.param_free_norm.named_buffers())
            for name, value in reference.named_buffers():
                assert torch.equal(buffers[name], value), name
