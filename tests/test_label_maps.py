"""Label maps as real code passes them: every integer dtype (uint8 as PNGs load), every spatial rank, strided views.

Each entry that takes class ids gives bit-identical outputs and gradients for every integer dtype on both backends
(the Triton kernels through the interpreter on CPU), and the library's ``TypeError`` for bool and float maps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spadenorm
from spadenorm import CLADE, SPADE, ConditionalBatchNorm, ConditionalBatchNorm2d
from spadenorm.functional import class_modulated_norm, resize_labels

INTEGER_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16]
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not spadenorm._backend._TRITON_INSTALLED, reason="Triton is not installed"))]  # fmt: skip
SPATIAL = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}


def _grads(out: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return list(torch.autograd.grad(out, tensors, dy))


def _spade_results(rank: int, labels: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(0)
    layer = SPADE(4, label_nc=5, spatial_dims=rank, hidden_channels=8)
    x = torch.randn(2, 4, *SPATIAL[rank], generator=torch.Generator().manual_seed(2), requires_grad=True)
    y = layer(x, labels)
    return [y, *_grads(y, x, *layer.parameters())]


def _clade_results(rank: int, labels: torch.Tensor) -> list[torch.Tensor]:
    layer = CLADE(4, num_classes=5)
    with torch.no_grad():
        layer.gamma_table.normal_(generator=torch.Generator().manual_seed(3))
        layer.beta_table.normal_(generator=torch.Generator().manual_seed(4))
    x = torch.randn(2, 4, *SPATIAL[rank], generator=torch.Generator().manual_seed(2), requires_grad=True)
    y = layer(x, labels)
    return [y, *_grads(y, x, layer.gamma_table, layer.beta_table)]


def _functional_results(rank: int, labels: torch.Tensor) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, *SPATIAL[rank], generator=gen, requires_grad=True)
    gamma, beta = (torch.randn(5, 4, generator=gen, requires_grad=True) for _ in range(2))
    y = class_modulated_norm(x, labels, gamma, beta, norm="batch")
    return [y, *_grads(y, x, gamma, beta)]


ENTRIES = {"SPADE": _spade_results, "CLADE": _clade_results, "class_modulated_norm": _functional_results}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_integer_dtype_gives_the_int64_results(entry, rank, backend):
    # A map at another size than x's (resized inside) with every class present.
    size = tuple(2 * s - 1 for s in SPATIAL[rank])
    ids = torch.randint(0, 5, (2, *size), generator=torch.Generator().manual_seed(6))
    with spadenorm.use_backend(backend):
        expected = ENTRIES[entry](rank, ids)
        for dtype in INTEGER_DTYPES:
            for got, want in zip(ENTRIES[entry](rank, ids.to(dtype)), expected, strict=True):
                assert torch.equal(got, want), f"{entry} with {dtype} labels differs from int64"


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=str)
def test_conditional_batch_norm_takes_class_ids_of_every_integer_dtype(dtype):
    torch.manual_seed(0)
    layer = ConditionalBatchNorm2d(3, num_classes=4)
    with torch.no_grad():
        layer.embedding.weight.normal_()
    x = torch.randn(4, 3, 5, 5)
    ids = torch.tensor([0, 3, 1, 3])
    torch.testing.assert_close(layer(x, ids.to(dtype)), layer(x, ids), rtol=0, atol=0)
    volume = ConditionalBatchNorm(3, num_classes=4)
    assert volume(torch.randn(4, 3, 2, 3, 4), ids.to(dtype)).shape == (4, 3, 2, 3, 4)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=str)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_resize_labels_reads_what_torch_nearest_reads_and_keeps_the_dtype(rank, dtype):
    gen = torch.Generator().manual_seed(rank)
    labels = torch.randint(0, 100, (2, *SPATIAL[rank]), generator=gen)
    for size in [tuple(2 * s for s in SPATIAL[rank]), tuple(s + 3 for s in SPATIAL[rank]), (1,) * rank]:
        resized = resize_labels(labels.to(dtype), size)
        expected = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        assert resized.dtype == (torch.int64 if dtype == torch.uint16 else dtype)
        assert torch.equal(resized.long(), expected)


def test_resize_labels_keeps_ids_a_float_conversion_would_round():
    ids = torch.tensor([[2**24 + 1, 2**40 + 3]])
    assert torch.equal(resize_labels(ids, (4,)), torch.tensor([[2**24 + 1, 2**24 + 1, 2**40 + 3, 2**40 + 3]]))


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.float16, torch.complex64], ids=str)
def test_bool_and_float_label_maps_are_refused_naming_the_argument(dtype):
    x = torch.randn(2, 4, 5, 6)
    labels = torch.zeros(2, 5, 6, dtype=dtype)
    tables = torch.ones(3, 4), torch.zeros(3, 4)
    with pytest.raises(TypeError, match=rf"labels must hold integer class ids .* got {dtype}"):
        CLADE(4, 3)(x, labels)
    with pytest.raises(TypeError, match=rf"labels must hold integer class ids .* got {dtype}"):
        class_modulated_norm(x, labels, *tables)
    with pytest.raises(TypeError, match=rf"labels must hold integer class ids .* got {dtype}"):
        resize_labels(labels, (3, 3))
    with pytest.raises(TypeError, match=rf"y must hold integer class ids .* got {dtype}"):
        ConditionalBatchNorm2d(4, num_classes=3)(x, torch.zeros(2, dtype=dtype))
    if dtype in (torch.bool, torch.complex64):  # a float (N, *spatial) map is a one-channel soft segmap for SPADE
        with pytest.raises(TypeError, match=rf"segmap must hold integer class ids .* got {dtype}"):
            SPADE(4, 3)(x, labels)


def _strided_maps(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of a (N, H, W) map whose spatial dimensions do not merge into one stride."""
    n, h, w = ids.shape
    wide = torch.zeros(n, h, w + 5, dtype=ids.dtype)
    wide[..., 2 : w + 2] = ids
    tall = torch.zeros(n, 2 * h, w, dtype=ids.dtype)
    tall[:, ::2] = ids
    return {
        "transposed": ids.transpose(1, 2).contiguous().transpose(1, 2),
        "step": tall[:, ::2],
        "cut_from_wider": wide[..., 2 : w + 2],
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "step", "cut_from_wider"])
def test_strided_label_maps_give_the_contiguous_results(layout, backend):
    """A map whose height and width share no stride was read with a copy's strides by the Triton launchers."""
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 5, (2, 4, 6), generator=gen)
    view = _strided_maps(ids)[layout]
    assert not view.is_contiguous()
    assert torch.equal(view, ids)
    x = torch.randn(2, 3, 4, 6, generator=gen, requires_grad=True)
    gamma, beta = (torch.randn(5, 3, generator=gen, requires_grad=True) for _ in range(2))
    with spadenorm.use_backend(backend):
        results = []
        for labels in (ids, view):
            y = class_modulated_norm(x, labels, gamma, beta)
            results.append([y, *_grads(y, x, gamma, beta)])
    for got, want in zip(*results[::-1], strict=True):
        assert torch.equal(got, want)
