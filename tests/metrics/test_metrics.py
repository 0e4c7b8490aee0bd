"""Metric formulas against hand-computed cases and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pix2pix import metrics


def test_confusion_matrix_hand_case() -> None:
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 255, 2]])  # 255 predicted: no class (a void colour)
    hist = metrics.confusion_matrix(pred, target, num_classes=3)
    # rows: truth 0, 1, 2; columns: predicted 0, 1, 2, no class; the 255 target is skipped
    assert hist.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1]]
    s = metrics.segmentation_scores(hist)
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["class_acc"] == pytest.approx((1 / 2 + 2 / 2 + 0 / 1) / 3)
    # IoU_c = diag / (truth + predicted - diag): 1/2, 2/3, 0/1
    assert s["class_iou"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert s["per_class_iou"] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert s["absent_classes"] == []


def test_absent_classes_zero_is_pix2pix_formula_and_ignore_leaves_them_out() -> None:
    # class 3 never occurs in the ground truth and is never predicted
    hist = np.array([[5, 1, 0, 0], [2, 6, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]])
    zero = metrics.segmentation_scores(hist, absent="zero")
    ignore = metrics.segmentation_scores(hist, absent="ignore")
    # pix2pix (scripts/eval_cityscapes/evaluate.py, get_scores): x / (sum + 1e-12), nanmean
    diag = np.diag(hist)
    cl_acc = diag / (hist.sum(1) + 1e-12)
    iu = diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)
    assert zero["class_acc"] == pytest.approx(np.nanmean(cl_acc))
    assert zero["class_iou"] == pytest.approx(np.nanmean(iu))
    assert ignore["class_acc"] == pytest.approx(np.mean(cl_acc[:3]))
    assert ignore["class_iou"] == pytest.approx(np.mean(iu[:3]))
    assert zero["class_acc"] < ignore["class_acc"]
    assert zero["absent_classes"] == [3] and zero["per_class_acc"][3] is None
    assert zero["pixel_acc"] == ignore["pixel_acc"] == pytest.approx(14 / 18)


def test_confusion_matrix_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        metrics.confusion_matrix(np.zeros((4, 4)), np.zeros((4, 5)), 3)


def test_psnr_l1_l2_known_values() -> None:
    x = np.zeros((8, 8, 3))
    y = np.full((8, 8, 3), 0.1)
    assert metrics.l1(x, y) == pytest.approx(0.1)
    assert metrics.l2(x, y) == pytest.approx(0.01)
    assert metrics.psnr(x, y) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert metrics.psnr(x, x) == math.inf


def test_ssim_constant_images_closed_form() -> None:
    # constant images: variances and covariance vanish, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    m1, m2 = 0.3, 0.7
    c1 = 0.01**2
    expected = (2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1)
    got = metrics.ssim(np.full((16, 16), m1), np.full((16, 16), m2))
    assert got == pytest.approx(expected, rel=1e-9)
    rng = np.random.default_rng(0)
    x = rng.random((20, 24, 3))
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    assert metrics.ssim(x, y) == pytest.approx(metrics.ssim(y, x))  # symmetric
    assert metrics.ssim(x, y) < 0.9


def test_ssim_matches_scikit_image_gaussian_ssim() -> None:
    skimage = pytest.importorskip("skimage.metrics", reason="scikit-image not installed (pip install -e '.[test]')")
    rng = np.random.default_rng(1)
    x = rng.random((40, 52, 3))
    y = np.clip(0.8 * x + 0.1 + 0.05 * rng.standard_normal(x.shape), 0, 1)
    reference = skimage.structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2
    )
    assert metrics.ssim(x, y) == pytest.approx(reference, abs=1e-10)


def test_ssim_rejects_small_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.ssim(np.zeros((16, 16)), np.zeros((16, 17)))


def test_histogram_intersection_hand_case() -> None:
    # p = (0.5, 0.5, 0), q = (0.25, 0.25, 0.5): sum of minima = 0.25 + 0.25 + 0 = 0.5
    assert metrics.histogram_intersection([2, 2, 0], [1, 1, 2]) == pytest.approx(0.5)
    assert metrics.histogram_intersection([3, 1], [30, 10]) == pytest.approx(1.0)  # scale-free
    assert metrics.histogram_intersection([1, 0], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        metrics.histogram_intersection([0, 0], [1, 1])


def test_lab_histograms_of_pure_colours() -> None:
    # pure red is L 53.24, a 80.09, b 67.20 (CIE Lab, D65): every pixel lands in bins 53, 80, 67
    red = np.zeros((4, 5, 3))
    red[..., 0] = 1.0
    h = metrics.lab_histograms(red)
    assert h["L"][53] == 20 and h["L"].sum() == 20
    assert h["a"][80 + 128] == 20 and h["b"][67 + 128] == 20
    rgb = metrics.rgb_histograms(red)
    assert rgb["R"][255] == 20 and rgb["G"][0] == 20


def test_frechet_distance_closed_forms() -> None:
    # 1-D: N(0, 1) vs N(mu, s^2): mu^2 + 1 + s^2 - 2 s
    assert metrics.frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([3.0]), np.array([[4.0]])) == (
        pytest.approx(9 + 1 + 4 - 2 * 2)
    )
    # diagonal covariances: |mu1 - mu2|^2 + sum_i (a_i + b_i - 2 sqrt(a_i b_i))
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + sum(a + b - 2 * np.sqrt(a * b))
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # a rotation of a non-diagonal covariance changes nothing when both are rotated
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    assert metrics.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T) == (
        pytest.approx(expected)
    )


def test_fid_from_features_shift_and_scale() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    # the same covariance, mean moved: FID = |shift|^2 exactly
    assert metrics.fid_from_features(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # 2x about the mean: cov 4S, tr(S + 4S - 2 * 2S) = tr(S)
    xc = x - x.mean(0)
    assert metrics.fid_from_features(xc, 2 * xc) == pytest.approx(np.trace(np.cov(xc, rowvar=False)), rel=1e-6)
    assert metrics.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_kid_hand_case_and_sign() -> None:
    # 1-D features, m = 2: k(x, y) = (x y + 1)^3. real {0, 0}: off-diagonal mean 1; fake {1, 1}:
    # (1 + 1)^3 = 8; cross (0 + 1)^3 = 1. MMD^2 = 1 + 8 - 2 * 1 = 7.
    mean, std = metrics.kernel_distance(np.zeros((2, 1)), np.ones((2, 1)), subsets=1, subset_size=2)
    assert mean == pytest.approx(7.0) and std == 0.0
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    same, _ = metrics.kernel_distance(a, b, subsets=20, subset_size=100)
    moved, _ = metrics.kernel_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same) < 0.05 < moved
