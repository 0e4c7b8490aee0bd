"""The README.md of a model folder (its model card on the Hub): what the model does, how it was
made, its evaluation beside the paper's figures, usage and citation. Written with every model
folder (folder.py); its config.json is model_config.py's."""

from __future__ import annotations

import json
from typing import Any

from ..paper import SETS
from .model_config import MODEL_CONFIG, MODEL_WEIGHTS, ModelConfig

CITATION = """@inproceedings{isola2017image,
  title     = {Image-to-Image Translation with Conditional Adversarial Networks},
  author    = {Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A.},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}"""


def model_card(
    card: ModelConfig, repo_id: str | None = None, metrics: dict[str, Any] | None = None, license: str = "other"
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


def _dataset(card: ModelConfig) -> str | None:
    source = card.extra.get("source", {})
    return source.get("dataset") or card.extra.get("training", {}).get("dataset")


def _front_matter(card: ModelConfig, license: str) -> str:
    tags = ["pix2pix", "image-to-image", "conditional-gan", "gan"]
    if card.task == "segmenter":
        tags = ["pix2pix", "semantic-segmentation", "fcn-score"]
    dataset = _dataset(card)
    if dataset:
        tags.append(dataset.lower())
    lines = ["---", "library_name: pix2pix", f"pipeline_tag: {_pipeline_tag(card)}", f"license: {license}", "tags:"]
    return "\n".join(lines + [f"- {tag}" for tag in tags] + ["---", ""])


def _pipeline_tag(card: ModelConfig) -> str:
    return "image-segmentation" if card.task == "segmenter" else "image-to-image"


def _title(card: ModelConfig) -> str:
    name = card.extra.get("source", {}).get("name")
    if name:
        return f"pix2pix: {name}"
    if card.task == "segmenter":
        return "pix2pix FCN-score segmenter"
    dataset = _dataset(card)
    return f"pix2pix generator ({dataset})" if dataset else "pix2pix generator"


def _what_it_does(card: ModelConfig) -> str:
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


def _how_it_was_made(card: ModelConfig) -> str:
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


def _paper_row(card: ModelConfig, metrics: dict[str, Any]) -> tuple[str, tuple[float, ...]] | None:
    """The paper's figures for this model's setting, where the paper has them: Table 1
    (labels -> photo, FCN-scores) or Table 6 (photo -> labels), for Cityscapes, by objective."""
    if "cityscapes" not in str(metrics.get("data", "")).lower():
        return None
    table = {"label2photo": "table1", "photo2label": "table6"}.get(metrics.get("task", ""))
    if table is None:
        return None
    names = {"l1": "L1", "gan": "GAN", "cgan": "cGAN", "l1+gan": "L1+GAN", "l1+cgan": "L1+cGAN"}
    row = next((r for r in SETS[table].rows if r.name == names.get(card.objective or "")), None)
    return (f"{SETS[table].title.split(':')[0]}, {row.name}", row.paper) if row and row.paper else None


def _evaluation(card: ModelConfig, metrics: dict[str, Any]) -> str:
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


def _usage(card: ModelConfig, repo_id: str | None) -> str:
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
