"""The HTTP plumbing the demo and the study servers share: a JSON handler and a threaded server
on the standard library's http.server, with their safety rules.

- Binds 127.0.0.1 by default; on a loopback address, a `Host` that is not localhost is refused
  (DNS rebinding), and so is a cross-site `Origin` (another page posting through the browser).
- Bodies: a `Content-Length` is required and checked against the server's limit before anything
  is read (also on `Expect: 100-continue`); a refused body is drained, so the client reads the
  answer instead of a reset.
- Time: a connection may sit idle or pause `timeout` seconds per read, and a client must send a
  whole request within the server's `read_seconds`, or the connection is cut.
- Every refusal is JSON `{"error": "...", "status": N}`; an unexpected failure is a JSON 500 and
  the server goes on. A client that resets its connection or stops reading costs one line on
  stderr (its address and what happened), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
DRAIN_BYTES = 64 * 1024 * 1024  # read and drop at most this much of a refused body (see _drain)


class RequestError(Exception):
    """A request we refuse: the HTTP status, a message the user can act on, and any headers
    the answer needs (Retry-After for a full queue)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hostname(netloc: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    try:
        return urlsplit("//" + netloc).hostname or ""
    except ValueError:
        return ""


class PortInUseError(OSError):
    """The port is taken; the message names it and --port."""

    def __str__(self) -> str:
        return str(self.strerror)


class JsonServer(ThreadingHTTPServer):
    """A threaded server for a JsonHandler: `max_body_bytes`, `read_seconds`, `loopback_only`,
    `log_requests`, and `url`, where to point a browser."""

    daemon_threads = True
    block_on_close = False
    max_body_bytes = 16 * 1024
    read_seconds = 30.0

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], log_requests: bool = False) -> None:
        self.log_requests = log_requests
        self.loopback_only = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, handler)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            host, port = address
            raise PortInUseError(
                err.errno,
                f"port {port} on {host} is already in use (another server, or an earlier one still running); "
                "choose another with --port N (--port 0: any free port)",
            ) from None

    def too_large(self, length: int) -> str:
        """The message for a body over `max_body_bytes`."""
        return f"body of {length:,} bytes is over the limit of {self.max_body_bytes:,}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone (reset, broken pipe, timed out) outside a POST's own handling, e.g.
        while its request line was read: one line on stderr, not a traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            self.log_disconnect(client_address, "a request", err)
        else:
            super().handle_error(request, client_address)

    def log_disconnect(self, client_address: Any, during: str, err: BaseException) -> None:
        """One stderr line for a client that went away: its address, when, and how."""
        host, port = client_address[:2] if isinstance(client_address, tuple) else (client_address, "")
        how = getattr(err, "strerror", None) or str(err) or "no reason given"
        sys.stderr.write(f"{host}:{port} went away during {during}: {type(err).__name__} ({how})\n")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class JsonHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with JSON errors; subclasses add `do_GET` and route POSTs through
    `_handle_post`."""

    protocol_version = "HTTP/1.1"  # keep-alive for a page's repeated requests
    timeout = 60  # seconds a connection may sit idle or pause within a read
    # headers and body go out in two writes; with Nagle on, a short body's last segment waits
    # for the client's delayed ACK of the headers: 40 ms more per small answer on Linux
    disable_nagle_algorithm = True
    server: JsonServer
    sys_version = ""

    # --- plumbing -----------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        """One request, with a bound on the time its client takes to send it: the socket's
        timeout holds per read only, so a client trickling a byte at a time would otherwise keep
        this thread forever. Past the bound the connection is shut down."""
        self._watchdog = threading.Timer(self.server.read_seconds, self._cut_off)
        self._watchdog.daemon = True
        self._watchdog.start()
        try:
            super().handle_one_request()
        finally:
            self._watchdog.cancel()

    def _request_read(self) -> None:
        """The whole request is in: the read bound no longer applies."""
        self._watchdog.cancel()

    def _cut_off(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.log_requests:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json", headers)

    def _send_error(self, err: RequestError, headers: dict[str, str] | None = None) -> None:
        headers = {**(getattr(err, "headers", None) or {}), **(headers or {})}
        with contextlib.suppress(OSError):  # the client may be gone (or cut off for trickling)
            self._send_json(err.status, {"error": err.message, "status": err.status}, headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (malformed request line, headers too long): JSON too."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may be gone already
            self._send_json(code, {"error": message or HTTPStatus(code).phrase, "status": code})

    def _check_origin(self) -> None:
        """Refuse other sites: a Host header that is not ours (DNS rebinding) and a cross-site
        Origin (a page elsewhere posting to this server through the user's browser)."""
        host = self.headers.get("Host", "")
        if self.server.loopback_only and host and not is_loopback(hostname(host)):
            raise RequestError(403, f"Host {host!r} refused: this server only answers on localhost")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            raise RequestError(403, f"cross-origin request from {origin!r} refused")

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (curl sends it above 1 MB): refuse an oversized body before the
        client sends it."""
        limit = self.server.max_body_bytes
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if length > limit:
            self.close_connection = True
            self._send_error(RequestError(413, self.server.too_large(length)))
            return False
        return super().handle_expect_100()

    def _drain(self, remaining: int) -> None:
        """Read and drop (part of) a body we refused, so that closing the socket does not reset
        the connection before the client has read our error answer."""
        self.connection.settimeout(2)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    # exceptions answered as their 4xx JSON error; a subclass may add its own (.status, .message)
    refusals: tuple[type[Exception], ...] = (RequestError,)

    def _handle_post(self, handle: Callable[[int], None], what: str) -> None:
        """Run `handle(content_length)`, turning every failure into a JSON answer: refusals as
        their 4xx (draining a body left unread), anything else as a 500, the server going on.
        `handle` sets `self._unread = 0` once it has read the body."""
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        self._unread = max(length, 0)  # bytes of the body still in the socket
        try:
            self._check_origin()
            handle(length)
        except self.refusals as err:
            unread = self._unread
            if unread:  # a body we did not read: this connection cannot carry another request
                self.close_connection = True
            self._send_error(
                RequestError(err.status, err.message, getattr(err, "headers", None)),
                {"Allow": "GET, HEAD"} if err.status == 405 else None,
            )
            if unread:
                self._drain(min(unread, DRAIN_BYTES))
        except (ConnectionError, TimeoutError) as err:
            self.close_connection = True
            self.server.log_disconnect(self.client_address, f"a {what}", err)
        except Exception as err:  # noqa: BLE001 - the server must answer and keep running
            self.close_connection = True
            self.log_error("%s failed: %r", what, err)
            self._send_json(500, {"error": f"{what} failed: {type(err).__name__}: {err}", "status": 500})
