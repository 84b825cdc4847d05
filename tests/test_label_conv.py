"""The convolution of a one-hot label map computed as table lookups, against ``F.conv{1,2,3}d`` of that map.

The reference builds the one-hot map (and concatenates the extra channels) and convolves it with torch's own
convolution in float64; every comparison covers the output and every gradient (weight, bias, the extra channels and,
through SPADE, x and all of the layer's parameters) within the library's float64 bound. Maps: uniformly random ids,
blocks of one id, a single class, and a border ring of its own id (whose rows only padded taps could read wrongly).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import spadenorm
import spadenorm.modules.spade as spade_module
from spadenorm import SPADE
from spadenorm.functional import label_conv
from spadenorm.label_conv import _label_conv, _label_conv_backward
from spadenorm.reference import OriginalSPADE
from spadenorm.testing import assert_within_reference_bound, saved_tensor_bytes

BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not spadenorm._backend._TRITON_INSTALLED, reason="Triton is not installed"))]  # fmt: skip
SPATIAL = {1: (11,), 2: (6, 7), 3: (4, 5, 3)}
MAPS = ("random", "blocky", "single", "border")
CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _label_map(kind: str, n: int, spatial: tuple[int, ...], num_classes: int, seed: int = 0) -> torch.Tensor:
    gen = _generator(seed)
    if kind == "random":
        return torch.randint(0, num_classes, (n, *spatial), generator=gen)
    if kind == "single":
        return torch.full((n, *spatial), num_classes - 1, dtype=torch.long)
    if kind == "blocky":  # blocks of 2 along every dimension, one id per block
        coarse = torch.randint(0, num_classes, (n, *((s + 1) // 2 for s in spatial)), generator=gen)
        for dim in range(1, len(spatial) + 1):
            coarse = coarse.repeat_interleave(2, dim)
        return coarse[(slice(None), *(slice(0, s) for s in spatial))].contiguous()
    # border: the outermost ring holds the last id, which no inner pixel has
    labels = torch.randint(0, num_classes - 1, (n, *spatial), generator=gen)
    inner = tuple(slice(1, s - 1) for s in spatial)
    ring = torch.ones(spatial, dtype=torch.bool)
    ring[inner] = False
    labels[:, ring] = num_classes - 1
    return labels


def _one_hot_conv(labels, weight, bias, extra, padding_mode="zeros"):
    """The convolution the lookup replaces: F.conv of cat([one_hot(labels), extra]) as ``nn.Conv*d`` runs it."""
    num_classes = weight.shape[1] - (0 if extra is None else extra.shape[1])
    inputs = F.one_hot(labels.long(), num_classes).movedim(-1, 1).to(weight.dtype)
    if extra is not None:
        inputs = torch.cat([inputs, extra], 1)
    pads = [k // 2 for k in weight.shape[2:]]
    conv = CONVS[len(pads)]
    if padding_mode == "zeros":
        return conv(inputs, weight, bias, padding=pads)
    return conv(F.pad(inputs, [p for pad in reversed(pads) for p in (pad, pad)], mode=padding_mode), weight, bias)


def _check_identity(labels, weight, bias, extra, padding_mode="zeros", channels_last=False):
    """Output and gradients of weight, bias and extra: lookup against the convolution of the one-hot map."""
    leaves = [t for t in (weight, bias, extra) if t is not None]
    expected = _one_hot_conv(labels, weight, bias, extra, padding_mode)
    got = label_conv(labels, weight, bias, extra=extra, padding_mode=padding_mode, channels_last=channels_last)
    assert (got.movedim(1, -1) if channels_last else got).is_contiguous()
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    dy = torch.randn(expected.shape, dtype=expected.dtype, generator=_generator(7))
    want_grads = torch.autograd.grad(expected, leaves, dy)
    got_grads = torch.autograd.grad(got, leaves, dy)
    assert_within_reference_bound(got, expected, expected, "output")
    for name, g, w in zip(("weight", "bias", "extra"), got_grads, want_grads, strict=False):
        assert_within_reference_bound(g, w, w, f"d{name}")


def _parameters(rank: int, k: int, in_channels: int, out_channels: int = 5, seed: int = 1):
    gen = _generator(seed)
    weight = torch.randn(out_channels, in_channels, *([k] * rank), dtype=torch.float64, generator=gen)
    bias = torch.randn(out_channels, dtype=torch.float64, generator=gen)
    return weight.requires_grad_(), bias.requires_grad_()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64], ids=str)
@pytest.mark.parametrize("kind", MAPS)
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_lookup_equals_the_convolution_of_the_one_hot_map(rank, k, kind, dtype):
    labels = _label_map(kind, 2, SPATIAL[rank], 6).to(dtype)
    weight, bias = _parameters(rank, k, 6)
    _check_identity(labels, weight, bias, None, channels_last=dtype == torch.uint8)


@pytest.mark.parametrize("kind", MAPS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_extra_channels_after_the_classes(rank, kind):
    """An instance-edge channel (0/1) and a second real-valued channel: the weight's last two input channels."""
    labels = _label_map(kind, 2, SPATIAL[rank], 4)
    edges = (torch.rand(2, 1, *SPATIAL[rank], generator=_generator(3)) > 0.5).double()
    extra = torch.cat([edges, torch.randn(2, 1, *SPATIAL[rank], dtype=torch.float64)], 1).requires_grad_()
    weight, bias = _parameters(rank, 3, 6)
    _check_identity(labels, weight, bias, extra)
    _check_identity(labels, weight, bias, extra, channels_last=True)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_padding_modes_pad_the_ids_as_the_convolution_pads_the_map(rank, padding_mode):
    labels = _label_map("random", 2, SPATIAL[rank], 5)
    weight, bias = _parameters(rank, 3, 6)
    extra = torch.randn(2, 1, *SPATIAL[rank], dtype=torch.float64, requires_grad=True)
    _check_identity(labels, weight, bias, extra, padding_mode)
    if padding_mode != "reflect":  # reflect needs padding < size; the 3-D map has a side of 3
        _check_identity(labels, *_parameters(rank, 5, 5), None, padding_mode)


def test_without_bias_and_with_non_square_kernels():
    labels = _label_map("random", 3, (7, 6), 4)
    weight = torch.randn(3, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    _check_identity(labels, weight, None, None)


def test_strided_label_views_are_read_through_their_strides():
    labels = _label_map("random", 2, (9, 8), 5)
    weight, bias = _parameters(2, 3, 5)
    for view in (labels.transpose(1, 2), labels[:, ::2, 1:], labels[:, None].expand(2, 1, 9, 8)):
        _check_identity(view.squeeze(1) if view.dim() == 4 else view, weight, bias, None)


def test_empty_maps_give_empty_outputs_and_zero_gradients():
    weight, bias = _parameters(2, 3, 4)
    out = label_conv(torch.zeros(0, 5, 5, dtype=torch.long), weight, bias)
    assert out.shape == (0, 5, 5, 5)
    out.sum().backward()
    assert torch.equal(weight.grad, torch.zeros_like(weight))
    assert torch.equal(bias.grad, torch.zeros_like(bias))


def test_the_registered_ops_pass_opcheck():
    gen = _generator(0)
    labels = torch.randint(0, 4, (2, 5, 6), generator=gen)
    weight = torch.randn(3, 4, 3, 3, generator=gen, requires_grad=True)
    bias = torch.randn(3, generator=gen, requires_grad=True)
    torch.library.opcheck(_label_conv, (labels, weight, bias, "zeros", False))
    torch.library.opcheck(_label_conv, (labels.to(torch.uint8), weight, None, "reflect", True))
    volume = torch.randn(3, 4, 3, 3, 3, generator=gen, requires_grad=True)
    volume_ids = torch.randint(0, 4, (2, 3, 4, 5), generator=gen)
    torch.library.opcheck(_label_conv, (volume_ids, volume, bias, "circular", False))
    grad = torch.randn(2, 3, 5, 6, generator=gen, requires_grad=True)
    torch.library.opcheck(_label_conv_backward, (grad, labels, 4, [3, 3], "zeros"))
    channels_last = grad.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(_label_conv_backward, (channels_last, labels, 4, [3, 3], "zeros"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck_and_double_backward(channels_last):
    """The backward is linear in the output gradient; its own backward (the forward's gather) is checked numerically."""
    labels = _label_map("random", 2, (4, 5), 4)
    weight, bias = _parameters(2, 3, 4, out_channels=3)

    def fn(w, b):
        return label_conv(labels, w, b, channels_last=channels_last, padding_mode="replicate")

    assert torch.autograd.gradcheck(fn, (weight, bias))
    assert torch.autograd.gradgradcheck(fn, (weight, bias))


@pytest.mark.parametrize("channels_last", [False, True])
def test_chunked_gather_with_a_remainder_equals_the_convolution(monkeypatch, channels_last):
    """On CPU the forward gathers a chunk of positions at a time: chunks of 3 positions over rows of 7 x 5 = 35
    (eleven full chunks and a remainder of two), per sample, in both layouts; elsewhere all positions at once. The
    result is its own tensor, not a view."""
    weight, bias = _parameters(2, 3, 6, out_channels=4)
    monkeypatch.setattr("spadenorm.label_conv._CHUNK_ELEMENTS", 3 * weight.shape[0])
    labels = _label_map("random", 2, (7, 5), 6)
    for chunked_devices in (("cpu",), ()):  # in chunks (CPU), and in one gather (accelerators)
        monkeypatch.setattr("spadenorm.label_conv._CHUNKED_DEVICES", chunked_devices)
        _check_identity(labels, weight, bias, None, channels_last=channels_last)
        out = _label_conv(labels, weight.detach(), bias.detach(), "zeros", channels_last)
        assert out._base is None


def test_autocast_casts_the_weight_as_the_convolution_does():
    labels = _label_map("random", 2, (8, 8), 5)
    weight, bias = (t.detach().float().requires_grad_() for t in _parameters(2, 3, 6))
    extra = torch.rand(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = label_conv(labels, weight, bias, extra=extra)
        lowp = _one_hot_conv(labels, weight, bias, extra)
    assert got.dtype == lowp.dtype == torch.bfloat16
    got.float().sum().backward()
    exact = _one_hot_conv(labels, weight.detach().double(), bias.detach().double(), extra.double())
    assert_within_reference_bound(got, exact, lowp.detach(), "bf16 output")
    assert weight.grad is not None
    assert weight.grad.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_weights_within_the_reference_bound(dtype):
    labels = _label_map("blocky", 2, (8, 9), 7)
    weight64, bias64 = _parameters(2, 3, 7)
    weight, bias = (t.detach().to(dtype).requires_grad_() for t in (weight64, bias64))
    exact = [t.detach().double().requires_grad_() for t in (weight, bias)]
    lowp = [t.detach().clone().requires_grad_() for t in (weight, bias)]
    dy = torch.randn(2, 5, 8, 9, generator=_generator(2))
    got = label_conv(labels, weight, bias)
    want = _one_hot_conv(labels, *exact, None)
    ref_lowp = _one_hot_conv(labels, *lowp, None)
    assert_within_reference_bound(got, want, ref_lowp, "output")
    grads = torch.autograd.grad(got, (weight, bias), dy.to(dtype))
    wants = torch.autograd.grad(want, exact, dy.double())
    lowps = torch.autograd.grad(ref_lowp, lowp, dy.to(dtype))
    for name, g, w, lo in zip(("dweight", "dbias"), grads, wants, lowps, strict=True):
        assert_within_reference_bound(g, w, lo, name)


def test_arguments_are_checked():
    weight, bias = _parameters(2, 3, 4)
    labels = torch.zeros(1, 5, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="integer class ids"):
        label_conv(labels.float(), weight, bias)
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\), got id 4"):
        label_conv(labels + 4, weight, bias)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):  # one extra channel leaves 3 classes
        label_conv(labels + 3, weight, bias, extra=torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="odd"):
        label_conv(labels, torch.zeros(3, 4, 2, 2))
    with pytest.raises(ValueError, match=r"weight's 2 spatial dimension"):
        label_conv(torch.zeros(1, 5, dtype=torch.long), weight, bias)
    with pytest.raises(ValueError, match=r"extra must have shape \(1, E, 5, 5\)"):
        label_conv(labels, weight, bias, extra=torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="between 1 and label_nc - 1 = 3 channels"):
        label_conv(labels, weight, bias, extra=torch.zeros(1, 4, 5, 5))
    with pytest.raises(TypeError, match="extra must be a floating-point tensor"):
        label_conv(labels, weight, bias, extra=torch.zeros(1, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        label_conv(labels, weight, bias, padding_mode="same")


# SPADE: the lookup inside the layer, against the same layer fed the float one-hot map (its convolution path).


def _spade_grads(layer, x, segmap, extra=None):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    y = layer(x, segmap) if extra is None else layer(x, segmap, extra=extra)
    y.backward(torch.randn(y.shape, dtype=y.dtype, generator=_generator(5)))
    return y, {"x": x.grad, **{name: p.grad for name, p in layer.named_parameters()}}


def _assert_same_results(got, want, lowp=None):
    """Output and every gradient of ``got`` within the bound around the float64 ``want`` (``lowp``: the convolution
    path in ``got``'s dtype, where that is not float64)."""
    lowp = want if lowp is None else lowp
    assert_within_reference_bound(got[0], want[0], lowp[0], "output")
    for name, value in want[1].items():
        assert_within_reference_bound(got[1][name], value, lowp[1][name], f"d {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_spade_with_ids_and_edges_equals_spade_with_the_one_hot_map(rank, backend):
    """label_nc = 4 classes + a dontcare id (its own channel) + an instance-edge channel, as the reference GAN's
    Cityscapes/COCO-style maps; ids given at twice x's size (resized inside), dontcare in a corner block. The Triton
    backend runs float32 (its kernels' dtypes), compared within the bound of its own convolution path."""
    spatial = SPATIAL[rank]
    layer = SPADE(3, 6, spatial_dims=rank, norm="batch", hidden_channels=8, label_lookup=True).double()
    big = tuple(2 * s for s in spatial)
    ids = _label_map("blocky", 2, big, 4, seed=3)
    ids[(slice(None), *(slice(0, 2) for _ in big))] = 4  # the dontcare id, mapped to the channel after the classes
    edges = (torch.rand(2, 1, *big, generator=_generator(4)) > 0.7).double()
    x = torch.randn(2, 3, *spatial, dtype=torch.float64, generator=_generator(6))
    one_hot = torch.cat([F.one_hot(ids, 5).movedim(-1, 1).double(), edges], 1)
    want = _spade_grads(layer, x, one_hot)
    dtype = torch.float64 if backend == "torch" else torch.float32
    layer, x, one_hot, edges = layer.to(dtype), x.to(dtype), one_hot.to(dtype), edges.to(dtype)
    with spadenorm.use_backend(backend):
        lowp = _spade_grads(layer, x, one_hot)
        for label_dtype in (torch.uint8, torch.int64):
            _assert_same_results(_spade_grads(layer, x, ids.to(label_dtype), edges), want, lowp)


@pytest.mark.parametrize("kind", MAPS)
def test_spade_lookup_at_x_size_for_every_map_kind_and_kernel(kind):
    for k in (1, 5):
        layer = SPADE(4, label_nc=5, hidden_channels=6, kernel_size=k, label_lookup=True).double()
        ids = _label_map(kind, 2, (6, 7), 5)
        x = torch.randn(2, 4, 6, 7, dtype=torch.float64, generator=_generator(1))
        want = _spade_grads(layer, x, F.one_hot(ids, 5).movedim(-1, 1).double())
        _assert_same_results(_spade_grads(layer, x, ids[:, None]), want)  # (N, 1, H, W) ids too


def test_spade_state_dicts_are_the_original_layers():
    """The lookup reads mlp_shared.0's weight as it is: an original layer's state dict loads strictly and gives its
    results for the same ids, and the state dict goes back unchanged."""
    original = OriginalSPADE("instance", 3, 8, 7).double()
    layer = SPADE(8, label_nc=7, label_lookup=True).double()
    layer.load_state_dict(original.state_dict(), strict=True)
    assert layer.state_dict().keys() == original.state_dict().keys()
    ids = _label_map("random", 2, (12, 12), 7)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, generator=_generator(2))
    want = _spade_grads(original, x, F.one_hot(ids, 7).movedim(-1, 1).double())
    _assert_same_results(_spade_grads(layer, x, ids), want)


def test_spade_runs_the_lookup_for_ids_only(monkeypatch):
    calls = []
    real = spade_module.label_conv
    monkeypatch.setattr(spade_module, "label_conv", lambda *args: calls.append(1) or real(*args))
    x = torch.randn(2, 4, 6, 6)
    ids = torch.randint(0, 5, (2, 12, 12))
    SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True)(x, ids)
    assert calls == [1]
    SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True)(x, torch.rand(2, 5, 12, 12))  # soft: convolution
    SPADE(4, label_nc=5, hidden_channels=0, label_lookup=True)(x, ids)  # no shared layer: gamma, beta read the map
    SPADE(4, 5, hidden_channels=8, interpolation="bilinear", label_lookup=True)(x, ids)  # resized as a soft map
    SPADE(4, label_nc=5, hidden_channels=8, label_lookup=False)(x, ids)
    assert calls == [1]
    SPADE(4, 5, hidden_channels=8, interpolation="bilinear", label_lookup=True)(x, ids[:, ::2, ::2])  # at x's size
    assert calls == [1, 1]


def test_spade_looks_up_by_default_from_the_measured_number_of_classes(monkeypatch):
    """label_lookup=None: the lookup from LOOKUP_MIN_CLASSES looked-up classes on (extra channels not counted)."""
    calls = []
    real = spade_module.label_conv
    monkeypatch.setattr(spade_module, "label_conv", lambda *args: calls.append(args[1].shape[1]) or real(*args))
    few, many = spade_module.LOOKUP_MIN_CLASSES - 1, spade_module.LOOKUP_MIN_CLASSES
    x = torch.randn(1, 4, 6, 6)
    SPADE(4, few, hidden_channels=8)(x, torch.randint(0, few, (1, 6, 6)))
    assert calls == []
    SPADE(4, many, hidden_channels=8)(x, torch.randint(0, many, (1, 6, 6)))
    assert calls == [many]
    edges = torch.rand(1, 1, 6, 6)
    SPADE(4, many, hidden_channels=8)(x, torch.randint(0, few, (1, 6, 6)), extra=edges)  # few classes, one edge
    SPADE(4, many + 1, hidden_channels=8)(x, torch.randint(0, many, (1, 6, 6)), extra=edges)
    assert calls == [many, many + 1]  # the weight's input channels, the edge channel's among them
    assert "label_lookup=False" in repr(SPADE(4, many, label_lookup=False))
    with pytest.raises(TypeError, match="label_lookup must be a bool"):
        SPADE(4, many, label_lookup=1)


def test_spade_keeps_the_convolution_where_the_map_is_not_looked_up():
    """hidden_channels=0 and a non-nearest interpolation build the float map from ids and extra channels."""
    ids = _label_map("random", 2, (10, 10), 4)
    edges = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    one_hot = torch.cat([F.one_hot(ids, 4).movedim(-1, 1).double(), edges], 1)
    for layer in (SPADE(3, 5, hidden_channels=0), SPADE(3, 5, hidden_channels=4, interpolation="area")):
        layer = layer.double()
        _assert_same_results(_spade_grads(layer, x, ids, edges), _spade_grads(layer, x, one_hot))


def test_spade_without_the_one_hot_map_saves_less_for_backward():
    """The lookup keeps the ids for backward, not a (N, label_nc, H, W) map."""
    layer = SPADE(4, label_nc=20, hidden_channels=8, label_lookup=True)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    ids = torch.randint(0, 20, (2, 16, 16))
    one_hot_bytes = 2 * 20 * 16 * 16 * 4
    with_map = saved_tensor_bytes(layer, x, F.one_hot(ids, 20).movedim(-1, 1).float())
    assert saved_tensor_bytes(layer, x, ids) <= with_map - one_hot_bytes + ids.numel() * ids.element_size()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_spade_activates_the_lookup_in_place_with_the_convolution_results(activation):
    """mlp_shared's activation runs in place on the lookup's fresh result; output and gradients stay the
    convolution's, and an activation module that is not torch's own is called as it is."""
    layer = SPADE(4, label_nc=5, hidden_channels=6, activation=activation, label_lookup=True).double()
    ids = _label_map("random", 2, (6, 7), 5)
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64, generator=_generator(1))
    want = _spade_grads(layer, x, F.one_hot(ids, 5).movedim(-1, 1).double())
    _assert_same_results(_spade_grads(layer, x, ids), want)

    class Swish(torch.nn.Module):
        def forward(self, t):
            return t * torch.sigmoid(t)

    layer.mlp_shared[1] = Swish()
    want = _spade_grads(layer, x, F.one_hot(ids, 5).movedim(-1, 1).double())
    _assert_same_results(_spade_grads(layer, x, ids), want)


def test_spade_keeps_channels_last_and_contiguous_layouts():
    layer = SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True)
    ids = torch.randint(0, 5, (2, 6, 6))
    x = torch.randn(2, 4, 6, 6)
    for x_in in (x, x.contiguous(memory_format=torch.channels_last)):
        y = layer(x_in, ids)
        assert y.stride() == x_in.stride()
        torch.testing.assert_close(y, layer(x, F.one_hot(ids, 5).movedim(-1, 1).float()))


@pytest.mark.parametrize("height", [255, 256])
def test_spade_hidden_map_is_channels_last_from_the_threshold_on_cpu(height):
    """From HIDDEN_CHANNELS_LAST_MIN_POSITIONS label positions on, a CPU lookup's hidden map is channels last for a
    contiguous x (below it, x's layout); y, dx and every weight gradient stay those of the one-hot map's convolution,
    and y keeps x's layout."""
    assert spade_module.HIDDEN_CHANNELS_LAST_MIN_POSITIONS == 256 * 256
    layer = SPADE(3, label_nc=6, hidden_channels=4, label_lookup=True).double()
    hidden = []
    layer.mlp_gamma.register_forward_pre_hook(lambda module, args: hidden.append(args[0]))
    ids = torch.randint(0, 6, (1, height, 256), dtype=torch.uint8)  # as a PNG label map loads
    x = torch.randn(1, 3, height, 256, dtype=torch.float64)
    got = _spade_grads(layer, x, ids)
    wanted_channels_last = height * 256 >= spade_module.HIDDEN_CHANNELS_LAST_MIN_POSITIONS
    assert hidden[0].is_contiguous(memory_format=torch.channels_last) == wanted_channels_last
    assert hidden[0].is_contiguous() != wanted_channels_last
    assert layer(x, ids).is_contiguous()
    _assert_same_results(got, _spade_grads(layer, x, F.one_hot(ids.long(), 6).movedim(-1, 1).double()))


@pytest.mark.parametrize("size", [(65536,), (8, 64, 128)], ids=["1d", "3d"])
def test_spade_hidden_map_of_1d_and_3d_maps_follows_x_past_the_threshold(size):
    """1-D and 3-D maps (not measured channels last) keep x's layout past HIDDEN_CHANNELS_LAST_MIN_POSITIONS."""
    layer = SPADE(2, label_nc=3, hidden_channels=2, spatial_dims=len(size), label_lookup=True)
    hidden = []
    layer.mlp_gamma.register_forward_pre_hook(lambda module, args: hidden.append(args[0]))
    ids = torch.randint(0, 3, (1, *size))
    assert ids.numel() >= spade_module.HIDDEN_CHANNELS_LAST_MIN_POSITIONS
    layer(torch.randn(1, 2, *size), ids)
    assert hidden[0].is_contiguous()


def test_spade_fused_gamma_beta_convolution_equals_two():
    layer = SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True).double()
    fused = SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True, fuse_gamma_beta=True).double()
    fused.load_state_dict(layer.state_dict())
    assert fused.state_dict().keys() == layer.state_dict().keys()
    ids = _label_map("random", 2, (6, 6), 5)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    _assert_same_results(_spade_grads(fused, x, ids), _spade_grads(layer, x, ids))
    # gamma is kept in a storage of its own: fusing saves no more than two convolutions do (their weights aside)
    x.requires_grad_()
    weights = 2 * layer.mlp_gamma.weight.numel() * 8 + 2 * layer.mlp_gamma.bias.numel() * 8
    assert saved_tensor_bytes(fused, x, ids) <= saved_tensor_bytes(layer, x, ids) + weights


def test_spade_extra_channels_are_checked():
    layer = SPADE(4, label_nc=6, hidden_channels=8)
    x = torch.randn(2, 4, 5, 5)
    ids = torch.randint(0, 5, (2, 5, 5))
    with pytest.raises(ValueError, match="extra goes with integer class ids"):
        layer(x, torch.rand(2, 6, 5, 5), extra=torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"class ids in \[0, 5\), got id 5"):
        layer(x, ids + 1, extra=torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"extra must have shape \(2, E, 5, 5\)"):
        layer(x, ids, extra=torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"class ids in \[0, 6\), got id 6"):
        layer(x, ids + 2)


def test_spade_with_hooked_convolution_calls_it():
    """A forward pre-hook on mlp_shared.0 (as the hook-based spectral norm uses) must run: the convolution is called."""
    layer = SPADE(4, label_nc=5, hidden_channels=8, label_lookup=True)
    seen = []
    layer.mlp_shared[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    layer(torch.randn(2, 4, 6, 6), torch.randint(0, 5, (2, 6, 6)))
    assert seen == [(2, 5, 6, 6)]


def test_large_maps_use_64_bit_indices_where_needed():
    from spadenorm.label_conv import _index_dtype

    assert _index_dtype(9 * 152, 65536) == torch.int32
    assert _index_dtype(2**31) == torch.int64
    assert math.prod((2, 2**15, 2**15)) > 2**31 - 1  # such a map's positions need int64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_lookup_on_cuda_equals_the_convolution():
    labels = _label_map("blocky", 2, (32, 40), 151).cuda()
    weight, bias = (t.detach().cuda().requires_grad_() for t in _parameters(2, 3, 151, out_channels=16))
    _check_identity(labels, weight, bias, None)
