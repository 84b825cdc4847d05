"""Every tensor argument of every public function and module may be a view: one property-based test.

Hypothesis draws, for each tensor argument independently, how it is laid out in memory: contiguous, channels_last /
channels_last_3d, a transposed copy viewed back, sliced with a step, cut from a wider buffer, or expanded (stride 0)
over its batch or a spatial dimension. The call on those views must give the output, every gradient and the updated
running statistics of the same call on contiguous copies, on both backends (Triton through the interpreter).

The values are drawn once, as contiguous leaves; each view is built from its leaf by differentiable ops, so the
gradients of both calls are taken with respect to the same leaves. The default profile runs a few examples per entry;
the slow tests run many more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spadenorm
from spadenorm import CLADE, SPADE, AdaIN, ConditionalBatchNorm, ConditionalBatchNorm2d, ParamFreeNorm
from spadenorm.functional import adain, class_modulated_norm, label_conv, modulated_norm, resize_labels

LAYOUTS = ("contiguous", "memory_format", "transposed", "stepped", "cut", "expanded")
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not spadenorm._backend._TRITON_INSTALLED, reason="Triton is not installed"))]  # fmt: skip
NUM_CLASSES = 3


@dataclass(frozen=True)
class Layout:
    """How one argument is laid out: ``kind`` (one of :data:`LAYOUTS`) along dimension ``dim`` (and ``other``)."""

    kind: str
    dim: int = 0
    other: int = 0

    def leaf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the values drawn: size 1 along an expanded dimension."""
        if self.kind != "expanded":
            return shape
        return tuple(1 if d == self.dim else s for d, s in enumerate(shape))

    def view(self, leaf: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """``leaf``'s values of ``shape`` in this layout, built by differentiable ops."""
        if self.kind == "expanded":
            return leaf.expand(shape)
        if self.kind == "memory_format":
            fmt = torch.channels_last if leaf.dim() == 4 else torch.channels_last_3d
            return leaf.contiguous(memory_format=fmt)
        if self.kind == "transposed":
            return leaf.transpose(self.dim, self.other).contiguous().transpose(self.dim, self.other)
        if self.kind == "stepped":
            index = [slice(None)] * leaf.dim()
            index[self.dim] = slice(None, None, 2)
            return leaf.repeat_interleave(2, dim=self.dim)[tuple(index)]
        if self.kind == "cut":
            pad = leaf.new_zeros((*leaf.shape[: self.dim], 2, *leaf.shape[self.dim + 1 :]))
            return torch.cat([pad, leaf, pad[(slice(None),) * self.dim + (slice(0, 1),)]], self.dim).narrow(
                self.dim, 2, leaf.shape[self.dim]
            )
        return leaf


@st.composite
def layouts(draw: st.DrawFn, shape: tuple[int, ...], *, expand: bool = True) -> Layout:
    """A layout for a tensor of ``shape`` whose view differs from a contiguous tensor where the shape allows."""
    dims = [d for d, s in enumerate(shape) if s > 1]
    kinds = ["contiguous"]
    if len(shape) in (4, 5) and shape[1] > 1:
        kinds.append("memory_format")
    if dims:
        kinds += ["stepped", "cut"] + (["expanded"] if expand else [])
    if len(dims) >= 2:
        kinds.append("transposed")
    kind = draw(st.sampled_from(kinds))
    if kind in ("contiguous", "memory_format"):
        return Layout(kind)
    if kind == "transposed":
        a, b = draw(st.lists(st.sampled_from(dims), min_size=2, max_size=2, unique=True))
        return Layout(kind, a, b)
    if kind == "expanded":  # over the batch or a spatial dimension (a stride of 0), as broadcast code passes them
        dims = [d for d in dims if d != 1 or len(shape) <= 2] or dims
    return Layout(kind, draw(st.sampled_from(dims)))


class Call:
    """One call of an entry: builds its arguments from leaves (viewed or contiguous) and runs it."""

    def __init__(self, draw: st.DrawFn, dtype: torch.dtype) -> None:
        self.draw, self.dtype = draw, dtype
        self.gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
        self.args: list[tuple[str, torch.Tensor, Layout, tuple[int, ...]]] = []

    def float(
        self, name: str, shape: tuple[int, ...], *, grad: bool = True, expand: bool = True, positive: bool = False
    ) -> None:
        layout = self.draw(layouts(shape, expand=expand), label=name)
        leaf = torch.randn(layout.leaf_shape(shape), generator=self.gen, dtype=torch.float64)
        leaf = (leaf.abs() + 0.5 if positive else leaf).to(self.dtype)
        self.args.append((name, leaf.requires_grad_(grad), layout, shape))

    def ids(self, name: str, shape: tuple[int, ...], high: int = NUM_CLASSES) -> None:
        layout = self.draw(layouts(shape), label=name)
        leaf = torch.randint(0, high, layout.leaf_shape(shape), generator=self.gen, dtype=torch.uint8)
        self.args.append((name, leaf.to(self.draw(st.sampled_from([torch.uint8, torch.int64]))), layout, shape))

    def arguments(self, viewed: bool) -> dict[str, torch.Tensor]:
        """Views in the drawn layouts, or contiguous copies of the same values (fresh copies of running stats)."""
        built = {}
        for name, leaf, layout, shape in self.args:
            source = leaf if leaf.requires_grad or not name.startswith("running") else leaf.clone()
            view = layout.view(source, shape)
            built[name] = view if viewed else view.contiguous()
        return built

    def leaves(self) -> list[torch.Tensor]:
        return [leaf for _, leaf, _, _ in self.args if leaf.requires_grad]


def _spatial(draw: st.DrawFn, rank: int) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.integers(2, 4), min_size=rank, max_size=rank)))


def _norm(draw: st.DrawFn, channels: int) -> tuple[str, int | None]:
    norm = draw(st.sampled_from(["instance", "batch", "group", "layer", "none"]))
    return norm, (2 if channels % 2 == 0 else 1) if norm == "group" else None


def _statistics(call: Call, norm: str, channels: int) -> dict[str, Any]:
    """Running statistics (strided views too) for batch norms, in training or eval mode."""
    if norm != "batch":
        return {}
    call.float("running_mean", (channels,), grad=False, expand=False)
    call.float("running_var", (channels,), grad=False, expand=False, positive=True)
    return {"training": call.draw(st.booleans(), label="training")}


def _second_modulation(call: Call, n: int, c: int) -> None:
    for name in ("scale", "shift"):
        if call.draw(st.booleans(), label=f"has_{name}"):
            call.float(name, call.draw(st.sampled_from([(n, c), (c,)]), label=f"{name}_shape"))


def _modulated_norm(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, spatial = draw(st.integers(1, 3)), draw(st.integers(2, 4)), _spatial(draw, draw(st.integers(1, 3)))
    call.float("x", (n, c, *spatial))
    for name in ("gamma", "beta"):
        call.float(name, draw(st.sampled_from([(n, c, *spatial), (n, c) + (1,) * len(spatial), (c,)]), label=name))
    _second_modulation(call, n, c)
    norm, groups = _norm(draw, c)
    options = _statistics(call, norm, c)
    return lambda a: modulated_norm(**a, norm=norm, num_groups=groups, **options)


def _class_modulated_norm(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    call.float("x", (n, c, *_spatial(draw, rank)))
    call.ids("labels", (n, *_spatial(draw, rank)))
    call.float("gamma_table", (NUM_CLASSES, c))
    call.float("beta_table", (NUM_CLASSES, c))
    _second_modulation(call, n, c)
    norm, groups = _norm(draw, c)
    options = _statistics(call, norm, c)
    return lambda a: class_modulated_norm(**a, norm=norm, num_groups=groups, **options)


def _adain(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    call.float("content", (n, c, *_spatial(draw, rank)))
    call.float("style", (draw(st.sampled_from([1, n])), c, *_spatial(draw, rank)))
    return lambda a: adain(a["content"], a["style"])


def _resize_labels(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    rank = draw(st.integers(1, 3))
    call.ids("labels", (draw(st.integers(1, 3)), *_spatial(draw, rank)), high=200)
    size = _spatial(draw, rank)
    return lambda a: resize_labels(a["labels"], size)


def _spade(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    call.float("x", (n, c, *_spatial(draw, rank)))
    edges = 0
    if draw(st.booleans(), label="integer_segmap"):
        spatial = _spatial(draw, rank)
        call.ids("segmap", (n, *spatial))
        if draw(st.booleans(), label="has_extra"):  # an instance-edge channel after the classes
            edges = 1
            call.float("extra", (n, edges, *spatial))
    else:
        call.float("segmap", (n, NUM_CLASSES, *_spatial(draw, rank)))
    _second_modulation(call, n, c)
    norm, groups = _norm(draw, c)
    lookup = draw(st.sampled_from([None, True, False]), label="label_lookup")
    torch.manual_seed(0)
    layer = SPADE(
        c, NUM_CLASSES + edges, spatial_dims=rank, norm=norm, num_groups=groups, hidden_channels=4, label_lookup=lookup
    )
    return _stateless(layer.to(call.dtype))


def _label_conv(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, rank = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = _spatial(draw, rank)
    call.ids("labels", (n, *spatial))
    edges = draw(st.integers(0, 2), label="extra_channels")
    if edges:
        call.float("extra", (n, edges, *spatial))
    kernel = tuple(draw(st.lists(st.sampled_from([1, 3]), min_size=rank, max_size=rank), label="kernel"))
    call.float("weight", (draw(st.integers(1, 4)), NUM_CLASSES + edges, *kernel))
    if draw(st.booleans(), label="has_bias"):
        call.float("bias", (call.args[-1][3][0],))
    channels_last = draw(st.booleans(), label="channels_last")
    return lambda a: label_conv(**a, channels_last=channels_last)


def _clade(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    call.float("x", (n, c, *_spatial(draw, rank)))
    call.ids("labels", (n, *_spatial(draw, rank)))
    _second_modulation(call, n, c)
    norm, groups = _norm(draw, c)
    layer = CLADE(c, NUM_CLASSES, norm=norm, num_groups=groups).to(call.dtype)
    with torch.no_grad():
        layer.gamma_table.normal_(generator=call.gen)
        layer.beta_table.normal_(generator=call.gen)
    return _stateless(layer)


def _adain_module(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    call.float("x", (n, c, *_spatial(draw, rank)))
    if draw(st.booleans(), label="style_vector"):
        call.float("style", (n, 5))
    else:
        call.float("style", (draw(st.sampled_from([1, n])), c, *_spatial(draw, rank)))
    torch.manual_seed(0)
    return _stateless(AdaIN(c, style_dim=5).to(call.dtype))


def _conditional_batch_norm(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c, rank = draw(st.integers(2, 3)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 3]))
    call.float("x", (n, c, *_spatial(draw, rank)))
    torch.manual_seed(0)
    if draw(st.booleans(), label="class_ids"):
        call.ids("y", (n,))
        layer = (ConditionalBatchNorm2d if rank == 2 else ConditionalBatchNorm)(c, num_classes=NUM_CLASSES)
        with torch.no_grad():
            layer.embedding.weight.normal_(generator=call.gen)
    else:
        call.float("y", (n, 5))
        layer = ConditionalBatchNorm(c, cond_dim=5)
    return _stateless(layer.to(call.dtype))


def _param_free_norm(draw: st.DrawFn, call: Call) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    n, c = draw(st.integers(2, 3)), draw(st.integers(2, 4))
    call.float("x", (n, c, *_spatial(draw, draw(st.integers(1, 3)))))
    norm, groups = _norm(draw, c)
    layer = ParamFreeNorm(c, norm, num_groups=groups, affine=draw(st.booleans(), label="affine")).to(call.dtype)
    return _stateless(layer)


def _stateless(layer: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Run ``layer`` on the arguments from its state at this point (running statistics restored before each run)."""
    state = {name: t.clone() for name, t in layer.state_dict().items()}

    def run(arguments: dict[str, torch.Tensor]) -> torch.Tensor:
        layer.load_state_dict(state)
        out = layer(**arguments)
        run.buffers = {name: b.clone() for name, b in layer.named_buffers()}  # type: ignore[attr-defined]
        run.grads = [p.grad for p in layer.parameters()]  # type: ignore[attr-defined]
        layer.zero_grad(set_to_none=True)
        return out

    run.buffers, run.grads = {}, []  # type: ignore[attr-defined]
    return run


ENTRIES = {
    "modulated_norm": _modulated_norm,
    "class_modulated_norm": _class_modulated_norm,
    "adain": _adain,
    "resize_labels": _resize_labels,
    "label_conv": _label_conv,
    "SPADE": _spade,
    "CLADE": _clade,
    "AdaIN": _adain_module,
    "ConditionalBatchNorm": _conditional_batch_norm,
    "ParamFreeNorm": _param_free_norm,
}


def _results(call: Call, run: Callable[[dict[str, torch.Tensor]], torch.Tensor], dy_layout: Layout | None) -> list:
    """Output, gradients of the leaves, running statistics and the module's parameter gradients and buffers, for
    arguments in their drawn layouts and an incoming gradient in ``dy_layout`` (contiguous copies for ``None``)."""
    arguments = call.arguments(viewed=dy_layout is not None)
    out = run(arguments)
    if not out.is_floating_point():
        return [out]
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out.dtype)
    if dy_layout is not None:
        dy = dy_layout.view(dy, tuple(out.shape))
    grads = torch.autograd.grad(out, call.leaves(), dy, allow_unused=True)
    running = [t for name, t in arguments.items() if name.startswith("running")]
    return [out, *grads, *running, *getattr(run, "grads", []), *getattr(run, "buffers", {}).values()]


def check_layouts(entry: str, backend: str, data: st.DataObject) -> None:
    dtype = torch.float32 if backend == "triton" else torch.float64
    call = Call(data.draw, dtype)
    run = ENTRIES[entry](data.draw, call)
    with spadenorm.use_backend(backend):
        expected = _results(call, run, None)
        got = _results(call, run, data.draw(layouts(tuple(expected[0].shape)), label="dy"))
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a is None or b is None:
            assert a is None, f"result {i} of {entry}: a gradient only with contiguous arguments"
            assert b is None, f"result {i} of {entry}: a gradient only with views"
            continue
        torch.testing.assert_close(a, b, **tol, msg=lambda m, i=i: f"result {i} of {entry}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", list(ENTRIES))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(data=st.data())
def test_every_argument_may_be_a_view(entry, backend, data):
    check_layouts(entry, backend, data)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", list(ENTRIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_argument_may_be_a_view_thorough(entry, backend, data):
    check_layouts(entry, backend, data)
