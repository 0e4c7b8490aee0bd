"""Progress bars of long jobs, one behaviour for every command: counts, rate and ETA on a
terminal; where stderr is not a terminal (a log file, CI) a plain line at most once a minute
instead of a bar's redraws; nothing with --quiet (--no-progress)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

LINE_SECONDS = 60.0  # where stderr is not a terminal: the least time between two progress lines


def progress_bar(
    items: Iterable[Any] | int, desc: str, enabled: bool = True, unit: str = "img", initial: int = 0
) -> Any:
    """A tqdm bar over `items` (a sized iterable, iterated through the bar) or a count (then a
    context manager with update(n) and set_postfix); `enabled` False shows nothing, and where
    stderr is not a terminal a `ProgressLines` writes a line a minute instead."""
    iterable, total = (None, items) if isinstance(items, int) else (items, len(items))  # type: ignore[arg-type]
    if enabled and not _terminal():
        return ProgressLines(iterable, total, desc, unit, initial)
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0,
    )


def _terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class ProgressLines:
    """A bar's stand-in for log files: `desc: n/total unit (rate, postfix)`, at most one line
    every LINE_SECONDS and a last one on close if any was written. Jobs shorter than a minute
    write nothing."""

    def __init__(self, iterable: Iterable[Any] | None, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.first = initial
        self.started = self.last = time.monotonic()
        self.postfix, self.lines, self.shown = "", 0, initial

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __len__(self) -> int:
        return self.total

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= LINE_SECONDS:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        now = time.monotonic()
        rate = (self.n - self.first) / max(now - self.started, 1e-9)
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({rate:.2f} {self.unit}/s{extra})", file=sys.stderr)
        sys.stderr.flush()
        self.last, self.lines, self.shown = now, self.lines + 1, self.n

    def close(self) -> None:
        if self.lines and self.shown != self.n:
            self._line()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
