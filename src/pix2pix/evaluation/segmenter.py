"""The FCN-score segmenter: a U-Net trained on the real photos of a labelled set (the paper uses
the pretrained FCN-8s; see experiments/reproduce.py), scored on the real val photos (the
FCN-score's ground-truth row), and loaded by the scorer and by validation during training."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import metrics
from ..data.device import resolve_device
from ..data.images import open_image, split_pair
from ..data.labels import IGNORE, Palette, load_palette
from ..hub.folder import load_model, save_model
from ..hub.model_config import ModelConfig
from ..models.networks import UNetGenerator, init_weights
from ..progress import progress_bar
from .pairs import EvaluationError, label_ids, list_pairs, resize, to_net

SEGMENTER_TASK = "segmenter"


def load_segmenter(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, Any]:
    net, config = load_model(Path(path))
    if config.task != SEGMENTER_TASK:
        raise EvaluationError(
            f'{path}: not a segmenter model folder (its config.json has no "task": "segmenter"); '
            "make one with `pix2pix evaluate train-segmenter`"
        )
    return net.to(device).eval(), config


def segment(net: torch.nn.Module, photos: torch.Tensor) -> np.ndarray:
    """Photos (B, 3, H, W) in [-1, 1] -> train ids (B, H, W) uint8 (argmax of the class scores)."""
    device = next(net.parameters()).device
    with torch.inference_mode():
        return net(photos.to(device)).argmax(1).cpu().numpy().astype(np.uint8)


def train_segmenter(
    data: str | Path,
    out: str | Path,
    size: int = 256,
    steps: int | None = None,
    batch_size: int = 4,
    channels: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    palette: str = "cityscapes",
    photo_half: str = "left",
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train the FCN-score segmenter on the real training photos of an aligned set whose other
    half is the colour label map (Cityscapes: photo | labels).

    Recipe (deterministic for a given seed and thread count): a U-Net with `channels` filters
    in the first layer, log2(size) levels, BatchNorm, no dropout and a linear head with one score
    per class; photos resized to size x size (bicubic), label ids by nearest colour then
    nearest-neighbour resizing; random mirroring only; pixel-wise cross-entropy ignoring the
    void labels; Adam (lr 1e-3, betas 0.9 / 0.999) with the learning rate decayed linearly to 0;
    batch 4; `steps` default: 20 epochs of the training split. Writes a model folder
    (config.json with "task": "segmenter" + model.safetensors + a README.md card) and its val scores."""
    out = Path(out)
    pal = load_palette(palette)
    files = list_pairs(data, "train")
    dev = resolve_device(device)
    photos_u8, labels_u8 = _decode_pairs(files, pal, size, photo_half, progress)
    n = len(files)
    steps = steps or math.ceil(n / batch_size) * 20

    torch.manual_seed(seed)
    depth = int(math.log2(size))
    net = UNetGenerator(3, pal.num_classes, channels, depth=depth, dropout=0.0, output="logits")
    init_weights(net)
    net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    order = torch.Generator().manual_seed(seed)
    bar = progress_bar(steps, "segmenter", unit="it") if progress else None
    perm, pos, started, loss_sum = torch.randperm(n, generator=order), 0, time.perf_counter(), 0.0
    for step in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=order), 0
        idx = perm[pos : pos + batch_size]
        pos += batch_size
        x = photos_u8[idx].float() / 127.5 - 1  # (B, 3, S, S) in [-1, 1]
        y = labels_u8[idx].long()  # (B, S, S)
        flip = torch.rand(len(idx), generator=order) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        loss = F.cross_entropy(net(x.to(dev)), y.to(dev), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item()
        if bar is not None:
            bar.update(1)
            if (step + 1) % 50 == 0:
                bar.set_postfix(loss=f"{loss_sum / 50:.3f}")
                loss_sum = 0.0
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "data": str(data)}
    save_model(out, net.cpu(), _segmenter_config(pal, palette, channels, depth, size, photo_half, recipe, seconds))
    scores = evaluate_segmenter(out, data, device=device, progress=progress)
    result = {"steps": steps, "seconds": round(seconds, 1), "val": scores}
    (out / "done.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _decode_pairs(
    files: list[Path], pal: Palette, size: int, photo_half: str, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training photos (N, 3, S, S) and label ids (N, S, S, 255 = ignore), as uint8, decoded
    once (at 256 px the 2975 Cityscapes pairs take 0.6 GB)."""
    photos, labels = [], []
    for path in progress_bar(files, "decode", progress):
        photo, label = _halves(path, photo_half)
        photos.append(np.asarray(resize(photo, size), dtype=np.uint8))
        labels.append(label_ids(label, pal, size))
    return torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2), torch.from_numpy(np.stack(labels))


def _segmenter_config(
    pal: Palette,
    palette: str,
    channels: int,
    depth: int,
    size: int,
    photo_half: str,
    recipe: dict[str, Any],
    seconds: float,
) -> Any:
    """The segmenter's model card: a U-Net with a linear head, one score per class."""
    generator = {"in_channels": 3, "out_channels": pal.num_classes, "base_channels": channels, "depth": depth}
    generator |= {"norm": "batch", "dropout": 0.0, "output": "logits"}
    extra = {"photo_half": photo_half, "recipe": recipe, "train_seconds": round(seconds, 1)}
    return ModelConfig("unet", generator, crop_size=size, palette=palette, task=SEGMENTER_TASK, extra=extra)


def _halves(path: Path, photo_half: str) -> tuple[Image.Image, Image.Image]:
    left, right = split_pair(open_image(path, "RGB"), path)
    return (left, right) if photo_half == "left" else (right, left)


def evaluate_segmenter(
    segmenter: str | Path, data: str | Path, split: str = "val", device: str = "auto", progress: bool = False
) -> dict[str, Any]:
    """The segmenter on the real photos of `split`: the FCN-score's ground-truth row."""
    net, config = load_segmenter(segmenter, resolve_device(device))
    pal = load_palette(config.palette or "cityscapes")
    size = config.crop_size
    hist = np.zeros((pal.num_classes, pal.num_classes + 1), dtype=np.int64)
    for path in progress_bar(list_pairs(data, split), "score", progress):
        photo, label = _halves(path, config.extra.get("photo_half", "left"))
        pred = segment(net, to_net(resize(photo, size))[None])[0]
        hist += metrics.confusion_matrix(pred, label_ids(label, pal, size), pal.num_classes)
    return {**metrics.segmentation_scores(hist), "classes": pal.train_classes}
