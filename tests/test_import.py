"""``import spadenorm`` works without Triton and never touches CUDA, even when it runs a forward and backward."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_import_without_triton_and_without_touching_cuda():
    script = textwrap.dedent(
        """
        import sys, importlib.abc

        class BlockTriton(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ImportError("triton is blocked for this test")
                return None

        sys.meta_path.insert(0, BlockTriton())
        import torch
        torch.cuda._lazy_init = lambda: (_ for _ in ()).throw(AssertionError("CUDA was initialized"))
        import spadenorm
        from spadenorm import SPADE
        x = torch.randn(2, 4, 8, 8, requires_grad=True)
        SPADE(4, 3, norm="batch")(x, torch.randint(0, 3, (2, 8, 8))).sum().backward()
        assert not torch.cuda.is_initialized()
        assert "triton" not in sys.modules
        print("ok", spadenorm.__version__)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def test_public_api_is_declared():
    import spadenorm

    for name in spadenorm.__all__:
        assert hasattr(spadenorm, name), name
    assert {"SPADE", "CLADE", "AdaIN", "ConditionalBatchNorm2d", "set_backend", "use_backend"} <= set(spadenorm.__all__)
    from spadenorm import functional

    assert set(functional.__all__) == {"NormName", "adain", "class_modulated_norm", "modulated_norm", "resize_labels"}
