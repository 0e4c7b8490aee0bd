"""Resumable training state: one self-describing dict (G, D, both optimisers and schedulers,
epoch, step, RNG states, config, package version), written atomically: a kill during the write
leaves the previous file intact. It holds only tensors and plain containers, so it loads with
`torch.load(..., weights_only=True)`, which never unpickles code. (Release weights, the model
folder, are hub/folder.py's.)"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..hub.folder import first_line, fsync_replace
from ..hub.model_config import CheckpointError

STATE_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


class _RecordingWriter(io.RawIOBase):
    """A file for torch.save that keeps the OSError of a failed write: torch reports a full
    disk as a RuntimeError about zip positions, and the OSError says what happened."""

    def __init__(self, file: io.BufferedWriter) -> None:
        self.file, self.error = file, None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise


def state_digest(state: Any) -> str:
    """SHA-256 of a training state's contents: every tensor's key, dtype, shape and bytes and
    every other value, in order. Stored in the checkpoint, so that a file damaged after it was
    written (flipped bytes inside a tensor, which the zip container does not notice) is refused."""
    digest = hashlib.sha256()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key}:{t.dtype}:{tuple(value.shape)}\n".encode())
            digest.update(t.view(torch.uint8).numpy())
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}/{k!r}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        else:
            digest.update(f"{key}={value!r}\n".encode())

    walk({k: v for k, v in state.items() if k != "checksum"}, "")
    return digest.hexdigest()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`, with
    the contents' checksum inside. A failed write (a full disk) leaves `path` as it was and
    raises the OSError."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    writer = None
    try:
        with open(tmp, "wb") as file:
            writer = _RecordingWriter(file)
            torch.save({**state, "checksum": state_digest(state)}, writer)
        fsync_replace(Path(tmp), path)
    except RuntimeError:
        Path(tmp).unlink(missing_ok=True)
        if writer is not None and writer.error is not None:
            raise writer.error from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path, verify: bool = True) -> dict[str, Any]:
    """Load a training state safely (weights_only: tensors and plain containers only), and
    check its contents against the checksum stored with them (checkpoints written before
    checksums existed load unchecked). `verify=False` skips reading every tensor, for callers
    that need only the config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        # mmap: reading only the config of a 700 MB checkpoint does not read the tensors
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied (this user may not read the file)") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path}: holds pickled Python objects besides tensors and plain containers; it is not "
                "loaded, since unpickling them could run code. A pix2pix checkpoint never holds any"
            ) from None
        raise CheckpointError(f"{path}: not a readable pix2pix checkpoint ({first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a pix2pix training checkpoint (format {FORMAT_VERSION})")
    if verify and "checksum" in state and state_digest(state) != state["checksum"]:
        raise CheckpointError(
            f"{path}: its contents do not match the checksum written with them: the file was damaged or "
            "changed after it was written, and resuming from it could train on corrupt weights. Restore "
            "it from a backup, or start the run again"
        )
    return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
