"""The reference code's published generators (its `scripts/download_pix2pix_model.sh`):
`download_model` fetches one, resumably, and converts it with the reference importer
(reference.py) into an ordinary model folder whose card credits the source."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from ..data.download import DownloadError, fetch, sha256_file
from .card import model_card
from .folder import build_generator, write_text
from .model_config import MODEL_CONFIG, MODEL_README, ModelConfig
from .reference import REFERENCE_ARCHS, ReferenceImportError, import_reference


@dataclass(frozen=True)
class Published:
    """One generator the reference code publishes (`scripts/download_pix2pix_model.sh`): a
    state dict of `unet_256` with batch norm and dropout, trained on `dataset` in `direction`
    (the reference keeps the direction outside the file; ours follow the dataset's presets)."""

    name: str
    task: str
    dataset: str
    direction: str
    arch: str = "unet_256"
    norm: str = "batch"
    sha256: str | None = None  # not published by the authors: printed, checked with --sha256


PUBLISHED = {
    m.name: m
    for m in (
        Published("facades_label2photo", "facade label maps -> photos", "facades", "BtoA"),
        Published("sat2map", "aerial photos -> maps", "maps", "AtoB"),
        Published("map2sat", "maps -> aerial photos", "maps", "BtoA"),
        Published("edges2shoes", "edge drawings -> shoe photos", "edges2shoes", "AtoB"),
        Published("day2night", "daytime -> night-time webcam photos", "night2day", "AtoB"),
    )
}


MODELS_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"


MODELS_URL_ENV = "PIX2PIX_MODELS_URL"


def model_url(name: str, url: str | None = None) -> str:
    """The .pth URL of published model `name`: `url` (or $PIX2PIX_MODELS_URL) as a base URL
    (NAME.pth is appended) or the full URL of a .pth file."""
    base = url or os.environ.get(MODELS_URL_ENV) or MODELS_URL
    return base if base.endswith(".pth") else f"{base.rstrip('/')}/{name}.pth"


def published_size(model: Published) -> int:
    """Bytes of the published file: the float32 weights and BatchNorm statistics of the generator."""

    depth = REFERENCE_ARCHS[model.arch][1]
    with torch.device("meta"):
        net = build_generator(ModelConfig("unet", {"depth": depth, "innermost_norm": False}))
    return sum(t.numel() * 4 for t in net.state_dict().values() if t.dtype.is_floating_point)


def download_model(
    name: str,
    dest: str | Path = "models",
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_file: bool = False,
    progress: bool = True,
    log: TextIO | None = None,
) -> Path:
    """Download published model `name` and convert it into the model folder dest/name; returns it.

    The .pth arrives in dest/name.pth.part (a cut-short download resumes there on the next call),
    is checked against `sha256` when given, read with `weights_only=True` (no code is unpickled)
    and converted; a file that cannot be read is deleted (resuming could not repair it)."""

    log = log or sys.stdout
    if name not in PUBLISHED:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(PUBLISHED)} (pix2pix download-model --list)")
    model, dest = PUBLISHED[name], Path(dest)
    target = dest / name
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; remove it or pass --force to download it again")
    dest.mkdir(parents=True, exist_ok=True)
    source, part, file = model_url(name, url), dest / f"{name}.pth.part", dest / f"{name}.pth"
    expected = (sha256 or model.sha256 or "").lower() or None
    if not file.exists():
        print(f"downloading {source} -> {part}" + (" (resuming)" if part.exists() else ""), file=log)
        fetch(source, part, progress)
        part.replace(file)
    digest = sha256_file(file)
    if expected and digest != expected:
        file.unlink()
        raise DownloadError(
            f"{source}: SHA-256 mismatch (expected {expected}, got {digest}); the file was deleted: run again"
        )
    print(f"SHA-256 {digest}" + (": verified" if expected else " (no published sum to check it against)"), file=log)
    staging = dest / f".{name}.converting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        config = import_reference(file, staging, model.arch, model.norm, model.direction)
    except ReferenceImportError as err:
        file.unlink()
        raise DownloadError(
            f"{source}: the downloaded file is not a reference generator ({err}); it was deleted"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _credit(staging, config, model, source, digest)
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    if not keep_file:
        file.unlink()
    print(f"{name}: model folder {target} ({model.task}, {model.direction})", file=log)
    return target


def _credit(folder: Path, config: ModelConfig, model: Published, url: str, digest: str) -> None:
    """Record the published model's name, task, dataset, URL and hash in its config and card."""

    source = dict(config.extra.get("source", {}))
    source |= {"name": model.name, "task": model.task, "dataset": model.dataset, "url": url, "sha256": digest}
    card = dataclasses.replace(config, extra={**config.extra, "source": source})
    write_text(folder / MODEL_CONFIG, json.dumps(card.to_json(), indent=2) + "\n")
    write_text(folder / MODEL_README, model_card(card))
