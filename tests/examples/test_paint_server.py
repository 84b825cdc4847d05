"""paint.py's server: routes, what it draws, label-map PNGs, style, and every kind of bad request answered 4xx."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from spade_gan.data.class_lists import class_list
from spade_gan.models.generator import SPADEGenerator
from spade_gan.studio import codec
from spade_gan.studio.server import static_files
from studio_helpers import ids_payload, post_json, renderer_for, request, serving, untrained_checkpoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REPO = EXAMPLES.parent


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """Untrained 32 px networks on the built-in scenes (8 classes)."""
    return untrained_checkpoint(tmp_path_factory.mktemp("small") / "latest.pt", crop_size=32, ngf=4)


@pytest.fixture(scope="module")
def vae_checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(
        tmp_path_factory.mktemp("vae") / "latest.pt", crop_size=32, ngf=4, use_vae=True, z_dim=8
    )


@pytest.fixture(scope="module")
def server(small_checkpoint):
    with serving(renderer_for(small_checkpoint), max_body=64 * 1024) as running:
        yield running


def _scene(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros((size, size), dtype=np.uint8)
    ids[size // 2 :] = rng.integers(1, 8)
    ids[rng.integers(0, size // 2) :, : rng.integers(1, size)] = rng.integers(1, 8)
    return ids


def _png(answer: dict) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert answer["image"].startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"][len(prefix) :]))))


def _still_serving(server) -> None:
    status, _, body = request(server, "GET", "/api/info")
    assert status == 200
    assert json.loads(body)["width"] == 32


# --- the page --------------------------------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_and_fetch_nothing_from_elsewhere(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    html = body.decode()
    for name in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        status, _, _ = request(server, "GET", f"/static/{name}")
        assert status == 200, name
    for name, (content, _) in static_files().items():
        urls = re.findall(rb"https?://[^\s\"'<>)]+", content)
        assert urls == [], f"{name} names outside addresses: {urls}"
        assert b"@import" not in content, name
        assert b"url(" not in content, name


def test_info_names_the_classes_in_the_datasets_colours(server):
    status, _, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200
    assert (info["width"], info["height"], info["num_ids"], info["background"]) == (32, 32, 8, 0)
    assert [c["name"] for c in info["classes"]][:3] == ["sky", "water", "vegetation"]
    assert info["classes"][0]["colour"] == "#8cb8f2"  # sky (0.55, 0.72, 0.95)
    assert info["use_vae"] is False
    assert "no style input" in info["style_note"]
    assert info["validation_maps"] == 64


# --- rendering -------------------------------------------------------------------------------------------------------


def test_render_echoes_the_ids_and_draws_what_synthesize_py_draws(server, small_checkpoint, tmp_path):
    ids = _scene(1)
    status, answer = post_json(server, "/api/render", {"label": ids_payload(ids), "request": 41})
    assert status == 200, answer
    assert answer["request"] == 41
    assert answer["ids_sha256"] == hashlib.sha256(ids.astype("<u2").tobytes()).hexdigest()
    image = _png(answer)
    assert image.shape == (32, 32, 3)
    assert np.array_equal(server.renderer.last_ids, ids)

    import synthesize

    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(ids).save(labels / "map.png")
    assert (
        synthesize.main(["--checkpoint", str(small_checkpoint), "--labels", str(labels), "--out", str(tmp_path)]) == 0
    )
    np.testing.assert_array_equal(image, np.asarray(Image.open(tmp_path / "map.png")))

    _, other = post_json(server, "/api/render", {"label": ids_payload(_scene(2)), "request": 42})
    assert not np.array_equal(_png(other), image)


def test_validation_maps_are_the_val_scenes(server):
    from spade_gan.data.synthetic import render_scene

    status, _, body = request(server, "GET", "/api/validation/5")
    assert status == 200
    label = json.loads(body)["label"]
    ids = codec.read_ids_payload(label, (32, 32))
    np.testing.assert_array_equal(ids, render_scene(0, "val", 5, (32, 32))[0])


def test_vae_seed_and_style_image(vae_checkpoint):
    with serving(renderer_for(vae_checkpoint)) as server:
        info = json.loads(request(server, "GET", "/api/info")[2])
        assert info["use_vae"]
        assert info["has_encoder"]
        label = ids_payload(_scene(3))

        def draw(**extra) -> np.ndarray:
            status, answer = post_json(server, "/api/render", {"label": label, **extra})
            assert status == 200, answer
            return _png(answer)

        assert np.array_equal(draw(seed=1), draw(seed=1))
        assert not np.array_equal(draw(seed=1), draw(seed=2))

        photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG")
        status, _, body = request(server, "POST", "/api/style", buffer.getvalue())
        assert status == 200, body
        style = json.loads(body)["style"]
        assert len(style["mu"]) == len(style["logvar"]) == 8
        styled = draw(seed=1, style=style)
        assert not np.array_equal(styled, draw(seed=1))
        assert np.array_equal(styled, draw(seed=1, style=style))

        status, answer = post_json(server, "/api/render", {"label": label, "style": {"mu": [0.0] * 3, "logvar": []}})
        assert status == 400
        assert "z_dim=8" in answer["error"]


def test_an_original_ade20k_generator_gets_the_ade20k_classes(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "latest_net_G.pth"
    torch.save(SPADEGenerator(151, ngf=2, crop_size=32).state_dict(), path)
    with serving(renderer_for(path, preset="ade20k", crop_size=32)) as server:
        info = json.loads(request(server, "GET", "/api/info")[2])
        assert info["dataset"] == "ade20k"
        assert info["num_ids"] == 151
        names = {c["id"]: c["name"] for c in info["classes"]}
        assert (names[0], names[1], names[3], names[150]) == ("other", "wall", "sky", "flag")
        assert info["validation_maps"] == 0
        ids = np.full((32, 32), 150, dtype=np.uint8)
        ids[:16] = 3
        status, answer = post_json(server, "/api/render", {"label": ids_payload(ids)})
        assert status == 200, answer
        status, _, body = request(server, "GET", "/api/validation/0")
        assert status == 404
        assert "--val-labels" in json.loads(body)["error"]


# --- label-map PNGs --------------------------------------------------------------------------------------------------


def test_label_png_download_holds_the_ids_and_the_colours():
    classes = class_list("synthetic", 8, False)
    ids = _scene(4)
    png = codec.label_png(ids, classes)
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), ids)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB"))[0, 0], classes.colour_table()[ids[0, 0]])
    again, how = codec.read_label_png(png, classes, (32, 32))
    assert how == "ids"
    np.testing.assert_array_equal(again, ids)


def test_label_png_upload_reads_ids_colours_and_other_sizes(server):
    classes = server.renderer.classes
    ids = _scene(5)
    colours = np.array(classes.colour_table(), dtype=np.uint8)[ids]
    buffer = io.BytesIO()
    Image.fromarray(colours).save(buffer, format="PNG")
    status, _, body = request(server, "POST", "/api/label-png/read", buffer.getvalue())
    assert status == 200, body
    answer = json.loads(body)
    assert answer["read_as"] == "colours"
    np.testing.assert_array_equal(codec.read_ids_payload(answer["label"], (32, 32)), ids)

    big = np.kron(ids, np.ones((2, 2), dtype=np.uint8))  # 64x64 ids: resized with nearest-neighbour sampling
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG")
    status, _, body = request(server, "POST", "/api/label-png/read", buffer.getvalue())
    assert status == 200, body
    np.testing.assert_array_equal(codec.read_ids_payload(json.loads(body)["label"], (32, 32)), ids)

    status, headers, png = request(
        server, "POST", "/api/label-png/write", json.dumps({"label": ids_payload(ids)}).encode()
    )
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), ids)


def test_coco_ids_round_trip_with_unlabeled_stored_as_255():
    classes = class_list("coco", 182, True)
    assert classes.background == classes.unlabeled == 182
    ids = np.full((4, 4), 182)
    ids[0] = [0, 90, 91, 181]
    png = codec.label_png(ids, classes)
    stored = np.asarray(Image.open(io.BytesIO(png)))
    assert stored[1, 0] == 255
    again, _ = codec.read_label_png(png, classes, (4, 4))
    np.testing.assert_array_equal(again, ids)


# --- bad requests ----------------------------------------------------------------------------------------------------

BAD_JSON_BODIES = {
    "malformed JSON": b'{"label": {"width": 32',
    "not UTF-8": b"\xff\xfe{}",
    "a JSON list": b"[1, 2]",
    "no label": b'{"seed": 1}',
}


@pytest.mark.parametrize("body", BAD_JSON_BODIES.values(), ids=BAD_JSON_BODIES.keys())
def test_malformed_json_is_a_400(server, body):
    status, headers, answer = request(server, "POST", "/api/render", body, {"Content-Type": "application/json"})
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer)["error"]
    _still_serving(server)


def _label(**changes) -> dict:
    return {**ids_payload(_scene(6)), **changes}


BAD_MAPS = {
    "wrong size": (ids_payload(np.zeros((16, 32), np.uint8)), "this model draws 32x32"),
    "id out of range": (ids_payload(np.full((32, 32), 8, np.uint8)), "label ids must be 0..7"),
    "ids not base64": (_label(ids="not base64!"), "not valid base64"),
    "too few bytes": (_label(ids=base64.b64encode(b"\0" * 100).decode()), "100 bytes of ids"),
    "unknown dtype": (_label(dtype="float32"), "dtype must be one of"),
    "width a string": (_label(width="32"), "width must be a positive integer"),
    "label a number": (7, "expected an object"),
}


@pytest.mark.parametrize(("label", "message"), BAD_MAPS.values(), ids=BAD_MAPS.keys())
def test_bad_label_maps_are_a_400_naming_the_problem(server, label, message):
    for path in ("/api/render", "/api/label-png/write"):
        status, answer = post_json(server, path, {"label": label})
        assert status == 400
        assert message in answer["error"]
    _still_serving(server)


def test_a_bad_seed_is_a_400(server):
    for seed in ("1", -1, 2**64, 1.5, True):
        status, answer = post_json(server, "/api/render", {"label": ids_payload(_scene(7)), "seed": seed})
        assert status == 400, seed
        assert "seed" in answer["error"]


def test_style_for_a_model_without_an_encoder_is_a_400(server):
    status, answer = post_json(server, "/api/render", {"label": ids_payload(_scene(7)), "style": {"mu": [0.0]}})
    assert status == 400
    assert "no style input" in answer["error"]
    status, _, body = request(server, "POST", "/api/style", b"\x89PNG\r\n\x1a\n")
    assert status == 400
    assert "no style input" in json.loads(body)["error"]


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_scene(8)).save(buffer, format="PNG")
    return buffer.getvalue()[:60]


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


BAD_PNGS = {
    "empty": (b"", "the request body is empty"),
    "not an image": (b"hello, world", "not an image file"),
    "PNG signature then garbage": (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image file"),
    "truncated PNG": (_truncated_png(), "damaged or truncated"),
    "a JPEG": (_encoded(Image.new("RGB", (8, 8)), "JPEG"), "expected a PNG file"),
    "colours of no class": (_encoded(Image.new("RGB", (8, 8), (1, 2, 3))), "no synthetic class's colour"),
    "ids out of range": (_encoded(Image.fromarray(np.full((8, 8), 9, np.uint8))), "label ids must be 0..7"),
}


@pytest.mark.parametrize(("body", "message"), BAD_PNGS.values(), ids=BAD_PNGS.keys())
def test_bad_label_png_uploads_are_a_400(server, body, message):
    status, _, answer = request(server, "POST", "/api/label-png/read", body)
    assert status == 400
    assert message in json.loads(answer)["error"]
    _still_serving(server)


def test_a_body_over_the_limit_is_a_413_and_not_read(server):
    status, headers, body = request(server, "POST", "/api/render", b"x" * (64 * 1024 + 1))
    assert status == 413
    assert "limit is 65536" in json.loads(body)["error"]
    assert headers.get("Connection") == "close"
    _still_serving(server)


def test_unknown_routes_are_a_404_and_wrong_methods_a_405(server):
    unknown = ["/nope", "/static/../server.py", "/static/missing.js", "/api/validation/64", "/api/validation/x"]
    for method, path in [("POST", "/api/nope"), *(("GET", path) for path in unknown)]:
        status, _, body = request(server, method, path, b"{}" if method == "POST" else None)
        assert status == 404, (method, path)
        assert json.loads(body)["error"]
    for method, path, allowed in [("GET", "/api/render", "POST"), ("PUT", "/api/render", "POST"),
                                  ("POST", "/api/info", "GET, HEAD"), ("DELETE", "/", "GET, HEAD")]:  # fmt: skip
        status, headers, body = request(server, method, path)
        assert status == 405, (method, path)
        assert headers["Allow"] == allowed
        assert "method not allowed" in json.loads(body)["error"]
    _still_serving(server)


def _raw(server, data: bytes) -> bytes:
    with socket.create_connection(server.server_address[:2], timeout=30) as connection:
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)  # the request ends here
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_requests_without_a_length_or_with_a_broken_request_line_get_json_errors(server):
    answer = _raw(
        server, b"POST /api/render HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 411")
    assert b'"error"' in answer
    answer = _raw(server, b"POST /api/render HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    answer = _raw(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400"
    assert b'"error"' in answer
    answer = _raw(server, b"POST /api/render HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort")
    assert answer.split(b" ", 2)[1] == b"400"
    _still_serving(server)


def test_an_unread_body_does_not_leak_into_the_next_request_on_the_connection(server):
    """A 404 for a POST with a body closes the connection rather than reading the body as the next request."""
    answer = _raw(server, b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nGET /api/info HTTP/1.1\r\n\r\n")
    assert answer.count(b"HTTP/1.1 ") == 1
    assert answer.startswith(b"HTTP/1.1 404")


# --- the script ------------------------------------------------------------------------------------------------------


def test_paint_py_without_the_default_checkpoint_names_the_command_that_makes_it(tmp_path, monkeypatch, capsys):
    import paint

    monkeypatch.chdir(tmp_path)
    assert paint.main([]) == 2
    err = capsys.readouterr().err
    assert "runs/spade/checkpoints/latest.pt does not exist" in err
    assert "python examples/train_spade.py" in err
    assert paint.main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_exposing_the_studio_is_warned_about():
    import paint

    assert paint.exposure_warning("127.0.0.1") is None
    assert paint.exposure_warning("localhost") is None
    assert paint.exposure_warning("::1") is None
    assert "no authentication" in paint.exposure_warning("0.0.0.0")


def test_paint_py_prints_the_url_serves_the_page_and_writes_nothing(small_checkpoint, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    env = {"PYTHONPATH": f"{REPO}:{EXAMPLES}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(work)}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "paint.py"), "--checkpoint", str(small_checkpoint)],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        port = int(match.group(1))
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
        for path in ("/api/render", "/api/label-png/write"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", path, json.dumps({"label": ids_payload(_scene(9))}).encode())
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()
        process.stderr.close()
    assert list(work.iterdir()) == []
