"""sync_batch across 2 processes (gloo) equals one process on the concatenated batch: outputs, gradients, stats;
and its statistics stay on the device (no host read, so no stall per layer and CUDA graphs can capture it)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils._python_dispatch import TorchDispatchMode

import spadenorm
from spadenorm import SPADE
from spadenorm.functional import modulated_norm

WORLD = 2
# Uneven local batches exercise the count-weighted merge.
LOCAL_BATCH = (3, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dtype() -> torch.dtype:
    """float64 for the torch path; the Triton kernels take fp16/bf16/fp32."""
    return torch.float32 if spadenorm.get_backend() == "triton" else torch.float64


def _make_data():
    gen = torch.Generator().manual_seed(0)
    n = sum(LOCAL_BATCH)
    x = torch.randn(n, 6, 5, 7, generator=gen, dtype=torch.float64) * 3 + 2
    gamma = torch.randn(n, 6, 5, 7, generator=gen, dtype=torch.float64)
    beta = torch.randn(n, 6, 5, 7, generator=gen, dtype=torch.float64)
    dy = torch.randn(n, 6, 5, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (n, 10, 14), generator=gen)
    return (*(t.to(_dtype()) for t in (x, gamma, beta, dy)), labels)


def _run_single(backend: str):
    with spadenorm.use_backend(backend):
        return _single_process_results()


def _single_process_results():
    x, gamma, beta, dy, labels = _make_data()
    x, gamma, beta = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    rm, rv = torch.zeros(6, dtype=_dtype()), torch.ones(6, dtype=_dtype())
    y = modulated_norm(x, gamma, beta, norm="sync_batch", running_mean=rm, running_var=rv)
    y.backward(dy)
    torch.manual_seed(1)
    layer = SPADE(6, 4, norm="sync_batch", hidden_channels=8, dtype=_dtype())
    out = layer(x.detach(), labels)
    out.backward(dy)
    grads = {name: p.grad for name, p in layer.named_parameters()}
    return y.detach(), x.grad, gamma.grad, beta.grad, rm, rv, out.detach(), grads, layer.param_free_norm.running_var


def _worker(rank: int, port: int, queue, backend: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    spadenorm.set_backend(backend)
    try:
        x, gamma, beta, dy, labels = _make_data()
        lo = sum(LOCAL_BATCH[:rank])
        part = slice(lo, lo + LOCAL_BATCH[rank])
        x, gamma, beta = (t[part].clone().requires_grad_(True) for t in (x, gamma, beta))
        rm, rv = torch.zeros(6, dtype=_dtype()), torch.ones(6, dtype=_dtype())
        y = modulated_norm(x, gamma, beta, norm="sync_batch", running_mean=rm, running_var=rv)
        y.backward(dy[part])
        torch.manual_seed(1)
        layer = SPADE(6, 4, norm="sync_batch", hidden_channels=8, dtype=_dtype())
        out = layer(x.detach(), labels[part])
        out.backward(dy[part])
        grads = {}
        for name, p in layer.named_parameters():  # parameter gradients are sums over all ranks, as DDP would make
            dist.all_reduce(p.grad)
            grads[name] = p.grad
        result = (rank, y.detach(), x.grad, gamma.grad, beta.grad, rm, rv, out.detach(), grads)
        buffer = io.BytesIO()
        torch.save((*result, layer.param_free_norm.running_var), buffer)
        queue.put(buffer.getvalue())  # bytes: shared-memory tensors would vanish when this process exits
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_sync_batch_two_processes_equals_one_process_on_the_whole_batch(backend):
    if backend == "triton":
        pytest.importorskip("triton")
        if torch.cuda.is_available():
            pytest.skip("the gloo test runs the kernels on CPU tensors through the interpreter")
    expected = _run_single(backend)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(rank, port, queue, backend)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    received = [torch.load(io.BytesIO(queue.get(timeout=120))) for _ in range(WORLD)]
    results = sorted(received, key=lambda r: r[0])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # fp32 (Triton): the two runs sum in different orders.
    tol = {"rtol": 1e-4, "atol": 1e-4} if backend == "triton" else {}
    close = functools.partial(torch.testing.assert_close, **tol)
    y, dx, dgamma, dbeta, rm, rv, out, grads, spade_rv = expected
    close(torch.cat([r[1] for r in results]), y)
    close(torch.cat([r[2] for r in results]), dx)
    close(torch.cat([r[3] for r in results]), dgamma)
    close(torch.cat([r[4] for r in results]), dbeta)
    close(torch.cat([r[7] for r in results]), out)
    for r in results:
        close(r[5], rm)
        close(r[6], rv)
        close(r[9], spade_rv)
        for name, g in grads.items():
            close(r[8][name], g, msg=lambda m, n=name: f"{n}: {m}")


def test_sync_batch_without_process_group_is_batch_norm():
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(modulated_norm(x, norm="sync_batch"), modulated_norm(x, norm="batch"))


class _NoHostReads(TorchDispatchMode):
    """Fails on any read of a tensor's value back to the host (``item``, ``float``, ``int``, ``bool``, ``tolist``):
    every one of them dispatches ``aten._local_scalar_dense``, which on a GPU waits for the device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("a tensor value was read back to the host")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _no_host_reads(device: torch.device):
    """Fail on a host read: CUDA's sync debug mode on a GPU, :class:`_NoHostReads` elsewhere."""
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        with _NoHostReads():
            yield


def test_the_host_read_check_catches_a_host_read():
    with pytest.raises(AssertionError, match="read back to the host"), _NoHostReads():
        float(torch.ones(2).sum())


def _mirrored_world(monkeypatch, world: int = 2) -> None:
    """Make sync-batch see ``world`` identical processes: every rank holds this process's tensors."""

    def all_gather(tensors, tensor, group=None):
        for t in tensors:
            t.copy_(tensor)

    monkeypatch.setattr(spadenorm._distributed, "is_sync_active", lambda group=None: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world)
    monkeypatch.setattr(dist, "all_gather", all_gather)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=None, group=None: tensor.mul_(world))


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize(
    "backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
        not spadenorm._backend._TRITON_INSTALLED, reason="Triton is not installed"))]
)  # fmt: skip
def test_sync_batch_reads_nothing_back_to_the_host(backend, momentum, monkeypatch):
    """Counts and statistics stay on the device, forward and backward; the results are those of the whole batch."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)
    x, gamma, beta, dy = (torch.randn(3, 6, 5, 7, generator=gen).to(device) for _ in range(4))
    x = (x * 3 + 2).requires_grad_(True)
    gamma.requires_grad_(True)
    beta.requires_grad_(True)
    expected_stats = torch.zeros(6, device=device), torch.ones(6, device=device), torch.tensor(0, device=device)
    whole = [t.detach().repeat(2, 1, 1, 1).requires_grad_(True) for t in (x, gamma, beta)]  # the two ranks' data
    y_whole = modulated_norm(*whole, norm="batch", running_mean=expected_stats[0], running_var=expected_stats[1],
                             num_batches_tracked=expected_stats[2], momentum=momentum)  # fmt: skip
    y_whole.backward(dy.repeat(2, 1, 1, 1))

    _mirrored_world(monkeypatch)
    stats = torch.zeros(6, device=device), torch.ones(6, device=device), torch.tensor(0, device=device)
    with spadenorm.use_backend(backend), _no_host_reads(device):
        y = modulated_norm(x, gamma, beta, norm="sync_batch", running_mean=stats[0], running_var=stats[1],
                           num_batches_tracked=stats[2], momentum=momentum)  # fmt: skip
        y.backward(dy)
    torch.testing.assert_close(y, y_whole[:3])
    for got, t in zip((x.grad, gamma.grad, beta.grad), whole, strict=True):
        torch.testing.assert_close(got, t.grad[:3], atol=1e-5, rtol=1e-5)
    for got, want in zip(stats, expected_stats, strict=True):
        torch.testing.assert_close(got, want)
