"""Sharing models (hub.py): the Hub folder layout and card, `push --dry-run`, loading from a
populated Hub cache offline, and `download-model` against a local HTTP server on 127.0.0.1.

The Hub itself cannot be reached from here: nothing in this file contacts it (uploads are tried
against a closed local port, to see the error a user gets)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pix2pix.cli import main
from pix2pix.config import TrainConfig
from pix2pix.hub.card import model_card
from pix2pix.hub.folder import load_model, save_model
from pix2pix.hub.model_config import LEGACY_WEIGHTS, MODEL_WEIGHTS, ModelConfig
from pix2pix.hub.published import PUBLISHED
from pix2pix.inference.predict import Pix2Pix
from pix2pix.models.networks import UNetGenerator
from tests.data.test_download import Server
from tests.hub.test_reference import reference_generator

CARD = ModelConfig("unet", {"base_channels": 4, "depth": 5}, "BtoA", crop_size=32, objective="l1+cgan")


def _tiny_model(folder: Path, card: ModelConfig = CARD) -> Path:
    torch.manual_seed(0)
    save_model(folder, UNetGenerator(3, 3, 4, depth=5), card)
    return folder


def _cityscapes_metrics() -> dict:
    scores = {"pixel_acc": 0.61, "class_acc": 0.22, "class_iou": 0.17}
    truth = {"pixel_acc": 0.79, "class_acc": 0.27, "class_iou": 0.24}
    return {
        "data": "/data/cityscapes",
        "split": "val",
        "images": 500,
        "size": 128,
        "mode": "paper",
        "task": "label2photo",
        "fcn": scores,
        "fcn_ground_truth": truth,
        "image": {"l1": 0.1, "l2": 0.02, "psnr": 16.5, "ssim": 0.4},
    }


# --- the folder and its card --------------------------------------------------------------------


def test_model_folder_is_the_hub_layout_and_old_folders_still_load(tmp_path: Path) -> None:
    folder = _tiny_model(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", MODEL_WEIGHTS]
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_bytes((folder / "config.json").read_bytes())
    (old / LEGACY_WEIGHTS).write_bytes((folder / MODEL_WEIGHTS).read_bytes())
    new_net, _ = load_model(folder)
    old_net, _ = load_model(old)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(new_net(x), old_net(x))
    save_model(old, old_net, CARD)  # writing into an old folder leaves one set of weights
    assert (old / MODEL_WEIGHTS).is_file() and not (old / LEGACY_WEIGHTS).exists()


def test_card_says_how_a_run_was_trained(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({"data": "/somewhere/facades", "direction": "BtoA", "lr": 1e-4, "workers": 0})
    card = ModelConfig.from_train_config(cfg, step=1234)
    text = model_card(card)
    assert text.startswith("---\nlibrary_name: pix2pix\npipeline_tag: image-to-image\nlicense: other\n")
    assert "- facades\n" in text and "on `facades`, weights of step 1,234." in text
    assert "- `lr` = `0.0001`" in text and '- `direction` = `"BtoA"`' in text
    assert "workers" not in text and "data" not in card.extra["training"]["changed_from_defaults"]
    assert 'Pix2Pix.from_pretrained("path/to/this/folder")' in text and "@inproceedings{isola2017image" in text


def test_card_shows_evaluation_beside_the_paper_only_where_the_paper_has_the_row() -> None:
    text = model_card(CARD, "me/labels2photo", _cityscapes_metrics())
    assert "| this model | 0.610 | 0.220 | 0.170 |" in text
    assert "| real photos (the segmenter's ground truth) | 0.790 | 0.270 | 0.240 |" in text
    assert "| paper (Table 1, L1+cGAN) | 0.66 | 0.23 | 0.17 |" in text
    assert "not the paper's FCN-8s" in text and "PSNR 16.50 dB" in text
    other = model_card(CARD, "me/x", {**_cityscapes_metrics(), "data": "/data/my_streets"})
    assert "| this model |" in other and "paper (" not in other


# --- push --------------------------------------------------------------------------------------


def test_push_dry_run_writes_exactly_the_upload(tmp_path: Path, capsys) -> None:
    model = _tiny_model(tmp_path / "m")
    (model / "metrics.json").write_text(json.dumps(_cityscapes_metrics()))
    up = tmp_path / "upload"
    argv = ["push", str(model), "me/labels2photo", "--dry-run", "--stage-dir", str(up), "--license", "mit"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in up.iterdir())
    assert names == ["README.md", "config.json", "metrics.json", MODEL_WEIGHTS]
    assert all(name in out for name in names) and "nothing was uploaded" in out
    card = (up / "README.md").read_text()
    assert "license: mit" in card and 'from_pretrained("me/labels2photo")' in card and "| this model |" in card
    a, b = load_file(str(model / MODEL_WEIGHTS)), load_file(str(up / MODEL_WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert Pix2Pix.load(up).config == Pix2Pix.load(model).config
    assert main(["push", str(model), "me/labels2photo", "--dry-run", str(up)]) == 2  # never into a full folder
    assert "is not empty" in capsys.readouterr().err  # --dry-run DIR: the old spelling of --stage-dir DIR


def test_push_dry_run_is_a_flag_that_lists_the_upload_and_leaves_nothing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["push", str(model), "me/labels2photo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload to me/labels2photo (public)" in out and "--stage-dir DIR keeps" in out
    assert all(name in out for name in ("README.md", "config.json", MODEL_WEIGHTS))
    assert sorted(tmp_path.rglob("*")) == before


def test_push_dry_run_of_an_old_run_model_reads_the_run_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig.from_dict({"data": "/d/maps", "lambda_l1": 10.0})
    (run / "config.json").parent.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    _tiny_model(run / "model")  # a card without training options, as models before the cards
    assert main(["push", str(run / "model"), "me/maps", "--dry-run", str(tmp_path / "up")]) == 0
    assert "- `lambda_l1` = `10.0`" in (tmp_path / "up" / "README.md").read_text()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_push_that_cannot_reach_the_hub_says_so(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    model = _tiny_model(tmp_path / "m")
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-m", "pix2pix", "push", str(model), "me/m", "--token", "hf_not_a_real_token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("pix2pix: error: me/m: upload failed")


# --- from_pretrained --------------------------------------------------------------------------------


def _populate_hub_cache(cache: Path, repo_id: str, model: Path) -> None:
    """The Hub cache's layout for one repository at revision main (what snapshot_download leaves)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for path in model.iterdir():
        (snap / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_from_pretrained_loads_from_the_hub_cache_offline(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    model = _tiny_model(tmp_path / "m")
    _populate_hub_cache(tmp_path / "cache", "me/tiny", model)
    Image.new("RGB", (32, 32), (200, 40, 90)).save(tmp_path / "in.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "pix2pix", "translate", "--seed", "0", str(tmp_path / "in.png")]
    hub = subprocess.run(
        [*run, "--model", "me/tiny", "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env
    )
    local = subprocess.run(
        [*run, "--model", str(model), "--out", str(tmp_path / "b")], capture_output=True, text=True, env=env
    )
    assert hub.returncode == 0 and local.returncode == 0, hub.stderr + local.stderr
    assert (tmp_path / "a" / "in.png").read_bytes() == (tmp_path / "b" / "in.png").read_bytes()
    missing = subprocess.run(
        [*run, "--model", "me/absent", "--out", str(tmp_path / "c")], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "not in the Hub cache" in missing.stderr and "Traceback" not in missing.stderr


def test_from_pretrained_names_the_extra_when_huggingface_hub_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"me/model: no model folder by that path here.*pix2pix\[hub\]"):
        Pix2Pix.from_pretrained("me/model")
    assert Pix2Pix.from_pretrained(_tiny_model(tmp_path / "m")).config == CARD.__class__.from_json(
        json.loads((tmp_path / "m" / "config.json").read_text())
    )


def test_a_repository_without_safetensors_is_refused(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub

    from pix2pix.hub.huggingface import HubError, snapshot

    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    seen = {}

    def fake_download(repo_id, **kwargs):  # what the Hub returns for a repository of .bin files only
        seen.update(kwargs)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with pytest.raises(HubError, match="safetensors only"):
        snapshot("me/pickles")
    assert "*.bin" not in seen["allow_patterns"] and "model.safetensors" in seen["allow_patterns"]


# --- download-model ----------------------------------------------------------------------------------


@pytest.fixture
def models_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, torch.nn.Module]]:
    """Serves a reference-format sat2map.pth: the reference's unet_256 (8 channels wide) state dict."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "PIX2PIX_MODELS_URL"):
        monkeypatch.delenv(var, raising=False)
    torch.manual_seed(0)
    net = reference_generator("unet_256", "batch", ngf=8).eval()
    file = io.BytesIO()
    torch.save(net.state_dict(), file)
    with Server() as s:
        s.files["/datasets/sat2map.pth"] = file.getvalue()
        yield s, net


def _download_model(server: Server, dest: Path, *extra: str) -> int:
    return main(["download-model", "sat2map", "--dest", str(dest), "--url", server.base, "--no-progress", *extra])


def test_download_model_converts_the_published_generator(models_server, tmp_path: Path, capsys) -> None:
    server, net = models_server
    dest = tmp_path / "models"
    assert _download_model(server, dest) == 0
    out = capsys.readouterr().out
    model = Pix2Pix.load(dest / "sat2map")
    assert model.config.direction == PUBLISHED["sat2map"].direction == "AtoB"
    assert model.config.extra["source"]["name"] == "sat2map" and "SHA-256" in out
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.translate(x, mode="eval"), net(x), atol=1e-5)
    card = (dest / "sat2map" / "README.md").read_text()
    assert "# pix2pix: sat2map" in card and "Aerial photos -> maps" in card and server.base in card
    assert sorted(p.name for p in dest.iterdir()) == ["sat2map"]  # the .pth is not kept
    assert _download_model(server, dest) == 2 and "already exists" in capsys.readouterr().err


def test_download_model_resumes_and_refuses_corrupt_files(models_server, tmp_path: Path, capsys) -> None:
    server, _ = models_server
    data = server.files["/datasets/sat2map.pth"]
    server.truncate["/datasets/sat2map.pth"] = len(data) // 3
    assert _download_model(server, tmp_path) == 2
    assert "run the command again to resume" in capsys.readouterr().err
    assert (tmp_path / "sat2map.pth.part").stat().st_size == len(data) // 3
    assert _download_model(server, tmp_path) == 0
    assert server.requests[-1][1] == f"bytes={len(data) // 3}-" and (tmp_path / "sat2map" / MODEL_WEIGHTS).is_file()

    server.files["/datasets/sat2map.pth"] = b"<html>not found</html>" * 100  # a captive portal's page
    assert _download_model(server, tmp_path / "b") == 2
    err = capsys.readouterr().err
    assert "not a reference generator" in err and "deleted" in err and "Traceback" not in err
    assert not any((tmp_path / "b").iterdir())  # nothing half-made is left
    server.files["/datasets/sat2map.pth"] = data
    assert _download_model(server, tmp_path / "c", "--sha256", "0" * 64) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err and not any((tmp_path / "c").iterdir())


def test_download_model_lists_the_published_models(capsys) -> None:
    assert main(["download-model", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PUBLISHED) and "218 MB" in out
    assert main(["download-model", "no_such_model"]) == 2
    assert "available: facades_label2photo" in capsys.readouterr().err
