"""Progress where stderr is not a terminal (progress.py): plain lines, never a bar's redraws, the
same for every command; nothing with --quiet (issue 32, item 3)."""

from __future__ import annotations

import pytest

from pix2pix import progress
from pix2pix.progress import ProgressLines, progress_bar


def test_a_log_file_gets_plain_lines_and_quiet_gets_nothing(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)  # a line at every update
    with progress_bar(3, "translate", unit="tile") as bar:  # capsys: stderr is not a terminal
        assert isinstance(bar, ProgressLines)
        for _ in range(3):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"translate: {n}/3 tile" for n in (1, 2, 3)]
    assert "\r" not in "".join(lines)
    with progress_bar(3, "translate", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_a_short_job_writes_no_line(capsys) -> None:
    assert list(progress_bar([1, 2, 3], "check", unit="file")) == [1, 2, 3]
    assert capsys.readouterr().err == ""
