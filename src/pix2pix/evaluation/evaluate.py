"""`pix2pix evaluate`: score a trained model on a paired test set the paper's way.

Tasks (`task`):
- `photo2label` (paper Table 6): the model's outputs are colour label maps. Each output pixel
  takes the label of the nearest palette colour; per-pixel accuracy, mean per-class accuracy
  and mean class IoU over the 19 Cityscapes train classes come from one confusion matrix over
  the whole split (metrics.segmentation_scores).
- `label2photo` (Tables 1-3): the FCN-score. A segmenter trained on real photos
  (`train_segmenter`, or any model folder of the same form) labels the generated photos, and its
  labels are scored against the label maps the photos were made from. The same segmenter on
  the real photos gives the "ground truth" row, always reported beside it.
- every task: L1, L2, PSNR, SSIM against the target, and for photos the L, a, b histogram
  intersections (Figure 7) and R, G, B histogram intersections (seed 003), with plots.

Images are scored at `size` x `size` (the model's training size unless given): inputs and
target photos are resized with bicubic filtering as in training; label maps are first turned
into ids at their stored size and then resized with nearest-neighbour (ids must not blend).

Writes OUT/metrics.json and OUT/index.html (metric table, histogram plots and a scrollable
gallery input | output | target).
"""

from __future__ import annotations

import html
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import metrics
from ..config import EVAL_TASKS
from ..data.device import resolve_device
from ..data.images import list_images, open_image, split_pair, to_image
from ..data.labels import Palette, colors_to_ids, load_palette, to_train_ids, train_ids_to_colors
from ..inference.generator import run_generator
from ..inference.predict import Pix2Pix
from ..metrics.perceptual import METRIC_WEIGHTS, find_weights, perceptual_scores
from ..progress import progress_bar
from .pairs import EvaluationError, label_ids, list_pairs, resize, to_net, to_unit
from .segmenter import load_segmenter, segment

TASKS = EVAL_TASKS


# --- model evaluation -----------------------------------------------------------------------------


def evaluate_model(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    size: int | None = None,
    split: str = "val",
    task: str = "auto",
    segmenter: str | Path | None = None,
    palette: str = "cityscapes",
    mode: str = "paper",
    seed: int = 0,
    gallery: int = 30,
    absent: str = "zero",
    limit: int | None = None,
    perceptual: tuple[str, ...] | list[str] = (),
    weights: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Translate every pair of `split` and score the outputs; write OUT/metrics.json and
    OUT/index.html. Returns the metrics.

    An OUT that holds anything is refused unless `overwrite`; then it is replaced whole once the
    new evaluation is complete (no image of an earlier run stays beside the new ones).

    `perceptual`: any of fid, kid, lpips (metrics/perceptual.py), computed only with the standard weight
    files found in `weights` (default $PIX2PIX_WEIGHTS or ~/.cache/pix2pix/weights) and checked
    by hash; a missing file stops the evaluation before any image is translated.

    `mode` paper (default) runs G as the paper does at test time: dropout on and batch-1
    statistics (PAPER_NOTES: inference); `seed` fixes the dropout noise."""
    final = Path(out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise EvaluationError(
            f"{final} already holds an evaluation; pass --overwrite to replace it whole, or choose another --out"
        )
    setup = Setup.make(model, task, segmenter, palette, size, perceptual, weights, device)
    files = list_pairs(data, split)[:limit]
    folder = final.parent / f".{final.name}.partial"  # moved to `final` when complete
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted evaluation left
    (folder / "images").mkdir(parents=True, exist_ok=True)
    scores, shown, started = Scores(setup, bool(perceptual)), [], time.perf_counter()
    for i, path in enumerate(progress_bar(files, "evaluate", progress)):
        left, right = split_pair(open_image(path, "RGB"), path)
        source, target = (right, left) if setup.model.input_half == "right" else (left, right)
        source, target = resize(source, setup.size), resize(target, setup.size)
        x = to_net(source)[None]  # (1, 3, S, S) in [-1, 1]
        y = run_generator(setup.model.generator, x, mode, None if seed is None else seed + i)[0]  # (3, S, S)
        output = to_image(y)  # the 8-bit photo a user gets
        segmented = scores.add(source, output, target)
        if i < gallery:
            shown.append(_save_gallery(folder, i, path.name, source, output, target, segmented, setup.palette))
    result = {
        "model": str(model),
        "data": str(data),
        "split": split,
        "images": len(files),
        "size": setup.size,
        "task": setup.task,
        "mode": mode,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        **scores.result(absent),
        "conventions": CONVENTIONS,
    }
    if setup.task == "label2photo":
        result["segmenter"] = str(segmenter)
    if perceptual:
        result["perceptual"] = perceptual_scores(
            scores.kept_real, scores.kept_fake, weights, tuple(perceptual), device=setup.device
        )
    _write_report(folder, result, shown, scores)
    _replace_folder(folder, final)
    return result


def evaluate_folders(
    real: str | Path,
    fake: str | Path,
    out: str | Path | None,
    size: int = 256,
    task: str = "image",
    labels: str | Path | None = None,
    segmenter: str | Path | None = None,
    palette: str = "cityscapes",
    gallery: int = 30,
    absent: str = "zero",
    perceptual: tuple[str, ...] | list[str] = (),
    weights: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Score images made elsewhere (an ONNX run, the reference code, another method): each image
    of `fake` against the image of `real` with the same relative path (extension aside), both
    resized to `size`, with the metrics and page of evaluate_model. photo2label: both are colour
    label maps; label2photo: the FCN-score of `fake` against the label maps in `labels` (the
    inputs the photos were made from), with `segmenter`. `out` None: the scores only, nothing
    written (as pytorch-fid prints its score)."""
    final = Path(out) if out is not None else None
    if final is not None and final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise EvaluationError(f"{final} already holds an evaluation; pass --overwrite to replace it whole")
    if task not in ("image", "photo2label", "label2photo"):
        raise EvaluationError(f"--task {task}: folders are scored as image, photo2label or label2photo")
    if task == "label2photo" and (segmenter is None or labels is None):
        raise EvaluationError("label2photo on folders needs --segmenter PATH and --labels DIR (the input label maps)")
    triples = match_folders(real, fake, labels)
    dev = resolve_device(device)
    pal = load_palette(palette) if task != "image" else None
    seg_net = load_segmenter(segmenter, dev)[0] if task == "label2photo" else None
    setup = Setup(None, task, size, pal, seg_net, dev)
    folder = final.parent / f".{final.name}.partial" if final is not None else None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "images").mkdir(parents=True, exist_ok=True)
    scores, shown, started = Scores(setup, bool(perceptual)), [], time.perf_counter()
    for i, (name, real_path, fake_path, label_path) in enumerate(progress_bar(triples, "evaluate", progress)):
        target = resize(open_image(real_path, "RGB"), size)
        output = resize(open_image(fake_path, "RGB"), size)
        source = resize(open_image(label_path, "RGB"), size) if label_path else target
        segmented = scores.add(source, output, target)
        if folder is not None and i < gallery:
            shown.append(_save_gallery(folder, i, name, source, output, target, segmented, pal))
    result = {
        "model": f"{fake} (images)",
        "data": str(real),
        "split": "folders",
        "images": len(triples),
        "size": size,
        "task": task,
        "mode": "-",
        "seed": None,
        "seconds": round(time.perf_counter() - started, 1),
        **scores.result(absent),
        "conventions": CONVENTIONS,
    }
    if perceptual:
        result["perceptual"] = perceptual_scores(
            scores.kept_real, scores.kept_fake, weights, tuple(perceptual), device=dev
        )
    if folder is not None and final is not None:
        _write_report(folder, result, shown, scores)
        _replace_folder(folder, final)
    return result


def match_folders(
    real: str | Path, fake: str | Path, labels: str | Path | None = None
) -> list[tuple[str, Path, Path, Path | None]]:
    """(name, real, fake, label map or None) for every real image, matched by relative path
    without the extension (translate writes .png whatever the input was); a real image with no
    fake one is an error naming it."""

    def index(folder: str | Path) -> dict[str, Path]:
        root = Path(folder)
        if not root.is_dir():
            raise EvaluationError(f"{root}: not a folder of images")
        found = {p.relative_to(root).with_suffix("").as_posix(): p for p in list_images(root)}
        if not found:
            raise EvaluationError(f"{root}: holds no image files")
        return found

    reals, fakes = index(real), index(fake)
    label_maps = index(labels) if labels is not None else {}
    missing = [name for name in reals if name not in fakes]
    if missing:
        raise EvaluationError(
            f"{fake}: no image for {len(missing)} of the {len(reals)} real images, e.g. {', '.join(missing[:3])} "
            f"(matched by relative path without the extension)"
        )
    if labels is not None:
        unlabelled = [name for name in reals if name not in label_maps]
        if unlabelled:
            raise EvaluationError(f"{labels}: no label map for {', '.join(unlabelled[:3])} ({len(unlabelled)} in all)")
    return [(name, reals[name], fakes[name], label_maps.get(name)) for name in sorted(reals)]


CONVENTIONS = {
    "images": "RGB in [0, 1] at size x size; L1 and L2 are means over pixels and channels",
    "psnr": "dB, data range 1, per image then averaged (capped at 100 dB for identical images)",
    "ssim": "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid positions, "
    "averaged over channels, per image then averaged",
}


@dataclass
class Setup:
    """What an evaluation runs with: the model, the task, the size, the label palette and the
    FCN-score segmenter; checked before any image is translated."""

    model: Any
    task: str
    size: int
    palette: Palette | None
    segmenter: nn.Module | None
    device: torch.device

    @classmethod
    def make(
        cls,
        model: str | Path,
        task: str,
        segmenter: str | Path | None,
        palette: str,
        size: int | None,
        perceptual: tuple[str, ...] | list[str],
        weights: str | Path | None,
        device: str,
    ) -> Setup:
        if task not in TASKS:
            raise EvaluationError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if task == "auto":
            task = "label2photo" if segmenter is not None else "image"
        if task == "label2photo" and segmenter is None:
            raise EvaluationError(
                "label2photo (FCN-score) needs a segmenter: pass --segmenter PATH, a folder made by "
                "`pix2pix evaluate train-segmenter`"
            )
        dev = resolve_device(device)
        p2p = Pix2Pix.load(model, dev)
        if p2p.colorization or p2p.in_channels != 3 or p2p.out_channels != 3:
            raise EvaluationError(
                f"{model}: evaluate handles RGB -> RGB models "
                f"(this one is {p2p.in_channels} -> {p2p.out_channels} channels)"
            )
        size = int(size or p2p.config.crop_size)
        pal = load_palette(palette) if task in ("photo2label", "label2photo") else None
        seg_net = None
        if task == "label2photo":
            seg_net, seg_config = load_segmenter(segmenter, dev)
            if seg_config.crop_size != size:
                raise EvaluationError(
                    f"{segmenter}: the segmenter was trained at {seg_config.crop_size} px but the images are "
                    f"scored at {size} px; train one at {size} px or pass --size {seg_config.crop_size}"
                )
        if perceptual:
            unknown = sorted(set(perceptual) - set(METRIC_WEIGHTS))
            if unknown:
                raise EvaluationError(
                    f"unknown perceptual metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_WEIGHTS)}"
                )
            for name in sorted({f for m in perceptual for f in METRIC_WEIGHTS[m]}):
                find_weights(name, weights)  # WeightsMissingError names the file, size, hash and place
        return cls(p2p, task, size, pal, seg_net, dev)


class Scores:
    """The running sums of an evaluation: image metrics, confusion matrices (the outputs' labels,
    or the segmenter's on generated and on real photos) and colour histograms."""

    def __init__(self, setup: Setup, keep_images: bool) -> None:
        self.setup, self.keep_images = setup, keep_images
        k = setup.palette.num_classes if setup.palette else 0
        self.k, self.count = k, 0
        self.hist = np.zeros((k, k + 1), dtype=np.int64)
        self.hist_real = np.zeros_like(self.hist)
        self.sums = {"l1": 0.0, "l2": 0.0, "psnr": 0.0, "ssim": 0.0}
        self.lab: dict[str, dict[str, np.ndarray]] = {"out": {}, "real": {}}
        self.rgb: dict[str, dict[str, np.ndarray]] = {"out": {}, "real": {}}
        self.kept_real: list[np.ndarray] = []  # for FID / KID / LPIPS: (S, S, 3) float32 in [0, 1]
        self.kept_fake: list[np.ndarray] = []

    def add(self, source: Image.Image, output: Image.Image, target: Image.Image) -> np.ndarray | None:
        """Score one output against its target; returns the segmenter's labels of the output
        (label2photo), for the gallery."""
        setup, pal = self.setup, self.setup.palette
        a, b = to_unit(output), to_unit(target)
        self.count += 1
        self.sums["l1"] += metrics.l1(a, b)
        self.sums["l2"] += metrics.l2(a, b)
        self.sums["psnr"] += min(metrics.psnr(a, b), 100.0)  # identical images: capped, not inf
        self.sums["ssim"] += metrics.ssim(a, b)
        if self.keep_images:
            self.kept_fake.append(a.astype(np.float32))
            self.kept_real.append(b.astype(np.float32))
        if setup.task == "photo2label":
            pred = to_train_ids(colors_to_ids(output, pal), pal)
            self.hist += metrics.confusion_matrix(pred, label_ids(target, pal, setup.size), self.k)
            return None
        for store, image in (("out", a), ("real", b)):
            for ch, counts in metrics.lab_histograms(image).items():
                self.lab[store][ch] = self.lab[store].get(ch, 0) + counts
            for ch, counts in metrics.rgb_histograms(image).items():
                self.rgb[store][ch] = self.rgb[store].get(ch, 0) + counts
        if setup.task != "label2photo":
            return None
        truth = label_ids(source, pal, setup.size)
        pred = segment(setup.segmenter, to_net(output)[None])[0]  # the 8-bit photo a user gets
        self.hist += metrics.confusion_matrix(pred, truth, self.k)
        real_pred = segment(setup.segmenter, to_net(target)[None])[0]
        self.hist_real += metrics.confusion_matrix(real_pred, truth, self.k)
        return pred

    def result(self, absent: str) -> dict[str, Any]:
        result: dict[str, Any] = {"image": {key: value / max(self.count, 1) for key, value in self.sums.items()}}
        classes = {"classes": self.setup.palette.train_classes} if self.setup.palette else {}
        if self.setup.task == "photo2label":
            result["segmentation"] = {**metrics.segmentation_scores(self.hist, absent), **classes}
            return result
        if self.setup.task == "label2photo":
            result["fcn"] = {**metrics.segmentation_scores(self.hist, absent), **classes}
            result["fcn_ground_truth"] = {**metrics.segmentation_scores(self.hist_real, absent), **classes}
        lab, rgb = self.lab, self.rgb
        result["color"] = {
            **{f"hist_{ch}": metrics.histogram_intersection(lab["out"][ch], lab["real"][ch]) for ch in "Lab"},
            **{f"hist_{ch}": metrics.histogram_intersection(rgb["out"][ch], rgb["real"][ch]) for ch in "RGB"},
        }
        return result


def _save_gallery(
    folder: Path,
    i: int,
    name: str,
    source: Image.Image,
    output: Image.Image,
    target: Image.Image,
    segmented: np.ndarray | None,
    pal: Palette | None,
) -> dict[str, str]:
    """Write one gallery row's images; returns their names for the page."""
    names = {}
    for kind, image in (("input", source), ("output", output), ("target", target)):
        names[kind] = f"images/{i:04d}_{kind}.png"
        image.save(folder / names[kind])
    if segmented is not None:
        names["segmented"] = f"images/{i:04d}_segmented.png"
        train_ids_to_colors(segmented, pal).save(folder / names["segmented"])
    return {"file": name, **names}


def _write_report(folder: Path, result: dict[str, Any], shown: list[dict[str, str]], scores: Scores) -> None:
    """metrics.json, index.html and (for photos) histograms.npz."""
    lab, rgb = scores.lab, scores.rgb
    if "color" in result:
        np.savez_compressed(
            folder / "histograms.npz",
            **{f"{s}_{ch}": v for s in ("out", "real") for ch, v in {**lab[s], **rgb[s]}.items()},
        )
    (folder / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "index.html").write_text(_html(result, shown, lab, rgb))


# --- report page ----------------------------------------------------------------------------------


def _svg_plot(series: dict[str, np.ndarray], edges: np.ndarray, title: str, log: bool = True) -> str:
    """A small SVG line plot of normalised histograms (log probability, as the paper's Figure 7)."""
    width, height, pad = 320, 180, 30
    curves, lo, hi = {}, math.inf, -math.inf
    for name, counts in series.items():
        p = np.asarray(counts, dtype=np.float64)
        p = p / max(p.sum(), 1)
        v = np.log10(np.maximum(p, 1e-7)) if log else p
        curves[name] = v
        lo, hi = min(lo, v.min()), max(hi, v.max())
    hi = hi if hi > lo else lo + 1
    xs = np.linspace(pad, width - 5, len(edges) - 1)
    colors = {"output": "#d62728", "real": "#1f77b4"}
    lines = []
    for name, v in curves.items():
        ys = height - pad - (v - lo) / (hi - lo) * (height - pad - 15)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        lines.append(f'<polyline fill="none" stroke="{colors.get(name, "#333")}" stroke-width="1.2" points="{pts}"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">'
        f'<text x="{pad}" y="12" font-size="11">{html.escape(title)} ({"log10 " if log else ""}probability; '
        f'<tspan fill="#d62728">output</tspan>, <tspan fill="#1f77b4">real</tspan>)</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 5}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{height - 12}" font-size="10">{edges[0]}</text>'
        f'<text x="{width - 30}" y="{height - 12}" font-size="10">{edges[-1]}</text>' + "".join(lines) + "</svg>"
    )


def _html(result: dict[str, Any], shown: list[dict[str, str]], lab: dict, rgb: dict) -> str:
    rows = []
    for group in ("segmentation", "fcn", "fcn_ground_truth", "image", "color", "perceptual"):
        for key, value in result.get(group, {}).items():
            if isinstance(value, float):
                rows.append(f"<tr><td>{group}</td><td>{key}</td><td>{value:.4f}</td></tr>")
    plots = ""
    if lab["out"]:
        plots = (
            "<h2>Colour distributions</h2><div>"
            + "".join(
                _svg_plot({"output": lab["out"][ch], "real": lab["real"][ch]}, metrics.LAB_BINS[ch], f"Lab {ch}")
                for ch in "Lab"
            )
            + "</div><div>"
            + "".join(
                _svg_plot({"output": rgb["out"][ch], "real": rgb["real"][ch]}, metrics.RGB_BINS, f"RGB {ch}")
                for ch in "RGB"
            )
            + "</div>"
        )
    cells = []
    for item in shown:
        imgs = "".join(
            f'<figure><img src="{html.escape(item[k])}" alt="{k}" loading="lazy"><figcaption>{k}</figcaption></figure>'
            for k in ("input", "output", "target", "segmented")
            if k in item
        )
        cells.append(f'<div class="row"><p>{html.escape(item["file"])}</p>{imgs}</div>')
    title = f"pix2pix evaluation: {html.escape(result['model'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; }}
.row {{ display: flex; gap: 6px; align-items: flex-start; margin-bottom: 8px; }}
.row p {{ width: 12em; font-size: 12px; overflow-wrap: anywhere; }}
figure {{ margin: 0; }} figcaption {{ font-size: 11px; text-align: center; }}
img {{ width: 256px; image-rendering: pixelated; }}
</style></head><body>
<h1>{title}</h1>
<p>{result["images"]} images of {html.escape(result["data"])} ({html.escape(result["split"])}), task {result["task"]},
{result["size"]} px, generator mode {result["mode"]}.</p>
<table id="metrics"><tr><th>group</th><th>metric</th><th>value</th></tr>{"".join(rows)}</table>
{plots}
<h2>Gallery (input | output | target)</h2>
<div id="gallery">{"".join(cells)}</div>
</body></html>
"""


def _replace_folder(new: Path, final: Path) -> None:
    """Put the folder `new` in the place of `final`, whatever `final` held before."""
    old = final.parent / f".{final.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.is_dir() and not final.is_symlink():
        final.rename(old)
    elif final.exists() or final.is_symlink():
        final.unlink()
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
