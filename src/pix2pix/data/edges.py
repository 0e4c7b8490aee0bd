"""Edges -> photo (section 4, edges2shoes / edges2handbags): edge maps made from any photos.

The paper's edge maps come from the HED edge detector followed by post-processing (thin to
one-pixel lines, drop small fragments), drawn black on white. Here:

- `canny_edges`: Canny (OpenCV, the optional extra `pix2pix[edges]`); the default thresholds
  follow the image's gradient statistics, so any photo gives a usable map without tuning.
- `EdgeModel`: a user-supplied HED-style network exported to ONNX, run with onnxruntime (an
  ONNX file is a protobuf graph: loading it never unpickles code). Nothing is downloaded.
- `clean_edges`: the post-processing: thinning (Zhang-Suen), then removal of connected pieces
  smaller than `min_size` pixels (5 by default, as in the pix2pix authors' post-processing of
  HED maps, which also thresholds HED's output at 25/255).
- `make_edges_dataset`: a folder of photos -> aligned pairs edge | photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .edge_settings import EDGE_MODEL_INPUTS, EDGES_EXTRA, HED_BGR_MEAN, HED_THRESHOLD, MIN_EDGE_PIXELS


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message says how to install it."""


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError(EDGES_EXTRA) from None
    return cv2


def canny_edges(
    image: Image.Image, low: float | None = None, high: float | None = None, sigma: float = 1.0
) -> np.ndarray:
    """Canny edges of a photo: bool (H, W). Gaussian blur of `sigma` px first; thresholds on the
    Sobel gradient magnitude, by default high = its 90th percentile (at least 30) and low = 0.4
    high, so busy and plain photos both give clean maps."""
    cv2 = _cv2()
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    if sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    if high is None:
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        high = max(float(np.percentile(np.hypot(gx, gy), 90)), 30.0)
    if low is None:
        low = 0.4 * high
    if low > high:
        raise ValueError(f"Canny thresholds: low ({low}) must not exceed high ({high})")
    return cv2.Canny(grey, float(low), float(high), L2gradient=True) > 0


def thin(edges: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool mask (H, W) to one-pixel-wide, 8-connected lines."""
    img = np.pad(edges.astype(bool), 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            # neighbours P2..P9 clockwise from north, each (H, W)
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            count = sum(ring[:8])  # B(P1): foreground neighbours
            crossings = sum((ring[i] == 0) & (ring[i + 1] == 1) for i in range(8))  # A(P1)
            side = (
                (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)  # first sub-iteration: south-east boundary
                if step == 0
                else (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)  # second: north-west boundary
            )
            remove = (img[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (crossings == 1) & side
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def remove_small(edges: np.ndarray, min_size: int = MIN_EDGE_PIXELS) -> np.ndarray:
    """Drop 8-connected pieces of fewer than `min_size` pixels from a bool mask (H, W)."""
    if min_size <= 1:
        return edges.astype(bool)
    cv2 = _cv2()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(edges.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # label 0 is the background
    return keep[labels]


def clean_edges(edges: np.ndarray, min_size: int = MIN_EDGE_PIXELS, thinning: bool = True) -> np.ndarray:
    """The paper's post-processing: thin to one-pixel lines, then drop pieces below min_size px."""
    edges = thin(edges) if thinning else edges.astype(bool)
    return remove_small(edges, min_size)


def edge_picture(edges: np.ndarray) -> Image.Image:
    """Bool edges (H, W) -> RGB image, black lines on white (as in edges2shoes)."""
    return Image.fromarray(np.where(edges, 0, 255).astype(np.uint8), "L").convert("RGB")


class EdgeModel:
    """A HED-style edge network from an ONNX file, run with onnxruntime on the CPU.

    The graph takes one float32 input (1, 3, H, W): `input_format` 'rgb01' is RGB in [0, 1];
    'bgr-mean' is HED's Caffe convention (BGR, 0-255, minus the ImageNet means). Its output
    `output` (default: the last, HED's fused map) is an edge probability map (1, 1, h, w) or
    (1, h, w); values outside [0, 1] are taken as logits. Maps of another size are resized to
    the photo's.

    Example:
        >>> model = EdgeModel("hed.onnx", input_format="bgr-mean")  # doctest: +SKIP
        >>> edges = clean_edges(model(photo) > HED_THRESHOLD)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, input_format: str = "rgb01", output: int = -1) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MissingDependencyError("--edge-model needs onnxruntime: pip install onnxruntime") from None
        if input_format not in EDGE_MODEL_INPUTS:
            raise ValueError(f"input_format {input_format!r}: choose one of {list(EDGE_MODEL_INPUTS)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: edge model file not found")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a readable ONNX model ({err})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: an edge model takes one image input, this one takes {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_format, self.output = input_format, output

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Edge probabilities (H, W) in [0, 1] for a photo of H x W."""
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
        x = rgb / 255.0 if self.input_format == "rgb01" else rgb[:, :, ::-1] - np.float32(HED_BGR_MEAN)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)  # (1, 3, H, W)
        try:
            prob = np.asarray(self.session.run(None, {self.input_name: x})[self.output], dtype=np.float32)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{self.path}: failed on a {image.width}x{image.height} image ({err})") from None
        prob = prob.squeeze()
        if prob.ndim != 2:
            raise ValueError(f"{self.path}: expected a single-channel edge map, got output shape {prob.shape}")
        if prob.min() < 0 or prob.max() > 1:
            prob = 1 / (1 + np.exp(-prob))  # logits
        if prob.shape != (image.height, image.width):
            prob = np.asarray(Image.fromarray(prob, "F").resize(image.size, Image.BILINEAR))
        return prob


def edge_map(
    photo: Image.Image,
    model: EdgeModel | None = None,
    threshold: float = HED_THRESHOLD,
    min_size: int = MIN_EDGE_PIXELS,
    low: float | None = None,
    high: float | None = None,
) -> Image.Image:
    """A photo's edge image (black on white, RGB, same size): from `model` when given (edge
    probability > threshold), else Canny; then thinned and cleaned of pieces below min_size."""
    edges = model(photo) > threshold if model is not None else canny_edges(photo, low, high)
    return edge_picture(clean_edges(edges, min_size))


def make_edges_dataset(
    src: Path | str,
    out: Path | str,
    model: EdgeModel | None = None,
    threshold: float = HED_THRESHOLD,
    min_size: int = MIN_EDGE_PIXELS,
    low: float | None = None,
    high: float | None = None,
    **options: Any,
) -> dict[str, int]:
    """Aligned edge | photo pairs (AtoB = edges -> photo) from any folder of photos, in
    out/train and out/val. `options`: size, val_fraction, seed, overwrite, progress (see
    colorize.write_pair_dataset)."""
    _cv2()  # fail before writing anything when OpenCV is missing

    def make_input(photo: Image.Image) -> Image.Image:
        return edge_map(photo, model, threshold, min_size, low, high)

    from .photos import write_pair_dataset  # torch's Dataset: loaded when pairs are written

    return write_pair_dataset(src, out, make_input, **options)
