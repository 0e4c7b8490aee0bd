from __future__ import annotations

from pathlib import Path

import pytest

from pix2pix.config import TrainConfig
from pix2pix.data.shapes import make_shapes_dataset

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
    return TrainConfig(**values)
