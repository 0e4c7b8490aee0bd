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
not this server's are refused. Uploads are spooled to a temporary file, not held in memory.

Scheduling (TurnQueue): one generator call at a time, since the paper mode switches the
generator's modules to training behaviour and seeds the global RNG (inside fork_rng). A call is
a turn: a small request takes one, an upload larger than `Limits.tile` takes one per tile
(Pix2Pix.translate_steps), and between two turns the earliest admitted request by virtual finish
time goes next, so a drawing waits about one tile's time behind a large upload.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.labels import load_palette as load_label_table
from ..hub.model_config import ModelConfig
from ..inference.generator import MODES, size_multiple
from ..inference.predict import Pix2Pix
from ..inference.tiling import DEFAULT_OVERLAP
from .http import JsonHandler, JsonServer, RequestError

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MiB
DEFAULT_MAX_PIXELS = 16_000_000  # 16 megapixels: about 3 GB of activations for the 256 px U-Net
PALETTES = ("cityscapes", "facades")
# formats PIL may try on an upload; the rest of its plugins are never consulted
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
# px: uploads larger on a side go in tiles of at most this, one per turn; a 512 px tile of the
# 256 px U-Net is about four 256 px drawings' time, what a drawing waits behind a large upload
DEFAULT_TILE = 512
SPOOL_CHUNK = 64 * 1024  # bytes read from the socket and written to the spool file at a time


@dataclass(frozen=True)
class Limits:
    """What one request may cost. `max_queue`: translations admitted at once (one running, the
    rest waiting); `queue_seconds`: how long one may wait for its first turn; `read_seconds`: how
    long a client may take to send a whole request (a slow trickle keeps a thread busy). `tile`:
    an upload larger than this many px on a side is translated in tiles of at most `tile` px
    (overlapping by `overlap` px), one tile per turn, so that other requests run between its
    tiles; a waiting request then waits about one tile's time, not a whole large translation."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queue: int = 8
    queue_seconds: float = 30.0
    read_seconds: float = 30.0
    order: str = "smallest-first"  # or "arrival" (first come, first served)
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if min(self.max_upload_bytes, self.max_pixels, self.max_queue, self.tile) < 1:
            raise ValueError(f"limits must be positive, got {self}")
        if not (self.queue_seconds > 0 and self.read_seconds > 0):
            raise ValueError(f"time limits must be positive, got {self}")
        if self.order not in ("smallest-first", "arrival"):
            raise ValueError(f"order must be smallest-first or arrival, got {self.order!r}")
        if not 0 <= self.overlap < self.tile // 2:
            raise ValueError(f"overlap must be in [0, {self.tile // 2}) for {self.tile} px tiles, got {self.overlap}")


@dataclass
class Ticket:
    """One admitted request: its place in the order (virtual finish time, arrival number), when
    it came, and the turns it has had."""

    key: tuple[float, int]
    pixels: int
    arrived: float
    turns: int = 0
    busy_s: float = 0.0  # seconds its turns took
    waited_s: float = 0.0  # seconds it waited for them


class TurnQueue:
    """Admission and order for the one generator: at most `size` requests admitted at once, one
    turn (one generator call: a small request, or one tile of a large upload) running at a time,
    each request waiting at most `seconds` for its first turn.

    Order ("smallest-first"): each request gets a virtual finish time, its arrival plus its
    expected length (pixels x the measured seconds per pixel), and of the admitted requests the
    earliest has the next turn (as in fair queueing). A large upload keeps its virtual finish time
    from tile to tile, so a small drawing that comes while it runs goes next, after the tile
    running now; a large upload goes ahead of small requests that came more than its own length
    later, so it is never starved. A request that has started is not timed out: only requests of
    earlier virtual finish time, which came before its own finish time, go ahead of it. "arrival"
    serves in arrival order, tile by tile all the same."""

    def __init__(self, size: int, seconds: float, smallest_first: bool = True) -> None:
        self.size, self.seconds, self.smallest_first = size, seconds, smallest_first
        self._cond = threading.Condition()
        self._admitted: list[tuple[float, int]] = []  # keys of the admitted requests
        self._waiting: list[tuple[float, int]] = []  # keys of those waiting for a turn now
        self._arrivals = itertools.count()
        self._busy = False
        self._mean_s = 0.5  # running mean of a request's turns in all, for Retry-After
        self._s_per_pixel = 1e-6  # running mean of a request's seconds per pixel

    @property
    def admitted(self) -> int:
        """Requests admitted now, running or waiting."""
        with self._cond:
            return len(self._admitted)

    @contextlib.contextmanager
    def admit(self, pixels: int) -> Iterator[Ticket]:
        """Admit a request of `pixels` for the turns it takes (`step`), or refuse it with a 503
        when `size` are admitted already."""
        start = time.monotonic()
        with self._cond:
            if len(self._admitted) >= self.size:
                retry = max(1, math.ceil(self._mean_s * (len(self._admitted) + 1)))
                raise RequestError(
                    503, f"the server is busy ({self.size} requests queued); retry in {retry} s",
                    {"Retry-After": str(retry)},
                )  # fmt: skip
            finish = start + pixels * self._s_per_pixel if self.smallest_first else start
            ticket = Ticket((finish, next(self._arrivals)), pixels, start)
            self._admitted.append(ticket.key)
        try:
            yield ticket
        finally:
            with self._cond:
                self._admitted.remove(ticket.key)
                if ticket.turns:
                    self._mean_s = 0.8 * self._mean_s + 0.2 * ticket.busy_s
                    # per pixel, counting a small image as 256 x 256: fixed costs dominate there
                    self._s_per_pixel = 0.8 * self._s_per_pixel + 0.2 * ticket.busy_s / max(ticket.pixels, 65536)
                self._cond.notify_all()

    @contextlib.contextmanager
    def step(self, ticket: Ticket) -> Iterator[float]:
        """Wait for one turn of an admitted request: no other turn running, and this request the
        earliest admitted one. Yields the seconds it waited. Only the first turn has a deadline
        (`seconds` from admission): a 503 then."""
        start = time.monotonic()
        with self._cond:
            self._waiting.append(ticket.key)
            while self._busy or min(self._admitted) != ticket.key:
                left = ticket.arrived + self.seconds - time.monotonic() if ticket.turns == 0 else None
                if left is not None and left <= 0:
                    self._waiting.remove(ticket.key)
                    self._cond.notify_all()
                    raise RequestError(503, f"waited {self.seconds:g} s for a turn; retry later", {"Retry-After": "5"})
                self._cond.wait(left)
            self._waiting.remove(ticket.key)
            self._busy = True
        began = time.monotonic()
        try:
            yield began - start
        finally:
            with self._cond:
                ticket.turns += 1
                ticket.busy_s += time.monotonic() - began
                ticket.waited_s += began - start
                self._busy = False
                self._cond.notify_all()

    @contextlib.contextmanager
    def turn(self, pixels: int) -> Iterator[float]:
        """A request of one turn: admitted, then its turn; yields the seconds it waited."""
        with self.admit(pixels) as ticket, self.step(ticket) as waited_s:
            yield waited_s


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


def page_palette(name: str) -> dict[str, Any]:
    """The drawing page's view of a shipped label table (data.labels.load_palette, which the
    evaluation reads): title, source, background, classes (each with name, id, trainId and RGB
    colour)."""
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


def resolve_palette(flag: str | None, config: ModelConfig) -> str | None:
    """The palette to show: the --palette flag if given ('none' for none), else the model
    config's "palette" key, else none."""
    name = flag if flag is not None else config.palette
    if name in (None, "none"):
        return None
    if name not in PALETTES:
        source = "--palette" if flag is not None else "the model config's 'palette'"
        raise ValueError(f"{source}: unknown palette {name!r}; choose one of {', '.join(PALETTES)} or none")
    return name


def decode_image(upload: bytes | BinaryIO, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """An upload (bytes, or a binary file at its start) -> PIL image in `mode` ('RGB' or 'L'),
    EXIF orientation applied; RequestError for what we refuse.

    The pixel count is checked from the header, before the pixels are decoded.
    """
    file = io.BytesIO(upload) if isinstance(upload, bytes) else upload
    if not file.read(1):
        raise RequestError(400, "empty body: send the image file's bytes (PNG or JPEG) as the request body")
    file.seek(0)
    try:
        img = Image.open(file, formats=IMAGE_FORMATS)  # reads the header only
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
        self.palette = page_palette(palette) if palette else None
        self.limits = limits or Limits()
        limits = self.limits
        self.queue = TurnQueue(limits.max_queue, limits.queue_seconds, limits.order == "smallest-first")

    def info(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "name": self.name,
            "architecture": config.architecture,
            "in_channels": self.model.in_channels,
            "out_channels": self.model.out_channels,
            "direction": config.direction,
            "size_multiple": size_multiple(self.model.generator),
            "crop_size": config.crop_size,
            "modes": list(MODES),
            "palette": self.palette,
            "max_upload_bytes": self.limits.max_upload_bytes,
            "max_pixels": self.limits.max_pixels,
        }

    def translate_upload(self, upload: bytes | BinaryIO, mode: str, seed: int | None) -> tuple[bytes, dict[str, str]]:
        """An image file (its bytes, or a binary file such as the spooled upload) -> (PNG bytes
        of the same size, response headers)."""
        # RGB in; Pix2Pix.translate makes the generator's input from it (grey, RGB, or the L of
        # Lab for a colorization model)
        image = decode_image(upload, self.limits.max_pixels)
        if mode == "paper" and seed is None:
            seed = secrets.randbelow(2**31)  # reported back, so any sample can be repeated
        # one generator call per turn, never two at once: generator_mode flips module state and
        # the seeded RNG is process-wide (translate_steps keeps each request's own between turns)
        steps = self.model.translate_steps(
            image, mode, seed if mode == "paper" else None, self.limits.tile, self.limits.overlap
        )
        out = None
        with self.queue.admit(image.width * image.height) as ticket:
            while out is None:
                with self.queue.step(ticket):
                    out = next(steps)
        buffer = io.BytesIO()
        out.save(buffer, format="PNG", compress_level=3)
        headers = {
            "X-Mode": mode,
            "X-Inference-Ms": f"{ticket.busy_s * 1000:.1f}",  # all its turns
            "X-Queue-Ms": f"{ticket.waited_s * 1000:.1f}",  # waits for its turns, between tiles too
            "X-Turns": str(ticket.turns),
        }
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


class DemoHandler(JsonHandler):
    """The demo's routes: the page, /health, /info and POST /translate."""

    server: DemoServer
    server_version = "pix2pix-serve"

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
        # spooled to a file of its own (no name on Linux), closed and so deleted when the request
        # ends, however it ends: an upload never sits in memory as bytes
        with tempfile.TemporaryFile(prefix="pix2pix-upload-", dir=self.server.spool_dir) as upload:
            received = 0
            while received < length:
                chunk = self.rfile.read(min(length - received, SPOOL_CHUNK))
                if not chunk:
                    break
                upload.write(chunk)
                received += len(chunk)
                self._unread = length - received
            if received < length:
                self._unread = 0
                self.close_connection = True
                raise RequestError(400, f"the body ended after {received} of {length} bytes (Content-Length)")
            self._request_read()
            upload.seek(0)
            png, headers = self.server.translator.translate_upload(upload, mode, seed)
        self._send(200, png, "image/png", headers)


class DemoServer(JsonServer):
    """Serves one Translator; `url` is where to point a browser; uploads are spooled in
    `spool_dir` (None: the system's temporary folder)."""

    spool_dir: str | Path | None = None

    def __init__(self, address: tuple[str, int], translator: Translator, log_requests: bool = False) -> None:
        self.translator = translator
        self.max_body_bytes = translator.limits.max_upload_bytes
        self.read_seconds = translator.limits.read_seconds
        self.page = (resources.files("pix2pix.serve") / "static" / "index.html").read_bytes()
        super().__init__(address, DemoHandler, log_requests)

    def too_large(self, length: int) -> str:
        return (
            f"upload of {length:,} bytes is over this server's limit of {self.max_body_bytes:,} bytes (--max-upload-mb)"
        )


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
