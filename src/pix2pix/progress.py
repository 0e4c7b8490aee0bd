"""Progress bars of long jobs: counts, rate and ETA on a terminal; silent with --quiet and where
stderr is not a terminal (CI, log files)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress_bar(items: Iterable[Any] | int, desc: str, enabled: bool = True, unit: str = "img") -> Any:
    """A tqdm bar over `items` (a sized iterable, iterated through the bar) or a count (then a
    context manager with update(n)); `enabled` False, or stderr not a terminal, shows nothing."""
    from tqdm import tqdm

    iterable, total = (None, items) if isinstance(items, int) else (items, len(items))  # type: ignore[arg-type]
    # disable=None: tqdm itself turns the bar off where stderr is not a terminal
    disable = None if enabled else True
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, mininterval=1.0)
