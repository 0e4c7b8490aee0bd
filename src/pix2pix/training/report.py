"""`pix2pix report RUN`: one self-contained page of a run, RUN/report.html.

The configuration; the loss curves (each smoothed with an exponential moving average, the raw
values faint behind) against step, with the epochs marked; the validation metrics over steps
with the best step marked; the sample grids over time (the same validation images at each
sample step); timings and throughput. Plots are inline SVG and images are embedded as data
URIs: no script and no file from elsewhere, so it opens offline and can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import FIELDS, TrainConfig

LOSS_KEYS = ("g_gan", "g_l1", "g_l2", "d_real", "d_fake")
TIMING_KEYS = ("step", "epoch", "lr", "images_per_s", "time")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
MAX_GRIDS = 12  # sample grids shown, spread over the run
GRID_WIDTH = 480  # px: grids are scaled down to this width to keep the page small


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """log.jsonl's records (a line cut short by a crash is skipped)."""
    records = []
    path = run_dir / "log.jsonl"
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def write_report(run_dir: str | Path, smoothing: float = 0.9) -> Path:
    """Write RUN/report.html and return its path."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: not a run directory (no config.json); pass the folder `pix2pix train` wrote"
        )
    config = json.loads(config_path.read_text())
    log = read_log(run_dir)
    train = [r for r in log if "images_per_s" in r]
    validations = [r for r in log if any(k.startswith("val_") and k != "val_seconds" for k in r)]
    best = _read_json(run_dir / "model-best" / "best.json")
    epochs = _epoch_starts(train)
    sections = [
        f"<h1>{html.escape(run_dir.name)}</h1>",
        _summary(run_dir, config, train, validations, best),
        "<h2>Losses</h2>",
        _plots(train, [k for k in LOSS_KEYS if any(k in r for r in train)], epochs, smoothing, None),
        "<h2>Validation</h2>" if validations else "",
        _plots(validations, _val_keys(validations), epochs, 0.0, best) if validations else "",
        "<h2>Samples (input | output | target)</h2>",
        _grids(run_dir),
        "<h2>Throughput</h2>",
        _plots(train, ["images_per_s", "lr"], epochs, smoothing, None),
        "<h2>Configuration</h2>",
        _config_table(config),
    ]
    page = _page(run_dir.name, "\n".join(s for s in sections if s))
    out = run_dir / "report.html"
    tmp = out.with_name(".report.html.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _epoch_starts(records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(step, epoch) where each epoch's first logged step is."""
    starts, seen = [], None
    for r in records:
        if r.get("epoch") != seen:
            seen = r.get("epoch")
            starts.append((r["step"], seen))
    return starts


def _val_keys(validations: list[dict[str, Any]]) -> list[str]:
    keys = []
    for r in validations:
        keys += [k for k in r if k.startswith("val_") and k != "val_seconds" and k not in keys]
    return keys


def _summary(
    run_dir: Path, config: dict[str, Any], train: list[dict], validations: list[dict], best: dict | None
) -> str:
    items = [
        f"data <code>{html.escape(str(config.get('data', '')))}</code>, objective <b>{config.get('objective')}</b>"
    ]
    if train:
        last = train[-1]
        rate = [r["images_per_s"] for r in train[1:]] or [train[0]["images_per_s"]]
        items.append(
            f"{last['step']:,} steps, epoch {last.get('epoch', 0) + 1}, in {training_seconds(train) / 60:.1f} min "
            f"of training; median {sorted(rate)[len(rate) // 2]:.2f} images/s"
        )
    if validations:
        cost = [r["val_seconds"] for r in validations if "val_seconds" in r]
        if cost:
            items.append(f"{len(validations)} validations, {sum(cost) / len(cost):.1f} s each")
    if best:
        items.append(
            f"best <b>{html.escape(best['metric'])}</b> = {best['value']:.4g} at step {best['step']:,} "
            f"(<code>model-best/</code>)"
        )
    snaps = sorted(p.name for p in (run_dir / "snapshots").glob("step_*")) if (run_dir / "snapshots").is_dir() else []
    if snaps:
        items.append(f"{len(snaps)} snapshots in <code>snapshots/</code>, the last {snaps[-1]}")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def training_seconds(train: list[dict]) -> float:
    """Seconds of training over every process of the run: a log record's `time` counts from its
    process's start, so it falls back to 0 where a resumed process begins."""
    total, last = 0.0, 0.0
    for r in train:
        now = float(r.get("time", 0.0))
        if now < last:  # a resumed process
            total += last
        last = now
    return total + last


def _plots(
    records: list[dict], keys: list[str], epochs: list[tuple[int, int]], smoothing: float, best: dict | None
) -> str:
    figures = []
    for i, key in enumerate(keys):
        points = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), int | float)]
        points = [(s, v) for s, v in points if math.isfinite(v)]
        if points:
            mark = best["step"] if best and best.get("metric") == key else None
            figures.append(_line_plot(key, points, epochs, smoothing, COLOURS[i % len(COLOURS)], mark))
    return '<div class="plots">' + "".join(figures) + "</div>"


def _smooth(values: list[float], weight: float) -> list[float]:
    out, last = [], None
    for v in values:
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def _value_range(values: list[float]) -> tuple[float, float]:
    """The y axis's (low, high): the values' range, or a flat series (a constant learning rate)
    padded by 10% of its value around it, so the axis reads 0.00018 to 0.00022, not 0.0002 to 1."""
    lo, hi = min(values), max(values)
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


MAX_EPOCH_LABELS = 10
EPOCH_LABEL_PX = 44  # "epoch 100" at 9 px, with a gap


def _epoch_labels(positions: list[tuple[float, int]]) -> set[int]:
    """The epochs (of (x in px, epoch) in order) to label: every 1st, 2nd, 5th, 10th, 20th, ...
    epoch, the first such step that leaves at most MAX_EPOCH_LABELS labels, none closer than
    EPOCH_LABEL_PX to the last one shown, so that labels never overlap."""
    every = 1
    while len(positions) / every > MAX_EPOCH_LABELS:
        every = every * 5 // 2 if str(every)[0] == "2" else every * 2  # 1, 2, 5, 10, 20, 50, ...
    labelled, last = set(), -math.inf
    for px, epoch in positions:
        if (epoch + 1) % every == 0 and px - last >= EPOCH_LABEL_PX:
            labelled.add(epoch)
            last = px
    return labelled


def _line_plot(
    title: str, points: list[tuple[int, float]], epochs: list[tuple[int, int]], smoothing: float, colour: str,
    mark: int | None,
) -> str:  # fmt: skip
    """An inline SVG of value against step: the raw points faint, the smoothed curve bold, the
    epochs as faint vertical lines, `mark` (the best step) as a dot."""
    width, height, left, bottom, top = 360, 200, 48, 28, 18
    steps, values = [s for s, _ in points], [v for _, v in points]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    lo, hi = _value_range(values)

    def x(step: float) -> float:
        return left + (step - x0) / (x1 - x0) * (width - left - 8)

    def y(value: float) -> float:
        return height - bottom - (value - lo) / (hi - lo) * (height - bottom - top)

    def polyline(vals: list[float], opacity: float, stroke: float) -> str:
        pts = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(steps, vals))
        return (
            f'<polyline fill="none" stroke="{colour}" stroke-opacity="{opacity}" stroke-width="{stroke}" '
            f'points="{pts}"/>'
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><text x="{left}" y="12" font-size="12">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 8}" y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{hi:.3g}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end">{lo:.3g}</text>',
        f'<text x="{left}" y="{height - 8}" font-size="10">step {x0:,}</text>',
        f'<text x="{width - 8}" y="{height - 8}" font-size="10" text-anchor="end">{x1:,}</text>',
    ]
    shown = [(step, epoch) for step, epoch in epochs[1:] if x0 < step < x1]
    labelled = _epoch_labels([(x(step), epoch) for step, epoch in shown])
    for step, epoch in shown:
        parts.append(f'<line x1="{x(step):.1f}" y1="{top}" x2="{x(step):.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        if epoch in labelled:
            parts.append(
                f'<text x="{x(step) + 2:.1f}" y="{top + 10}" font-size="9" fill="#888">epoch {epoch + 1}</text>'
            )
    if smoothing > 0 and len(values) > 2:
        parts.append(polyline(values, 0.25, 1))
        parts.append(polyline(_smooth(values, smoothing), 1.0, 1.6))
    else:
        parts.append(polyline(values, 1.0, 1.6))
        parts += [f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="2" fill="{colour}"/>' for s, v in points]
    if mark is not None and mark in steps:
        value = values[steps.index(mark)]
        parts.append(
            f'<circle cx="{x(mark):.1f}" cy="{y(value):.1f}" r="5" fill="none" stroke="#000" stroke-width="1.5">'
            f"<title>best: {value:.4g} at step {mark:,}</title></circle>"
        )
        parts.append(f'<text x="{x(mark):.1f}" y="{y(value) - 8:.1f}" font-size="10" text-anchor="middle">best</text>')
    return "".join(parts) + "</svg>"


def _grids(run_dir: Path) -> str:
    files = sorted((run_dir / "samples").glob("step_*.png")) if (run_dir / "samples").is_dir() else []
    if not files:
        return "<p>No sample grids (<code>--num-samples 0</code>, or the run has not reached --sample-every).</p>"
    if len(files) > MAX_GRIDS:  # spread over the run, the last always shown
        files = [files[round(i * (len(files) - 1) / (MAX_GRIDS - 1))] for i in range(MAX_GRIDS)]
    figures = []
    for path in files:
        step = int(path.stem.removeprefix("step_"))
        figures.append(
            f'<figure><img alt="samples at step {step}" src="{_data_uri(path)}"><figcaption>step {step:,}'
            "</figcaption></figure>"
        )
    return '<div class="grids">' + "".join(figures) + "</div>"


def _data_uri(path: Path) -> str:
    """A sample grid as an embedded JPEG, scaled down to GRID_WIDTH."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.width > GRID_WIDTH:
            img = img.resize((GRID_WIDTH, round(img.height * GRID_WIDTH / img.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _config_table(config: dict[str, Any]) -> str:
    defaults = TrainConfig().to_dict()
    rows = []
    for key, value in config.items():
        changed = key in defaults and value != defaults[key]
        help_text = FIELDS[key].metadata.get("help", "") if key in FIELDS else ""
        rows.append(
            f"<tr{' class=changed' if changed else ''}><td><code>{html.escape(key)}</code></td>"
            f"<td>{html.escape(json.dumps(value))}</td><td>{html.escape(help_text)}</td></tr>"
        )
    return (
        "<p>Bold rows differ from the defaults (the paper's settings).</p><table><tr><th>option</th><th>value</th>"
        "<th>meaning</th></tr>" + "".join(rows) + "</table>"
    )


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}"
        ".plots,.grids{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}"
        "figcaption{font-size:12px;color:#555}img{display:block;border:1px solid #ccc}"
        "table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:2px 8px;"
        "text-align:left;vertical-align:top}tr.changed td{font-weight:bold}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pix2pix run {html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
