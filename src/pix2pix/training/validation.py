"""Validation during training (`--val-every N`): a fixed subset of the val split scored every N steps.

The first `--val-images` pairs of the val split (the same ones each time, without augmentation)
are translated in the paper's inference mode (dropout on, the test batch's statistics; seeded, so
validations differ only by the weights) and in eval mode (running statistics), and scored as
`pix2pix evaluate` scores them, on the 8-bit images a user gets:

- every task: L1, PSNR and SSIM against the targets (`val_l1`, `val_psnr`, `val_ssim`);
- label2photo with `--segmenter`: the FCN-scores of the outputs (`val_fcn_class_iou`, ...);
- label2photo: the outputs' colour distributions against the real photos' (`val_hist_L`,
  `val_hist_a`, `val_hist_b`: Lab histogram intersections over the pooled pixels, Figure 7's
  measure, as `pix2pix evaluate` computes them);
- photo2label: the outputs' colours read as labels against the target label maps
  (`val_label_class_iou`, ...).

- with `--val-perceptual fid,kid,lpips` (any of them), those too (`val_fid`, `val_kid`,
  `val_lpips`: the mean), from the standard weight files, checked before training starts. On a
  few dozen images FID is biased upwards: compare validations of one run with each other, and
  use `pix2pix evaluate` on the whole val split for a figure to report.

Paper-mode figures are `val_<name>`, eval-mode ones `val_eval_<name>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..config import VAL_TASKS  # noqa: F401 - the choices of --val-task, named here for readers
from ..data.images import to_array
from ..data.labels import colors_to_ids, load_palette, to_train_ids
from ..evaluation.segmenter import load_segmenter, segment
from ..inference.generator import run_generator
from ..metrics.perceptual import PerceptualScorer, WeightsMissingError

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..data.labels import Palette

IMAGE_METRICS = ("l1", "psnr", "ssim")
LABEL_METRICS = ("pixel_acc", "class_acc", "class_iou")
COLOUR_METRICS = ("hist_L", "hist_a", "hist_b")
HIGHER_IS_BETTER = {"psnr", "ssim", *LABEL_METRICS, *COLOUR_METRICS}


def resolve_task(cfg: TrainConfig) -> str:
    task = cfg.run.val_task
    if task == "auto":
        return "label2photo" if cfg.run.segmenter else "image"
    return task


def metric_names(task: str, perceptual: tuple[str, ...] = ()) -> list[str]:
    """Every name a validation of `task` logs, paper mode then eval mode."""
    base = list(IMAGE_METRICS)
    if task == "label2photo":
        base += [f"fcn_{m}" for m in LABEL_METRICS] + list(COLOUR_METRICS)
    elif task == "photo2label":
        base += [f"label_{m}" for m in LABEL_METRICS]
    base += list(perceptual)
    return [f"{prefix}{m}" for prefix in ("val_", "val_eval_") for m in base]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of validation metric `name` is better (PSNR, IoU) or worse (L1)."""
    base = name.removeprefix("val_eval_").removeprefix("val_").removeprefix("fcn_").removeprefix("label_")
    return base in HIGHER_IS_BETTER


@dataclass
class Validator:
    """Scores a generator on the fixed validation pairs (inputs and targets, (C, S, S) in [-1, 1])."""

    inputs: torch.Tensor  # (N, C_in, S, S)
    targets: torch.Tensor  # (N, C_out, S, S)
    task: str
    seed: int
    palette: Palette | None = None
    segmenter: nn.Module | None = None
    perceptual: tuple[str, ...] = ()  # of fid, kid, lpips
    scorer: Any = None  # perceptual.PerceptualScorer: its networks loaded once for the whole run

    @classmethod
    def make(cls, cfg: TrainConfig, val_set: Any, device: torch.device) -> Validator | None:
        """The run's validator, or None without --val-every; checks the segmenter and the task
        against the run before training starts."""
        if not cfg.run.val_every:
            return None
        count = min(cfg.run.val_images, len(val_set))
        samples = [val_set[i] for i in range(count)]
        inputs = torch.stack([s["real_a"] for s in samples])
        targets = torch.stack([s["real_b"] for s in samples])
        task = resolve_task(cfg)
        palette, segmenter = None, None
        if task in ("label2photo", "photo2label"):
            palette = load_palette("cityscapes")
            if inputs.shape[1] != 3 or targets.shape[1] != 3:
                raise ValueError(f"val_task = {task}: needs RGB inputs and outputs (label maps are colour images)")
        if task == "label2photo" and cfg.run.segmenter:
            segmenter, card = load_segmenter(cfg.run.segmenter, device)
            if card.crop_size != cfg.data.crop_size:
                raise ValueError(
                    f"segmenter = {cfg.run.segmenter} (--segmenter): trained at {card.crop_size} px, but this run "
                    f"trains at {cfg.data.crop_size} px; train one with `pix2pix evaluate train-segmenter --size "
                    f"{cfg.data.crop_size}`"
                )
        if cfg.run.perceptual and targets.shape[1] not in (1, 3):
            raise ValueError(
                f"val_perceptual (--val-perceptual): needs 1- or 3-channel outputs; this run's have {targets.shape[1]}"
            )
        scorer = None
        if cfg.run.perceptual:
            try:  # before training starts: every missing file at once
                scorer = PerceptualScorer(which=cfg.run.perceptual, device=device)
            except WeightsMissingError as err:
                raise WeightsMissingError(f"--val-perceptual {cfg.run.val_perceptual}:\n{err}") from None
        return cls(inputs, targets, task, cfg.optim.seed, palette, segmenter, cfg.run.perceptual, scorer)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        """Every validation metric of `generator`, and the seconds the validation took."""
        started = time.perf_counter()
        record: dict[str, float] = {}
        for mode, prefix in (("paper", "val_"), ("eval", "val_eval_")):
            outputs = run_generator(generator, self.inputs, mode, self.seed)  # (N, C_out, S, S) on the CPU
            record |= {prefix + k: v for k, v in self._scores(outputs).items()}
        record["val_seconds"] = time.perf_counter() - started
        return record

    def _scores(self, outputs: torch.Tensor) -> dict[str, float]:
        sums: dict[str, float] = dict.fromkeys(IMAGE_METRICS, 0.0)
        k = self.palette.num_classes if self.palette else 0
        hist = np.zeros((k, k + 1), dtype=np.int64)
        lab: dict[str, dict[str, np.ndarray]] = {"out": {}, "real": {}}  # pooled Lab value counts
        for x, y, t in zip(self.inputs, outputs, self.targets):
            out8, target8 = to_array(y), to_array(t)  # (S, S, C) uint8: the images a user gets
            a, b = out8.astype(np.float64) / 255, target8.astype(np.float64) / 255
            sums["l1"] += metrics.l1(a, b)
            sums["psnr"] += min(metrics.psnr(a, b), 100.0)
            sums["ssim"] += metrics.ssim(a, b)
            if self.task == "label2photo" and self.segmenter is not None:
                hist += self._fcn(out8, to_array(x))
            elif self.task == "photo2label":
                hist += self._labels(out8, target8)
            if self.task == "label2photo":
                for store, image in (("out", a), ("real", b)):
                    for ch, counts in metrics.lab_histograms(image).items():
                        lab[store][ch] = lab[store].get(ch, 0) + counts
        scores = {name: value / len(outputs) for name, value in sums.items()}
        if lab["out"]:
            scores |= {f"hist_{c}": metrics.histogram_intersection(lab["out"][c], lab["real"][c]) for c in "Lab"}
        if self.perceptual:
            scores |= self._perceptual(outputs)
        if hist.any():
            prefix = "fcn_" if self.task == "label2photo" else "label_"
            found = metrics.segmentation_scores(hist)
            scores |= {prefix + m: float(found[m]) for m in LABEL_METRICS}
        return scores

    def _perceptual(self, outputs: torch.Tensor) -> dict[str, float]:
        """FID / KID / LPIPS of the 8-bit outputs against the targets (RGB; one channel repeated)."""

        def rgb(t: torch.Tensor) -> np.ndarray:
            a = to_array(t).astype(np.float32) / 255
            return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]

        found = self.scorer([rgb(t) for t in self.targets], [rgb(y) for y in outputs])
        names = {"fid": "fid", "kid": "kid_mean", "lpips": "lpips_mean"}
        return {m: float(found[names[m]]) for m in self.perceptual}

    def _fcn(self, output: np.ndarray, label_map: np.ndarray) -> np.ndarray:
        """The segmenter's classes of one output against the label map it was made from."""
        truth = self._ids(label_map)
        photo = torch.from_numpy(output).permute(2, 0, 1).float()[None] / 127.5 - 1
        pred = segment(self.segmenter, photo)[0]
        return metrics.confusion_matrix(pred, truth, self.palette.num_classes)

    def _labels(self, output: np.ndarray, target: np.ndarray) -> np.ndarray:
        return metrics.confusion_matrix(self._ids(output), self._ids(target), self.palette.num_classes)

    def _ids(self, colours: np.ndarray) -> np.ndarray:
        """Train ids (255: ignore) of a colour label map, each pixel by its nearest palette colour."""
        from PIL import Image

        return to_train_ids(colors_to_ids(Image.fromarray(colours), self.palette), self.palette)
