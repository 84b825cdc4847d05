"""paint.py's server under load on loopback: 8 clients x 25 renders of the default 64 px model (ngf 16), each a
different map; no error, every answer the image of its own request. Prints p50 / p95 latency (docs/paint.md)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from spade_gan.studio.renderer import ids_digest
from studio_helpers import ids_payload, renderer_for, serving, untrained_checkpoint

CLIENTS = 8
REQUESTS = 25


def _map(client: int, index: int) -> np.ndarray:
    """A distinct 64x64 map per (client, index): random rectangles of the 8 classes."""
    rng = np.random.default_rng([client, index])
    ids = np.full((64, 64), rng.integers(0, 8), dtype=np.uint8)
    for _ in range(6):
        top, left = rng.integers(0, 56, size=2)
        height, width = rng.integers(4, 40, size=2)
        ids[top : top + height, left : left + width] = rng.integers(0, 8)
    ids[client, index] = (ids[client, index] + 1) % 8  # distinct even where the rectangles agree
    return ids


@pytest.mark.slow
def test_eight_clients_get_their_own_images_without_error(tmp_path):
    renderer = renderer_for(untrained_checkpoint(tmp_path / "latest.pt"))  # the default run's architecture
    assert renderer.size == (64, 64)
    assert renderer.spec.ngf == 16
    answers: dict[tuple[int, int], np.ndarray] = {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    with serving(renderer) as server:
        host, port = server.server_address[:2]

        def client(number: int) -> None:
            connection = http.client.HTTPConnection(str(host), port, timeout=120)  # one keep-alive connection
            try:
                for index in range(REQUESTS):
                    ids = _map(number, index)
                    body = json.dumps({"label": ids_payload(ids), "request": [number, index]}).encode()
                    start = time.perf_counter()
                    connection.request("POST", "/api/render", body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    answer = json.loads(response.read())
                    elapsed = time.perf_counter() - start
                    if response.status != 200 or answer["request"] != [number, index]:
                        raise AssertionError(f"{response.status}: {answer.get('error', answer.get('request'))}")
                    if answer["ids_sha256"] != ids_digest(ids):
                        raise AssertionError(f"client {number} request {index}: the answer is of another map")
                    png = base64.b64decode(answer["image"].split(",", 1)[1])
                    with lock:
                        latencies.append(elapsed)
                        answers[number, index] = np.asarray(Image.open(io.BytesIO(png)))
            except Exception as exc:
                with lock:
                    errors.append(f"client {number}: {exc!r}")
            finally:
                connection.close()

        wall = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall

    assert errors == []
    assert len(answers) == CLIENTS * REQUESTS
    for key in [(0, 0), (3, 11), (7, 24)]:  # the image is the one rendered alone for that map
        alone = np.asarray(Image.open(io.BytesIO(renderer.render(renderer.check_ids(_map(*key).astype(np.int64))).png)))
        np.testing.assert_array_equal(answers[key], alone)
    p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95])
    import torch

    report = {
        "clients": CLIENTS,
        "requests_per_client": REQUESTS,
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "wall_s": round(wall, 2),
        "renders_per_s": round(CLIENTS * REQUESTS / wall, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    print(f"\npaint studio load: {json.dumps(report)}")
    if os.environ.get("SPADENORM_STUDIO_LOAD_REPORT"):
        Path(os.environ["SPADENORM_STUDIO_LOAD_REPORT"]).write_text(json.dumps(report, indent=2))
