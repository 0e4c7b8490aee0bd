"""The study page end to end in headless Chromium: a scripted participant takes a whole session
(exposure, hiding, practice feedback, the break, the completion code), a server restart and a page
reload mid-session lose nothing, and the default page runs the paper's protocol. Skips (with the
reason) where Chromium, chromedriver or selenium are missing, as tests/serve/test_demo_browser.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix.study import Protocol, create_study

from ..conftest import chromium_driver
from .test_study import SMALL, Running, make_images, make_study, read_responses, read_sessions


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from chromium_driver(tmp_path_factory)


# --- page helpers ------------------------------------------------------------------------------


def _wait(driver, condition, timeout: float = 10, message: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: condition(d), message)


def body(driver, key: str) -> str:
    return driver.execute_script(f"return document.body.dataset.{key}")


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def wait_screen(driver, name: str, timeout: float = 10) -> None:
    _wait(
        driver,
        lambda d: body(d, "screen") == name,
        timeout,
        f"screen {name!r} never came; status: {text(driver, 'status')}",
    )


def wait_question(driver, index: int, timeout: float = 10) -> None:
    """Wait until trial `index` asks its question (images shown, then hidden)."""
    _wait(
        driver,
        lambda d: (
            body(d, "phase") == "question" and d.find_element("id", "trial").get_attribute("data-trial") == str(index)
        ),
        timeout,
        f"trial {index} never asked; phase {body(driver, 'phase')}, status: {text(driver, 'status')}",
    )


def images_visible(driver) -> list[bool]:
    return driver.execute_script(
        "return ['img-left', 'img-right'].map(id => getComputedStyle(document.getElementById(id)).visibility === "
        "'visible' && document.getElementById(id).naturalWidth > 0)"
    )


def answer(driver, side: str) -> None:
    driver.find_element("id", f"answer-{side}").click()


def open_fresh(driver, server: Running) -> None:
    """A new participant: no cookie from earlier tests."""
    driver.get(server.url + "health")
    driver.delete_all_cookies()
    driver.get(server.url)


def exposures(driver) -> dict[int, float]:
    log = driver.execute_script("return window.studyLog")
    return {e["trial"]: e["exposure_ms"] for e in log if e["event"] == "hidden"}


PATTERN = ["left", "right", "right", "left", "left", "right"]  # the scripted participant's answers


# --- tests -------------------------------------------------------------------------------------


def test_a_participant_completes_a_session(driver, tmp_path: Path) -> None:
    study = make_study(tmp_path)
    server = Running(study, exposure_ms=300, fixation_ms=100)
    try:
        open_fresh(driver, server)
        wait_screen(driver, "intro")
        intro = text(driver, "intro")
        assert "0.3 seconds" in intro and "first 2 trials are practice" in intro and "4 trials follow" in intro
        driver.find_element("id", "worker-id").send_keys("WORKER-9")
        driver.find_element("id", "start").click()

        feedback = {}
        for i, side in enumerate(PATTERN):
            if i == 2:  # the break between practice and the trials that count
                wait_screen(driver, "break")
                assert "4 trials count" in text(driver, "break")
                driver.find_element("id", "begin").click()
            if i == 0:  # catch the exposure: both images on screen, the answer buttons not yet usable
                _wait(driver, lambda d: body(d, "phase") == "exposure", 10, "no exposure phase")
                assert images_visible(driver) == [True, True]
                assert not driver.find_element("id", "answer-left").is_enabled()
            wait_question(driver, i)
            assert images_visible(driver) == [False, False], "the images must be hidden when the question comes"
            progress = text(driver, "progress")
            assert progress == (f"Practice {i + 1} of 2" if i < 2 else f"Trial {i - 1} of 4")
            answer(driver, side)
            if i < 2:
                _wait(driver, lambda d: body(d, "phase") == "feedback", 10, "no practice feedback")
                feedback[i] = text(driver, "feedback-text")
                driver.find_element("id", "next").click()
            else:
                assert body(driver, "phase") != "feedback"  # no feedback after practice
        wait_screen(driver, "done")
        code = text(driver, "code")
        shown = exposures(driver)
        screenshot = tmp_path / "study_done.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        server.close()

    # the JSONL holds exactly this participant's answers, one per trial, in order
    records = read_responses(study)
    sessions = read_sessions(study)
    assert len(sessions) == 1 and sessions[0]["worker_id"] == "WORKER-9" and sessions[0]["code"] == code
    assert [r["trial"] for r in records] == list(range(6))
    assert [r["answer"] for r in records] == PATTERN
    assert [r["practice"] for r in records] == [True, True, False, False, False, False]
    assert {r["session"] for r in records} == {sessions[0]["session"]}
    assert {r["participant"] for r in records} == {sessions[0]["participant"]}
    for r in records:
        assert r["correct"] == (r["answer"] == r["fake_side"])
        assert 290 <= r["exposure_ms"] < 700, r  # 300 ms asked; measured by the page, frame to frame
        assert r["exposure_ms"] == pytest.approx(shown[r["trial"]], abs=0.1)
        assert r["response_ms"] > 0
    for i in range(2):
        expected = "Correct" if records[i]["correct"] else "Not quite"
        assert feedback[i].startswith(expected) and f"the {records[i]['fake_side']} image was fake" in feedback[i]
    assert sessions[0]["exposure_ms"] == 300


def test_restart_and_reload_mid_session_lose_nothing(driver, tmp_path: Path) -> None:
    study = make_study(tmp_path)
    server = Running(study, exposure_ms=300, fixation_ms=100)
    port = server.port
    try:
        open_fresh(driver, server)
        wait_screen(driver, "intro")
        driver.find_element("id", "start").click()
        for i in range(2):
            wait_question(driver, i)
            answer(driver, PATTERN[i])
            _wait(driver, lambda d: body(d, "phase") == "feedback")
            if i == 0:
                driver.find_element("id", "next").click()
        assert len(read_responses(study)) == 2

        server.close()  # the server goes away after 2 answers
        driver.find_element("id", "next").click()
        wait_screen(driver, "break")
        driver.find_element("id", "begin").click()  # trial 2's images cannot load: the page retries
        _wait(driver, lambda d: "retrying" in text(d, "status"), 10, "the page did not notice the lost server")
        server = Running(study, port=port, exposure_ms=300, fixation_ms=100)  # a new server, same study
        wait_question(driver, 2, timeout=15)
        answer(driver, PATTERN[2])
        wait_question(driver, 3)

        driver.refresh()  # the participant reloads the page: resumed at the next unanswered trial
        wait_screen(driver, "resume")
        assert "trial 2 of 4" in text(driver, "resume")
        driver.find_element("id", "continue").click()
        wait_question(driver, 3)
        answer(driver, PATTERN[3])
        wait_question(driver, 4)

        server.close()  # down again, this time while the answer is on its way
        answer(driver, PATTERN[4])
        _wait(driver, lambda d: "retrying" in text(d, "status"), 10, "the answer was not retried")
        assert len(read_responses(study)) == 4
        server = Running(study, port=port, exposure_ms=300, fixation_ms=100)
        wait_question(driver, 5, timeout=15)
        answer(driver, PATTERN[5])
        wait_screen(driver, "done")
        assert server.server.store.counts() == {
            "L1": {"started": 1, "complete": 1},
            "L1+cGAN": {"started": 0, "complete": 0},
        }
    finally:
        server.close()

    records = read_responses(study)
    assert [r["trial"] for r in records] == list(range(6)), "each trial exactly once"
    assert [r["answer"] for r in records] == PATTERN
    assert len({r["session"] for r in records}) == 1 and len(read_sessions(study)) == 1


def test_default_page_runs_the_papers_protocol(driver, tmp_path: Path) -> None:
    """study.json defaults: 1000 ms exposure, 10 practice, 40 trials, 256 px images."""
    names = [f"n{i:02d}" for i in range(50)]
    real = make_images(tmp_path / "real", names, seed=0, size=64)
    fake = make_images(tmp_path / "fake", names, seed=1, fake=True, size=64)
    create_study(real, [("L1+cGAN", fake)], tmp_path / "study", templates=2)
    server = Running(tmp_path / "study")
    try:
        open_fresh(driver, server)
        wait_screen(driver, "intro")
        intro = text(driver, "intro")
        assert "for 1 second" in intro and "first 10 trials are practice" in intro and "40 trials follow" in intro
        assert driver.save_screenshot(str(tmp_path / "study_intro.png"))
        driver.find_element("id", "start").click()
        _wait(driver, lambda d: body(d, "phase") == "exposure", 10, "no exposure phase")
        started = time.monotonic()
        screenshot = tmp_path / "study_trial.png"
        assert driver.save_screenshot(str(screenshot))
        assert images_visible(driver) == [True, True] and time.monotonic() - started < 0.9
        wait_question(driver, 0)
        assert images_visible(driver) == [False, False]
        assert text(driver, "progress") == "Practice 1 of 10"
        answer(driver, "right")
        _wait(driver, lambda d: body(d, "phase") == "feedback")
    finally:
        server.close()

    # the screenshot shows the pair side by side at 256 px, both with content
    shot = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    rects = [driver.find_element("id", f"slot-{side}").rect for side in ("left", "right")]
    for rect in rects:
        assert rect["width"] == 256 and rect["height"] == 256
        region = shot[int(rect["y"]) : int(rect["y"] + 256), int(rect["x"]) : int(rect["x"] + 256)]
        assert region.std(axis=(0, 1)).mean() > 3, f"blank image in {screenshot}"
    assert rects[0]["x"] + 256 < rects[1]["x"] and rects[0]["y"] == rects[1]["y"]

    (record,) = read_responses(tmp_path / "study")
    assert record["trial"] == 0 and record["practice"] and record["answer"] == "right"
    assert 990 <= record["exposure_ms"] < 1300  # the paper's 1 second, as the page measured it
    (session,) = read_sessions(tmp_path / "study")
    assert (session["exposure_ms"], session["practice"], session["trials"]) == (1000, 10, 40)
    assert json.loads((tmp_path / "study" / "study.json").read_text())["protocol"] == {
        **Protocol().__dict__,
    }
    assert SMALL.exposure_ms == 300  # the short protocol the other tests use
