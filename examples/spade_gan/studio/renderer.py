"""The studio's model: a loaded generator with its classes, rendering one painted label map at a time.

:class:`Renderer` wraps a :class:`~spade_gan.synthesis.loading.LoadedModel` for the server: it checks painted ids
against the generator's classes, turns them into images through :func:`spade_gan.synthesis.inference.generate` (so
the studio draws exactly what ``synthesize.py`` would) and keeps inference to one request at a time with a lock. It
also encodes style images, reads and writes label-map PNGs and gives the validation maps a painting can start from.
Everything stays in memory.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.class_lists import ClassList, class_list
from ..data.errors import LabelRangeError
from ..data.presets import PRESETS
from ..data.semantics import check_label_range, instance_edges, map_dontcare
from ..images import to_uint8
from ..synthesis.inference import generate, style_code, style_from_image
from ..synthesis.loading import LoadedModel
from . import codec
from .errors import StudioError
from .validation_maps import ValidationMaps

MAX_SEED = 2**63 - 1
"""Largest seed a render request may carry."""


@dataclass(frozen=True)
class Style:
    r"""A style image's encoding: the encoder's :math:`\mu` and :math:`\log\sigma^2`, ``z_dim`` floats each."""

    mu: tuple[float, ...]
    logvar: tuple[float, ...]

    def as_json(self) -> dict[str, list[float]]:
        """``{"mu": [...], "logvar": [...]}``, what the page sends back with each render."""
        return {"mu": list(self.mu), "logvar": list(self.logvar)}


@dataclass(frozen=True)
class Rendered:
    """One answer: the PNG, the hash of the ids it was drawn from and the time the generator took."""

    png: bytes
    ids_sha256: str
    milliseconds: float


def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of an ``(H, W)`` id map as row-major little-endian uint16 (what a render answer echoes).

    Example:
        >>> ids_digest(np.zeros((2, 2), dtype=np.int64))[:12]
        'af5570f5a181'
    """
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<u2").tobytes()).hexdigest()


class Renderer:
    """A generator ready for the studio.

    Args:
        model: the loaded networks (on the device they run on, in eval mode).
        dataset: the dataset the model draws (``synthetic``, ``cityscapes``, ``ade20k``, ``coco``, ``custom``),
            which picks the class names and colours.
        name: what the page shows as the model's name (the checkpoint file).
        validation: the maps a painting can start from (may be empty).
    """

    def __init__(self, model: LoadedModel, dataset: str | None, name: str, validation: ValidationMaps) -> None:
        self.model = model
        self.spec = model.spec
        self.classes: ClassList = class_list(dataset, self.spec.label_nc, self.spec.contain_dontcare)
        self.name = name
        self.validation = validation
        self.size: tuple[int, int] = tuple(model.generator.output_size)  # type: ignore[assignment]
        self.device = next(model.generator.parameters()).device
        self._lock = threading.Lock()
        self.last_ids: np.ndarray | None = None
        """The ids of the latest map rendered (what the browser tests compare with what they drew)."""

    def info(self) -> dict[str, Any]:
        """What the page needs to set itself up: size, classes, style options, validation maps."""
        height, width = self.size
        spec = self.spec
        return {
            "name": self.name,
            "source": self.model.source,
            "dataset": self.classes.dataset,
            "width": width,
            "height": height,
            "num_ids": self.classes.num_ids,
            "background": self.classes.background,
            "classes": [
                {"id": c.id, "name": c.name, "colour": "#{:02x}{:02x}{:02x}".format(*c.colour)}
                for c in self.classes.classes
            ],
            "class_source": self.classes.source,
            "use_vae": spec.use_vae,
            "has_encoder": spec.use_vae and self.model.encoder is not None,
            "style_note": self.style_note(),
            "use_instance": spec.use_instance,
            "validation_maps": len(self.validation),
            "device": str(self.device),
        }

    def style_note(self) -> str:
        """A plain statement of what the model's style input is."""
        if not self.spec.use_vae:
            return "This generator has no style input: it draws from the label map alone (trained without --use-vae)."
        if self.model.encoder is None:
            return (
                "This checkpoint has no style encoder: the seed picks the style; an example image cannot be used "
                "(train with --use-vae to keep one)."
            )
        return "The seed picks a style; an example image sets it through the style encoder."

    def check_ids(self, ids: np.ndarray, source: str = "label map") -> np.ndarray:
        """``ids`` with raw dontcare ids (255) mapped, checked against the generator's classes.

        Raises:
            StudioError: an id the generator has no channel for (400).
        """
        label = map_dontcare(
            torch.from_numpy(ids), label_nc=self.spec.label_nc, contain_dontcare=self.spec.contain_dontcare
        )
        try:
            check_label_range(
                label, label_nc=self.spec.label_nc, contain_dontcare=self.spec.contain_dontcare, source=source
            )
        except LabelRangeError as exc:
            raise StudioError(str(exc)) from None
        return label.numpy()

    def read_style(self, payload: Any) -> Style | None:
        """The :class:`Style` of a render request's ``style`` field (``None`` when absent or null).

        Raises:
            StudioError: a style for a model without a style encoder, or lists that are not ``z_dim`` finite numbers.
        """
        if payload is None:
            return None
        if not (self.spec.use_vae and self.model.encoder is not None):
            raise StudioError(f"style: {self.style_note()}")
        if not isinstance(payload, dict):
            raise StudioError("style: expected an object with mu and logvar")
        values = []
        for key in ("mu", "logvar"):
            part = payload.get(key)
            if not (isinstance(part, list) and len(part) == self.spec.z_dim):
                raise StudioError(f"style: {key} must be a list of z_dim={self.spec.z_dim} numbers")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in part):
                raise StudioError(f"style: {key} must hold finite numbers only")
            values.append(tuple(float(v) for v in part))
        return Style(*values)

    def render(self, ids: np.ndarray, seed: int = 0, style: Style | None = None) -> Rendered:
        """The generated image of checked ``ids`` (see :meth:`check_ids`) as PNG; one call at a time."""
        if not 0 <= seed <= MAX_SEED:
            raise StudioError(f"seed: expected an integer in 0..{MAX_SEED}, got {seed}")
        label = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))[None, None].to(self.device)
        edges = instance_edges(label) if self.spec.use_instance else None  # each class region one instance
        stats = None
        if style is not None:
            stats = (torch.tensor([style.mu]), torch.tensor([style.logvar]))
        with self._lock:
            start = time.perf_counter()
            z = style_code(self.spec, stats, torch.Generator().manual_seed(seed), self.device)
            image = to_uint8(generate(self.model, label, edges, z))[0]
            milliseconds = (time.perf_counter() - start) * 1000.0
            self.last_ids = np.array(ids, copy=True)
        return Rendered(codec.png_bytes(Image.fromarray(image)), ids_digest(ids), milliseconds)

    def encode_style(self, data: bytes) -> Style:
        """The :class:`Style` of an uploaded example image (any format PIL reads).

        Raises:
            StudioError: a model without a style encoder, or bytes that are no image.
        """
        if not (self.spec.use_vae and self.model.encoder is not None):
            raise StudioError(f"style image: {self.style_note()}")
        image = codec.open_image(data, "style image")
        pixels = codec.decoded(image, "style image", "RGB")
        with self._lock:
            mu, logvar = style_from_image(self.model, Image.fromarray(pixels), self.size)
        return Style(tuple(mu[0].tolist()), tuple(logvar[0].tolist()))

    def label_png(self, ids: np.ndarray) -> bytes:
        """A PNG of checked ``ids`` a training set could use (see :func:`spade_gan.studio.codec.label_png`)."""
        return codec.label_png(ids, self.classes)

    def read_label_png(self, data: bytes) -> tuple[np.ndarray, str]:
        """The checked ids of an uploaded label-map PNG at the model's size, and how it was read."""
        ids, how = codec.read_label_png(data, self.classes, self.size)
        return self.check_ids(ids, "uploaded label map"), how

    def validation_map(self, index: int) -> np.ndarray:
        """Validation map ``index`` at the model's size, checked."""
        return self.check_ids(self.validation.get(index, self.size), f"validation map {index}")


def dataset_name(model: LoadedModel, preset: str | None) -> str:
    """The dataset whose classes ``model`` draws: a training checkpoint's configured dataset; for an original file,
    ``preset`` or the preset whose label layout matches the generator's (``custom`` when none does)."""
    if model.config is not None:
        return str(model.config.get("dataset", "custom"))
    if preset is not None:
        return preset
    spec = model.spec
    for name, known in PRESETS.items():
        if (known.label_nc, known.contain_dontcare, known.use_instance) == (
            spec.label_nc,
            spec.contain_dontcare,
            spec.use_instance,
        ):
            return name
    return "custom"
