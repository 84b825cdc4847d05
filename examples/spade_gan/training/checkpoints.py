"""Training checkpoints of ``train_spade.py``: atomic writes, rotation, and ``weights_only``-loadable RNG states.

A checkpoint is a dict of tensors, plain containers and primitive values only:

* ``"format"``: :data:`FORMAT`; ``"config"``: the run's :class:`~spade_gan.training.config.TrainConfig` as a plain dict
  (``TrainConfig.from_dict(state["config"]).model_spec()`` is the generator's architecture);
* ``"step"``: completed optimisation steps;
* ``"G"``, ``"D"``, ``"E"`` (``None`` without VAE): state dicts;
* ``"opt_G"``, ``"opt_D"``, ``"scaler_G"``, ``"scaler_D"``: optimiser and gradient-scaler state dicts;
* ``"rng"``: a list with one entry per process (rank): the torch CPU, CUDA, Python ``random`` and numpy states.

Files are written to a temporary file in the same directory, flushed and fsynced, then renamed over the target
(``os.replace``), and the directory is fsynced: a reader, or a run killed at any moment, sees the old file or the new
one, never a torn one. (The original implementation's generator files are read by
:mod:`spade_gan.synthesis.original_weights`.)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch

FORMAT = "spadenorm-gan-v1"
LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A file that is not a usable training checkpoint."""


def make_checkpoint(
    config: dict[str, Any], step: int, training_state: dict[str, Any], rng: list[dict[str, Any]]
) -> dict[str, Any]:
    """The checkpoint dict described above: ``training_state`` holds the networks', optimisers' and scalers' state
    dicts (``SPADETrainer.state_dict()``), ``rng`` every rank's :func:`capture_rng_state`."""
    return {"format": FORMAT, "config": config, "step": step, **training_state, "rng": rng}


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` to ``path`` through a fsynced temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / filesystem allows opening a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike[str], *, keep: int = 3) -> Path:
    """Write ``step_<step>.pt`` and ``latest.pt`` (both atomically), delete all but the newest ``keep`` step files
    and leftover temp files of killed runs. Returns the path of ``latest.pt``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(".*.tmp"):  # temp files of a run killed mid-write
        with contextlib.suppress(OSError):
            leftover.unlink()
    step_path = directory / f"step_{int(state['step']):08d}.pt"
    atomic_save(state, step_path)
    latest = directory / LATEST
    _atomic_link_or_copy(step_path, latest, state)
    steps = sorted((p for p in directory.iterdir() if _STEP_FILE.match(p.name)), key=lambda p: p.name)
    for old in steps[: max(0, len(steps) - keep)]:
        with contextlib.suppress(OSError):
            old.unlink()
    return latest


def _atomic_link_or_copy(source: Path, target: Path, state: dict[str, Any]) -> None:
    """Make ``target`` a hard link to ``source`` via an atomic rename (a full atomic save where links fail)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.link(source, tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        atomic_save(state, target)


def is_train_checkpoint(obj: object) -> TypeGuard[dict[str, Any]]:
    """Whether ``obj`` (what ``torch.load`` returned) is a training checkpoint of this format."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` and check its format.

    Raises:
        CheckpointError: no such file, not a torch file, or not a training checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a file torch.load(weights_only=True) reads ({type(exc).__name__})") from exc
    if not is_train_checkpoint(state):
        raise CheckpointError(
            f"{path}: not a train_spade.py checkpoint (expected a dict with format={FORMAT!r}); original generator "
            "files (latest_net_G.pth) are for synthesize.py"
        )
    return state


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (``weights_only``-loadable)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global state is what we save)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "cuda": None,
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if device is not None and device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
