"""The logs of a training run: losses as JSON lines (``log.jsonl``) and, with ``--tensorboard``, TensorBoard events.

``log.jsonl`` holds one JSON object per logged step, e.g.
``{"step": 10, "epoch": 0, "lr_G": 0.0001, "lr_D": 0.0004, "G_GAN": 0.91, "G_GAN_Feat": 3.2, "D_Fake": 0.4, ...}``;
read it with ``[json.loads(line) for line in open(path)]`` or ``pandas.read_json(path, lines=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from ..optional_packages import import_optional


class JsonlLogger:
    """Appends one JSON object per line and flushes it at once (a killed run loses at most the line being written).

    On resume, :meth:`truncate_after` drops the lines of steps past the checkpoint and, where the checkpoint's step is
    not a logging step, the loss line the stopped run wrote there only because it ended there, so the file reads like
    one uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int, *, keep_losses_at_step: bool = True) -> None:
        """Drop the records of steps past ``step`` and, with ``keep_losses_at_step=False``, the loss record of
        ``step`` itself (its evaluation record, ``{"step", "eval"}``, stays)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a kill
                continue
            at = record.get("step", 0)
            if at < step or (at == step and (keep_losses_at_step or "eval" in record)):
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        os.replace(tmp, self.path)

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def open_tensorboard(directory: str | os.PathLike[str], resume_step: int = 0) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing event files into ``directory``; on a resume from
    ``resume_step`` > 0, TensorBoard drops the events of later steps a killed run had written (``purge_step``), as
    ``log.jsonl`` drops its lines.

    Raises:
        MissingPackageError: the ``tensorboard`` package is missing (the message says how to install it).
    """
    tensorboard = import_optional("torch.utils.tensorboard", "--tensorboard", "pip install tensorboard")
    return tensorboard.SummaryWriter(log_dir=str(directory), purge_step=resume_step + 1 if resume_step > 0 else None)


def scalar_losses(losses: dict[str, Tensor]) -> dict[str, float]:
    """Detached Python floats of a dict of scalar loss tensors."""
    return {k: float(v.detach().float()) for k, v in losses.items()}


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in losses.items())


__all__ = [
    "JsonlLogger",
    "format_losses",
    "open_tensorboard",
    "read_log",
    "scalar_losses",
]
