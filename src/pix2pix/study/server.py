"""`pix2pix study serve`: the study page and its small JSON API (standard library http.server).

Endpoints (refusals are JSON `{"error": ..., "status": ...}` with a 4xx status):

- `GET /`: the page (static/index.html, self-contained: no CDN, no external assets).
- `GET /health`: `{"status": "ok"}`.
- `GET /api/state`: `{"study": the protocol a new session gets, "session": this browser's session or null}`.
- `POST /api/session` `{"worker_id": optional}`: start a session (201, sets the participant cookie)
  or resume this browser's unfinished one (200); 409 when it (or the worker id) has completed one.
- `GET /api/image/<trial>/<left|right>`: an image of the current trial of this browser's session
  (no other trial's: the page cannot peek ahead, and image URLs never tell real from fake).
- `POST /api/answer` `{"session", "trial", "answer": "left"|"right", "response_ms", "exposure_ms"}`:
  record the answer to the current trial (see `StudyStore.answer`).

The participant's identity is a random token in an HttpOnly, SameSite=Strict cookie set by the
server; sessions are found from the token, so a page can only ever act on its own session.
Safety as in the demo server (`pix2pix.serve.http`, the request plumbing both servers share): binds
127.0.0.1 unless told otherwise, refuses foreign `Host` (DNS rebinding) and cross-site `Origin`
headers, checks `Content-Length` against a small limit before reading a body.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import socket
import threading
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..serve.http import JsonHandler, JsonServer, RequestError
from .design import Protocol, load_study
from .store import DEFAULT_ABANDON_AFTER_S, Refused, StudyStore

MAX_BODY_BYTES = 16 * 1024  # an answer is ~150 bytes
COOKIE_MAX_AGE_S = 90 * 24 * 3600
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


class StudyHandler(JsonHandler):
    """The study's routes on the shared JSON plumbing (serve/http.py)."""

    server: StudyServer
    server_version = "pix2pix-study"
    refusals = (RequestError, Refused)

    def _token(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(self.server.cookie_name)
        return morsel.value if morsel else None

    def _cookie_header(self, token: str) -> dict[str, str]:
        return {
            "Set-Cookie": f"{self.server.cookie_name}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; "
            "HttpOnly; SameSite=Strict"
        }

    def _refused(self, err: Refused | RequestError, headers: dict[str, str] | None = None) -> None:
        self._send_error(RequestError(err.status, err.message), headers)

    # --- GET -----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        store = self.server.store
        try:
            self._check_origin()
            if path in ("/", "/index.html"):
                self._send(200, self.server.page, "text/html; charset=utf-8", PAGE_HEADERS)
            elif path == "/health":
                self._send_json(200, {"status": "ok"})
            elif path == "/api/state":
                self._send_json(200, {"study": store.public_settings(), "session": store.state(self._token())})
            elif path.startswith("/api/image/"):
                parts = path.split("/")[3:]
                if len(parts) != 2 or not parts[0].isdigit():
                    raise RequestError(404, "image URLs are /api/image/<trial>/<left|right>")
                file = store.image(self._token(), int(parts[0]), parts[1])
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                self._send(200, file.read_bytes(), kind)
            elif path in ("/api/session", "/api/answer"):
                raise RequestError(405, f"use POST {path}")
            else:
                raise RequestError(404, f"no such page {path!r}")
        except (RequestError, Refused) as err:
            self._refused(err, {"Allow": "POST"} if err.status == 405 else None)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - the server must answer and keep running
            self.close_connection = True
            self.log_error("study request failed: %r", err)
            self._send_json(500, {"error": f"server error: {type(err).__name__}: {err}", "status": 500})

    do_HEAD = do_GET  # the base class's alias would point at its own do_GET

    # --- POST ----------------------------------------------------------------------------------

    def _read_json(self, length: int) -> Any:
        if self.headers.get("Transfer-Encoding") is not None or length < 0:
            raise RequestError(411, "send a JSON body with a valid Content-Length header (no chunked bodies)")
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"body of {length:,} bytes is over the limit of {MAX_BODY_BYTES:,}")
        if self.headers.get_content_type() != "application/json":
            raise RequestError(415, "send the body as application/json")
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(data)} of {length} bytes (Content-Length)")
        if not data.strip():
            return {}
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the body is not valid JSON ({err})") from None
        except RecursionError:
            raise RequestError(400, "the body's JSON is nested too deeply") from None

    def do_POST(self) -> None:  # noqa: N802
        self._handle_post(self._post, "study request")

    def _post(self, length: int) -> None:
        path = urlsplit(self.path).path
        if path not in ("/api/session", "/api/answer"):
            known = path in ("/", "/index.html", "/health", "/api/state") or path.startswith("/api/image/")
            raise RequestError(405 if known else 404, f"cannot POST {path!r}; use /api/session or /api/answer")
        payload = self._read_json(length)
        self._unread = 0
        self._request_read()
        token = self._token()
        store = self.server.store
        if path == "/api/session":
            if not isinstance(payload, dict) or set(payload) - {"worker_id"}:
                raise RequestError(400, 'send {"worker_id": "..."} (optional) or {}')
            worker_id = payload.get("worker_id")
            if worker_id is not None and not isinstance(worker_id, str):
                raise RequestError(400, "worker_id must be a string")
            state, token, created = store.start(token, worker_id)
            self._send_json(201 if created else 200, {"session": state}, self._cookie_header(token))
        else:
            self._send_json(200, store.answer(token, payload))


class StudyServer(JsonServer):
    """Serves one study folder; `url` is where to point a browser. `server_close()` also releases
    the study folder."""

    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, address: tuple[str, int], store: StudyStore, log_requests: bool = False) -> None:
        self.store = store
        self.cookie_name = f"pix2pix_study_{store.study.id}"
        self.page = (resources.files("pix2pix.study") / "static" / "index.html").read_bytes()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        try:
            super().__init__(address, StudyHandler, log_requests)
        except BaseException:
            store.close()
            raise

    # open connections are tracked so that closing the server ends them too: a keep-alive
    # connection must not go on being answered from a store that no longer holds the folder
    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.store.close()
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def make_study_server(
    study: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    exposure_ms: int | None = None,
    practice: int | None = None,
    trials: int | None = None,
    fixation_ms: int | None = None,
    display_px: int | None = None,
    abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
    log_requests: bool = False,
) -> StudyServer:
    """A bound (not yet serving) study server; call `serve_forever()` on it. Settings left None
    are the study's (study.json, by default the paper's 1000 ms, 10 practice, 40 trials). Port 0
    picks a free one. Sessions already started keep the settings they started with.

    Example:
        >>> server = make_study_server("study", port=0, exposure_ms=1000)  # doctest: +SKIP
        >>> print(server.url); server.serve_forever()  # doctest: +SKIP
    """
    base: Protocol = load_study(study).protocol
    protocol = base.replace(
        exposure_ms=exposure_ms, practice=practice, trials=trials, fixation_ms=fixation_ms, display_px=display_px
    )
    store = StudyStore(study, protocol, abandon_after_s=abandon_after_s)
    return StudyServer((host, port), store, log_requests)
