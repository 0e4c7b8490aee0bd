"""The study's state on disk and in memory: sessions, participants, answers.

Two append-only JSON Lines files in the study folder hold everything; each line is flushed and
fsynced before the participant's request is answered, so a crash or restart loses no answer that
was acknowledged, and a restarted server rebuilds its state from them:

- `sessions.jsonl`: one line per session started: session id, public participant id, the SHA-256
  of the participant's secret token (the token itself is only in their cookie), optional worker
  id, method, template, and the protocol the session runs with (exposure, practice and trial
  counts), so a session keeps its settings across restarts.
- `responses.jsonl`: one line per answer (see `RESPONSE_FIELDS`).

The server, not the page, decides which trial is current: the first one not answered yet. An
answer is accepted only from the participant whose token owns the session, only for the current
trial; an answer to a trial already answered is ignored (the first answer stands), so a page that
retries after a lost connection cannot record a trial twice. A participant takes one session: a
token or worker id whose session is complete is refused another.

Methods are assigned so that they get balanced numbers of participants: a new participant gets
the method with the fewest sessions that are complete or still active (an answer in the last
`abandon_after_s` seconds), ties to the method listed first; within it, the least used template.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .design import SIDES, Protocol, Study, StudyError, Trial, load_study, utc_now

try:  # POSIX: one server per study folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

SESSIONS_FILE = "sessions.jsonl"
RESPONSES_FILE = "responses.jsonl"
LOCK_FILE = ".serve.lock"
RESPONSE_FIELDS = (
    "participant",  # public participant id (not the secret token)
    "session",
    "method",
    "template",
    "trial",  # index in the session, 0-based, practice trials first
    "practice",
    "real",  # image paths relative to the study folder
    "fake",
    "fake_side",  # "left" or "right"
    "answer",  # the side the participant picked as fake
    "correct",  # answer == fake_side; the fake was judged real when false
    "response_ms",  # from the images disappearing (question shown) to the answer, page clock
    "exposure_ms",  # how long the images were on screen, measured by the page (null if not sent)
    "time",  # UTC, when the server recorded the answer
)
WORKER_ID = re.compile(r"[A-Za-z0-9._@:+-]{1,128}")
DEFAULT_ABANDON_AFTER_S = 1800.0


class Refused(Exception):
    """A request the study refuses: an HTTP status and a message for the participant."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(records, numbers of the lines that are not JSON objects): a line cut short by a crash is
    skipped, never fatal."""
    records, bad = [], []
    if not path.exists():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad.append(number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append(number)
    return records, bad


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line and make it durable (flush + fsync; the folder too when the file is new).

    All or nothing: when the write fails (a full disk), the file is cut back to its old length
    before the error is raised, so no fragment is left for the next record to be glued onto."""
    new = not path.exists()
    line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(line):  # unbuffered: a failed write leaves nothing to flush later
                written += os.write(fd, line[written:])
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # shrinking needs no free space
            raise
    finally:
        os.close(fd)
    if new:
        with contextlib.suppress(OSError):  # not every platform can open a folder
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _append_or_refuse(path: Path, record: dict[str, Any], what: str) -> None:
    """append_jsonl, with a failed write answered as a 5xx for this request alone."""
    try:
        append_jsonl(path, record)
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        raise Refused(
            507 if full else 503,
            f"{what} could not be recorded ({'no space left on the device' if full else err.strerror}); "
            "nothing was saved, try again in a moment",
        ) from None


def _end_with_newline(path: Path) -> bool:
    """A write cut short leaves a last line without its newline: close it, so the next record
    starts on a line of its own (the fragment stays, as a bad line that readers skip)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _epoch(stamp: str | None) -> float:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Session:
    """One participant's session: which method and template, the protocol it runs with, its answers."""

    id: str
    participant: str
    token_sha256: str
    worker_id: str | None
    method: str
    template: int
    protocol: Protocol
    code: str  # completion code, shown when the session is complete
    started: str
    trials: list[Trial]
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_activity: float = 0.0

    @property
    def total(self) -> int:
        return len(self.trials)

    @property
    def current(self) -> int:
        """The first trial not answered yet (== total when complete)."""
        i = 0
        while i in self.answers:
            i += 1
        return i

    @property
    def complete(self) -> bool:
        return self.current >= self.total

    def record(self) -> dict[str, Any]:
        """Its line in sessions.jsonl."""
        return {
            "event": "start",
            "session": self.id,
            "participant": self.participant,
            "token_sha256": self.token_sha256,
            "worker_id": self.worker_id,
            "method": self.method,
            "template": self.template,
            "exposure_ms": self.protocol.exposure_ms,
            "practice": self.protocol.practice,
            "trials": self.protocol.trials,
            "fixation_ms": self.protocol.fixation_ms,
            "display_px": self.protocol.display_px,
            "code": self.code,
            "time": self.started,
        }

    def public(self) -> dict[str, Any]:
        """What the participant's page may know: never the method, nor which side is fake."""
        current = self.current
        state: dict[str, Any] = {
            "session": self.id,
            "participant": self.participant,
            "index": current,
            "total": self.total,
            "practice": self.protocol.practice,
            "trials": self.protocol.trials,
            "exposure_ms": self.protocol.exposure_ms,
            "fixation_ms": self.protocol.fixation_ms,
            "display_px": self.protocol.display_px,
            "complete": current >= self.total,
            "code": self.code if current >= self.total else None,
            "trial": None,
        }
        if current < self.total:
            practice = self.trials[current].practice
            state["trial"] = {
                "index": current,
                "practice": practice,
                "number": current + 1 if practice else current - self.protocol.practice + 1,
                "of": self.protocol.practice if practice else self.protocol.trials,
                "images": {side: f"/api/image/{current}/{side}" for side in SIDES},
            }
        return state


def _check_number(payload: dict[str, Any], key: str, required: bool, high: float) -> float | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise Refused(400, f"'{key}' must be a number of milliseconds from 0 to {high:.0f}, got {value!r}")
    return round(float(value), 1)


class StudyStore:
    """The live state of a study being served, kept in step with its two JSONL files.

    Thread-safe: one lock around every read and write. Holds an exclusive lock on the study
    folder (POSIX) so two servers never append to the same files; `close()` releases it.

    Example:
        >>> store = StudyStore("study", Protocol(exposure_ms=1000))  # doctest: +SKIP
        >>> session, token, created = store.start(None, worker_id="A1B2C3")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path,
        protocol: Protocol | None = None,
        abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
    ) -> None:
        self.study: Study = load_study(root)
        self.root = self.study.root
        self.protocol = protocol or self.study.protocol
        self.study.check_protocol(self.protocol)
        self.abandon_after_s = abandon_after_s
        self.sessions_path = self.root / SESSIONS_FILE
        self.responses_path = self.root / RESPONSES_FILE
        self._lock = threading.Lock()
        self._lock_file = None
        self.closed = False
        self.warnings: list[str] = []
        self.sessions: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}
        self._by_worker: dict[str, Session] = {}
        self._acquire_folder()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # --- loading -------------------------------------------------------------------------------

    def _acquire_folder(self) -> None:
        if fcntl is None:
            return
        self._lock_file = open(self.root / LOCK_FILE, "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise StudyError(f"{self.root} is being served by another `pix2pix study serve`; stop it first") from None

    def _load(self) -> None:
        for path in (self.sessions_path, self.responses_path):
            if _end_with_newline(path):
                self.warnings.append(f"{path.name}: its last line was cut short (a crash?); it is skipped")
        records, bad = read_jsonl(self.sessions_path)
        if bad:
            self.warnings.append(f"{self.sessions_path.name}: skipped unreadable line(s) {bad}")
        for r in records:
            try:
                protocol = Protocol(
                    exposure_ms=r["exposure_ms"],
                    practice=r["practice"],
                    trials=r["trials"],
                    fixation_ms=r.get("fixation_ms", self.study.protocol.fixation_ms),
                    display_px=r.get("display_px", self.study.protocol.display_px),
                )
                trials = self.study.session_trials(r["method"], r["template"], protocol.practice, protocol.trials)
                session = Session(
                    id=r["session"],
                    participant=r["participant"],
                    token_sha256=r["token_sha256"],
                    worker_id=r.get("worker_id"),
                    method=r["method"],
                    template=r["template"],
                    protocol=protocol,
                    code=r["code"],
                    started=r["time"],
                    trials=trials,
                    last_activity=_epoch(r["time"]),
                )
            except (KeyError, TypeError, IndexError, StudyError) as err:
                self.warnings.append(f"{self.sessions_path.name}: skipped a malformed session line ({err!r})")
                continue
            self._add(session)
        records, bad = read_jsonl(self.responses_path)
        if bad:
            self.warnings.append(f"{self.responses_path.name}: skipped unreadable line(s) {bad}")
        for r in records:
            session = self.sessions.get(r.get("session"))
            index = r.get("trial")
            if session is None or not isinstance(index, int) or not 0 <= index < session.total:
                self.warnings.append(f"{self.responses_path.name}: skipped an answer of an unknown session or trial")
                continue
            session.answers.setdefault(index, r)  # the first answer to a trial stands
            session.last_activity = max(session.last_activity, _epoch(r.get("time")))

    def _add(self, session: Session) -> None:
        self.sessions[session.id] = session
        self._by_token[session.token_sha256] = session
        if session.worker_id:
            self._by_worker[session.worker_id] = session

    def close(self) -> None:
        """Release the study folder; every later request is refused with 503 (the page retries)."""
        with self._lock:
            self.closed = True
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # --- participants --------------------------------------------------------------------------

    def state(self, token: str | None) -> dict[str, Any] | None:
        """This token's session as its page may see it, or None."""
        if not token:
            return None
        with self._lock:
            self._check_open()
            session = self._by_token.get(hash_token(token))
            return session.public() if session is not None else None

    def _assign(self) -> tuple[str, int]:
        now = time.time()
        load = Counter()
        for s in self.sessions.values():
            if s.complete or now - s.last_activity < self.abandon_after_s:
                load[s.method] += 1
        methods = self.study.methods
        method = min(methods, key=lambda m: (load[m], methods.index(m)))
        uses = Counter(s.template for s in self.sessions.values() if s.method == method)
        template = min(range(len(self.study.templates)), key=lambda k: (uses[k], k))
        return method, template

    def start(self, token: str | None, worker_id: str | None = None) -> tuple[dict[str, Any], str, bool]:
        """The participant's session: theirs if the token has one (resumed), else a new one.
        Returns (its public state, token, created); a new token is made when `token` is unknown."""
        if worker_id is not None:
            worker_id = worker_id.strip() or None
        if worker_id is not None and not WORKER_ID.fullmatch(worker_id):
            raise Refused(400, "worker id: 1 to 128 letters, digits or . _ @ : + -")
        with self._lock:
            self._check_open()
            existing = self._by_token.get(hash_token(token)) if token else None
            if existing is not None:
                if existing.complete:
                    raise Refused(409, f"you have already completed a session of this study (code {existing.code})")
                return existing.public(), token, False
            if worker_id is not None and worker_id in self._by_worker:
                other = self._by_worker[worker_id]
                if other.complete:
                    raise Refused(409, f"worker {worker_id} has already completed a session of this study")
                raise Refused(
                    409, f"worker {worker_id} already has a session in progress in another browser; continue it there"
                )
            method, template = self._assign()
            token = secrets.token_urlsafe(24)
            participant = "p" + secrets.token_hex(5)
            while any(s.participant == participant for s in self.sessions.values()):
                participant = "p" + secrets.token_hex(5)
            protocol = self.protocol
            session = Session(
                id="s" + secrets.token_hex(8),
                participant=participant,
                token_sha256=hash_token(token),
                worker_id=worker_id,
                method=method,
                template=template,
                protocol=protocol,
                code=secrets.token_hex(4).upper(),
                started=utc_now(),
                trials=self.study.session_trials(method, template, protocol.practice, protocol.trials),
                last_activity=time.time(),
            )
            _append_or_refuse(self.sessions_path, session.record(), "the session")  # durable before anyone is told
            self._add(session)
            return session.public(), token, True

    def _check_open(self) -> None:
        if self.closed:
            raise Refused(503, "the study server is shutting down; try again in a moment")

    def _owned(self, token: str | None, session_id: Any) -> Session:
        self._check_open()
        session = self._by_token.get(hash_token(token)) if token else None
        if session is None:
            raise Refused(403, "no session for this browser: start one first (POST /api/session)")
        if session_id is not None and session_id != session.id:
            raise Refused(403, "that session belongs to another participant")
        return session

    # --- trials --------------------------------------------------------------------------------

    def image(self, token: str | None, index: int, side: str) -> Path:
        """The file shown on `side` of the participant's current trial (no other trial's)."""
        if side not in SIDES:
            raise Refused(404, f"no side {side!r}; use left or right")
        with self._lock:
            session = self._owned(token, None)
            if session.complete:
                raise Refused(409, "this session is complete; there are no more trials")
            if index != session.current:
                raise Refused(409, f"trial {index} is not your current trial ({session.current})")
            trial = session.trials[index]
        rel = trial.fake if side == trial.fake_side else trial.real
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise Refused(500, "study.json points outside the study folder")
        return path

    def answer(self, token: str | None, payload: Any) -> dict[str, Any]:
        """Validate and record one answer; returns {"recorded", "duplicate", "feedback", "state"}.

        `payload`: {"session": id, "trial": index, "answer": "left"|"right", "response_ms": ms,
        "exposure_ms": ms (optional)}. Refused (4xx) for anything else, another participant's
        session, or a trial after the current one."""
        if not isinstance(payload, dict):
            raise Refused(400, "send a JSON object: {session, trial, answer, response_ms}")
        allowed = {"session", "trial", "answer", "response_ms", "exposure_ms"}
        unknown = sorted(set(payload) - allowed)
        if unknown:
            raise Refused(400, f"unknown field(s) {', '.join(unknown)}; send {', '.join(sorted(allowed))}")
        missing = [k for k in ("session", "trial", "answer", "response_ms") if k not in payload]
        if missing:
            raise Refused(400, f"missing field(s) {', '.join(missing)}")
        if not isinstance(payload["session"], str):
            raise Refused(400, "'session' must be the session id string")
        index = payload["trial"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise Refused(400, f"'trial' must be a trial index (a whole number >= 0), got {index!r}")
        answer = payload["answer"]
        if answer not in SIDES:
            raise Refused(400, f"'answer' must be 'left' or 'right' (the side picked as fake), got {answer!r}")
        response_ms = _check_number(payload, "response_ms", True, 86_400_000)
        exposure_ms = _check_number(payload, "exposure_ms", False, 600_000)
        with self._lock:
            session = self._owned(token, payload["session"])
            current = session.current
            if index < current or (index in session.answers):
                recorded, duplicate = session.answers[index], True  # a retry: the first answer stands
            elif index == current and index < session.total:
                trial = session.trials[index]
                recorded = {
                    "participant": session.participant,
                    "session": session.id,
                    "method": session.method,
                    "template": session.template,
                    "trial": index,
                    "practice": trial.practice,
                    "real": trial.real,
                    "fake": trial.fake,
                    "fake_side": trial.fake_side,
                    "answer": answer,
                    "correct": answer == trial.fake_side,
                    "response_ms": response_ms,
                    "exposure_ms": exposure_ms,
                    "time": utc_now(),
                }
                _append_or_refuse(
                    self.responses_path, recorded, "the answer"
                )  # durable before the participant hears back
                session.answers[index] = recorded
                session.last_activity = time.time()
                duplicate = False
            elif current >= session.total:
                raise Refused(409, "this session is complete; there are no more trials")
            else:
                raise Refused(409, f"trial {index} is not your current trial ({current})")
            feedback = (
                {"correct": recorded["correct"], "fake_side": recorded["fake_side"]} if recorded["practice"] else None
            )
            return {"recorded": not duplicate, "duplicate": duplicate, "feedback": feedback, "state": session.public()}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per method: sessions started and complete."""
        with self._lock:
            table = {m: {"started": 0, "complete": 0} for m in self.study.methods}
            for s in self.sessions.values():
                table[s.method]["started"] += 1
                table[s.method]["complete"] += s.complete
            return table

    def public_settings(self) -> dict[str, Any]:
        """The protocol a new participant gets, for the page's instructions."""
        return {"question": self.study.question, **asdict(self.protocol)}
