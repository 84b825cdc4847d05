"""Preflight of the GPU suite: within seconds, either a clear reason why the suite cannot run here, or its environment.

Checks, in order, each failing at once with a message that names what is missing:

1. a C compiler (``$CC``, ``gcc``, ``cc`` or ``clang``): Triton builds its launcher stubs with it at the first launch
   of each kernel, and so does TorchInductor;
2. ``Python.h`` of the running interpreter (``sysconfig.get_paths()['include']``), which those builds include;
3. a CUDA device visible to PyTorch;
4. a one-element Triton kernel compiled and run on that device, with its result checked.

Then it records the environment (device name, SM count, L2 size, memory, driver, torch, Triton and Python versions,
date, git commit where ``git`` works) and the copy-bandwidth reference of the run (a device-to-device copy of 1 GiB,
timed like the kernels: see :func:`benchmarks.gpu_timing.copy_bandwidth`), and writes them as JSON.

Usage: ``python -m benchmarks.gpu_preflight --env OUT/device.json`` (exit status 0, or 2 with the reason).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

try:
    import triton
    import triton.language as tl
except ImportError:  # reported by check_triton
    triton = None

ROOT = Path(__file__).resolve().parents[1]


class PreflightError(RuntimeError):
    """A missing prerequisite of the GPU suite, with what to do about it."""


def c_compiler() -> str:
    """The C compiler Triton will use: ``$CC`` if set, else the first of gcc, cc, clang on the PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["gcc", "cc", "clang"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise PreflightError(
        f"no C compiler ({', '.join(candidates)}) on the PATH: Triton compiles its launcher stubs with one at the "
        "first launch of every kernel; install gcc or clang, or set CC"
    )


def python_header() -> Path:
    """``Python.h`` of the running interpreter, which Triton's launcher stubs include."""
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.is_file():
        raise PreflightError(
            f"{header} is missing: Triton's launcher stubs include Python.h; install the Python development headers "
            f"for {sys.executable} (python{sys.version_info.major}.{sys.version_info.minor}-dev or equivalent)"
        )
    return header


if triton is not None:

    @triton.jit
    def _add_one_kernel(ptr):
        tl.store(ptr, tl.load(ptr) + 1)


def check_triton() -> str:
    """Compile and run a one-element Triton kernel on the current CUDA device; returns Triton's version."""
    import torch

    if triton is None:
        raise PreflightError("triton is not importable: the spadenorm GPU kernels need it")
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise PreflightError("TRITON_INTERPRET=1 is set: the kernels would run in the interpreter; unset it")
    value = torch.full((1,), 41.0, device="cuda")
    try:
        _add_one_kernel[(1,)](value)
        torch.cuda.synchronize()
    except Exception as err:
        raise PreflightError(
            f"a one-element Triton kernel failed to compile or run: {type(err).__name__}: {err}"
        ) from err
    if value.item() != 42.0:
        raise PreflightError(f"a one-element Triton kernel computed {value.item()} instead of 42")
    return str(triton.__version__)


def _run(command: list[str]) -> str | None:
    """stdout of ``command`` run in the checkout, or ``None`` when it cannot run or fails."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes; empty where ``git`` does not work here."""
    commit = _run(["git", "rev-parse", "HEAD"])
    if not commit:
        return {}
    return {"commit": commit, "dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))}


def environment() -> dict[str, Any]:
    """Device, versions, date and commit of this run."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return {
        "device_name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "l2_bytes": getattr(props, "L2_cache_size", None),
        "memory_bytes": props.total_memory,
        "driver": driver.splitlines()[0] if driver else None,
        "torch": torch.__version__,
        "triton": str(triton.__version__) if triton is not None else None,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="where to write the environment JSON")
    parser.add_argument("--no-copy", action="store_true", help="skip the copy-bandwidth measurement")
    args = parser.parse_args(argv)
    try:
        print(f"preflight: C compiler {c_compiler()}", flush=True)
        print(f"preflight: {python_header()}", flush=True)
        import torch

        if not torch.cuda.is_available():
            raise PreflightError(f"torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda})")
        print(f"preflight: CUDA device {torch.cuda.get_device_name()}", flush=True)
        print(f"preflight: Triton {check_triton()} compiled and ran a kernel", flush=True)
    except PreflightError as err:
        print(f"preflight FAILED: {err}", file=sys.stderr, flush=True)
        return 2
    env = environment()
    if not args.no_copy:
        from .gpu_timing import DeviceTimer, copy_bandwidth

        gbs, timing = copy_bandwidth(DeviceTimer("cuda"))
        env.update(copy_bandwidth_gbs=gbs, copy_timing=timing.as_dict())
        print(f"preflight: copy bandwidth {gbs:.0f} GB/s (read + write, median of {timing.reps})", flush=True)
    Path(args.env).write_text(json.dumps(env, indent=1))
    print("preflight: " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "copy_timing"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
