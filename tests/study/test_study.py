"""The perceptual study without a browser: create (matching, templates, safety), the HTTP API
(sessions bound to participants, validation, idempotent answers, restarts) and the report's
statistics against hand computations."""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pix2pix.cli import main
from pix2pix.study import Protocol, StudyError, build_report, create_study, format_markdown, load_study
from pix2pix.study.protocol import parse_fake
from pix2pix.study.report import bootstrap_fraction, holm, permutation_test
from pix2pix.study.server import MAX_BODY_BYTES, make_study_server
from pix2pix.study.store import RESPONSE_FIELDS

SMALL = Protocol(exposure_ms=300, practice=2, trials=4, fixation_ms=100)


# --- helpers (also used by test_study_browser.py) ----------------------------------------------


def make_images(folder: Path, names: list[str], seed: int, fake: bool = False, size: int = 32) -> Path:
    """Small PNGs: smooth colour gradients (real), the same with blocky noise (fake)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    for name in names:
        a, b, c = rng.uniform(40, 215, 3)
        x, y = np.meshgrid(ramp, ramp)
        img = np.stack([a + 40 * x, b + 40 * y, c + 20 * x * y], axis=2)
        if fake:
            img += np.kron(rng.normal(0, 25, (size // 4, size // 4, 3)), np.ones((4, 4, 1)))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


def make_sources(root: Path, count: int = 12) -> tuple[Path, Path, Path]:
    """real/, l1/ and cgan/ with `count` matched names, plus one unmatched name in each fake folder."""
    names = [f"img{i:03d}" for i in range(count)]
    real = make_images(root / "real", names + ["only_real"], seed=0)
    l1 = make_images(root / "l1", names + ["only_l1"], seed=1, fake=True)
    cgan = make_images(root / "cgan", names, seed=2, fake=True)
    return real, l1, cgan


def make_study(root: Path, protocol: Protocol = SMALL, **kwargs: Any) -> Path:
    real, l1, cgan = make_sources(root / "sources")
    kwargs.setdefault("templates", 3)
    create_study(real, [("L1", l1), ("L1+cGAN", cgan)], root / "study", protocol=protocol, **kwargs)
    return root / "study"


class Running:
    """A study server on 127.0.0.1 serving from a background thread; `close()` stops it the way a
    crash would look to the page (connections cut), and releases the study folder."""

    def __init__(self, study: Path, port: int = 0, **kwargs: Any) -> None:
        self.study = study
        self.server = make_study_server(study, "127.0.0.1", port, **kwargs)
        self.port = self.server.server_address[1]
        self.url = self.server.url
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Client:
    """One participant's browser: keeps the study cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bool = False
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        if self.cookie:
            headers.setdefault("Cookie", self.cookie)
        if body is not None and not raw:
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            got = dict(response.getheaders())
        finally:
            conn.close()
        if "Set-Cookie" in got:
            self.cookie = got["Set-Cookie"].split(";")[0]
        if got.get("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return response.status, got, data

    def start(self, worker_id: str | None = None) -> tuple[int, Any]:
        status, _, data = self.request("POST", "/api/session", {"worker_id": worker_id} if worker_id else {})
        return status, data

    def state(self) -> dict[str, Any] | None:
        return self.request("GET", "/api/state")[2]["session"]

    def answer(self, session: str, trial: int, side: str = "left", **extra: Any) -> tuple[int, Any]:
        body = {"session": session, "trial": trial, "answer": side, "response_ms": 512.5, **extra}
        status, _, data = self.request("POST", "/api/answer", body)
        return status, data


def read_responses(study: Path) -> list[dict[str, Any]]:
    path = study / "responses.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_sessions(study: Path) -> list[dict[str, Any]]:
    path = study / "sessions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path)


@pytest.fixture
def running(study: Path) -> Iterator[Running]:
    server = Running(study)
    yield server
    server.close()


# --- create ------------------------------------------------------------------------------------


def test_create_matches_by_name_and_draws_balanced_templates(tmp_path: Path, capsys) -> None:
    real, l1, cgan = make_sources(tmp_path / "sources")
    summary = create_study(real, [("L1", l1), ("L1+cGAN", cgan)], tmp_path / "study", protocol=SMALL, templates=5)
    assert summary.matched == 12
    assert summary.unmatched["L1"] == {"no_fake": ["only_real"], "no_real": ["only_l1"]}
    assert summary.unmatched["L1+cGAN"] == {"no_fake": ["only_real"], "no_real": []}
    notes = summary.format()
    assert "only_l1" in notes and "only_real" in notes and "left out" in notes

    study = load_study(tmp_path / "study")
    assert study.methods == ["L1", "L1+cGAN"] and study.pairing == "same" and len(study.templates) == 5
    assert study.protocol == SMALL
    for plan in study.templates:
        trials = plan["practice"] + plan["trials"]
        assert len(plan["practice"]) == 2 and len(plan["trials"]) == 4
        assert all(t["real"] == t["fake"] for t in trials)  # same input
        assert len({t["real"] for t in trials}) == 6  # no image twice in a session
        for phase in (plan["practice"], plan["trials"]):  # the fake is left half the time
            assert sum(t["fake_side"] == "left" for t in phase) == len(phase) // 2
    assert "only_real" not in study.real_images and "only_l1" not in study.fake_images["L1"]
    # self-contained: every image the templates use is inside the study folder (copies, not links)
    for trial in study.session_trials("L1+cGAN", 4, 2, 4):
        for rel in (trial.real, trial.fake):
            assert (study.root / rel).is_file()
        assert trial.fake.startswith("images/fake/L1_cGAN/")
    copied = study.root / study.real_images[study.templates[0]["trials"][0]["real"]]
    assert copied.stat().st_ino != (real / copied.name).stat().st_ino


def test_create_is_seeded(tmp_path: Path) -> None:
    real, l1, cgan = make_sources(tmp_path / "sources")
    fakes = [("L1", l1)]
    a = create_study(real, fakes, tmp_path / "a", protocol=SMALL, seed=3, templates=4).study
    b = create_study(real, fakes, tmp_path / "b", protocol=SMALL, seed=3, templates=4).study
    c = create_study(real, fakes, tmp_path / "c", protocol=SMALL, seed=4, templates=4).study
    assert load_study(a).templates == load_study(b).templates
    assert load_study(a).templates != load_study(c).templates


def test_create_different_pairing_never_shows_an_input_twice(tmp_path: Path) -> None:
    real, l1, cgan = make_sources(tmp_path / "sources")
    create_study(real, [("L1", l1)], tmp_path / "study", protocol=SMALL, pairing="different", link=True)
    study = load_study(tmp_path / "study")
    for plan in study.templates:
        trials = plan["practice"] + plan["trials"]
        assert all(t["real"] != t["fake"] for t in trials)
        names = [t["real"] for t in trials] + [t["fake"] for t in trials]
        assert len(set(names)) == 12  # 2 x 6 distinct inputs
    linked = study.root / next(iter(study.real_images.values()))
    assert linked.stat().st_ino == (real / linked.name).stat().st_ino  # --link: hard links
    with pytest.raises(StudyError, match="needs 14 matched images"):  # 2 x 7 > 12
        create_study(real, [("L1", l1)], tmp_path / "s2", protocol=SMALL.replace(trials=5), pairing="different")


def test_create_never_overwrites_unless_asked(tmp_path: Path) -> None:
    real, l1, _ = make_sources(tmp_path / "sources")
    out = tmp_path / "study"
    create_study(real, [("L1", l1)], out, protocol=SMALL)
    (out / "responses.jsonl").write_text('{"kept": true}\n')
    with pytest.raises(StudyError, match="already exists; pass --overwrite"):
        create_study(real, [("L1", l1)], out, protocol=SMALL, seed=1)
    assert (out / "responses.jsonl").exists()
    create_study(real, [("L1", l1)], out, protocol=SMALL, seed=1, overwrite=True)
    assert not (out / "responses.jsonl").exists() and load_study(out).seed == 1
    other = tmp_path / "not_a_study"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(StudyError, match="not a study folder"):
        create_study(real, [("L1", l1)], other, protocol=SMALL, overwrite=True)
    assert (other / "precious.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_study", "sources", "study"]  # no temp folders left


def test_create_refusals(tmp_path: Path) -> None:
    real, l1, cgan = make_sources(tmp_path / "sources")
    with pytest.raises(StudyError, match="given twice"):
        create_study(real, [("L1", l1), ("L1", cgan)], tmp_path / "s", protocol=SMALL)
    with pytest.raises(StudyError, match="--strict"):
        create_study(real, [("L1", l1)], tmp_path / "s", protocol=SMALL, strict=True)
    with pytest.raises(StudyError, match="needs 50 matched images"):
        create_study(real, [("L1", l1)], tmp_path / "s", protocol=Protocol())
    (l1 / "img003.png").write_bytes(b"not a png")
    with pytest.raises(StudyError, match="img003.png: not a readable image"):
        create_study(real, [("L1", l1)], tmp_path / "s", protocol=SMALL)
    (l1 / "img003.png").unlink()
    (l1 / "img004.jpg").write_bytes(b"")
    with pytest.raises(StudyError, match="share a name"):
        create_study(real, [("L1", l1)], tmp_path / "s", protocol=SMALL)
    assert not (tmp_path / "s").exists()
    assert parse_fake("L1+cGAN=out/x") == ("L1+cGAN", Path("out/x"))
    assert parse_fake(str(l1)) == ("l1", l1)


def test_cli_create_reports_unmatched_names(tmp_path: Path, capsys) -> None:
    real, l1, cgan = make_sources(tmp_path / "sources")
    out = tmp_path / "study"
    args = ["study", "create", "--real", str(real), "--fake", str(l1), "--fake", f"L1+cGAN={cgan}"]
    args += ["--out", str(out), "--practice", "2", "--trials", "4", "--exposure-ms", "300", "--seed", "7"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "only_real" in captured.err and "only_l1" in captured.err
    assert "12 matched images" in captured.out and "pix2pix study serve" in captured.out
    study = load_study(out)
    assert study.methods == ["l1", "L1+cGAN"] and study.seed == 7 and study.protocol.exposure_ms == 300
    assert main(args) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--size", "16", "--overwrite"]) == 0
    assert Image.open(out / next(iter(load_study(out).real_images.values()))).size == (16, 16)


def test_default_protocol_is_the_papers(tmp_path: Path) -> None:
    paper = Protocol()
    assert (paper.exposure_ms, paper.practice, paper.trials) == (1000, 10, 40)
    names = [f"n{i:02d}" for i in range(50)]
    real = make_images(tmp_path / "real", names, seed=0, size=8)
    fake = make_images(tmp_path / "fake", names, seed=1, fake=True, size=8)
    assert main(["study", "create", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "s")]) == 0
    study = load_study(tmp_path / "s")
    assert study.protocol == paper and len(study.templates) == 50
    server = Running(tmp_path / "s")
    try:
        settings = Client(server.port).request("GET", "/api/state")[2]["study"]
    finally:
        server.close()
    assert (settings["exposure_ms"], settings["practice"], settings["trials"]) == (1000, 10, 40)
    assert settings["question"] == "Which image is fake?"


# --- the API -----------------------------------------------------------------------------------


def test_session_cookie_state_and_images(running: Running) -> None:
    alice = Client(running.port)
    assert alice.state() is None
    status, data = alice.start("WORKER1")
    assert status == 201 and alice.cookie.startswith("pix2pix_study_")
    state = data["session"]
    assert state["index"] == 0 and state["total"] == 6 and state["exposure_ms"] == 300
    assert "method" not in state and "fake_side" not in json.dumps(state)  # the page cannot know
    trial = state["trial"]
    assert trial == {
        "index": 0,
        "practice": True,
        "number": 1,
        "of": 2,
        "images": {"left": "/api/image/0/left", "right": "/api/image/0/right"},
    }
    status, headers, left = alice.request("GET", "/api/image/0/left")
    assert status == 200 and headers["Content-Type"] == "image/png" and left.startswith(b"\x89PNG")
    assert headers["Cache-Control"] == "no-store"
    assert alice.request("GET", "/api/image/1/left")[0] == 409  # not the current trial: no peeking ahead
    assert alice.request("GET", "/api/image/0/middle")[0] == 404
    assert Client(running.port).request("GET", "/api/image/0/left")[0] == 403  # no cookie
    status, again = alice.start()  # same browser: resumed, not a new session
    assert status == 200 and again["session"]["session"] == state["session"]
    assert len(read_sessions(running.study)) == 1
    record = read_sessions(running.study)[0]
    assert record["worker_id"] == "WORKER1" and record["method"] == "L1" and record["template"] == 0
    assert alice.cookie.split("=", 1)[1] not in json.dumps(record)  # only the token's hash is stored

    status, result = alice.answer(state["session"], 0, "left", exposure_ms=301.2)
    assert status == 200 and result["recorded"] and not result["duplicate"]
    answer = read_responses(running.study)[0]
    assert tuple(answer) == RESPONSE_FIELDS
    assert result["feedback"] == {"correct": answer["correct"], "fake_side": answer["fake_side"]}
    assert answer["correct"] == (answer["fake_side"] == "left") and answer["practice"] is True
    assert answer["exposure_ms"] == 301.2 and answer["response_ms"] == 512.5
    # the images were the trial's real and fake files
    fake = (running.study / answer["fake"]).read_bytes()
    assert (left == fake) == (answer["fake_side"] == "left")
    assert result["state"]["index"] == 1


def test_a_participant_cannot_answer_in_another_participants_session(running: Running) -> None:
    alice, bob = Client(running.port), Client(running.port)
    session_a = alice.start()[1]["session"]["session"]
    session_b = bob.start()[1]["session"]["session"]
    assert session_a != session_b
    status, data = bob.answer(session_a, 0)
    assert status == 403 and "another participant" in data["error"]
    status, data = Client(running.port).answer(session_a, 0)  # no cookie at all
    assert status == 403 and data["status"] == 403
    forged = Client(running.port)
    forged.cookie = alice.cookie.split("=")[0] + "=guessed-token"
    assert forged.answer(session_a, 0)[0] == 403
    assert read_responses(running.study) == []
    assert alice.answer(session_a, 0)[0] == 200
    assert [r["session"] for r in read_responses(running.study)] == [session_a]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"trial": 0, "answer": "left", "response_ms": 5}, 400, "missing field"),
        ({"session": "S", "trial": 0, "answer": "up", "response_ms": 5}, 400, "'answer' must be"),
        ({"session": "S", "trial": "0", "answer": "left", "response_ms": 5}, 400, "'trial' must be"),
        ({"session": "S", "trial": True, "answer": "left", "response_ms": 5}, 400, "'trial' must be"),
        ({"session": "S", "trial": -1, "answer": "left", "response_ms": 5}, 400, "'trial' must be"),
        ({"session": "S", "trial": 0, "answer": "left", "response_ms": -3}, 400, "'response_ms' must be"),
        ({"session": "S", "trial": 0, "answer": "left", "response_ms": "fast"}, 400, "'response_ms' must be"),
        ({"session": "S", "trial": 0, "answer": "left", "response_ms": 5, "correct": True}, 400, "unknown field"),
        ({"session": "S", "trial": 3, "answer": "left", "response_ms": 5}, 409, "not your current trial"),
        ({"session": "S", "trial": 99, "answer": "left", "response_ms": 5}, 409, "not your current trial"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_malformed_answers_get_json_errors(running: Running, body: Any, status: int, message: str) -> None:
    client = Client(running.port)
    session = client.start()[1]["session"]["session"]
    if isinstance(body, dict) and body.get("session") == "S":
        body["session"] = session
    got, _, data = client.request("POST", "/api/answer", body)
    assert got == status and message in data["error"] and data["status"] == status
    assert read_responses(running.study) == []


def test_refused_requests_and_limits(running: Running) -> None:
    client = Client(running.port)
    session = client.start()[1]["session"]["session"]
    body = json.dumps({"session": session, "trial": 0, "answer": "left", "response_ms": 5}).encode()
    cases = [
        ({"Content-Type": "text/plain"}, body, 415),
        ({"Content-Type": "application/json"}, b"{not json", 400),
        ({"Content-Type": "application/json"}, b"\xff\xfe", 400),
        ({"Content-Type": "application/json"}, b" " * (MAX_BODY_BYTES + 1), 413),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, body, 403),
        ({"Content-Type": "application/json", "Host": "evil.example"}, body, 403),
    ]
    for headers, payload, expected in cases:
        status, got, data = client.request("POST", "/api/answer", payload, headers, raw=True)
        assert status == expected, (headers, payload[:20], data)
        assert got["Content-Type"] == "application/json" and data["status"] == expected
    # no Content-Length: http.client sends chunked for an iterable body
    status, _, data = client.request("POST", "/api/answer", iter([body]), {"Content-Type": "application/json"}, True)
    assert status == 411
    assert client.request("GET", "/api/answer")[0] == 405
    assert client.request("POST", "/nowhere", {})[0] == 404
    assert client.request("GET", "/health")[2] == {"status": "ok"}
    status, headers, page = client.request("GET", "/")
    assert status == 200 and b"Which image is fake?" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b"http://" not in page and b"https://" not in page  # nothing from elsewhere
    assert read_responses(running.study) == []


def test_duplicate_submissions_are_ignored(running: Running) -> None:
    client = Client(running.port)
    session = client.start()[1]["session"]["session"]
    first = client.answer(session, 0, "left")[1]
    status, again = client.answer(session, 0, "right")  # a retry, even with another answer
    assert status == 200 and again["duplicate"] and not again["recorded"]
    assert again["feedback"] == first["feedback"] and again["state"]["index"] == 1
    assert len(read_responses(running.study)) == 1 and read_responses(running.study)[0]["answer"] == "left"


def test_completed_participant_is_refused_another_session(running: Running) -> None:
    alice = Client(running.port)
    state = alice.start("W-42")[1]["session"]
    for i in range(state["total"]):
        status, result = alice.answer(state["session"], i, "right")
        assert status == 200
    final = result["state"]
    assert final["complete"] and final["trial"] is None and final["code"] == read_sessions(running.study)[0]["code"]
    assert alice.answer(state["session"], 6)[0] == 409  # no trial 6
    assert alice.request("GET", "/api/image/6/left")[0] == 409
    assert alice.answer(state["session"], 5)[1]["duplicate"]
    status, data = alice.start()
    assert status == 409 and "already completed" in data["error"]
    assert alice.state()["complete"]
    status, data = Client(running.port).start("W-42")  # same worker, another browser
    assert status == 409 and "W-42 has already completed" in data["error"]
    assert Client(running.port).start("bad id!")[0] == 400
    assert len(read_sessions(running.study)) == 1 and len(read_responses(running.study)) == 6


def test_worker_id_in_progress_elsewhere_is_refused(running: Running) -> None:
    assert Client(running.port).start("W-7")[0] == 201
    status, data = Client(running.port).start("W-7")
    assert status == 409 and "another browser" in data["error"]


def test_methods_get_balanced_participants(running: Running) -> None:
    methods = []
    for _ in range(5):
        Client(running.port).start()
    methods = [(r["method"], r["template"]) for r in read_sessions(running.study)]
    assert methods == [("L1", 0), ("L1+cGAN", 0), ("L1", 1), ("L1+cGAN", 1), ("L1", 2)]
    assert running.server.store.counts() == {
        "L1": {"started": 3, "complete": 0},
        "L1+cGAN": {"started": 2, "complete": 0},
    }


def test_restart_mid_session_loses_nothing(study: Path) -> None:
    server = Running(study)
    client = Client(server.port)
    session = client.start()[1]["session"]["session"]
    for i in range(2):
        assert client.answer(session, i, "left")[0] == 200
    server.close()
    # a write cut short by a crash: half a line at the end of the file
    with open(study / "responses.jsonl", "ab") as f:
        f.write(b'{"participant": "p1", "sess')
    server = Running(study, port=server.port)
    try:
        assert any("cut short" in w for w in server.server.store.warnings)
        state = client.state()
        assert state["session"] == session and state["index"] == 2  # resumes at the next unanswered trial
        assert client.answer(session, 1, "right")[1]["duplicate"]  # a retry of a trial answered before
        for i in range(2, 6):
            status, result = client.answer(session, i, "left")
            assert status == 200 and result["recorded"]
        assert result["state"]["complete"]
    finally:
        server.close()
    lines = (study / "responses.jsonl").read_text().splitlines()
    answers = [json.loads(line) for line in lines if line.startswith('{"participant":"')]
    assert len(lines) == 7 and [a["trial"] for a in answers] == list(range(6))  # + the fragment
    assert all(a["session"] == session for a in answers) and answers[1]["answer"] == "left"
    report = build_report(study, resamples=200)
    assert report["methods"][0]["participants"] == 1 and report["methods"][0]["trials"] == 4
    assert any("unreadable line" in w for w in report["warnings"])


def test_one_server_per_study_and_closed_server_refuses(study: Path) -> None:
    server = Running(study)
    try:
        with pytest.raises(StudyError, match="being served"):
            make_study_server(study, port=0)
        store = server.server.store
    finally:
        server.close()
    with pytest.raises(Exception, match="shutting down"):
        store.start(None)


def test_serve_cannot_lengthen_sessions_past_the_templates(study: Path) -> None:
    with pytest.raises(StudyError, match="templates hold 2 practice \\+ 4"):
        make_study_server(study, port=0, trials=10)
    server = Running(study, practice=1, trials=2, exposure_ms=250)
    try:
        state = Client(server.port).start()[1]["session"]
        assert (state["practice"], state["trials"], state["total"], state["exposure_ms"]) == (1, 2, 3, 250)
    finally:
        server.close()


def test_cli_serve_flags_parse() -> None:
    from pix2pix.cli import build_parser

    args = build_parser().parse_args(["study", "serve", "S", "--exposure-ms", "300", "--practice", "2"])
    assert (args.exposure_ms, args.practice, args.trials, args.host) == (300, 2, None, "127.0.0.1")
    assert args.func.__name__ == "cmd_serve"


# --- the report --------------------------------------------------------------------------------

# judged-real counts out of 4 counted trials, one per complete participant
HAND = {"A": [2, 1, 3, 2, 2], "B": [0, 0, 1, 0, 0], "C": [2, 2, 1, 3, 1]}


def write_answers(study: Path) -> None:
    """sessions.jsonl and responses.jsonl by hand: 2 practice + 4 trials per session, practice
    answers all wrong (they must not count), plus one incomplete session of A, a duplicate line
    and a broken line."""
    sessions, responses = [], []

    def session(method: str, number: int, judged_real: list[bool]) -> None:
        sid = f"s-{method}-{number}"
        sessions.append(
            {"event": "start", "session": sid, "participant": f"p-{method}-{number}", "method": method,
             "template": 0, "exposure_ms": 1000, "practice": 2, "trials": 4, "code": "X", "time": "t",
             "token_sha256": "0", "worker_id": None}
        )  # fmt: skip
        for i, fooled in enumerate([True, True] + judged_real):
            responses.append(
                {"participant": f"p-{method}-{number}", "session": sid, "method": method, "trial": i,
                 "practice": i < 2, "fake_side": "left", "answer": "right" if fooled else "left",
                 "correct": not fooled, "response_ms": 100.0 * (i + 1)}
            )  # fmt: skip

    for method, counts in HAND.items():
        for number, k in enumerate(counts):
            session(method, number, [True] * k + [False] * (4 - k))
    session("A", 99, [True, True])  # stopped after 2 of its 4 counted trials
    responses.append(dict(responses[2]))  # a duplicate of a counted trial: the first stands
    study.joinpath("sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sessions))
    lines = [json.dumps(r) for r in responses] + ['{"broken": ']
    study.joinpath("responses.jsonl").write_text("\n".join(lines) + "\n")
    raw = json.loads((study / "study.json").read_text())
    raw["methods"] = list(HAND)
    (study / "study.json").write_text(json.dumps(raw))


def test_report_matches_hand_computation(study: Path) -> None:
    write_answers(study)
    report = build_report(study, resamples=10_000, seed=0)
    methods = {m["method"]: m for m in report["methods"]}
    for name, counts in HAND.items():
        m = methods[name]
        assert m["participants"] == 5 and m["trials"] == 20 and m["judged_real_trials"] == sum(counts)
        assert m["judged_real"] == pytest.approx(sum(counts) / 20)
        # the bootstrap of a mean of 5 equal-weight participants: SE = population sd / sqrt(5)
        fractions = np.array(counts) / 4
        analytic = math.sqrt(fractions.var() / len(fractions))
        assert m["se"] == pytest.approx(analytic, rel=0.05)
        low, high = m["ci95"]
        assert low <= m["judged_real"] <= high and m["ci95_half_width"] == pytest.approx((high - low) / 2)
        assert 1.5 * analytic <= m["ci95_half_width"] <= 2.5 * analytic
    assert methods["A"]["sessions_started"] == 6 and methods["A"]["sessions_complete"] == 5
    assert methods["A"]["se"] == pytest.approx(math.sqrt(0.005), rel=0.05)  # 7.1%
    assert methods["B"]["se"] == pytest.approx(math.sqrt(0.002), rel=0.05)  # 4.5%
    assert methods["A"]["answered_left"] == pytest.approx(10 / 20)  # fooled = answered right here

    pairs = {(c["a"], c["b"]): c for c in report["comparisons"]}
    clear, unclear, other = pairs[("A", "B")], pairs[("A", "C")], pairs[("B", "C")]
    # exact over the C(10, 5) = 252 relabellings: only 4 split the counts as unevenly as A vs B
    assert clear["exact"] and clear["relabellings"] == 252
    assert clear["p_value"] == pytest.approx(4 / 252) and clear["difference"] == pytest.approx(0.45)
    assert unclear["p_value"] == pytest.approx(1.0)  # 10 vs 9 of 20: every relabelling is as extreme
    assert other["p_value"] == pytest.approx(6 / 252)
    assert clear["p_holm"] == pytest.approx(12 / 252) and other["p_holm"] == pytest.approx(12 / 252)
    assert unclear["p_holm"] == 1.0

    assert build_report(study, resamples=10_000, seed=0) == report  # seeded
    incomplete = build_report(study, resamples=1000, include_incomplete=True)
    a = incomplete["methods"][0]
    assert a["participants"] == 6 and a["trials"] == 22 and a["judged_real"] == pytest.approx(12 / 22)

    markdown = format_markdown(report)
    assert "| A | 50.0% ± 7.1% |" in markdown or "| A | 50.0% ± 7.0% |" in markdown
    assert "| B | 5.0% ± 4." in markdown and "permutation over participants, exact" in markdown
    assert "standard error" in markdown and "18.9% ± 2.5%" in markdown and "22.5% ± 1.6%" in markdown
    assert any("unreadable line" in w for w in report["warnings"])


def test_statistics_helpers() -> None:
    rng = np.random.default_rng(0)
    k, n = np.array([10.0, 12, 8, 14, 9, 11, 13, 7]), np.full(8, 40.0)
    se, low, high = bootstrap_fraction(k, n, 20_000, rng)
    p = k / n
    assert se == pytest.approx(math.sqrt(p.var() / len(p)), rel=0.03)
    assert low < p.mean() < high
    # a large clear difference: Monte Carlo p at its floor 1 / (resamples + 1)
    big_a, big_b = np.full(30, 10.0), np.full(30, 1.0)
    p_value, exact, count = permutation_test(big_a, np.full(30, 40.0), big_b, np.full(30, 40.0), 2000, rng)
    assert not exact and count == 2000 and p_value == pytest.approx(1 / 2001)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_cli_report_writes_markdown_and_json(study: Path, capsys) -> None:
    write_answers(study)
    assert main(["study", "report", str(study), "--resamples", "500", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "| method | judged real ± SE |" in out
    saved = json.loads((study / "report.json").read_text())
    assert saved["uncertainty"]["resamples"] == 500 and saved["uncertainty"]["seed"] == 3
    assert (study / "report.md").read_text() == out
    assert main(["study", "report", str(study.parent / "nothing")]) == 2


def test_jsonl_lines_are_durable(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    server = Running(study)
    try:
        client = Client(server.port)
        session = client.start()[1]["session"]["session"]
        before = len(synced)
        client.answer(session, 0)
        assert len(synced) > before  # the answer was fsynced before the reply
    finally:
        server.close()
