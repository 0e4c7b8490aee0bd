"""Segmentation scores from a confusion matrix (the FCN-score of Tables 1-3, and Table 6).

- `confusion_matrix` rows are ground-truth classes and columns predicted classes, with one
  extra last column for predictions that are no class (a pixel nearest to a void colour): such
  a pixel counts as a miss of its ground-truth class and as no class's false positive.
- Scores follow the pix2pix evaluation code (scripts/eval_cityscapes): per-pixel
  accuracy = sum(diag) / sum(all); per-class accuracy = mean_c diag_c / gt_c; class IoU =
  mean_c diag_c / (gt_c + pred_c - diag_c). There, a class absent from the ground truth of the
  evaluated subset scores 0 and still counts in the means (its 0 / (0 + 1e-12) term); that is
  `absent="zero"`, the default. `absent="ignore"` leaves such classes out of the means instead
  (the Cityscapes benchmark's choice). On the full Cityscapes val set all 19 classes occur, and
  the two agree.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """(K, K + 1) int64 counts: row = ground-truth class, column = predicted class, last column =
    predicted no class (any id >= K). Pixels whose target is `ignore` (or >= K) are skipped."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.size} vs {target.size} pixels")
    keep = (target >= 0) & (target < num_classes) & (target != ignore)
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)[keep]
    counts = np.bincount(target[keep] * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def segmentation_scores(hist: np.ndarray, absent: str = "zero") -> dict[str, object]:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU from a confusion matrix
    (K, K) or (K, K + 1); see the module docstring for `absent` ("zero" or "ignore")."""
    if absent not in ("zero", "ignore"):
        raise ValueError(f"absent must be 'zero' or 'ignore', got {absent!r}")
    hist = np.asarray(hist, dtype=np.float64)
    k = hist.shape[0]
    diag = np.diag(hist[:, :k])
    gt = hist.sum(1)  # ground-truth pixels of each class (including predicted no class)
    pred = hist[:, :k].sum(0)  # pixels predicted as each class
    union = gt + pred - diag
    present = gt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        class_acc = np.where(present, diag / gt, 0.0)
        iou = np.where(union > 0, diag / union, 0.0)
    used = present if absent == "ignore" else np.ones(k, dtype=bool)
    total = hist.sum()
    return {
        "pixel_acc": float(diag.sum() / total) if total else 0.0,
        "class_acc": float(class_acc[used].mean()) if used.any() else 0.0,
        "class_iou": float(iou[used].mean()) if used.any() else 0.0,
        "per_class_acc": [float(v) if p else None for v, p in zip(class_acc, present)],
        "per_class_iou": [float(v) if p else None for v, p in zip(iou, present)],
        "absent_classes": [int(i) for i in np.flatnonzero(~present)],
        "absent": absent,
    }
