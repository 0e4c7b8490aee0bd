"""`pix2pix data download` against a local HTTP server on 127.0.0.1: resume, checksums, safe unpacking.

Nothing here contacts the real dataset server.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pix2pix.cli import main
from pix2pix.data.download import DownloadError, archive_url, download_dataset, safe_extract


def make_archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz holding `members` (path -> content) and symlinks (path -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


FACADES = make_archive(
    {
        "facades/train/1.jpg": b"\xff\xd8 train pair " * 2000,  # ~30 kB: a few read chunks
        "facades/val/1.jpg": b"val pair",
        "facades/test/1.jpg": b"test pair",
    }
)
FACADES_SHA = hashlib.sha256(FACADES).hexdigest()


class Server:
    """Serves `files` (URL path -> bytes), honours `Range: bytes=N-`, can cut a response short
    once (`truncate[path] = bytes to send`) or ignore ranges; logs each request's Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.truncate.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.close_connection = True  # after a cut the client sees the connection drop

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets"

    def __enter__(self) -> Server:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "PIX2PIX_DATASETS_URL"):
        monkeypatch.delenv(var, raising=False)  # loopback only, never through a proxy
    with Server() as s:
        s.files["/datasets/facades.tar.gz"] = FACADES
        yield s


def _download(server: Server, dest: Path, *extra: str) -> int:
    return main(["data", "download", "facades", "--dest", str(dest), "--url", server.base, "--no-progress", *extra])


def test_download_verifies_and_unpacks_into_the_standard_layout(server: Server, tmp_path: Path, capsys) -> None:
    assert _download(server, tmp_path, "--sha256", FACADES_SHA) == 0
    out = capsys.readouterr().out
    assert "SHA-256 verified" in out
    root = tmp_path / "facades"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "val"]
    assert (root / "val" / "1.jpg").read_bytes() == b"val pair"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facades"]  # no archive, .part or staging left
    # a second call does not clobber the dataset
    assert _download(server, tmp_path) == 2
    assert "already exists" in capsys.readouterr().err


def test_unknown_checksum_is_printed_not_claimed(server: Server, tmp_path: Path, capsys) -> None:
    download_dataset("facades", tmp_path, url=server.base, progress=False, keep_archive=True)
    out = capsys.readouterr().out
    assert FACADES_SHA in out and "could not be verified" in out
    assert (tmp_path / "facades.tar.gz").read_bytes() == FACADES


def test_wrong_checksum_deletes_the_download(server: Server, tmp_path: Path, capsys) -> None:
    assert _download(server, tmp_path, "--sha256", "0" * 64) == 2
    err = capsys.readouterr().err
    assert "SHA-256 mismatch" in err and FACADES_SHA in err
    assert list(tmp_path.iterdir()) == []  # neither a .part nor an archive that looks good


def test_corrupt_archive_with_matching_sum_is_reported(server: Server, tmp_path: Path) -> None:
    garbage = b"this is not a tar.gz" * 100
    server.files["/datasets/facades.tar.gz"] = garbage
    with pytest.raises(DownloadError, match="not a readable tar.gz"):
        download_dataset(
            "facades", tmp_path, url=server.base, sha256=hashlib.sha256(garbage).hexdigest(), progress=False
        )
    assert not (tmp_path / "facades").exists()


def test_a_dropped_connection_resumes_with_a_range_request(server: Server, tmp_path: Path, capsys) -> None:
    half = len(FACADES) // 2
    server.truncate["/datasets/facades.tar.gz"] = half
    assert _download(server, tmp_path, "--sha256", FACADES_SHA) == 2
    assert "run the command again to resume" in capsys.readouterr().err
    part = tmp_path / "facades.tar.gz.part"
    assert part.stat().st_size == half and not (tmp_path / "facades").exists()
    assert _download(server, tmp_path, "--sha256", FACADES_SHA) == 0
    assert "resuming" in capsys.readouterr().out
    assert server.requests[-1][1] == f"bytes={half}-"
    assert (tmp_path / "facades" / "train" / "1.jpg").is_file() and not part.exists()


def test_a_server_that_ignores_ranges_restarts_the_file(server: Server, tmp_path: Path) -> None:
    (tmp_path / "facades.tar.gz.part").write_bytes(FACADES[:1000])
    server.ignore_range = True
    download_dataset("facades", tmp_path, url=server.base, sha256=FACADES_SHA, progress=False)
    assert (tmp_path / "facades" / "val" / "1.jpg").is_file()


def test_a_complete_part_file_is_not_fetched_again(server: Server, tmp_path: Path) -> None:
    (tmp_path / "facades.tar.gz.part").write_bytes(FACADES)
    download_dataset("facades", tmp_path, url=server.base, sha256=FACADES_SHA, progress=False)
    assert server.requests == [("/datasets/facades.tar.gz", f"bytes={len(FACADES)}-")]  # answered 416
    assert (tmp_path / "facades" / "test" / "1.jpg").is_file()


def test_archive_without_a_top_folder_lands_in_dest_name(server: Server, tmp_path: Path) -> None:
    server.files["/mirror/f.tar.gz"] = make_archive({"train/a.jpg": b"a", "test/b.jpg": b"b"})
    download_dataset("facades", tmp_path, url=server.base.replace("/datasets", "/mirror/f.tar.gz"), progress=False)
    assert (tmp_path / "facades" / "train" / "a.jpg").read_bytes() == b"a"


@pytest.mark.parametrize(
    ("members", "links", "why"),
    [
        ({"/etc/evil": b"x"}, {}, "absolute path"),
        ({"facades/../../evil": b"x"}, {}, "'..'"),
        ({"facades/train/a.jpg": b"x"}, {"facades/train/link": "../../../outside"}, "link pointing outside"),
        ({"facades/train/a.jpg": b"x"}, {"facades/train/abs": "/etc/passwd"}, "absolute path"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, members: dict, links: dict, why: str) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_archive(members, links))
    with pytest.raises(DownloadError, match=why):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


def test_links_inside_the_dataset_are_fine(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(make_archive({"facades/train/a.jpg": b"x"}, {"facades/val/a.jpg": "../train/a.jpg"}))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "facades" / "val" / "a.jpg").read_bytes() == b"x"


def test_unsafe_download_leaves_nothing(server: Server, tmp_path: Path, capsys) -> None:
    server.files["/datasets/facades.tar.gz"] = make_archive({"facades/train/a.jpg": b"x", "../evil": b"x"})
    assert _download(server, tmp_path / "d") == 2
    assert "unsafe member" in capsys.readouterr().err
    assert not (tmp_path / "d" / "facades").exists() and not (tmp_path / "evil").exists()


def test_unreachable_server_and_missing_file(server: Server, tmp_path: Path, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["data", "download", "maps", "--dest", str(tmp_path), "--url", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    assert _download(server, tmp_path, "--url", server.base + "/nothing-here") == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_archive_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIX2PIX_DATASETS_URL", raising=False)
    assert archive_url("maps") == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz"
    monkeypatch.setenv("PIX2PIX_DATASETS_URL", "http://mirror.example/p2p/")
    assert archive_url("maps") == "http://mirror.example/p2p/maps.tar.gz"
    assert archive_url("maps", "http://other/x.tar.gz") == "http://other/x.tar.gz"
    with pytest.raises(ValueError, match="unknown dataset"):
        download_dataset("imagenet", "unused", progress=False)
