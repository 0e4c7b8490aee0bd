"""Sharing models: the Hugging Face Hub layout, model cards, and the reference code's published models.

A model folder is a Hub model repository as it stands: `config.json` (how to build the
generator), `model.safetensors` (the weights) and `README.md` (the model card below, written
with every model folder). So sharing is uploading the folder, and loading from the Hub is
downloading it into the Hub's cache and loading the folder:

    model = Pix2Pix.from_pretrained("user/facades-label2photo")   # or a local folder
    pix2pix push runs/facades/model user/facades-label2photo --dry-run

Only `config.json`, the `.safetensors` weights, `README.md` and `metrics.json` are ever
downloaded: a repository's pickled files (.bin, .pt, .pth) are never fetched, so never unpickled.
`huggingface_hub` is an optional extra (`pip install "pix2pix[hub]"`).

`download_model` fetches one of the five generators the reference code publishes (its
`scripts/download_pix2pix_model.sh`), resumably, and converts it with the reference importer
(reference.py) into an ordinary model folder whose card credits the source.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .checkpoint import LEGACY_WEIGHTS, MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS, ModelCard, _first_line

if TYPE_CHECKING:
    from .predict import Pix2Pix

HUB_HINT = 'pip install "pix2pix[hub]"'
METRICS_FILE = "metrics.json"  # what `pix2pix evaluate` writes; shown in the card when beside the model
DOWNLOADED = [MODEL_CONFIG, MODEL_WEIGHTS, LEGACY_WEIGHTS, MODEL_README, METRICS_FILE]
CITATION = """@inproceedings{isola2017image,
  title     = {Image-to-Image Translation with Conditional Adversarial Networks},
  author    = {Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A.},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}"""


class HubError(OSError):
    """A model that cannot be fetched from or prepared for the Hub; the message says what to do."""


# --- the model card ------------------------------------------------------------------------------


def model_card(
    card: ModelCard, repo_id: str | None = None, metrics: dict[str, Any] | None = None, license: str = "other"
) -> str:
    """The README.md of a model folder: Hub metadata, then what the model does, how it was made,
    its evaluation (from `pix2pix evaluate`'s metrics.json) beside the paper's, usage, citation."""
    sections = [
        _front_matter(card, license),
        f"# {_title(card)}\n",
        _what_it_does(card),
        _how_it_was_made(card),
        _evaluation(card, metrics) if metrics else "",
        _usage(card, repo_id),
        "## Citation\n\nThe method (pix2pix):\n\n```bibtex\n" + CITATION + "\n```\n",
    ]
    return "\n".join(s for s in sections if s)


def _dataset(card: ModelCard) -> str | None:
    source = card.extra.get("source", {})
    return source.get("dataset") or card.extra.get("training", {}).get("dataset")


def _front_matter(card: ModelCard, license: str) -> str:
    tags = ["pix2pix", "image-to-image", "conditional-gan", "gan"]
    if card.task == "segmenter":
        tags = ["pix2pix", "semantic-segmentation", "fcn-score"]
    dataset = _dataset(card)
    if dataset:
        tags.append(dataset.lower())
    lines = ["---", "library_name: pix2pix", f"pipeline_tag: {_pipeline_tag(card)}", f"license: {license}", "tags:"]
    return "\n".join(lines + [f"- {tag}" for tag in tags] + ["---", ""])


def _pipeline_tag(card: ModelCard) -> str:
    return "image-segmentation" if card.task == "segmenter" else "image-to-image"


def _title(card: ModelCard) -> str:
    name = card.extra.get("source", {}).get("name")
    if name:
        return f"pix2pix: {name}"
    if card.task == "segmenter":
        return "pix2pix FCN-score segmenter"
    dataset = _dataset(card)
    return f"pix2pix generator ({dataset})" if dataset else "pix2pix generator"


def _what_it_does(card: ModelCard) -> str:
    g = card.generator
    if card.task == "segmenter":
        what = (
            f"Segments {card.crop_size} x {card.crop_size} photos into {card.out_channels} classes: the "
            "segmenter that pix2pix's FCN-score uses to score generated photos (not a translation model)."
        )
    else:
        source = card.extra.get("source", {})
        task = source.get("task") or ("grey L -> Lab colour" if card.dataset_mode == "colorization" else None)
        half = "right" if card.direction == "BtoA" else "left"
        what = (
            (f"{task[0].upper() + task[1:]}. " if task else "")
            + f"Translates {card.in_channels}-channel images into {card.out_channels}-channel images; "
            f"trained at {card.crop_size} x {card.crop_size} px (fully convolutional: other sizes work, "
            f"padded to a multiple of the network's stride). Direction {card.direction}: its input is the "
            f"{half} half of a training pair."
        )
    arch = card.architecture
    shape = f"U-Net, {g.get('depth', 8)} levels" if arch == "unet" else f"ResNet, {g.get('blocks', 9)} blocks"
    if arch == "unet" and not g.get("skips", True):
        shape = f"encoder-decoder (no skips), {g.get('depth', 8)} levels"
    dropout = f"dropout {g.get('dropout', 0.5)}"
    if arch == "resnet18-unet":  # seed 003's: no dropout, sides multiples of 32
        shape, dropout = "U-Net on a ResNet-18 encoder (seed 003's enhanced colorization)", "no dropout"
    net = (
        f"- Network: {shape}, {g.get('base_channels', 64)} channels in the first layer, "
        f"norm {g.get('norm', 'batch')}, {dropout}."
    )
    files = f"- Files: `{MODEL_CONFIG}` (how to build it), `{MODEL_WEIGHTS}` (the weights), this card."
    return "\n".join(["## What it does", "", what, "", net, files, ""])


def _how_it_was_made(card: ModelCard) -> str:
    source = card.extra.get("source")
    if source:
        lines = [
            f"Converted from a generator trained with the reference PyTorch code ({source.get('repository')}): "
            f"`{source.get('file')}`, `--netG {source.get('arch')} --norm {source.get('norm')}`."
        ]
        if source.get("url"):
            lines.append(
                f"Downloaded from {source['url']} (published by the authors; the credit and the "
                "license terms are theirs: see the reference repository)."
            )
        if source.get("sha256"):
            lines.append(f"SHA-256 of the file converted: `{source['sha256']}`.")
        return "\n".join(["## How it was made", "", *lines, ""])
    training = card.extra.get("training")
    recipe = card.extra.get("recipe")
    if recipe:  # the FCN-score segmenter
        lines = [f"Trained on the real training photos: `{json.dumps(recipe, sort_keys=True)}`."]
        return "\n".join(["## How it was made", "", *lines, ""])
    if not training:
        return ""
    lines = [
        f"Trained with pix2pix (objective `{card.objective}`)"
        + (f" on `{training['dataset']}`" if training.get("dataset") else "")
        + (f", weights of step {card.step:,}." if card.step is not None else ".")
    ]
    changed = training.get("changed_from_defaults") or {}
    if changed:
        lines += ["", "Options that differ from pix2pix's defaults (the paper's settings):", ""]
        lines += [f"- `{key}` = `{json.dumps(value)}`" for key, value in sorted(changed.items())]
    else:
        lines += ["", "Every option at pix2pix's defaults (the paper's settings)."]
    return "\n".join(["## How it was made", "", *lines, ""])


def _paper_row(card: ModelCard, metrics: dict[str, Any]) -> tuple[str, tuple[float, ...]] | None:
    """The paper's figures for this model's setting, where the paper has them: Table 1
    (labels -> photo, FCN-scores) or Table 6 (photo -> labels), for Cityscapes, by objective."""
    from .reproduce import SETS

    if "cityscapes" not in str(metrics.get("data", "")).lower():
        return None
    table = {"label2photo": "table1", "photo2label": "table6"}.get(metrics.get("task", ""))
    if table is None:
        return None
    names = {"l1": "L1", "gan": "GAN", "cgan": "cGAN", "l1+gan": "L1+GAN", "l1+cgan": "L1+cGAN"}
    row = next((r for r in SETS[table].rows if r.name == names.get(card.objective or "")), None)
    return (f"{SETS[table].title.split(':')[0]}, {row.name}", row.paper) if row and row.paper else None


def _evaluation(card: ModelCard, metrics: dict[str, Any]) -> str:
    scored = metrics.get("fcn") or metrics.get("segmentation")
    lines = [
        "## Evaluation",
        "",
        f"`pix2pix evaluate` on {metrics.get('images', '?')} images of `{metrics.get('data', '?')}` "
        f"({metrics.get('split', '?')} split) at {metrics.get('size', '?')} px, {metrics.get('mode', '?')} mode.",
        "",
    ]
    if scored:
        paper = _paper_row(card, metrics)
        head = "| | per-pixel acc | per-class acc | class IoU |"
        lines += [head, "|---|---|---|---|"]
        keys = ("pixel_acc", "class_acc", "class_iou")
        lines.append("| this model | " + " | ".join(f"{scored[k]:.3f}" for k in keys) + " |")
        if metrics.get("fcn_ground_truth"):
            truth = metrics["fcn_ground_truth"]
            lines.append(
                "| real photos (the segmenter's ground truth) | " + " | ".join(f"{truth[k]:.3f}" for k in keys) + " |"
            )
        if paper:
            lines.append(f"| paper ({paper[0]}) | " + " | ".join(f"{v:.2f}" for v in paper[1]) + " |")
        if metrics.get("fcn"):
            lines += [
                "",
                "FCN-scores come from pix2pix's own segmenter, not the paper's FCN-8s at 1024 x 2048: "
                "compare with the real-photo row, not directly with the paper.",
            ]
        lines.append("")
    image = metrics.get("image")
    if image:
        lines.append(
            f"Against the targets: L1 {image['l1']:.4f}, PSNR {image['psnr']:.2f} dB, SSIM {image['ssim']:.4f}."
        )
        lines.append("")
    return "\n".join(lines)


def _usage(card: ModelCard, repo_id: str | None) -> str:
    where = repo_id or "path/to/this/folder"
    if card.task == "segmenter":
        body = f"pix2pix evaluate --model GENERATOR --data DATA --segmenter {where}"
        return f"## Usage\n\n```bash\n{body}\n```\n"
    code = (
        "from PIL import Image\nfrom pix2pix import Pix2Pix\n\n"
        f'model = Pix2Pix.from_pretrained("{where}")\n'
        'model.translate(Image.open("input.png")).save("output.png")'
    )
    cli = f"pix2pix translate --model {where} input.png --out outputs/"
    lines = [
        "## Usage",
        "",
        f"`pip install pix2pix{'[hub]' if repo_id else ''}`, then:",
        "",
        "```python",
        code,
        "```",
        "",
        "or from the shell (a local folder):",
        "",
        "```bash",
        cli,
        "```",
        "",
    ]
    return "\n".join(lines)


# --- from and to the Hub ------------------------------------------------------------------------------


def _hub() -> Any:
    from .extras import require

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
        raise HubError(f"{repo_id}: the Hub could not be reached ({type(err).__name__}: {_first_line(err)})") from None
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
    model: Pix2Pix, folder: Path, repo_id: str | None, metrics: dict[str, Any] | None, license: str
) -> list[Path]:
    """Write exactly what a push uploads into `folder` (which must be empty or absent): the
    weights, config.json, the card made for `repo_id`, and metrics.json when given."""
    from .checkpoint import save_model

    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose an empty or new folder for the files to upload")
    save_model(folder, model.generator, model.config, card=False)
    (folder / MODEL_README).write_text(model_card(model.config, repo_id, metrics, license))
    if metrics:
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return sorted(folder.iterdir())


def with_run_training(model: Pix2Pix, model_path: str | Path) -> Pix2Pix:
    """A model from a run's model/ folder written before cards recorded their training: its
    training options read from the run's config.json (the folder above, or `model_path` itself
    for a run directory), so that the card can say how it was trained."""
    import dataclasses

    from .config import TrainConfig

    card = model.config
    if card.extra.get("training") or card.extra.get("source") or card.task != "translate":
        return model
    path = Path(model_path)
    run_config = path / "config.json" if (path / "model").is_dir() else path.parent / "config.json"
    try:
        cfg = TrainConfig.from_dict(json.loads(run_config.read_text()), str(run_config))
    except (OSError, ValueError):
        return model  # not a run's model folder: the card says what the model is, not how it was trained
    training = ModelCard.from_train_config(cfg).extra["training"]
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
    model: Pix2Pix,
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
            raise HubError(f"{repo_id}: upload failed ({type(err).__name__}: {_first_line(err)})") from None
    return str(getattr(commit, "commit_url", commit))


# --- the reference code's published models ------------------------------------------------------


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
    import torch

    from .checkpoint import build_generator
    from .reference import REFERENCE_ARCHS

    depth = REFERENCE_ARCHS[model.arch][1]
    with torch.device("meta"):
        net = build_generator(ModelCard("unet", {"depth": depth, "innermost_norm": False}))
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
    from .data.download import DownloadError, fetch, sha256_file
    from .reference import ReferenceImportError, import_reference

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


def _credit(folder: Path, config: ModelCard, model: Published, url: str, digest: str) -> None:
    """Record the published model's name, task, dataset, URL and hash in its config and card."""
    import dataclasses

    from .checkpoint import _write_text

    source = dict(config.extra.get("source", {}))
    source |= {"name": model.name, "task": model.task, "dataset": model.dataset, "url": url, "sha256": digest}
    card = dataclasses.replace(config, extra={**config.extra, "source": source})
    _write_text(folder / MODEL_CONFIG, json.dumps(card.to_json(), indent=2) + "\n")
    _write_text(folder / MODEL_README, model_card(card))
