"""``import spadenorm`` works without Triton and never touches CUDA, even when it runs a forward and backward."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_import_without_triton_and_without_touching_cuda():
    script = textwrap.dedent(
        """
        import sys

        sys.modules["triton"] = None  # as if not installed: find_spec gives None, import raises ImportError
        import torch
        torch.cuda._lazy_init = lambda: (_ for _ in ()).throw(AssertionError("CUDA was initialized"))
        import spadenorm
        from spadenorm import SPADE, _backend
        assert not _backend._TRITON_INSTALLED
        x = torch.randn(2, 4, 8, 8, requires_grad=True)
        SPADE(4, 3, norm="batch")(x, torch.randint(0, 3, (2, 8, 8))).sum().backward()
        assert not torch.cuda.is_initialized()
        assert sys.modules["triton"] is None  # nothing imported it
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

    expected = {"NormName", "adain", "class_modulated_norm", "label_conv", "modulated_norm", "resize_labels"}
    assert set(functional.__all__) == expected
