"""Metric formulas, pure functions on arrays: segmentation scores from a confusion matrix,
PSNR / SSIM / L1 / L2, colour histograms and their intersection, and the Frechet and kernel
distances between feature sets (FID / KID once features come from the standard network).

Conventions:
- Images are float arrays in [0, 1], (H, W) or (H, W, C).
- `confusion_matrix` rows are ground-truth classes and columns predicted classes, with one
  extra last column for predictions that are no class (a pixel nearest to a void colour): such
  a pixel counts as a miss of its ground-truth class and as no class's false positive.
- Segmentation scores follow the pix2pix evaluation code (scripts/eval_cityscapes): per-pixel
  accuracy = sum(diag) / sum(all); per-class accuracy = mean_c diag_c / gt_c; class IoU =
  mean_c diag_c / (gt_c + pred_c - diag_c). There, a class absent from the ground truth of the
  evaluated subset scores 0 and still counts in the means (its 0 / (0 + 1e-12) term); that is
  `absent="zero"`, the default. `absent="ignore"` leaves such classes out of the means instead
  (the Cityscapes benchmark's choice). On the full Cityscapes val set all 19 classes occur, and
  the two agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# --- segmentation -------------------------------------------------------------------------------


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


# --- image similarity ---------------------------------------------------------------------------


def _as_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    return image[..., None] if image.ndim == 2 else image


def l1(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute difference, images in [0, 1]."""
    return float(np.abs(_as_float(x) - _as_float(y)).mean())


def l2(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference, images in [0, 1]."""
    return float(((_as_float(x) - _as_float(y)) ** 2).mean())


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) in dB over all pixels and channels; inf for identical images."""
    mse = l2(x, y)
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """'Valid' filtering of (C, 1, H, W) with a normalised size x size Gaussian, done as two 1-D
    passes (the 2-D Gaussian is separable): (C, 1, H - size + 1, W - size + 1)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM of Wang et al. 2004 (IEEE TIP), their reference settings: an 11x11 Gaussian window
    with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) variances, the map taken over
    the 'valid' window positions only, averaged, then averaged over channels."""
    a = torch.from_numpy(_as_float(x)).permute(2, 0, 1)[:, None]  # (C, 1, H, W) float64
    b = torch.from_numpy(_as_float(y)).permute(2, 0, 1)[:, None]
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {tuple(a.shape[-2:])}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blurred = _gaussian_blur(torch.cat([a, b, a * a, b * b, a * b]), window, sigma)  # one pass, 5 maps
    mu_a, mu_b, aa, bb, ab = blurred.chunk(5)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


# --- colour statistics (paper Figure 7, seed 003) -----------------------------------------------

# Bin edges: 1 unit of L (0-100) and of a, b (-128-128), 1 level of 8-bit R, G, B.
LAB_BINS = {"L": np.arange(0, 101 + 1), "a": np.arange(-128, 128 + 1), "b": np.arange(-128, 128 + 1)}
RGB_BINS = np.arange(0, 256 + 1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> CIE Lab (D65), L in [0, 100]."""
    from ..data.color import rgb_to_lab as _rgb_to_lab

    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    return _rgb_to_lab(t).permute(1, 2, 0).numpy().astype(np.float64)


def lab_histograms(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of L, a and b values of one image (H, W, 3) in [0, 1] over LAB_BINS."""
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    return {ch: np.histogram(lab[:, i], bins=LAB_BINS[ch])[0].astype(np.int64) for i, ch in enumerate("Lab")}


def rgb_histograms(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of 8-bit R, G and B values of one image (H, W, 3) in [0, 1]."""
    levels = np.clip(np.round(np.asarray(rgb) * 255), 0, 255).reshape(-1, 3)
    return {ch: np.bincount(levels[:, i].astype(np.int64), minlength=256) for i, ch in enumerate("RGB")}


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i min(p_i, q_i) of the two histograms normalised to sum 1: 1 for the same
    distribution, 0 for disjoint ones."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histogram intersection of an empty histogram")
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness M of one image (H, W, 3) in [0, 1], on the 0-255
    scale of their paper (2003): with rg = R - G and yb = (R + G) / 2 - B,
    M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2). Their scale: 0 not, 15
    slightly, 33 moderately, 45 averagely, 59 quite, 82 highly, 109 extremely colourful."""
    x = np.asarray(rgb, dtype=np.float64) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


# --- feature distances (FID, KID) ---------------------------------------------------------------


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)). The trace of the matrix square
    root is computed as tr((s1^(1/2) sigma2 s1^(1/2))^(1/2)), whose argument is symmetric PSD,
    so no complex parts appear (they do in the sqrtm of the non-symmetric product)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(values, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N - 1 normalised, as pytorch-fid) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def kernel_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets; returns (mean, std over subsets)."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(mmd - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))
