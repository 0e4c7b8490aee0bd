"""Resumable training state and release weights.

- The training state is one self-describing dict (G, D, both optimisers and schedulers, epoch,
  step, RNG states, config, package version), written atomically: a kill during the write leaves
  the previous file intact. It holds only tensors and plain containers, so it loads with
  `torch.load(..., weights_only=True)`, which never unpickles code.
- Release weights are a model folder in the Hugging Face Hub layout: `config.json` +
  `model.safetensors` + a `README.md` model card (hub.py). Loading needs no flags: the config
  says how to build the generator. Folders written before the Hub layout hold
  `generator.safetensors` instead: they still load, and are never written again.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .networks import GENERATOR_CLASSES

if TYPE_CHECKING:
    from .config import TrainConfig

STATE_FILE = "checkpoint.pt"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"  # the canonical name (the Hub's)
LEGACY_WEIGHTS = "generator.safetensors"  # model folders written before 0.2 (read, never written)
MODEL_README = "README.md"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint or model folder that cannot be loaded, with the path in the message."""


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the usual permissions (mkstemp creates files private)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half


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
        _fsync_replace(Path(tmp), path)
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
        raise CheckpointError(f"{path}: not a readable pix2pix checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a pix2pix training checkpoint (format {FORMAT_VERSION})")
    if verify and "checksum" in state and state_digest(state) != state["checksum"]:
        raise CheckpointError(
            f"{path}: its contents do not match the checksum written with them: the file was damaged or "
            "changed after it was written, and resuming from it could train on corrupt weights. Restore "
            "it from a backup, or start the run again"
        )
    return state


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- release weights ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCard:
    """A model folder's config.json, typed: how to build the generator (`architecture` and the
    generator class's arguments) and how to use it. Keys this class does not know (the importer's
    `source`, a segmenter's `recipe`, the writing version) are kept as they were in `extra`.
    `ModelCard.read` is the one reader of config.json and `to_json` the one writer."""

    architecture: str
    generator: dict[str, Any]
    direction: str = "AtoB"
    dataset_mode: str = "aligned"
    crop_size: int = 256
    objective: str | None = None
    step: int | None = None  # the training step of the weights beside it (runs' model/ folders)
    palette: str | None = None  # the class palette the demo offers for drawing
    task: str = "translate"  # or "segmenter" (the FCN-score segmenter, evaluate.py)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.generator.get("in_channels", 3))

    @property
    def out_channels(self) -> int:
        return int(self.generator.get("out_channels", 3))

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ModelCard:
        """From config.json's mapping, checked (CheckpointError names the key and the problem)."""
        validate_model_config(values)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        typed = {k: v for k, v in values.items() if k in known}
        return cls(**typed, extra={k: v for k, v in values.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        values = {"pix2pix_version": __version__, **self.extra}
        values |= {"architecture": self.architecture, "generator": dict(self.generator), "direction": self.direction}
        values |= {"dataset_mode": self.dataset_mode, "crop_size": self.crop_size}
        optional = {"objective": self.objective, "step": self.step, "palette": self.palette}
        values |= {k: v for k, v in optional.items() if v is not None}
        return values | ({"task": self.task} if self.task != "translate" else {})

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, step: int | None = None) -> ModelCard:
        """The card of a run's model: the one place a model config is made from a training run."""
        from .config import TrainConfig, resumable_keys
        from .networks import generator_settings

        architecture, generator = generator_settings(cfg)
        d = cfg.data
        defaults, settings = TrainConfig().to_dict(), cfg.to_dict()
        ignored = set(resumable_keys()) - {"max_steps"}  # paths, devices, speed and logging
        changed = {k: v for k, v in settings.items() if k not in ignored and v != defaults[k]}
        training = {"dataset": Path(cfg.run.data).name or None, "changed_from_defaults": changed}
        card = cls(architecture, generator, d.direction, d.mode, d.crop_size, cfg.loss.objective, step)
        return dataclasses.replace(card, extra={"training": training})

    def with_step(self, step: int) -> ModelCard:
        return dataclasses.replace(self, step=step)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            values = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: not a valid model config ({err})") from None
        try:
            return cls.from_json(values)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None


# A generator larger than this is refused before any memory is allocated for it: the paper's
# 256 px U-Net has 54M weights, and a typo (base_channels: 100000) would ask for terabytes.
MAX_GENERATOR_WEIGHTS = 2_000_000_000


def _generator_class(config: dict[str, Any]) -> type[torch.nn.Module]:
    classes = GENERATOR_CLASSES
    architecture = config.get("architecture")
    if architecture not in classes:
        raise CheckpointError(f"architecture {architecture!r}: choose one of {', '.join(classes)}")
    if not isinstance(config.get("generator"), dict):
        raise CheckpointError('no "generator" settings (a mapping of the generator\'s arguments)')
    return classes[architecture]


def validate_model_config(config: Any) -> None:
    """Refuse a model config that names unknown settings or values that cannot work, before
    anything is built. Raises CheckpointError (the caller adds the file's path)."""
    from .config import DATASET_MODES, DIRECTIONS
    from .networks import NORMS

    if not isinstance(config, dict):
        raise CheckpointError("not a JSON object")
    _generator_class(config)
    g = config["generator"]
    for key in ("in_channels", "out_channels", "base_channels", "depth", "blocks"):
        value = g.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "blocks" else 1):
            raise CheckpointError(f"generator.{key} = {value!r}: must be a whole number >= 1")
    if config["architecture"] == "unet" and g.get("depth", 8) > 16:
        raise CheckpointError(f"generator.depth = {g['depth']}: at most 16 levels (65536 px sides)")
    if g.get("norm", "batch") not in NORMS:
        raise CheckpointError(f"generator.norm = {g['norm']!r}: choose one of {', '.join(NORMS)}")
    dropout = g.get("dropout", 0.5)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise CheckpointError(f"generator.dropout = {dropout!r}: must be a number in [0, 1)")
    for key, allowed in (("dataset_mode", DATASET_MODES), ("direction", DIRECTIONS)):
        if key in config and config[key] not in allowed:
            raise CheckpointError(f"{key} = {config[key]!r}: choose one of {', '.join(allowed)}")
    try:
        with torch.device("meta"):  # shapes only: counts the weights without allocating them
            weights = sum(p.numel() for p in _generator_class(config)(**g).parameters())
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"generator settings cannot build a generator ({err})") from None
    if weights > MAX_GENERATOR_WEIGHTS:
        raise CheckpointError(
            f"the generator would have {weights:,} weights ({4 * weights / 2**30:,.0f} GiB), more than the "
            f"{MAX_GENERATOR_WEIGHTS:,} allowed; check generator.base_channels ({g.get('base_channels')})"
        )


def build_generator(config: ModelCard | dict[str, Any]) -> torch.nn.Module:
    """Generator from a model card (or a config.json mapping, validated first)."""
    card = config if isinstance(config, ModelCard) else ModelCard.from_json(config)
    return GENERATOR_CLASSES[card.architecture](**dict(card.generator))


def save_model(folder: Path, generator: torch.nn.Module, config: ModelCard | dict[str, Any], card: bool = True) -> None:
    """Write config.json (the card) + model.safetensors, each atomically, and the README.md
    model card (hub.model_card) unless `card` is False. A legacy generator.safetensors beside
    them is removed: a folder holds one set of weights."""
    config = config if isinstance(config, ModelCard) else ModelCard.from_json(config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = folder / (MODEL_WEIGHTS + ".tmp")
    # one metadata key: safetensors writes a metadata map in no fixed order, and identical
    # weights should give identical files (the version is in config.json)
    try:
        save_file(weights, str(tmp), metadata={"format": "pix2pix"})
    except Exception as err:  # noqa: BLE001 - safetensors reports OS errors as its own type
        tmp.unlink(missing_ok=True)
        # the Rust writer reports a full disk as "... No space left on device (os error 28)"
        code = errno.ENOSPC if "os error 28" in str(err) else errno.EIO
        raise OSError(code, f"{os.strerror(code)} ({_first_line(err)})", str(tmp)) from None
    _fsync_replace(tmp, folder / MODEL_WEIGHTS)
    (folder / LEGACY_WEIGHTS).unlink(missing_ok=True)
    _write_text(folder / MODEL_CONFIG, json.dumps(config.to_json(), indent=2) + "\n")
    if card:
        from .hub import model_card

        _write_text(folder / MODEL_README, model_card(config))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _fsync_replace(tmp, path)


def weights_path(folder: Path) -> Path:
    """The weights file of a model folder: model.safetensors, else a legacy generator.safetensors
    (the canonical path when neither exists, for the error message)."""
    legacy = folder / LEGACY_WEIGHTS
    return legacy if not (folder / MODEL_WEIGHTS).is_file() and legacy.is_file() else folder / MODEL_WEIGHTS


def load_model(folder: Path) -> tuple[torch.nn.Module, ModelCard]:
    """(generator in eval mode, its card) from a model folder; also accepts a run directory
    (its model/ subfolder)."""
    folder = Path(folder)
    if not weights_path(folder).is_file() and weights_path(folder / "model").is_file():
        folder = folder / "model"  # a run directory
    config_path, weights_file = folder / MODEL_CONFIG, weights_path(folder)
    for path in (config_path, weights_file):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a model folder holds {MODEL_CONFIG} and {MODEL_WEIGHTS}")
    config = ModelCard.read(config_path)
    generator = build_generator(config)
    try:
        weights = load_file(str(weights_file))
    except Exception as err:  # noqa: BLE001 - safetensors raises several error types
        raise CheckpointError(f"{weights_file}: not a readable safetensors file ({err})") from None
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_file}: weights do not match {config_path}: {err}") from None
    return generator.eval(), config
