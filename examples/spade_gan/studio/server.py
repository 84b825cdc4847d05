"""The studio's HTTP server: the page, its static files and a small JSON API, on the standard library's
:class:`http.server.ThreadingHTTPServer`.

Routes (every answer of the API is JSON, errors included: ``{"error": message}`` with a 4xx status):

========  ==========================  =====================================================================
GET       ``/``                       the page
GET       ``/static/<file>``          its script and style sheet
GET       ``/api/info``               the model: size, classes and colours, style options, validation maps
GET       ``/api/validation/<k>``     validation map ``k`` as a label-map payload
POST      ``/api/render``             ``{"label": payload, "seed": int, "style": null | {...}, "request": n}``
                                      -> ``{"image": data URL, "ids_sha256": hex, "request": n, "ms": float}``
POST      ``/api/style``              an example image's bytes -> ``{"style": {"mu": [...], "logvar": [...]}}``
POST      ``/api/label-png/read``     a label-map PNG's bytes (ids or colours) -> ``{"label": payload, ...}``
POST      ``/api/label-png/write``    ``{"label": payload}`` -> the PNG of ids a training set could use
========  ==========================  =====================================================================

Bad requests get 400 (malformed JSON or PNG, a map of the wrong size, ids out of range), 404 (an unknown route), 405
(a route asked with another method), 411 (a body without ``Content-Length``) or 413 (a body over the limit, which is
not read: the connection is closed). Anything else that goes wrong in a handler is a 500 with a JSON message; the
server keeps serving either way. Each connection has its own thread; inference is serialised by the
:class:`~spade_gan.studio.renderer.Renderer`'s lock. Nothing is written to disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sys
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from .codec import ids_payload, read_ids_payload
from .errors import StudioError
from .renderer import Renderer

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body the server reads (larger ones are answered 413 unread)."""

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
"""Content types of the page's files."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load and fetch from this server only (and show the data: and blob: images it makes itself)."""

Json = dict[str, Any]


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by name, read once from the package's ``static`` folder: ``{name: (bytes, content type)}``."""
    folder = resources.files(__package__) / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


class StudioServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` that holds the renderer, the page's files and the body limit.

    Args:
        address: ``(host, port)``; port 0 picks a free port (see :attr:`url`).
        renderer: the model the API serves.
        max_body: largest request body in bytes.
        log: whether to print one line per request on stderr.
    """

    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self, address: tuple[str, int], renderer: Renderer, *, max_body: int = MAX_BODY_BYTES, log: bool = False
    ) -> None:
        self.renderer = renderer
        self.max_body = max_body
        self.log = log
        self.files = static_files()
        super().__init__(address, StudioHandler)

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page (IPv6 hosts in brackets)."""
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class StudioHandler(BaseHTTPRequestHandler):
    """One connection: routes each request, answers every error as JSON."""

    server: StudioServer
    protocol_version = "HTTP/1.1"
    server_version = "spadenorm-studio"
    timeout = 60  # seconds a connection may sit idle or send slowly

    # --- dispatch --------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self._body_read = False
        try:
            handler = self._route(method, path)
            handler(path)
        except StudioError as exc:
            self._send_error(exc.status, str(exc), exc.headers)
        except (ConnectionError, TimeoutError):  # the client left or stalled: nobody to answer
            self.close_connection = True
        except Exception as exc:  # a bug or a failing model: answer, log, keep serving
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, f"internal error ({type(exc).__name__}); the server keeps running")

    def _route(self, method: str, path: str) -> Callable[[str], None]:
        """The handler for ``method`` on ``path``; StudioError 404 or 405 when there is none."""
        get = {"/": self._page, "/api/info": self._info}
        post = {
            "/api/render": self._render,
            "/api/style": self._style,
            "/api/label-png/read": self._read_label_png,
            "/api/label-png/write": self._write_label_png,
        }
        is_get = path in get or path.startswith(("/static/", "/api/validation/"))
        if method in ("GET", "HEAD") and is_get:
            if path.startswith("/static/"):
                return self._static
            if path.startswith("/api/validation/"):
                return self._validation
            return get[path]
        if method == "POST" and path in post:
            return post[path]
        if is_get or path in post:
            allowed = "GET, HEAD" if is_get else "POST"
            raise StudioError(f"{method} {path}: method not allowed; use {allowed}", 405, {"Allow": allowed})
        raise StudioError(f"{method} {path}: no such route", status=404)

    # --- GET -------------------------------------------------------------------------------------------------------

    def _page(self, path: str) -> None:
        self._static("/static/index.html")

    def _static(self, path: str) -> None:
        name = path[len("/static/") :]
        if name not in self.server.files:
            raise StudioError(f"GET {path}: no such file", status=404)
        body, content_type = self.server.files[name]
        self._send(200, body, content_type)

    def _info(self, path: str) -> None:
        self._send_json(200, self.server.renderer.info())

    def _validation(self, path: str) -> None:
        text = path[len("/api/validation/") :]
        if not re.fullmatch(r"\d{1,9}", text):
            raise StudioError(f"GET {path}: expected /api/validation/<index>, an integer", status=404)
        ids = self.server.renderer.validation_map(int(text))
        self._send_json(200, {"label": ids_payload(ids), "index": int(text)})

    # --- POST ------------------------------------------------------------------------------------------------------

    def _render(self, path: str) -> None:
        request = self._json_body()
        renderer = self.server.renderer
        ids = renderer.check_ids(read_ids_payload(request.get("label"), renderer.size))
        seed = request.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise StudioError(f"seed: expected an integer, got {seed!r}")
        rendered = renderer.render(ids, seed, renderer.read_style(request.get("style")))
        self._send_json(
            200,
            {
                "image": "data:image/png;base64," + base64.b64encode(rendered.png).decode("ascii"),
                "ids_sha256": rendered.ids_sha256,
                "request": request.get("request"),
                "ms": round(rendered.milliseconds, 2),
            },
        )

    def _style(self, path: str) -> None:
        style = self.server.renderer.encode_style(self._body())
        self._send_json(200, {"style": style.as_json()})

    def _read_label_png(self, path: str) -> None:
        ids, how = self.server.renderer.read_label_png(self._body())
        self._send_json(200, {"label": ids_payload(ids), "read_as": how})

    def _write_label_png(self, path: str) -> None:
        renderer = self.server.renderer
        ids = renderer.check_ids(read_ids_payload(self._json_body().get("label"), renderer.size))
        self._send(
            200, renderer.label_png(ids), "image/png", {"Content-Disposition": 'attachment; filename="label.png"'}
        )

    # --- bodies and answers ----------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        """The request body; 411 without a length, 413 (unread, connection closed) over the limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise StudioError("chunked request bodies are not accepted; send a Content-Length", status=411)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise StudioError("the request has no Content-Length; send the body with its length", status=411)
        if not length_text.strip().isdigit():
            self.close_connection = True
            raise StudioError(f"Content-Length: expected a number of bytes, got {length_text!r}")
        length = int(length_text)
        if length > self.server.max_body:
            self.close_connection = True  # the body stays unread
            raise StudioError(f"the request body is {length} bytes; the limit is {self.server.max_body}", status=413)
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            self.close_connection = True
            raise StudioError(f"the request body ended after {len(body)} of {length} bytes")
        return body

    def _json_body(self) -> Json:
        """The request body parsed as a JSON object (400 for anything else)."""
        body = self._body()
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StudioError(f"request body: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise StudioError(f"request body: expected a JSON object, got {type(value).__name__}")
        return value

    def _send_json(self, status: int, value: Json) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        has_body = (
            self.headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in self.headers
        )
        if has_body and not self._body_read:
            self.close_connection = True  # an unread body would be read as the next request
        with contextlib.suppress(ConnectionError, TimeoutError):  # the client may be gone
            self._send(status, json.dumps({"error": message}).encode("utf-8"), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log:
            super().log_message(format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class raises itself (a malformed request line, an unsupported method) as JSON too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        text = message or HTTPStatus(code).phrase
        with contextlib.suppress(OSError):  # the client may be gone
            self._send(code, json.dumps({"error": text}).encode("utf-8"), "application/json")


def make_server(
    renderer: Renderer, host: str = "127.0.0.1", port: int = 0, *, max_body: int = MAX_BODY_BYTES, log: bool = False
) -> StudioServer:
    """A bound (not yet serving) :class:`StudioServer`; call ``serve_forever()`` (in a thread, for tests)."""
    return StudioServer((host, port), renderer, max_body=max_body, log=log)
