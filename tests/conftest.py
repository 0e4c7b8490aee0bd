from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pix2pix.config import TrainConfig
from pix2pix.data.shapes import make_shapes_dataset

# A run that emulates another CPU (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, as .ci/run
# does) keeps its own torch.compile cache: kernels cached for one ISA crash the other.
_ISA = os.environ.get("ATEN_CPU_CAPABILITY") or os.environ.get("ONEDNN_MAX_CPU_ISA")
if _ISA and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"torchinductor-{_ISA.lower()}"
    )

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """A dataset folder from ../shared/data, or skip the test with the reason."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"../shared/data/{name} not present (expected at {folder}); real-data test skipped")
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 train + 2 val aligned pairs of 32x32 halves (label | render)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), train=12, val=2, size=32, seed=1)


def tiny_config(data: Path, **overrides) -> TrainConfig:
    """A 32 px, 4-channel model: a step takes milliseconds on the CPU."""
    values = dict(
        data=str(data),
        load_size=36,
        crop_size=32,
        g_channels=4,
        d_channels=4,
        batch_size=2,
        epochs=1,
        epochs_decay=1,
        workers=0,
        log_every=1,
        sample_every=1000,
        checkpoint_every=1000,
        num_samples=2,
        device="cpu",
        deterministic=True,
    )
    values.update(overrides)
    return TrainConfig.from_dict(values)


CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Debian Chromium driven by selenium, with a fresh profile and no background
    networking (the machine is offline); skips with the reason where a part is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or not CHROMEDRIVER.is_file():
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    chrome.set_page_load_timeout(30)
    yield chrome
    chrome.quit()
