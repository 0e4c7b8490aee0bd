"""Sharing models on the Hugging Face Hub: from_pretrained's download, push's upload.

A model folder is a Hub model repository as it stands: `config.json` (how to build the
generator), `model.safetensors` (the weights) and `README.md` (the model card below, written
with every model folder, card.py). So sharing is uploading the folder, and loading from the Hub is
downloading it into the Hub's cache and loading the folder:

    model = Pix2Pix.from_pretrained("user/facades-label2photo")   # or a local folder
    pix2pix push runs/facades/model user/facades-label2photo --dry-run

Only `config.json`, the `.safetensors` weights, `README.md` and `metrics.json` are ever
downloaded: a repository's pickled files (.bin, .pt, .pth) are never fetched, so never unpickled.
`huggingface_hub` is an optional extra (`pip install "pix2pix[hub]"`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from ..config import TrainConfig
from ..extras import require
from .card import model_card
from .folder import first_line, save_model
from .model_config import LEGACY_WEIGHTS, MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS, ModelConfig

HUB_HINT = 'pip install "pix2pix[hub]"'
METRICS_FILE = "metrics.json"  # what `pix2pix evaluate` writes; shown in the card when beside the model
DOWNLOADED = [MODEL_CONFIG, MODEL_WEIGHTS, LEGACY_WEIGHTS, MODEL_README, METRICS_FILE]


class HubError(OSError):
    """A model that cannot be fetched from or prepared for the Hub; the message says what to do."""


class SharedModel(Protocol):
    """What sharing reads of a model (a `pix2pix.SharedModel`): its generator and its config.json."""

    generator: nn.Module
    config: ModelConfig


# --- from and to the Hub ------------------------------------------------------------------------------


def _hub() -> Any:
    (module,) = require(["huggingface_hub"], "loading from or pushing to the Hugging Face Hub", HUB_HINT)
    return module


def snapshot(
    repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None, token: str | None = None
) -> Path:
    """Download a Hub model repository's pix2pix files into the Hub cache (or find them there,
    offline with HF_HUB_OFFLINE=1) and return the local folder."""
    hub = _hub()
    from huggingface_hub import errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except errors.HFValidationError:
        raise HubError(f"{repo_id!r} is not a Hub repository id (user/name)") from None
    try:
        folder = hub.snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=DOWNLOADED
        )
    except errors.RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such model repository on the Hub (or it is private: pass a token)") from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{repo_id}: no revision {revision!r}") from None
    except errors.LocalEntryNotFoundError:
        raise HubError(
            f"{repo_id}: not in the Hub cache and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1); "
            "download it once while online, or pass a local model folder"
        ) from None
    except Exception as err:  # noqa: BLE001 - the HTTP client's own errors vary with huggingface_hub's version
        raise HubError(f"{repo_id}: the Hub could not be reached ({type(err).__name__}: {first_line(err)})") from None
    folder = Path(folder)
    if not (folder / MODEL_CONFIG).is_file() or not any(
        (folder / f).is_file() for f in (MODEL_WEIGHTS, LEGACY_WEIGHTS)
    ):
        raise HubError(
            f"{repo_id}: not a pix2pix model repository (it needs {MODEL_CONFIG} and {MODEL_WEIGHTS}; "
            "pix2pix loads safetensors only, never pickled .bin/.pth files)"
        )
    return folder


def stage(
    model: SharedModel, folder: Path, repo_id: str | None, metrics: dict[str, Any] | None, license: str
) -> list[Path]:
    """Write exactly what a push uploads into `folder` (which must be empty or absent): the
    weights, config.json, the card made for `repo_id`, and metrics.json when given."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose an empty or new folder for the files to upload")
    save_model(folder, model.generator, model.config, readme=False)
    (folder / MODEL_README).write_text(model_card(model.config, repo_id, metrics, license))
    if metrics:
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return sorted(folder.iterdir())


def with_run_training(model: SharedModel, model_path: str | Path) -> SharedModel:
    """A model from a run's model/ folder written before cards recorded their training: its
    training options read from the run's config.json (the folder above, or `model_path` itself
    for a run directory), so that the card can say how it was trained."""
    card = model.config
    if card.extra.get("training") or card.extra.get("source") or card.task != "translate":
        return model
    path = Path(model_path)
    run_config = path / "config.json" if (path / "model").is_dir() else path.parent / "config.json"
    try:
        cfg = TrainConfig.from_dict(json.loads(run_config.read_text()), str(run_config))
    except (OSError, ValueError):
        return model  # not a run's model folder: the card says what the model is, not how it was trained
    training = ModelConfig.from_train_config(cfg).extra["training"]
    model.config = dataclasses.replace(card, extra={**card.extra, "training": training})
    return model


def read_metrics(model_path: str | Path, metrics: str | Path | None) -> dict[str, Any] | None:
    """`metrics` (a metrics.json path), else a metrics.json beside the model's files, else None."""
    path = Path(metrics) if metrics else None
    if path is None:
        for candidate in (Path(model_path) / METRICS_FILE, Path(model_path) / "model" / METRICS_FILE):
            if candidate.is_file():
                path = candidate
                break
    if path is None:
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HubError(f"{path}: not a readable metrics.json ({err})") from None
    if not isinstance(values, dict):
        raise HubError(f"{path}: not a metrics.json written by `pix2pix evaluate` (not a JSON object)")
    return values


def push(
    model: SharedModel,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    metrics: dict[str, Any] | None = None,
    license: str = "other",
    commit_message: str = "Upload pix2pix model",
) -> str:
    """Upload the model to Hub repository `repo_id` (created if absent) with the upload API;
    returns the commit URL."""
    hub = _hub()
    from huggingface_hub import errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except errors.HFValidationError as err:
        raise HubError(f"{repo_id!r}: not a Hub repository id ({err})") from None
    with tempfile.TemporaryDirectory(prefix="pix2pix-push-") as tmp:
        stage(model, Path(tmp) / "upload", repo_id, metrics, license)
        api = hub.HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=Path(tmp) / "upload", repo_type="model", commit_message=commit_message
            )
        except Exception as err:  # noqa: BLE001 - the HTTP client's own errors vary with huggingface_hub's version
            raise HubError(f"{repo_id}: upload failed ({type(err).__name__}: {first_line(err)})") from None
    return str(getattr(commit, "commit_url", commit))
