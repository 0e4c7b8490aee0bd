"""Task datasets made from any photos: colorization (Lab), inpainting, edges; label palettes."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Pix2Pix
from pix2pix.cli import main
from pix2pix.config import TrainConfig
from pix2pix.data.aligned import Augment, DatasetError
from pix2pix.data.colorize import (
    ColorizationDataset,
    image_to_l_ab,
    l_ab_to_image,
    lab_to_rgb,
    make_colorization_dataset,
    rgb_to_lab,
)
from pix2pix.data.datasets import make_dataset
from pix2pix.data.inpaint import InpaintingDataset, hole_box
from pix2pix.data.labels import (
    IGNORE,
    colors_to_ids,
    ids_to_colors,
    load_palette,
    to_train_ids,
    train_ids_to_colors,
)
from pix2pix.data.photos import split_files
from pix2pix.training.train import train

from ..conftest import SHARED_DATA, shared_dataset, tiny_config

SIZES = ((48, 40), (40, 48), (44, 44), (52, 38))


def write_photos(folder: Path, count: int, seed: int = 0, background: bool = False) -> Path:
    """`count` small colour 'photos' of mixed sizes and formats: a colour gradient with a disc
    and a box; `background` puts the shapes on white (an object photo, as in edges2shoes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        c0, c1, c2, c3 = rng.integers(0, 256, (4, 3))
        t = (xx / w)[..., None]
        img = np.full((h, w, 3), 255.0) if background else (1 - t) * c0 + t * c1
        cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.15, 0.3) * min(w, h)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = c2 * 0.6
        x0, y0 = rng.integers(2, w // 3), rng.integers(2, h // 3)
        img[y0 : y0 + h // 4, x0 : x0 + w // 4] = c3 * 0.5
        suffix = ".jpg" if i % 2 else ".png"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"photo_{i:02d}{suffix}", quality=95)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"), 6)


# --- sRGB <-> CIELAB -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 255, 0), (87.73, -86.18, 83.18)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
        ((128, 128, 128), (53.59, 0.0, 0.0)),
    ],
)
def test_rgb_to_lab_known_values(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> None:
    x = torch.tensor(rgb, dtype=torch.float64).div(255).view(3, 1, 1)
    got = rgb_to_lab(x).flatten()
    assert torch.allclose(got, torch.tensor(lab, dtype=torch.float64), atol=0.01), got


def test_lab_round_trip() -> None:
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    # through the network normalisation and 8 bits: at most one level off
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    real_a, real_b = image_to_l_ab(photo)
    assert real_a.shape == (1, 20, 24) and real_b.shape == (2, 20, 24)
    assert real_a.abs().max() <= 1 and real_b.abs().max() <= 1  # L / 50 - 1 and ab / 110 lie in [-1, 1]
    back = np.asarray(l_ab_to_image(real_a, real_b)).astype(int)
    assert np.abs(back - np.asarray(photo).astype(int)).max() <= 1


def test_colorization_dataset_is_l_in_ab_out(photos: Path) -> None:
    augment = Augment("resize", crop_size=32, flip=False)
    ds = make_dataset("colorization", photos, "AtoB", augment, 1, 2)
    assert isinstance(ds, ColorizationDataset) and len(ds) == 6
    sample = ds[0]
    assert sample["real_a"].shape == (1, 32, 32) and sample["real_b"].shape == (2, 32, 32)
    assert ds[(0, 7)]["real_a"].shape == (1, 32, 32)
    # the sample tiles: the real ab over the input's L gives back the photo; L alone is grey
    photo = Image.open(ds.files[0]).convert("RGB").resize((32, 32), Image.BICUBIC)
    tile = np.asarray(ds.render(sample["real_b"], sample["real_a"])).astype(int)
    assert tile.shape == (32, 32, 3) and np.abs(tile - np.asarray(photo).astype(int)).max() <= 1
    grey = np.asarray(ds.render(sample["real_a"], sample["real_a"]))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    with pytest.raises(ValueError, match="--in-channels 1 --out-channels 2"):
        make_dataset("colorization", photos, "AtoB", augment, 3, 3)


def test_grey_photos_have_no_colour(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp_path / "g.png")
    sample = ColorizationDataset(tmp_path, augment=Augment("none"))[0]
    assert sample["real_b"].abs().max() < 1e-3


def test_colorization_trains_and_translates_any_photo(photos: Path, tmp_path: Path) -> None:
    cfg = tiny_config(photos, dataset_mode="colorization", in_channels=1, out_channels=2, max_steps=3)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3
    grid = Image.open(next((tmp_path / "run" / "samples").glob("*.png")))
    assert grid.mode == "RGB" and grid.size == (3 * 32, 2 * 32)
    model = Pix2Pix.load(tmp_path / "run" / "model")
    colour = Image.open(sorted(photos.iterdir())[1]).convert("RGB")
    grey = colour.convert("L")
    for image in (colour, grey):
        out = model.translate(image, seed=0)
        assert out.mode == "RGB" and out.size == image.size
        # the output keeps the input's lightness: only ab was predicted
        l_in, l_out = image_to_l_ab(image)[0], image_to_l_ab(out)[0]
        assert (l_in - l_out).abs().mean() < 0.02
    # the command line, on a folder with photos of several sizes, one of them grey
    inputs = tmp_path / "inputs"
    write_photos(inputs, 3, seed=5)
    grey.save(inputs / "grey.png")
    out_dir = tmp_path / "out"
    assert main(["translate", "--model", str(tmp_path / "run" / "model"), str(inputs), "--out", str(out_dir)]) == 0
    for src in inputs.iterdir():
        out = Image.open(out_dir / (src.stem + ".png"))
        assert out.mode == "RGB" and out.size == Image.open(src).size


def test_make_colorization_dataset_writes_grey_colour_pairs(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pairs"
    argv = ["data", "colorize", str(photos), str(out), "--size", "32", "--val-fraction", "0.34", "--no-progress"]
    assert main(argv) == 0
    assert "wrote 4 train and 2 val" in capsys.readouterr().out
    pairs = sorted(out.rglob("*.png"))
    assert len(pairs) == 6
    pair = np.asarray(Image.open(pairs[0]))
    assert pair.shape == (32, 64, 3)
    left, right = pair[:, :32].astype(int), pair[:, 32:]
    assert (left[..., 0] == left[..., 1]).all() and (left[..., 0] == left[..., 2]).all()  # grey
    assert right.std(axis=2).mean() > 5  # colour
    # the split is seeded, and nothing is overwritten silently
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    again = make_colorization_dataset(photos, tmp_path / "again", size=32, val_fraction=0.34, progress=False)
    assert again == {"train": 4, "val": 2}
    assert sorted(p.name for p in (out / "val").iterdir()) == sorted(p.name for p in (tmp_path / "again/val").iterdir())


def test_split_files_is_seeded() -> None:
    files = [Path(f"{i}.png") for i in range(10)]
    a, b, c = split_files(files, 0.2, seed=1), split_files(files, 0.2, seed=1), split_files(files, 0.2, seed=2)
    assert a == b and len(a["val"]) == 2 and len(a["train"]) == 8 and a != c
    assert split_files(files, 0.0)["val"] == [] and len(split_files(files[:2], 0.01)["val"]) == 1


def test_photo_folder_problems_are_listed(tmp_path: Path) -> None:
    write_photos(tmp_path, 2)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        ColorizationDataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        ColorizationDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a folder"):
        ColorizationDataset(tmp_path / "missing")


# --- inpainting ----------------------------------------------------------------------------


def test_hole_boxes() -> None:
    assert hole_box(32, 32, "center", 0.5) == (8, 8, 16, 16)
    assert hole_box(40, 20, "center", 0.25) == (15, 7, 10, 5)
    g = torch.Generator().manual_seed(3)
    top, left, bh, bw = hole_box(32, 32, "random", 0.5, g)
    assert (bh, bw) == (16, 16) and 0 <= top <= 16 and 0 <= left <= 16
    with pytest.raises(ValueError, match="hole_size"):
        hole_box(32, 32, "center", 1.0)
    with pytest.raises(ValueError, match="hole_size"):
        TrainConfig.from_dict({"hole_size": 1.5})
    with pytest.raises(ValueError, match="hole"):
        TrainConfig.from_dict({"hole": "square"})


def test_inpainting_dataset_cuts_a_hole(photos: Path) -> None:
    augment = Augment("resize", crop_size=32, flip=False)
    ds = make_dataset("inpainting", photos, "AtoB", augment, 3, 3, hole="center", hole_size=0.5)
    assert isinstance(ds, InpaintingDataset)
    s = ds[0]
    hole = torch.zeros(32, 32, dtype=torch.bool)
    hole[8:24, 8:24] = True
    assert (s["real_a"][:, hole] == 0).all()  # mid-grey in [-1, 1]
    assert torch.equal(s["real_a"][:, ~hole], s["real_b"][:, ~hole])
    rand = InpaintingDataset(photos, augment=augment, hole="random", hole_size=0.25)
    assert torch.equal(rand[1]["real_a"], rand[1]["real_a"])  # validation: the same hole every time
    holes = {tuple(torch.nonzero(rand[(1, seed)]["real_a"][0] == 0).min(0).values.tolist()) for seed in range(6)}
    assert len(holes) > 1  # training: a new place per sample seed


def test_inpainting_trains(photos: Path, tmp_path: Path) -> None:
    cfg = tiny_config(photos, dataset_mode="inpainting", hole="random", hole_size=0.3, max_steps=2)
    assert train(cfg, tmp_path / "run", progress=False)["step"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["hole"] == "random" and saved["hole_size"] == 0.3


# --- edges -> photo ------------------------------------------------------------------------


def test_canny_edges_are_thin_clean_black_on_white() -> None:
    pytest.importorskip("cv2", reason='OpenCV not installed: pip install "pix2pix[edges]"')
    from pix2pix.data.edges import canny_edges, clean_edges, edge_map, remove_small, thin

    yy, xx = np.mgrid[0:64, 0:64]
    photo = np.full((64, 64, 3), 240, np.uint8)
    photo[(xx - 32) ** 2 + (yy - 32) ** 2 < 18**2] = (40, 60, 120)
    edges = canny_edges(Image.fromarray(photo))
    r = np.hypot(xx - 32, yy - 32)
    assert edges.sum() > 60 and (np.abs(r[edges] - 18) <= 2).all()  # the circle's outline, nothing else
    # post-processing: a thick stroke becomes one pixel wide, a speck disappears
    mask = np.zeros((32, 32), bool)
    mask[10:14, 2:30] = True
    mask[25, 25] = mask[25, 26] = True
    cleaned = clean_edges(mask, min_size=5)
    assert not cleaned[25, 25] and (cleaned[:, 5:27].sum(axis=0) == 1).all()
    assert thin(mask)[:20, 5:27].sum(axis=0).max() == 1 and remove_small(mask, 3)[25, 25] == 0
    picture = np.asarray(edge_map(Image.fromarray(photo)))
    assert picture.shape == (64, 64, 3) and set(np.unique(picture)) == {0, 255}
    assert (picture == 255).mean() > 0.9  # black lines on white


def test_edges_command_makes_a_dataset_that_trains(tmp_path: Path, capsys) -> None:
    pytest.importorskip("cv2", reason='OpenCV not installed: pip install "pix2pix[edges]"')
    src = write_photos(tmp_path / "shoes", 6, seed=2, background=True)
    out = tmp_path / "edges2things"
    assert main(["data", "edges", str(src), str(out), "--size", "32", "--val-fraction", "0.2", "--no-progress"]) == 0
    assert "wrote 5 train and 1 val edge | photo pairs" in capsys.readouterr().out
    pair = np.asarray(Image.open(next((out / "train").glob("*.png"))))
    assert pair.shape == (32, 64, 3)
    edge_half = pair[:, :32]
    assert set(np.unique(edge_half)) <= {0, 255} and (edge_half == 0).any()
    cfg = tiny_config(out, max_steps=2)
    assert train(cfg, tmp_path / "run", progress=False)["step"] == 2


def test_edges_without_opencv_says_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    src = write_photos(tmp_path / "p", 1)
    assert main(["data", "edges", str(src), str(tmp_path / "out"), "--no-progress"]) == 2
    assert 'pip install "pix2pix[edges]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _EdgeNet(torch.nn.Module):
    """A stand-in for HED: |Laplacian| of the image, squashed to an edge probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1, bias=False)
        kernel = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]) / 3
        with torch.no_grad():
            self.conv.weight.copy_(kernel.expand(1, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20 * self.conv(x).abs() - 5)  # (1, 1, H, W)


def _export_edge_model(path: Path, size: int) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install onnxruntime)")
    x = torch.rand(1, 3, size, size)
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(_EdgeNet().eval(), (x,), str(path), dynamo=dynamo)
            return
        except Exception as err:  # noqa: BLE001 - any exporter failure means: cannot test here
            errors.append(f"{type(err).__name__}: {err}")
    pytest.skip(f"cannot export a test ONNX model here (needs onnx/onnxscript): {errors}")


def test_edge_model_hook_runs_a_user_onnx_model(tmp_path: Path, capsys) -> None:
    pytest.importorskip("cv2", reason='OpenCV not installed: pip install "pix2pix[edges]"')
    from pix2pix.data.edges import EdgeModel

    model_path = tmp_path / "hed.onnx"
    _export_edge_model(model_path, 32)
    photo = np.full((32, 32, 3), 230, np.uint8)
    photo[8:24, 8:24] = (30, 40, 50)
    prob = EdgeModel(model_path)(Image.fromarray(photo))
    assert prob.shape == (32, 32) and prob.min() >= 0 and prob.max() <= 1
    assert prob[8, 8:24].min() > 0.5 and prob[16, 16] < 0.1 and prob[2, 2] < 0.1
    src = write_photos(tmp_path / "photos", 3, seed=4, background=True)
    out = tmp_path / "out"
    argv = ["data", "edges", str(src), str(out), "--size", "32", "--val-fraction", "0", "--edge-model", str(model_path)]
    assert main([*argv, "--no-progress"]) == 0
    pair = np.asarray(Image.open(next((out / "train").glob("*.png"))))
    assert (pair[:, :32] == 0).any() and (pair[:, :32] == 255).mean() > 0.5
    assert main(["data", "edges", str(src), str(out), "--edge-model", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx" in capsys.readouterr().err


# --- label maps ----------------------------------------------------------------------------


def test_cityscapes_palette() -> None:
    palette = load_palette("cityscapes")
    assert len(palette.labels) == 35 and palette.num_classes == 19
    assert palette.train_classes[:3] == ["road", "sidewalk", "building"] and palette.train_classes[-1] == "bicycle"
    ids = np.array([[7, 8, 0], [26, 17, 23]], dtype=np.uint8)  # road, sidewalk, unlabeled / car, pole, sky
    image = ids_to_colors(ids, palette)
    assert image.getpixel((0, 0)) == (128, 64, 128)
    assert (colors_to_ids(image, palette) == ids).all()
    assert (to_train_ids(ids, palette) == [[0, 1, IGNORE], [13, 5, 10]]).all()
    # labels that share a colour map to the evaluated one (polegroup -> pole, license plate -> car)
    assert colors_to_ids(np.array([[[153, 153, 153], [0, 0, 142]]], np.uint8), palette).tolist() == [[17, 26]]
    assert to_train_ids(np.array([18, 9, 200]), palette).tolist() == [IGNORE] * 3  # polegroup, parking, unknown
    assert train_ids_to_colors(np.array([[0, 255]]), palette).getpixel((1, 0)) == (0, 0, 0)


def test_nearest_colour_survives_jpeg(tmp_path: Path) -> None:
    palette = load_palette("cityscapes")
    rng = np.random.default_rng(0)
    evaluated = [lb.id for lb in palette.labels if not lb.ignore_in_eval]
    ids = np.repeat(np.repeat(rng.choice(evaluated, (4, 4)), 16, 0), 16, 1).astype(np.uint8)  # 16 px regions
    buffer = io.BytesIO()
    ids_to_colors(ids, palette).save(buffer, "JPEG", quality=75)
    noisy = Image.open(buffer)  # colours bleed across region borders (JPEG halves the chroma resolution)
    assert (colors_to_ids(noisy, palette) == ids).mean() > 0.93
    far = colors_to_ids(np.full((2, 2, 3), (255, 255, 255), np.uint8), palette, max_distance=20)
    assert (far == IGNORE).all()


def test_facades_palette() -> None:
    palette = load_palette("facades")
    assert palette.num_classes == 12 and palette.train_classes[:3] == ["background", "facade", "window"]
    ids = np.arange(1, 13, dtype=np.uint8).reshape(3, 4)
    assert (colors_to_ids(ids_to_colors(ids, palette), palette) == ids).all()
    assert (to_train_ids(ids, palette) == ids - 1).all()
    with pytest.raises(ValueError, match="unknown palette"):
        load_palette("nope")


def test_palette_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps([{"name": "a", "id": 1, "trainId": 0, "color": [10, 20, 30]}]))
    palette = load_palette(str(path))
    assert palette.num_classes == 1 and colors_to_ids(np.full((1, 1, 3), 12, np.uint8), palette).item() == 1


def test_shipped_cityscapes_table_matches_the_shared_definition() -> None:
    source = SHARED_DATA / "cityscapes" / "labels.json"
    if not source.is_file():
        pytest.skip(f"{source} not present; comparison with the shared label table skipped")
    shared = json.loads(source.read_text())
    ours = load_palette("cityscapes").labels
    assert [(e["name"], e["id"], e["trainId"], tuple(e["color"]), e["ignoreInEval"]) for e in shared] == [
        (lb.name, lb.id, lb.train_id, lb.color, lb.ignore_in_eval) for lb in ours
    ]


def test_real_cityscapes_label_halves_map_to_valid_classes() -> None:
    folder = shared_dataset("cityscapes") / "val"
    palette = load_palette("cityscapes")
    near_labels, near_photos = [], []
    for path in sorted(folder.glob("*.jpg"))[:4]:
        pair = Image.open(path).convert("RGB")
        w, h = pair.size
        labels = pair.crop((w // 2, 0, w, h))  # right half: the colour label map, resized and JPEG
        ids = colors_to_ids(labels, palette, max_distance=40)
        near_labels.append((ids != IGNORE).mean())
        assert near_labels[-1] > 0.85, f"{path}: only {near_labels[-1]:.0%} of pixels near a palette colour"
        assert len(set(np.unique(to_train_ids(ids, palette)).tolist()) - {IGNORE}) >= 4
        photo = pair.crop((0, 0, w // 2, h))  # a photo is no label map: far fewer pixels match
        near_photos.append((colors_to_ids(photo, palette, max_distance=40) != IGNORE).mean())
    assert np.mean(near_photos) < np.mean(near_labels) - 0.2
