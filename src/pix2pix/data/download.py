"""Download the official pix2pix datasets: resumable, checked, unpacked safely.

    pix2pix data download facades --dest datasets     # -> datasets/facades/{train,val,test}

The archive is fetched to DEST/NAME.tar.gz.part. A download cut short stays there and the next
call resumes it with an HTTP Range request; only a complete file whose SHA-256 matches (or, with
no known sum, whose sum is printed for you to compare) is unpacked. A file whose sum does not
match is deleted: resuming it could never repair it. Unpacking refuses members with absolute
paths or '..', links that point outside the dataset, and device files, and writes into a
temporary folder that is renamed to DEST/NAME only when complete.

The server is `DATASETS_URL` (the authors' dataset server); `--url` or the environment variable
PIX2PIX_DATASETS_URL points at a mirror: a base URL (NAME.tar.gz is appended) or the full URL of
an archive ending in .tar.gz.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import TextIO

DATASETS_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
URL_ENV = "PIX2PIX_DATASETS_URL"
NAMES = ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day")
# SHA-256 of each archive where known; None: not published, so the computed sum is printed and
# the user may pass --sha256 to check it.
KNOWN_SHA256: dict[str, str | None] = dict.fromkeys(NAMES)
CHUNK = 1 << 16
TIMEOUT_S = 30.0


class DownloadError(OSError):
    """A download or archive that cannot be used; the message says what to do."""


def archive_url(name: str, url: str | None = None) -> str:
    """The archive's URL: `url` (or $PIX2PIX_DATASETS_URL) as a base or full .tar.gz URL."""
    base = url or os.environ.get(URL_ENV) or DATASETS_URL
    if base.endswith((".tar.gz", ".tgz", ".tar")):
        return base
    return f"{base.rstrip('/')}/{name}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, part: Path, progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """Download `url` into `part`, resuming from its current size with a Range request.

    Raises DownloadError when the transfer ends early; `part` then holds what arrived, and the
    next call continues from there."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pix2pix", "Accept-Encoding": "identity"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the range starts at the end: nothing is missing
            return part
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the address or use --url for a mirror") from None
    with response:
        if start and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise DownloadError(f"{url}: server answered range {content_range!r} to a request from byte {start}")
            mode = "ab"
        else:  # 200: the server ignored the range (or there was none): start over
            start, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        received = start
        bar = None
        if progress:
            from tqdm import tqdm

            name = part.name.removesuffix(".part")
            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as err:  # reset, timeout, cut short
                        raise DownloadError(
                            f"{url}: connection lost after {received} bytes ({err}); run the command again to resume"
                        ) from None
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received < total:
        raise DownloadError(
            f"{url}: connection closed after {received} of {total} bytes; run the command again to resume"
        )
    return part


def _check_member(member: tarfile.TarInfo, root: PurePosixPath) -> str | None:
    """Why `member` may not be unpacked under `root`, or None when it is safe."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        return "absolute path"
    if ".." in name.parts:
        return "'..' in the path"
    if member.isdev() or member.isfifo():
        return "device or pipe"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute():
            return f"link to an absolute path {member.linkname}"
        # a symlink resolves from its own folder, a hard link from the archive root
        base = (root / name).parent if member.issym() else root
        parts: list[str] = []
        for part in (base / link).parts:
            if part == "..":
                if not parts:
                    return f"link pointing outside ({member.linkname})"
                parts.pop()
            elif part not in (".", ""):
                parts.append(part)
        if PurePosixPath(*parts).parts[: len(root.parts)] != root.parts:
            return f"link pointing outside ({member.linkname})"
    return None


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a tar(.gz) into `dest` after checking every member (see the module docstring)."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            root = PurePosixPath("root")
            bad = [(m.name, why) for m in members if (why := _check_member(m, root))]
            if bad:
                shown = "\n  ".join(f"{name}: {why}" for name, why in bad[:10])
                raise DownloadError(f"{archive}: refusing to unpack {len(bad)} unsafe member(s):\n  {shown}")
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own checks too
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; the checks above already ran
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as err:
        raise DownloadError(f"{archive}: not a readable tar.gz archive ({err})") from None


def _dataset_root(unpacked: Path, name: str) -> Path:
    """The folder holding train/ etc.: the archive's top folder NAME/, or the archive root."""
    for candidate in (unpacked / name, unpacked):
        if any((candidate / split).is_dir() for split in ("train", "val", "test")):
            return candidate
    entries = ", ".join(sorted(p.name for p in unpacked.iterdir())[:5]) or "nothing"
    raise DownloadError(f"the archive holds no {name}/train, val or test folder (found: {entries})")


def download_dataset(
    name: str,
    dest: Path | str = "datasets",
    url: str | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    force: bool = False,
    progress: bool = True,
    log: TextIO | None = None,
) -> Path:
    """Download and unpack dataset `name` into dest/name/{train,val,test}; returns that folder.

    Example:
        >>> download_dataset("facades", "datasets")  # doctest: +SKIP
        PosixPath('datasets/facades')
    """
    log = log or sys.stdout
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(NAMES)}")
    dest = Path(dest)
    target = dest / name
    if target.exists():
        if not force:
            raise FileExistsError(f"{target} already exists; remove it or pass --force to download it again")
        shutil.rmtree(target)
    dest.mkdir(parents=True, exist_ok=True)
    source = archive_url(name, url)
    archive = dest / f"{name}.tar.gz"
    part = dest / f"{name}.tar.gz.part"
    expected = (sha256 or KNOWN_SHA256.get(name) or "").lower() or None

    if not archive.exists():
        print(f"downloading {source} -> {part}" + (" (resuming)" if part.exists() else ""), file=log)
        fetch(source, part, progress)
        digest = sha256_file(part)
        if expected and digest != expected:
            part.unlink()
            raise DownloadError(
                f"{source}: SHA-256 mismatch (expected {expected}, got {digest}); the download was corrupt "
                "and has been deleted: run the command again"
            )
        part.replace(archive)  # only a complete (and, where possible, verified) file gets the final name
    else:
        digest = sha256_file(archive)
        if expected and digest != expected:
            raise DownloadError(f"{archive}: SHA-256 {digest} does not match {expected}; delete it and try again")
    if expected:
        print(f"SHA-256 verified: {digest}", file=log)
    else:
        print(f"SHA-256 {digest}: could not be verified (no known sum; pass --sha256 to check one)", file=log)

    staging = dest / f".{name}.unpacking"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        safe_extract(archive, staging)
        _dataset_root(staging, name).replace(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    if not keep_archive:
        archive.unlink()
    splits = [s for s in ("train", "val", "test") if (target / s).is_dir()]
    print(f"{name}: {', '.join(splits)} in {target}", file=log)
    return target
