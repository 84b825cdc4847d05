"""Stand-in Triton drivers for a machine without a GPU: Triton compiles for a CUDA GPU of a given compute capability
(its own ``ptxas``, no device needed), and nothing reaches a device.

* :class:`CompileOnlyDriver` reports the GPU; with ``kernel.run(..., warmup=True)`` a variant is specialized and
  compiled exactly as a launch on that GPU would, and nothing runs (``benchmarks/compile_check.py``).
* :class:`HostOnlyDriver` also lets a launch go through the whole of Triton's Python launch path (binding,
  specialization, cache lookup, loading the compiled kernel, the launcher call) and stubs only the device work: the
  CUDA module load and the launcher, Triton's ``CudaLauncher`` (scratch allocation and ``cuLaunchKernelEx``), whose
  compiled C code needs a CUDA driver (``benchmarks/host_overhead.py``).

Activate one with ``triton.runtime.driver.set_active(...)`` before the first launch, with ``TRITON_INTERPRET`` unset
before spadenorm's kernels are imported.
"""

from __future__ import annotations

from typing import Any

import torch
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase


class CompileOnlyDriver(DriverBase):
    """A driver that reports a CUDA GPU of the given compute capability and launches nothing."""

    def __init__(self, capability: int) -> None:
        super().__init__()
        self.capability = capability

    @classmethod
    def is_active(cls) -> bool:
        return True

    def map_python_to_cpp_type(self, ty: str) -> str:
        return ty

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", self.capability, 32)

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def get_benchmarker(self) -> Any:
        raise NotImplementedError("nothing runs under the compile-only driver")

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_device_capability(self, device: int | None = None) -> tuple[int, int]:
        return divmod(self.capability, 10)


class NoLaunch:
    """Stands in for Triton's ``CudaLauncher``: takes every launch, counts it, runs nothing."""

    launches = 0

    def __init__(self, src: Any, metadata: Any) -> None:
        self.metadata = metadata

    def __call__(self, *args: Any) -> None:
        NoLaunch.launches += 1


class _NoDeviceUtils:
    """Stands in for the CUDA utilities Triton loads compiled kernels with."""

    def get_device_properties(self, device: int) -> dict[str, int]:
        return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536, "warpSize": 32}

    def load_binary(self, name: str, kernel: bytes, shared: int, device: int) -> tuple[int, int, int, int, int]:
        return 0, 0, 0, 0, 1024  # module, function, registers, spills, threads per block

    def unload_module(self, module: int) -> None:
        return None


class HostOnlyDriver(CompileOnlyDriver):
    """:class:`CompileOnlyDriver` whose launches run Triton's Python launch path and stop before the device."""

    launcher_cls = NoLaunch

    def __init__(self, capability: int) -> None:
        super().__init__(capability)
        self.utils = _NoDeviceUtils()
