"""The browser demo: a small HTTP API around one model, and the drawing page that uses it.

Endpoints (all answers to bad requests are JSON `{"error": ...}` with a 4xx status):

- `GET /`: the page (static/index.html: canvas, palette, paper/eval modes, download).
- `GET /health`: `{"status": "ok"}`.
- `GET /info`: channels, direction, size multiple, crop size, palette, limits.
- `POST /translate?mode=paper|eval&seed=N`: the body is the image file itself (PNG, JPEG, WebP,
  BMP, GIF, TIFF, PPM); the answer is a PNG of the same size. Paper mode without a seed draws
  one; the seed used comes back in the `X-Seed` header.

Safety: binds 127.0.0.1 by default; the body size is checked against `Content-Length` before
anything is read and the pixel count against the header before anything is decoded
(decompression bombs); requests whose `Host` (DNS rebinding) or `Origin` (cross-site posts) is
not this server's are refused. One lock serialises inference: the paper mode switches the
generator's modules to training behaviour and seeds the global RNG (inside fork_rng), so two
requests must never run the generator at the same time.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import itertools
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from ..predict import MODES, Pix2Pix, size_multiple

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MiB
DEFAULT_MAX_PIXELS = 16_000_000  # 16 megapixels: about 3 GB of activations for the 256 px U-Net
PALETTES = ("cityscapes", "facades")
# formats PIL may try on an upload; the rest of its plugins are never consulted
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
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


@dataclass(frozen=True)
class Limits:
    """What one request may cost. `max_queue`: translations admitted at once (one running, the
    rest waiting); `queue_seconds`: how long one may wait for its turn; `read_seconds`: how long
    a client may take to send a whole request (a slow trickle keeps a thread busy)."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queue: int = 8
    queue_seconds: float = 30.0
    read_seconds: float = 30.0
    order: str = "smallest-first"  # or "arrival" (first come, first served)

    def __post_init__(self) -> None:
        if min(self.max_upload_bytes, self.max_pixels, self.max_queue) < 1:
            raise ValueError(f"limits must be positive, got {self}")
        if not (self.queue_seconds > 0 and self.read_seconds > 0):
            raise ValueError(f"time limits must be positive, got {self}")
        if self.order not in ("smallest-first", "arrival"):
            raise ValueError(f"order must be smallest-first or arrival, got {self.order!r}")


class TurnQueue:
    """Admission and order for the one generator: at most `size` requests at once, each waiting
    at most `seconds` for its turn. Waiting requests go smallest image first, so a small drawing
    waits behind the one large upload already running, not behind every queued one; a request
    that has waited `patience` seconds goes next whatever its size, so large ones are not starved."""

    def __init__(self, size: int, seconds: float, smallest_first: bool = True, patience: float = 10.0) -> None:
        self.size, self.seconds, self.smallest_first, self.patience = size, seconds, smallest_first, patience
        self._cond = threading.Condition()
        self._waiting: list[tuple[int, int, float]] = []  # (pixels, arrival number, arrival time)
        self._arrivals = itertools.count()
        self._busy = False
        self._mean_s = 0.5  # running mean of a turn's length, for Retry-After

    def _next(self) -> tuple[int, int, float]:
        oldest = min(self._waiting, key=lambda t: t[1])
        if not self.smallest_first or time.monotonic() - oldest[2] >= self.patience:
            return oldest
        return min(self._waiting)

    @contextlib.contextmanager
    def turn(self, pixels: int) -> Iterator[float]:
        """Wait for this request's turn; yields the seconds it waited."""
        start = time.monotonic()
        with self._cond:
            if len(self._waiting) + self._busy >= self.size:
                retry = max(1, math.ceil(self._mean_s * (len(self._waiting) + 1)))
                raise RequestError(
                    503, f"the server is busy ({self.size} requests queued); retry in {retry} s",
                    {"Retry-After": str(retry)},
                )  # fmt: skip
            ticket = (pixels, next(self._arrivals), start)
            self._waiting.append(ticket)
            while self._busy or self._next() != ticket:
                left = start + self.seconds - time.monotonic()
                if left <= 0:
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    raise RequestError(503, f"waited {self.seconds:g} s for a turn; retry later", {"Retry-After": "5"})
                self._cond.wait(min(left, 0.5))  # also wakes to see whether someone's patience ran out
            self._waiting.remove(ticket)
            self._busy = True
        began = time.monotonic()
        try:
            yield began - start
        finally:
            with self._cond:
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - began)
                self._busy = False
                self._cond.notify_all()


# What the page shows about each palette; the classes themselves come from the label tables
# that evaluation uses (pix2pix.data.labels), so the demo and the scores never disagree.
PALETTE_TEXT = {
    "cityscapes": (
        "Cityscapes (19 train classes)",
        "Cityscapes label table (cityscapesScripts labels.py): the 19 classes with trainId 0-18, "
        "their official ids and colours",
    ),
    "facades": (
        "CMP Facades (12 classes)",
        "CMP Facade Database label order (1 background ... 12 shop); colours are MATLAB jet(12) in that order, "
        "the colour map of the dataset's label images and of the pix2pix facades inputs",
    ),
}


def load_palette(name: str) -> dict[str, Any]:
    """A shipped class palette ('cityscapes' or 'facades'): title, source, background, classes
    (each with name, id, trainId and RGB colour)."""
    from ..data.labels import load_palette as load_label_table

    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}; choose one of {', '.join(PALETTES)} or none")
    labels = load_label_table(name).labels
    scored = sorted((label for label in labels if 0 <= label.train_id < 255), key=lambda label: label.train_id)
    classes = [
        {"name": label.name, "id": label.id, "trainId": label.train_id, "color": list(label.color)} for label in scored
    ]
    # the eraser paints the background: Cityscapes' "unlabeled" (id 0), the first facades class
    unlabeled = [label for label in labels if label.id == 0]
    background = (
        {"name": unlabeled[0].name, "id": 0, "color": list(unlabeled[0].color)}
        if unlabeled
        else {k: classes[0][k] for k in ("name", "id", "color")}
    )
    title, source = PALETTE_TEXT[name]
    return {"name": name, "title": title, "source": source, "background": background, "classes": classes}


def resolve_palette(flag: str | None, config: dict[str, Any]) -> str | None:
    """The palette to show: the --palette flag if given ('none' for none), else the model
    config's "palette" key, else none."""
    name = flag if flag is not None else config.get("palette")
    if name in (None, "none"):
        return None
    if name not in PALETTES:
        source = "--palette" if flag is not None else "the model config's 'palette'"
        raise ValueError(f"{source}: unknown palette {name!r}; choose one of {', '.join(PALETTES)} or none")
    return name


def decode_image(data: bytes, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """Upload bytes -> PIL image in `mode` ('RGB' or 'L'), EXIF orientation applied;
    RequestError for what we refuse.

    The pixel count is checked from the header, before the pixels are decoded.
    """
    if not data:
        raise RequestError(400, "empty body: send the image file's bytes (PNG or JPEG) as the request body")
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise RequestError(415, f"the body is not an image ({', '.join(IMAGE_FORMATS)} accepted)") from None
    except Image.DecompressionBombError as err:  # PIL's own, larger limit
        raise RequestError(413, f"image has too many pixels ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestError(400, f"corrupt image header ({err})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise RequestError(
            413, f"image is {w}x{h} = {w * h:,} pixels; this server accepts at most {max_pixels:,} (--max-pixels)"
        )
    if w < 1 or h < 1:
        raise RequestError(400, f"image is {w}x{h}: nothing to translate")
    try:
        img = ImageOps.exif_transpose(img)
        img.load()
    except Image.DecompressionBombError as err:
        raise RequestError(413, f"image has too many pixels ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise RequestError(400, f"corrupt or truncated image ({err})") from None
    if img.mode in ("P", "PA", "LA", "RGBA", "RGBa", "La"):
        # as pix2pix.data.images.open_image: transparency composited on black, so the result
        # does not depend on whatever colour hides under transparent pixels
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA"))
    try:
        return img.convert(mode)
    except ValueError as err:  # e.g. exotic 16-bit modes
        raise RequestError(415, f"cannot use a {img.mode} image ({err}); send 8-bit RGB or greyscale") from None


class Translator:
    """The model behind the API: one generator, used by one request at a time.

    Example:
        >>> translator = Translator(Pix2Pix.load("runs/shapes/model"), name="shapes")  # doctest: +SKIP
        >>> png, headers = translator.translate_bytes(open("labels.png", "rb").read(), "paper", 7)  # doctest: +SKIP
    """

    def __init__(
        self, model: Pix2Pix, name: str = "model", palette: str | None = None, limits: Limits | None = None
    ) -> None:
        self.model = model
        self.name = name
        self.palette = load_palette(palette) if palette else None
        self.limits = limits or Limits()
        limits = self.limits
        self.queue = TurnQueue(limits.max_queue, limits.queue_seconds, limits.order == "smallest-first")

    def info(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "name": self.name,
            "architecture": config.get("architecture"),
            "in_channels": self.model.in_channels,
            "out_channels": self.model.out_channels,
            "direction": config.get("direction"),
            "size_multiple": size_multiple(self.model.generator),
            "crop_size": config.get("crop_size"),
            "modes": list(MODES),
            "palette": self.palette,
            "max_upload_bytes": self.limits.max_upload_bytes,
            "max_pixels": self.limits.max_pixels,
        }

    def translate_bytes(self, data: bytes, mode: str, seed: int | None) -> tuple[bytes, dict[str, str]]:
        """Image file bytes -> (PNG bytes of the same size, response headers)."""
        # RGB in; Pix2Pix.translate makes the generator's input from it (grey, RGB, or the L of
        # Lab for a colorization model)
        image = decode_image(data, self.limits.max_pixels)
        if mode == "paper" and seed is None:
            seed = secrets.randbelow(2**31)  # reported back, so any sample can be repeated
        with self.queue.turn(image.width * image.height) as waited_s:
            # one at a time across the whole forward pass: generator_mode flips module state and
            # the seeded RNG is process-wide, so concurrent requests would mix otherwise
            start = time.perf_counter()
            out = self.model.translate(image, mode=mode, seed=seed if mode == "paper" else None)
            inference_ms = (time.perf_counter() - start) * 1000
        buffer = io.BytesIO()
        out.save(buffer, format="PNG", compress_level=3)
        headers = {"X-Mode": mode, "X-Inference-Ms": f"{inference_ms:.1f}", "X-Queue-Ms": f"{waited_s * 1000:.1f}"}
        if mode == "paper":
            headers["X-Seed"] = str(seed)
        return buffer.getvalue(), headers


def _parse_query(query: str) -> tuple[str, int | None]:
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"mode", "seed"})
    if unknown:
        raise RequestError(400, f"unknown query parameter(s) {', '.join(unknown)}; use mode and seed")
    mode = params.get("mode", ["paper"])[-1]
    if mode not in MODES:
        raise RequestError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    seed = None
    if "seed" in params and params["seed"][-1] != "":
        text = params["seed"][-1]
        if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
            raise RequestError(400, f"seed must be a whole number from 0 to 2**63 - 1, got {text!r}")
        seed = int(text)
    return mode, seed


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    try:
        return urlsplit("//" + netloc).hostname or ""
    except ValueError:
        return ""


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the page's repeated requests
    timeout = 60  # seconds a connection may sit idle or trickle its body
    # headers and body go out in two writes; with Nagle on, a short body's last segment waits
    # for the client's delayed ACK of the headers: 40 ms more per small PNG on Linux
    disable_nagle_algorithm = True
    server: DemoServer
    server_version = "pix2pix-serve"
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
        if self.server.loopback_only and host and not _is_loopback(_hostname(host)):
            raise RequestError(403, f"Host {host!r} refused: this server only answers on localhost")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            raise RequestError(403, f"cross-origin request from {origin!r} refused")

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (curl sends it above 1 MB): refuse an oversized upload before
        the client sends it."""
        limit = self.server.translator.limits.max_upload_bytes
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if length > limit:
            self.close_connection = True
            message = f"upload of {length:,} bytes is over this server's limit of {limit:,} bytes (--max-upload-mb)"
            self._send_error(RequestError(413, message))
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

    # --- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        try:
            self._check_origin()
            if path in ("/", "/index.html"):
                self._send(
                    200,
                    self.server.page,
                    "text/html; charset=utf-8",
                    # the page is self-contained: inline style and script, images from blobs
                    {
                        "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'"
                    },
                )
            elif path == "/health":
                self._send_json(200, {"status": "ok"})
            elif path == "/info":
                self._send_json(200, self.server.translator.info())
            elif path == "/translate":
                raise RequestError(405, "use POST /translate with the image as the body")
            else:
                raise RequestError(404, f"no such page {path!r}; try /, /info, /health or POST /translate")
        except RequestError as err:
            self._send_error(err, {"Allow": "POST"} if err.status == 405 else None)

    do_HEAD = do_GET

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
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - the server must answer and keep running
            self.close_connection = True
            self.log_error("%s failed: %r", what, err)
            self._send_json(500, {"error": f"{what} failed: {type(err).__name__}: {err}", "status": 500})

    def do_POST(self) -> None:  # noqa: N802
        self._handle_post(self._translate, "translation")

    def _translate(self, length: int) -> None:
        url = urlsplit(self.path)
        if url.path != "/translate":
            known = url.path in ("/", "/index.html", "/health", "/info")
            raise RequestError(405 if known else 404, f"cannot POST {url.path!r}; use POST /translate")
        if self.headers.get("Transfer-Encoding") is not None or length < 0:
            raise RequestError(411, "send the image with a valid Content-Length header (no chunked uploads)")
        limit = self.server.translator.limits.max_upload_bytes
        if length > limit:
            raise RequestError(
                413, f"upload of {length:,} bytes is over this server's limit of {limit:,} bytes (--max-upload-mb)"
            )
        if self.headers.get_content_type().startswith("multipart/"):
            raise RequestError(415, "send the image file's bytes as the body, not a multipart form")
        mode, seed = _parse_query(url.query)
        data = self.rfile.read(length)
        self._unread = 0
        if len(data) < length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(data)} of {length} bytes (Content-Length)")
        self._request_read()
        png, headers = self.server.translator.translate_bytes(data, mode, seed)
        self._send(200, png, "image/png", headers)


class DemoServer(ThreadingHTTPServer):
    """ThreadingHTTPServer serving one Translator; `url` is where to point a browser."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], translator: Translator, log_requests: bool = False) -> None:
        self.translator = translator
        self.read_seconds = translator.limits.read_seconds
        self.log_requests = log_requests
        self.page = (resources.files("pix2pix.serve") / "static" / "index.html").read_bytes()
        host = address[0]
        self.loopback_only = _is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, DemoHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def model_name(path: str | Path) -> str:
    """What the page calls a model: its folder's name, or the run's for a run's model/ folder."""
    path = Path(path).resolve()
    return path.parent.name if path.name == "model" else path.name


def make_server(
    model: Pix2Pix | str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    palette: str | None = None,
    limits: Limits | None = None,
    name: str | None = None,
    log_requests: bool = False,
) -> DemoServer:
    """A bound (not yet serving) demo server; call `serve_forever()` on it. Port 0 picks a free one.

    `palette`: 'cityscapes', 'facades', 'none', or None for the model config's "palette" key.

    Example:
        >>> server = make_server("runs/shapes/model", port=0)  # doctest: +SKIP
        >>> print(server.url); server.serve_forever()  # doctest: +SKIP
    """
    if not isinstance(model, Pix2Pix):
        name = name or model_name(model)
        model = Pix2Pix.load(model)
    translator = Translator(model, name or "model", resolve_palette(palette, model.config), limits)
    return DemoServer((host, port), translator, log_requests)
