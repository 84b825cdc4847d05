"""Backend selection: set_backend, use_backend, SPADENORM_BACKEND, resolved per call."""

from __future__ import annotations

import threading

import pytest
import torch

import spadenorm
from spadenorm.functional import modulated_norm


def test_default_is_auto_and_auto_runs_torch_on_cpu(monkeypatch):
    from spadenorm import _backend

    monkeypatch.delenv("SPADENORM_BACKEND", raising=False)
    assert spadenorm.get_backend() == "auto"
    x = torch.randn(2, 3, 4, 4)
    assert _backend.resolve_backend(x) == "torch"
    ran = []
    monkeypatch.setattr("spadenorm.backends.torch.modulated_norm", lambda *args: ran.append(args) or args[0])
    modulated_norm(x)
    assert len(ran) == 1


def test_use_backend_is_local_to_the_thread(monkeypatch):
    monkeypatch.delenv("SPADENORM_BACKEND", raising=False)
    seen = []
    with spadenorm.use_backend("torch"):
        thread = threading.Thread(target=lambda: seen.append(spadenorm.get_backend()))
        thread.start()
        thread.join()
        assert spadenorm.get_backend() == "torch"
    assert seen == ["auto"]


def test_precedence_context_over_set_over_environment(monkeypatch):
    monkeypatch.setenv("SPADENORM_BACKEND", "triton")
    assert spadenorm.get_backend() == "triton"  # read per call, not at import
    spadenorm.set_backend("torch")
    assert spadenorm.get_backend() == "torch"
    with spadenorm.use_backend("auto"):
        assert spadenorm.get_backend() == "auto"
        with spadenorm.use_backend("torch"):
            assert spadenorm.get_backend() == "torch"
        assert spadenorm.get_backend() == "auto"
    spadenorm.set_backend(None)
    assert spadenorm.get_backend() == "triton"


def test_triton_refuses_what_it_cannot_run(monkeypatch):
    from spadenorm import _backend

    x = torch.randn(2, 3, 4, 4)
    monkeypatch.setattr(_backend, "_TRITON_INSTALLED", False)
    with spadenorm.use_backend("triton"), pytest.raises(spadenorm.BackendUnavailableError, match="not installed"):
        modulated_norm(x)
    monkeypatch.setattr(_backend, "_TRITON_INSTALLED", True)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("SPADENORM_BACKEND", "TRITON")
    with pytest.raises(spadenorm.BackendUnavailableError, match=r"runs CUDA tensors .* got x on cpu"):
        modulated_norm(x)


def test_auto_uses_torch_for_cpu_tensors_even_under_the_interpreter(monkeypatch):
    from spadenorm import _backend

    monkeypatch.setattr(_backend, "_TRITON_INSTALLED", True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.resolve_backend(torch.randn(2, 3, 4, 4)) == "torch"


def test_invalid_names_are_rejected(monkeypatch):
    with pytest.raises(TypeError, match=r"backend must be a str, one of \('auto', 'torch', 'triton'\), got int"):
        spadenorm.set_backend(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch', 'triton'\), got 'cuda'"):
        spadenorm.set_backend("cuda")
    with pytest.raises(ValueError, match=r"backend must be one of"), spadenorm.use_backend("fast"):
        pass
    monkeypatch.setenv("SPADENORM_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"environment variable SPADENORM_BACKEND must be one of .* got 'cuda'"):
        modulated_norm(torch.randn(2, 3, 4, 4))


def test_class_rows_op_passes_opcheck():
    from spadenorm.backends.class_rows import class_rows, class_rows_backward

    table = torch.randn(5, 3, requires_grad=True)
    labels = torch.randint(0, 5, (2, 4, 4))
    torch.library.opcheck(class_rows, (table, labels))
    torch.library.opcheck(class_rows_backward, (torch.randn(2, 4, 4, 3), labels, 5))
