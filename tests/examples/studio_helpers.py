"""Helpers the paint studio's tests share: checkpoints, a server in a thread, requests to it."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from spade_gan.data.synthetic import render_scene
from spade_gan.studio.renderer import Renderer, dataset_name
from spade_gan.studio.server import MAX_BODY_BYTES, StudioServer, make_server
from spade_gan.studio.validation_maps import ValidationMaps
from spade_gan.synthesis.loading import load_model
from spade_gan.training.checkpoints import make_checkpoint
from spade_gan.training.config import TrainConfig


def untrained_checkpoint(path: Path, **config: Any) -> Path:
    """A training checkpoint of freshly initialised networks on the built-in scenes (the default run's architecture
    unless ``config`` changes it), written without training. The convolutions get He initialisation (the 0.02 one
    of training leaves every output within 1e-5 of grey) and a few training-mode passes over val scenes give the
    norms running statistics, so that different maps give visibly different images."""
    torch.manual_seed(0)
    cfg = replace(TrainConfig(), **config).resolve()
    cfg.label_nc, cfg.contain_dontcare, cfg.use_instance = 8, False, False  # what the run copies from the dataset
    spec = cfg.model_spec()
    generator = spec.build_generator().train()
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="leaky_relu", a=0.2)
    labels = torch.stack([torch.from_numpy(render_scene(0, "val", i, generator.output_size)[0]) for i in range(8)])
    with torch.no_grad():
        for _ in range(3):
            z = torch.randn(len(labels), spec.z_dim) if spec.use_vae else None
            generator(labels, z)
    encoder = spec.build_encoder() if spec.use_vae else None
    state = {"G": generator.state_dict(), "G_ema": None, "E": encoder and encoder.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(make_checkpoint(cfg.to_dict(), 0, state, []), path)
    return path


def renderer_for(checkpoint: Path, *, preset: str | None = None, validation: int = 64, **overrides: Any) -> Renderer:
    """The studio's renderer for ``checkpoint`` on the CPU, as ``paint.py`` builds it (``overrides``: spec fields)."""
    model = load_model(checkpoint, preset=preset, overrides=overrides)
    dataset = dataset_name(model, preset)
    return Renderer(model, dataset, checkpoint.name, ValidationMaps(validation if dataset == "synthetic" else 0))


@contextlib.contextmanager
def serving(renderer: Renderer, max_body: int = MAX_BODY_BYTES) -> Iterator[StudioServer]:
    """A studio server on 127.0.0.1 and a free port, serving in a thread until the block ends."""
    server = make_server(renderer, max_body=max_body)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def ids_payload(ids: np.ndarray) -> dict[str, Any]:
    """The JSON form of a uint8 label map, written independently of the server's codec."""
    height, width = ids.shape
    data = base64.b64encode(np.ascontiguousarray(ids, dtype=np.uint8).tobytes()).decode("ascii")
    return {"width": width, "height": height, "dtype": "uint8", "ids": data}


def request(
    server: StudioServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: ``(status, headers, body)``."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_json(server: StudioServer, path: str, value: Any) -> tuple[int, Any]:
    """POST ``value`` as JSON; ``(status, parsed answer)``."""
    status, _, body = request(server, "POST", path, json.dumps(value).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)
