"""The demo server's HTTP API (no browser): answers, refusals, limits and concurrent requests."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Pix2Pix
from pix2pix.cli import main
from pix2pix.hub.folder import save_model
from pix2pix.models.networks import UNetGenerator
from pix2pix.serve import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    Limits,
    make_server,
    page_palette,
    resolve_palette,
)

from ..conftest import shared_dataset

FACADES = ["background", "facade", "window", "door", "cornice", "sill"]
FACADES += ["balcony", "blind", "deco", "molding", "pillar", "shop"]


def save_tiny_model(folder: Path, palette: str | None = None, seed: int = 0) -> Path:
    """A random 5-level U-Net with 4 base channels (sides padded to multiples of 32)."""
    torch.manual_seed(seed)
    generator = UNetGenerator(3, 3, base_channels=4, depth=5)
    config = {
        "architecture": "unet",
        "generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 5},
        "direction": "BtoA",
        "crop_size": 64,
    }
    if palette:
        config["palette"] = palette
    save_model(folder, generator, config)
    return folder


class Running:
    """A demo server on 127.0.0.1, a free port, serving from a background thread."""

    def __init__(self, model: Path | Pix2Pix, **kwargs) -> None:
        self.server = make_server(model, "127.0.0.1", 0, **kwargs)
        self.port = self.server.server_address[1]
        self.url = self.server.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def translate(self, png: bytes, query: str = "mode=eval") -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", f"/translate?{query}", png, {"Content-Type": "image/png"})


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def random_image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with one tiny IDAT: a bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("serve") / "facades_model", palette="facades")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Running]:
    running = Running(model_dir, limits=Limits(max_upload_bytes=200_000, max_pixels=100_000))
    yield running
    running.close()


def test_health_and_info(server: Running) -> None:
    status, headers, body = server.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = server.request("GET", "/info")
    info = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert (info["in_channels"], info["out_channels"], info["direction"]) == (3, 3, "BtoA")
    assert (info["size_multiple"], info["crop_size"], info["modes"]) == (32, 64, ["paper", "eval"])
    assert (info["max_upload_bytes"], info["max_pixels"]) == (200_000, 100_000)
    assert info["palette"]["name"] == "facades"
    assert [c["name"] for c in info["palette"]["classes"]] == FACADES


def test_page_is_self_contained(server: Running) -> None:
    status, headers, body = server.request("GET", "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<canvas" in page and "/translate" in page
    # offline: nothing fetched from another host
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("size", [(64, 64), (37, 23), (100, 40)])
def test_translate_keeps_the_size_and_matches_the_library(server: Running, model_dir: Path, size) -> None:
    image = random_image(*size, seed=sum(size))
    model = Pix2Pix.load(model_dir)
    status, headers, body = server.translate(png_bytes(image), "mode=eval")
    assert status == 200 and headers["Content-Type"] == "image/png"
    out = Image.open(io.BytesIO(body))
    assert out.size == image.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(model.translate(image, mode="eval")))

    status, headers, body = server.translate(png_bytes(image), "mode=paper&seed=5")
    assert status == 200 and headers["X-Seed"] == "5" and headers["X-Mode"] == "paper"
    expected = model.translate(image, mode="paper", seed=5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), np.asarray(expected))


def test_paper_mode_without_seed_reports_a_repeatable_seed(server: Running) -> None:
    png = png_bytes(random_image(32, 32, seed=3))
    status, headers, first = server.translate(png, "mode=paper")
    assert status == 200
    seed = headers["X-Seed"]
    status, _, again = server.translate(png, f"mode=paper&seed={seed}")
    assert status == 200 and again == first
    _, _, other = server.translate(png, f"mode=paper&seed={int(seed) + 1}")
    assert other != first  # dropout noise: another seed, another sample


def test_jpeg_and_alpha_uploads(server: Running) -> None:
    buffer = io.BytesIO()
    random_image(40, 30, seed=1).save(buffer, format="JPEG")
    status, headers, body = server.request(
        "POST", "/translate?mode=eval", buffer.getvalue(), {"Content-Type": "image/jpeg"}
    )
    assert status == 200 and Image.open(io.BytesIO(body)).size == (40, 30)
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # transparent: composited on black
    _, _, from_rgba = server.translate(png_bytes(rgba))
    _, _, from_black = server.translate(png_bytes(Image.new("RGB", (20, 10))))
    assert from_rgba == from_black


def test_a_greyscale_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    generator = UNetGenerator(1, 1, base_channels=4, depth=5)
    config = {
        "architecture": "unet",
        "generator": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 5},
    }
    save_model(tmp_path / "grey", generator, config)
    running = Running(tmp_path / "grey")
    try:
        assert json.loads(running.request("GET", "/info")[2])["in_channels"] == 1
        status, _, body = running.translate(png_bytes(random_image(40, 20, seed=0)))  # colour in: made grey
        out = Image.open(io.BytesIO(body))
        assert status == 200 and out.mode == "L" and out.size == (40, 20)
    finally:
        running.close()


def test_a_resnet18_unet_colorization_model(tmp_path: Path) -> None:
    """Seed 003's generator in the demo: grey in (any size, padded to multiples of 32), colour
    out, the same image as the library gives."""
    from pix2pix.models.resnet_unet import ResNetUNetGenerator

    torch.manual_seed(0)
    config = {
        "architecture": "resnet18-unet",
        "generator": {"in_channels": 1, "out_channels": 2, "base_channels": 4},
        "dataset_mode": "colorization",
    }
    save_model(tmp_path / "colour", ResNetUNetGenerator(1, 2, base_channels=4), config)
    running = Running(tmp_path / "colour")
    try:
        info = json.loads(running.request("GET", "/info")[2])
        assert info["size_multiple"] == 32
        photo = random_image(45, 27, seed=3)
        status, _, body = running.translate(png_bytes(photo))
        out = Image.open(io.BytesIO(body))
        assert status == 200 and out.mode == "RGB" and out.size == (45, 27)
        expected = Pix2Pix.load(tmp_path / "colour").translate(photo, mode="eval")
        assert np.abs(np.asarray(out, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1
    finally:
        running.close()


def _bad_requests() -> list[tuple[str, dict, int, str]]:
    truncated = png_bytes(random_image(64, 64, seed=2))[:300]
    return [
        ("not an image", dict(body=b"hello, this is text"), 415, "not an image"),
        ("empty body", dict(body=b""), 400, "empty body"),
        ("truncated image", dict(body=truncated), 400, "truncated"),
        ("over the upload limit", dict(body=b"\0" * 300_000), 413, "over this server's limit"),
        ("too many pixels", dict(body=png_bytes(Image.new("RGB", (400, 400)))), 413, "400x400"),
        ("decompression bomb header", dict(body=png_header_only(100_000, 100_000)), 413, "pixels"),
        ("bad mode", dict(query="mode=train"), 400, "mode must be"),
        ("bad seed", dict(query="mode=paper&seed=-1"), 400, "seed must be"),
        ("non-ASCII digits", dict(query="mode=paper&seed=%C2%B2"), 400, "seed must be"),
        ("unknown parameter", dict(query="mode=eval&steps=3"), 400, "unknown query"),
        ("multipart form", dict(content_type="multipart/form-data; boundary=x"), 415, "multipart"),
        ("wrong host", dict(headers={"Host": "attacker.example:80"}), 403, "Host"),
        ("cross-site origin", dict(headers={"Origin": "http://attacker.example"}), 403, "cross-origin"),
        ("unknown path", dict(path="/translate/x"), 404, "cannot POST"),
        ("GET the API", dict(method="GET"), 405, "use POST"),
        ("no such page", dict(method="GET", path="/admin"), 404, "no such page"),
    ]


@pytest.mark.parametrize(("case", "request_args", "status", "message"), _bad_requests(), ids=lambda x: None)
def test_bad_requests_get_a_clear_json_4xx(server: Running, case, request_args, status, message) -> None:
    args = {"method": "POST", "path": "/translate", "query": "mode=eval", "content_type": "image/png"}
    args.update(request_args)
    body = args.get("body", png_bytes(random_image(16, 16, seed=0)))
    headers = {"Content-Type": args["content_type"], **args.get("headers", {})}
    path = args["path"] + ("?" + args["query"] if args["path"] == "/translate" else "")
    start = time.perf_counter()
    got, response_headers, answer = server.request(
        args["method"], path, body if args["method"] == "POST" else None, headers
    )
    assert time.perf_counter() - start < 5, case
    assert got == status, (case, answer)
    assert response_headers["Content-Type"] == "application/json"
    error = json.loads(answer)
    assert error["status"] == status and message in error["error"], (case, error)
    assert server.request("GET", "/health")[0] == 200  # still serving


def test_missing_content_length_is_refused(server: Running) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/translate")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    conn.close()


def test_oversized_upload_is_refused_before_it_is_sent(server: Running) -> None:
    """`Expect: 100-continue` (as curl sends above 1 MB): the 413 comes instead of the go-ahead."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = sock.makefile("rb").read()  # the server answers and closes; no body was sent
    assert answer.startswith(b"HTTP/1.1 413") and b"over this server's limit" in answer


def test_concurrent_requests_get_their_own_results(server: Running) -> None:
    """6 threads x 4 requests, each with its own image, mode and seed: every answer must equal
    the answer to that request made alone (no mixed images, modes or RNG streams)."""
    jobs = []
    for i in range(24):
        image = random_image(32 + 8 * (i % 3), 32, seed=100 + i)
        query = f"mode=paper&seed={i}" if i % 2 else "mode=eval"
        jobs.append((png_bytes(image), query))
    alone = [server.translate(png, query)[2] for png, query in jobs]

    def run(index: int) -> tuple[int, int, bytes]:
        status, _, body = server.translate(*jobs[index])
        return index, status, body

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, reversed(range(24))))
    assert time.perf_counter() - start < 30
    assert len(results) == 24
    for index, status, body in results:
        assert status == 200
        assert body == alone[index], f"request {index} got another request's result"


def test_a_small_request_runs_between_the_tiles_of_a_large_upload(tmp_path: Path) -> None:
    """A large upload goes one tile per turn; a small request that comes while it runs is answered
    after the tile running then, before the upload is done. Asserted by the order of the turns,
    not by timings. The upload's answer is the one it gets alone."""
    server = Running(save_tiny_model(tmp_path / "m"), limits=Limits(tile=64, overlap=16))
    queue = server.server.translator.queue
    turns: list[int] = []  # the pixels of the request of each turn, in order
    done: list[str] = []
    step = queue.step

    @contextlib.contextmanager
    def logged(ticket):
        with step(ticket) as waited:
            turns.append(ticket.pixels)
            yield waited

    large, small = png_bytes(random_image(256, 192, 3)), png_bytes(random_image(48, 40, 4))
    results = {}

    def post(name: str, png: bytes) -> None:
        results[name] = server.translate(png, "mode=paper&seed=7")
        done.append(name)

    def wait_until(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert condition()

    try:
        status, headers, alone = server.translate(large, "mode=paper&seed=7")
        total = int(headers["X-Turns"])
        assert status == 200 and total > 8  # two passes of 12 tiles, one per turn
        queue._s_per_pixel = 1.0  # the upload's expected length: long (its virtual finish time late)
        queue.step = logged
        uploader = threading.Thread(target=post, args=("large", large))
        uploader.start()
        wait_until(lambda: turns.count(256 * 192) >= 2)
        with queue.turn(1):  # taken between two of its tiles: the upload waits mid-way
            asker = threading.Thread(target=post, args=("small", small))
            asker.start()
            wait_until(lambda: len(queue._waiting) == 2)  # the upload and the small request
        asker.join(30)
        uploader.join(60)
        assert done == ["small", "large"]
        before = turns[: turns.index(48 * 40)].count(256 * 192)
        assert 2 <= before < total and turns.count(256 * 192) == total  # the small one ran mid-way
        assert results["small"][0] == results["large"][0] == 200
        assert results["large"][2] == alone  # interleaved or not, the same answer
        assert results["large"][1]["X-Turns"] == str(total)
    finally:
        server.close()


def test_a_large_upload_is_translated_in_tiles_as_the_library_does(tmp_path: Path) -> None:
    model_dir = save_tiny_model(tmp_path / "m")
    server = Running(model_dir, limits=Limits(tile=64, overlap=16))
    try:
        image = random_image(150, 100, 5)
        status, headers, body = server.translate(png_bytes(image), "mode=eval")
        assert status == 200 and int(headers["X-Turns"]) > 1
        steps = list(Pix2Pix.load(model_dir).translate_steps(image, "eval", tile=64, overlap=16))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), np.asarray(steps[-1]))
    finally:
        server.close()


def test_uploads_are_spooled_to_a_file_gone_when_the_request_ends(
    server: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled = []
    temporary_file = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        spooled.append(temporary_file(*args, **kwargs))
        return spooled[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    monkeypatch.setattr(server.server, "spool_dir", tmp_path)
    assert server.translate(png_bytes(random_image(40, 30, 0)))[0] == 200
    assert server.translate(b"not an image, but spooled all the same")[0] == 415
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # a body cut short
        sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789")
        sock.shutdown(socket.SHUT_WR)
        assert sock.makefile("rb").read().startswith(b"HTTP/1.1 400")
    assert len(spooled) == 3 and all(file.closed for file in spooled)
    assert list(tmp_path.iterdir()) == []


def test_shipped_palettes() -> None:
    facades = page_palette("facades")
    assert [c["name"] for c in facades["classes"]] == FACADES
    assert len({tuple(c["color"]) for c in facades["classes"]}) == 12  # distinct colours
    cityscapes = page_palette("cityscapes")
    assert [c["trainId"] for c in cityscapes["classes"]] == list(range(19))


def test_cityscapes_palette_is_the_datasets_label_table() -> None:
    labels = shared_dataset("cityscapes") / "labels.json"  # the dataset's table: the source of truth
    table = json.loads(labels.read_text())
    scored = sorted((t for t in table if 0 <= t["trainId"] < 255), key=lambda t: t["trainId"])
    expected = [(t["name"], t["id"], t["color"]) for t in scored]
    assert [(c["name"], c["id"], c["color"]) for c in page_palette("cityscapes")["classes"]] == expected


@pytest.mark.parametrize("name", ["cityscapes", "facades"])
def test_a_map_drawn_with_the_demo_palette_scores_as_its_classes(name: str) -> None:
    """What a user draws with the page's colours is read back by the evaluation as those classes."""
    from pix2pix.data.labels import colors_to_ids, to_train_ids
    from pix2pix.data.labels import load_palette as evaluation_palette

    classes = page_palette(name)["classes"]
    strip = np.array([[c["color"] for c in classes]], dtype=np.uint8)  # (1, K, 3): one pixel per class
    palette = evaluation_palette(name)
    train_ids = to_train_ids(colors_to_ids(Image.fromarray(strip), palette), palette)
    assert train_ids.reshape(-1).tolist() == [c["trainId"] for c in classes]


def test_palette_choice() -> None:
    from pix2pix.hub.model_config import ModelConfig

    def card(palette: str | None = None) -> ModelConfig:
        return ModelConfig("unet", {"base_channels": 4, "depth": 5}, palette=palette)

    assert resolve_palette(None, card()) is None
    assert resolve_palette(None, card("cityscapes")) == "cityscapes"
    assert resolve_palette("none", card("cityscapes")) is None
    assert resolve_palette("facades", card()) == "facades"
    with pytest.raises(ValueError, match="unknown palette 'ade20k'"):
        resolve_palette(None, card("ade20k"))
    assert (Limits().max_upload_bytes, Limits().max_pixels) == (DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_PIXELS)
    assert DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024 and DEFAULT_MAX_PIXELS == 16_000_000


def test_cli_refuses_an_unknown_palette(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = save_tiny_model(tmp_path / "m", palette="ade20k")
    assert main(["serve", "--model", str(model), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown palette 'ade20k'" in err and "Traceback" not in err


def test_cli_serves_until_interrupted(model_dir: Path) -> None:
    """`pix2pix serve` end to end: prints its URL, answers, and stops cleanly on Ctrl-C."""
    command = [sys.executable, "-m", "pix2pix", "serve", "--model", str(model_dir), "--port", "0", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "palette facades" in line and "http://127.0.0.1:" in line, line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGINT)
        # a clean exit, not a quick one: a 10 s bound failed once beside three busy jobs on 2 cores
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
