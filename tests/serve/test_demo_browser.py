"""The demo page end to end in headless Chromium: draw, see the translation, palette, undo, modes,
upload. Skips (with the reason) where Chromium, chromedriver or selenium are missing; .ci/run
installs Chromium from Debian."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import chromium_driver
from .test_demo import Running, random_image, save_tiny_model


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from chromium_driver(tmp_path_factory)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(save_tiny_model(tmp_path_factory.mktemp("browser") / "sketch2photo"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def facades_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(save_tiny_model(tmp_path_factory.mktemp("browser") / "facades", palette="facades", seed=1))
    yield running
    running.close()


# --- page helpers ------------------------------------------------------------------------------


def _wait(driver, condition, timeout: float = 10, message: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message)


def output_count(driver) -> int:
    return int(driver.find_element("id", "output").get_attribute("data-count"))


def wait_for_output(driver, after: int) -> int:
    """Wait until the page has shown a translation newer than number `after`, and no request is
    still pending; returns the new count."""
    _wait(
        driver,
        lambda d: output_count(d) > after and d.execute_script("return !state.busy && !state.pending"),
        message=f"no new translation after #{after}; status: {driver.find_element('id', 'status').text}",
    )
    return output_count(driver)


def open_page(driver, server: Running) -> int:
    driver.get(server.url)
    return wait_for_output(driver, 0)  # the blank canvas is translated on load


def _decode_data_url(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def canvas_pixels(driver) -> np.ndarray:
    return _decode_data_url(driver.execute_script("return document.getElementById('canvas').toDataURL()"))


def output_pixels(driver) -> np.ndarray:
    """The displayed output image's pixels, as the page decoded them."""
    url = driver.execute_script(
        """const img = document.getElementById('output');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        return c.toDataURL();"""
    )
    return _decode_data_url(url)


def draw(driver, points: list[tuple[float, float]]) -> None:
    """A pen stroke through `points`, given as fractions (0-1) of the canvas's width and height,
    with real pointer events (press, moves, release)."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "canvas")
    w, h = canvas.size["width"], canvas.size["height"]
    offsets = [(round((x - 0.5) * w), round((y - 0.5) * h)) for x, y in points]  # from the centre
    actions = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, *offsets[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(offsets, offsets[1:]):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def click(driver, element_id: str) -> None:
    driver.find_element("id", element_id).click()


ZIGZAG = [(0.2, 0.2), (0.8, 0.3), (0.2, 0.5), (0.8, 0.7), (0.5, 0.85)]


# --- tests -------------------------------------------------------------------------------------


def test_drawing_shows_a_translation(driver, plain_server: Running, tmp_path: Path) -> None:
    count = open_page(driver, plain_server)
    assert "sketch2photo" in driver.find_element("id", "model-info").text
    assert driver.find_element("id", "palette").find_elements("css selector", "#color-picker")  # free colours
    before = output_pixels(driver)
    draw(driver, ZIGZAG)
    count = wait_for_output(driver, count)
    drawn = canvas_pixels(driver)
    assert drawn.shape == (64, 64, 3) and (drawn == 0).all(axis=2).sum() > 100  # black strokes on white
    after = output_pixels(driver)
    assert after.shape == (64, 64, 3) and not np.array_equal(after, before)
    assert after.reshape(-1, 3).std(axis=0).mean() > 2  # an image, not a flat colour

    screenshot = tmp_path / "serve_page.png"
    assert driver.save_screenshot(str(screenshot))
    shot = np.asarray(Image.open(screenshot).convert("RGB"))
    rect = driver.find_element("id", "output").rect
    region = shot[int(rect["y"]) : int(rect["y"] + rect["height"]), int(rect["x"]) : int(rect["x"] + rect["width"])]
    assert region.shape[0] > 200 and region.shape[1] > 200  # shown large, beside the canvas
    assert region.reshape(-1, 3).astype(float).var(axis=0).mean() > 4, f"blank output in {screenshot}"
    canvas_rect = driver.find_element("id", "canvas").rect
    assert canvas_rect["x"] + canvas_rect["width"] <= rect["x"]  # side by side

    link = driver.find_element("id", "download")
    assert link.get_attribute("href") == driver.find_element("id", "output").get_attribute("src")
    assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download").endswith(".png")


def test_palette_classes_undo_and_eraser(driver, facades_server: Running, tmp_path: Path) -> None:
    count = open_page(driver, facades_server)
    swatches = driver.find_elements("css selector", "#palette .swatch")
    names = [s.text for s in swatches]
    assert names[:3] == ["background", "facade", "window"] and len(names) == 12 and names[-1] == "shop"
    palette = {tuple(map(int, s.get_attribute("data-color").split(","))) for s in swatches}

    blank = canvas_pixels(driver)
    assert (blank == (0, 0, 170)).all()  # the background class
    blank_output = output_pixels(driver)
    driver.find_element("css selector", '#palette .swatch[data-name="window"]').click()
    draw(driver, ZIGZAG)
    count = wait_for_output(driver, count)
    drawn = canvas_pixels(driver)
    colours = {tuple(c) for c in np.unique(drawn.reshape(-1, 3), axis=0)}
    assert colours == {(0, 0, 170), (0, 85, 255)}, "strokes must hold exact class colours (no blending)"
    assert colours <= palette
    assert not np.array_equal(output_pixels(driver), blank_output)
    assert driver.save_screenshot(str(tmp_path / "serve_palette.png"))

    click(driver, "undo")
    count = wait_for_output(driver, count)
    assert np.array_equal(canvas_pixels(driver), blank)
    # same input, same seed: the output comes back exactly
    assert np.array_equal(output_pixels(driver), blank_output)
    assert not driver.find_element("id", "undo").is_enabled()

    draw(driver, ZIGZAG)
    count = wait_for_output(driver, count)
    click(driver, "tool-eraser")
    driver.execute_script(
        "const s = document.getElementById('brush-size'); s.value = 64; s.dispatchEvent(new Event('input'))"
    )
    draw(driver, [(0.1, 0.1), (0.9, 0.1), (0.9, 0.5), (0.1, 0.5), (0.1, 0.9), (0.9, 0.9)])
    count = wait_for_output(driver, count)
    assert np.array_equal(canvas_pixels(driver), blank)  # erased back to the background class


def test_paper_and_eval_modes(driver, plain_server: Running) -> None:
    count = open_page(driver, plain_server)
    draw(driver, ZIGZAG)
    count = wait_for_output(driver, count)
    output = driver.find_element("id", "output")
    assert output.get_attribute("data-mode") == "paper"
    first_seed = output.get_attribute("data-seed")
    sample = output_pixels(driver)

    click(driver, "new-sample")
    count = wait_for_output(driver, count)
    assert output.get_attribute("data-seed") != first_seed
    other = output_pixels(driver)
    assert not np.array_equal(other, sample), "a new seed must give another sample (dropout noise)"
    assert f"seed {output.get_attribute('data-seed')}" in driver.find_element("id", "seed").text

    click(driver, "mode-eval")
    count = wait_for_output(driver, count)
    assert output.get_attribute("data-mode") == "eval" and not driver.find_element("id", "new-sample").is_enabled()
    deterministic = output_pixels(driver)
    assert not np.array_equal(deterministic, other)
    draw(driver, [(0.5, 0.1), (0.5, 0.9)])
    count = wait_for_output(driver, count)
    click(driver, "undo")
    count = wait_for_output(driver, count)
    assert np.array_equal(output_pixels(driver), deterministic)  # eval: same input, same output
    assert "eval mode" in driver.find_element("id", "status").text


def test_upload_an_image_and_a_pair(driver, plain_server: Running, tmp_path: Path) -> None:
    count = open_page(driver, plain_server)
    photo = random_image(96, 40, seed=4)
    photo.save(tmp_path / "photo.png")
    driver.find_element("id", "upload").send_keys(str(tmp_path / "photo.png"))
    count = wait_for_output(driver, count)
    assert np.array_equal(canvas_pixels(driver), np.asarray(photo))
    assert output_pixels(driver).shape == (40, 96, 3)  # the output keeps the input's size

    pair = random_image(128, 64, seed=5)
    pair.save(tmp_path / "pair.png")
    click(driver, "pair")
    driver.find_element("id", "upload").send_keys(str(tmp_path / "pair.png"))
    count = wait_for_output(driver, count)
    # a BtoA model's input is the right half of a pair file
    assert np.array_equal(canvas_pixels(driver), np.asarray(pair)[:, 64:])
    click(driver, "undo")
    count = wait_for_output(driver, count)
    assert np.array_equal(canvas_pixels(driver), np.asarray(photo))  # undo restores size and pixels
