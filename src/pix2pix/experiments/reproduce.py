"""`pix2pix reproduce NAME`: train and score one of the paper's experiment sets, and write a
Markdown report with our numbers beside the paper's (../shared/reference/PAPER_NOTES.md).

Every set has two protocols:
- `full`: the paper's (appendix 6.2): 256 px, jitter 286 -> 256 and mirroring, the set's batch
  size, 100 + 100 epochs. Meant for a GPU.
- `reduced`: fits in about two hours on a 2-core CPU per three rows. What is reduced, exactly:
  image size 256 -> 128 px (jitter 143 -> 128, the U-Net one level shallower: 7 levels, as
  the reference code's unet_128), and epochs 100 + 100 -> 1 + 1. The learning rate follows the
  reference's per-epoch linear rule, lr x (1 - (e + 1 - epochs) / (epochs_decay + 1)) in epoch
  e, so the first epoch runs at 2e-4 and the second at 1e-4 (not a decay to zero within it).
  At 128 px the 70x70 PatchGAN sees twice the fraction of the image side it sees at 256 px.
  Architecture widths (ngf = ndf = 64), the objective, lambda = 100, Adam settings, batch size,
  the data and the full val set are the paper's.

The FCN-score differs from the paper's protocol, which segments the outputs upsampled to
1024 x 2048 with the pretrained FCN-8s of Long et al. and scores against gtFine labelIds: here a
U-Net segmenter trained on the real Cityscapes training photos (`pix2pix evaluate
train-segmenter`) segments the outputs at the run's size, scored against label ids read from
the colour label maps (nearest colour) at that size. Rows are comparable within our reports;
absolute values are not the paper's.

Runs are shared between sets (a run is named by its full config), so `table1`, `table3` and
`figure7` train the L1+cGAN labels->photo model once. Each step leaves a file behind: an
interrupted run resumes from its last checkpoint and finished rows are not redone.

Example:
    pix2pix reproduce table6 --data ../shared/data/cityscapes --protocol reduced --out reproduce
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig, load_preset, unet_depth_for_size
from ..evaluation.evaluate import evaluate_model
from ..evaluation.segmenter import train_segmenter
from ..extras import pyplot
from ..hub.folder import save_model
from ..hub.model_config import ModelConfig
from ..models.networks import UNetGenerator
from ..paper import LAB, SETS, ExperimentSet, Row
from ..training.checkpoint import STATE_FILE
from ..training.report import read_log, training_seconds
from ..training.run import RunBusyError, exclusive, trainer_of
from ..training.train import train
from ..version import __version__
from .verdicts import judge, verdict_lines

PROTOCOLS = ("full", "reduced")
# the same rows trained by the reference code at the reduced protocol and scored by our scorer
# (benchmarks/reference_protocol.py writes it into OUT); a report beside it gets its column
REFERENCE_FILE = "reference-{}.json"
REDUCED = {"crop_size": 128, "load_size": 143, "epochs": 1, "epochs_decay": 1}
# the segmenter of the reduced protocol: 20 epochs at 128 px. 7,500 steps was the shortest
# recipe tried whose ground-truth row stands 0.10 class IoU above the controls; 15,000 widens
# that margin and the gap between trained rows and the real photos (reports/fcn_controls_check.md)
REDUCED_SEGMENTER_STEPS = 15000
FCN_PROTOCOL = (
    "FCN-score protocol (not the paper's): the paper segments the outputs upsampled to 1024 x 2048 with "
    "the pretrained FCN-8s and scores against gtFine labelIds; here a U-Net segmenter trained on the real "
    "training photos segments them at the run's size, scored against label ids read from the colour "
    "label maps. Compare rows with each other and with the ground-truth row, not with the paper's values."
)


def row_config(
    exp: ExperimentSet,
    row: Row,
    data: str | Path,
    protocol: str,
    device: str = "auto",
    extra: dict[str, Any] | None = None,
    segmenter: str | Path | None = None,
) -> TrainConfig:
    """The training config of one row: preset, then the set's and the row's overrides, then the
    protocol's reductions (and the set's own under the reduced one), then `extra` (user settings
    such as workers, or a smaller model for a quick check; the report lists them). A set that
    validates every epoch validates with `segmenter`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    values: dict[str, Any] = {**load_preset(exp.preset), **exp.overrides, **row.overrides}
    if protocol == "reduced":
        values.update(REDUCED, **exp.reduced_overrides)
    values.update(data=str(data), device=device, num_samples=4, sample_every=1000, checkpoint_every=500)
    if exp.val_every:  # validations on a fixed val subset; FCN-scores with the segmenter, where given
        values.update(val_every=exp.val_every, val_images=exp.val_images, val_task="label2photo")
        if segmenter is not None:
            values.update(segmenter=str(segmenter))
    values.update(extra or {})
    return TrainConfig.from_dict(values, f"reproduce {exp.name} / {row.name}")


def config_digest(cfg: TrainConfig) -> str:
    """A hash of the options that differ from their defaults (so adding a new option with a
    default keeps old names), leaving out those that do not change the result (data folder,
    device, loader workers, the validation's segmenter folder)."""
    defaults = TrainConfig().to_dict()
    keyed = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in ("data", "device", "workers", "segmenter") and (k not in defaults or v != defaults[k])
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10]


def run_name(cfg: TrainConfig) -> str:
    """A run folder name that is the same for the same training config (see config_digest)."""
    direction = "photo2label" if cfg.data.direction == "AtoB" else "label2photo"
    return f"{direction}-{cfg.loss.objective}-{cfg.data.crop_size}px-{config_digest(cfg)}"


def train_row(cfg: TrainConfig, run_dir: Path, progress: bool = True) -> bool:
    """Train (or resume) one row's run. Returns True when its schedule is complete."""
    done = run_dir / "done.json"
    if done.is_file():
        return True
    with exclusive(run_dir):  # raises RunBusyError while another process trains this row
        if done.is_file():  # finished by the process that held the lock before
            return True
        resume = (run_dir / STATE_FILE).is_file()
        summary = train(cfg, run_dir, resume=resume, overwrite=not resume, progress=progress)
        if summary["interrupted"]:
            return False
        done.write_text(json.dumps({k: summary[k] for k in ("step", "epoch", "losses")}, indent=2) + "\n")
    return True


def status(out: str | Path, protocol: str = "reduced", names: list[str] | None = None, extra=None) -> list[str]:
    """One line per row of each set (all, or `names`): scored, trained, being trained (by
    which process), stopped at a step, or not started; and the set's report if written."""
    out, lines = Path(out), []
    for name in names or list(SETS):
        exp = SETS[name]
        report = out / f"{name}-{protocol}.md"
        lines.append(f"{name}: " + (f"report {report}" if report.is_file() else "no report yet"))
        configs = [(row, row_config(exp, row, "-", protocol, "cpu", extra)) for row in exp.rows]
        for row, cfg in configs + (control_configs(exp, "-", protocol, "cpu", extra) if exp.fcn_scored else []):
            lines.append(f"  {row.name}: {_row_state(out / 'runs' / run_name(cfg), exp.task)}")
    return lines


def scores_file(run_dir: Path, task: str) -> Path:
    """Where a run's scores for a set's task are kept (written by _Scoring, read by --status)."""
    return run_dir / f"eval-{task}.json"


def _row_state(run_dir: Path, task: str) -> str:
    if scores_file(run_dir, task).is_file():
        return f"scored ({run_dir.name})"
    if (run_dir / "done.json").is_file():
        return f"trained, not scored yet ({run_dir.name})"
    records = read_log(run_dir)
    where = f" at step {records[-1]['step']}" if records else ""
    if who := trainer_of(run_dir):
        return f"training now{where}, by {who} ({run_dir.name})"
    return f"stopped{where}; the set's command resumes it ({run_dir.name})" if where else "not started"


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    import os

    details = [d for d in (_cpu_model(), f"{torch.backends.cpu.get_cpu_capability()} kernels") if d]
    return f"{platform.machine()} CPU ({', '.join(details)}), {os.cpu_count()} cores, torch {torch.__version__}"


def _cpu_model() -> str | None:
    """The CPU's model name where the OS tells it (Linux's /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def reproduce(
    name: str,
    data: str | Path,
    out: str | Path,
    protocol: str = "reduced",
    segmenter: str | Path | None = None,
    device: str = "auto",
    extra: dict[str, Any] | None = None,
    segmenter_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    train_only: bool = False,
) -> Path | None:
    """Train every row of set `name` that is not trained yet, score it, and write
    OUT/NAME-PROTOCOL.md and .json. Returns the report's path; with `train_only`, stops after
    training (the long part, e.g. in the background) and returns None.

    FCN-scored sets also get control rows, which show whether the segmenter can tell methods
    apart at all: one blank (mid-grey) image for every input, i.e. the layout prior the
    segmenter has learnt, and the L1 generator after CONTROL_STEPS steps. The ground-truth row
    (the segmenter on the real photos) should stand well above both."""
    if name not in SETS:
        raise ValueError(f"unknown experiment set {name!r}; choose one of {', '.join(SETS)}")
    exp, out, started = SETS[name], Path(out), time.perf_counter()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    fcn = exp.fcn_scored
    if exp.val_every and segmenter is None:  # validation during training needs the segmenter first
        size = row_config(exp, exp.rows[0], data, protocol, device, extra).data.crop_size
        steps = segmenter_steps or (REDUCED_SEGMENTER_STEPS if protocol == "reduced" else None)
        segmenter = _segmenter(data, out, size, steps, device, progress, log)
    checker = segmenter if exp.val_every else None
    configs = [(row, row_config(exp, row, data, protocol, device, extra, checker)) for row in exp.rows]
    controls = control_configs(exp, data, protocol, device, extra) if fcn else []

    # Train: every row not trained yet, passing over rows another process holds.
    _train_rows(name, configs + controls, out, progress, log)
    if train_only:
        log(f"[{name}] every row is trained; run the same command without --train-only to score them")
        return None

    # Score: the FCN-score segmenter (trained once per recipe), then each row and control.
    size = configs[0][1].data.crop_size
    if fcn and segmenter is None:
        steps = segmenter_steps or (REDUCED_SEGMENTER_STEPS if protocol == "reduced" else None)
        segmenter = _segmenter(data, out, size, steps, device, progress, log)
    # a label2photo set scored by colour alone (figure7) needs no segmenter
    eval_task = exp.task if fcn or exp.task != "label2photo" else "image"
    scoring = _Scoring(data, size, exp.task, eval_task, Path(segmenter) if fcn else None, device, log, progress)
    results = [scoring.row(row, out / "runs" / run_name(cfg), fit=exp.task == "label2photo") for row, cfg in configs]
    checks = [scoring.row(row, out / "runs" / run_name(cfg)) for row, cfg in controls]
    if fcn:
        direction = configs[0][1].data.direction  # the blank reads the set's input half, as every row does
        checks.insert(0, scoring.blank(out / "controls" / f"blank-{size}px-{direction}", direction))

    # Report: JSON with everything, Markdown beside the paper's numbers.
    report = {
        "set": name,
        "title": exp.title,
        "protocol": protocol,
        "reduced": REDUCED if protocol == "reduced" else None,
        "extra": extra or {},
        "data": Path(data).name,
        "command": f"pix2pix reproduce {name} --data {Path(data).name} --protocol {protocol} --out OUT"
        + "".join(f" --set {k}={v}" for k, v in (extra or {}).items()),
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "version": __version__,
        "seconds_this_invocation": round(time.perf_counter() - started, 1),
        "metric_names": list(exp.metric_names),
        "rows": results,
        "controls": checks,
        "ground_truth_paper": exp.ground_truth_paper,
        "ground_truth_seed000": exp.ground_truth_seed000,
    }
    report["spread"] = seed_spread(report)
    if exp.val_every:
        report["curves"] = {row.name: curve(out / "runs" / run_name(cfg)) for row, cfg in configs}
        report["plot"] = plot_curves(report["curves"], out / f"{name}-{protocol}-curves.png", log)
    report = relative_paths(report, out, data)
    report["verdicts"] = judge(report, *_beside(out / f"{name}-{protocol}.json", name, protocol))
    (out / f"{name}-{protocol}.json").write_text(json.dumps(report, indent=2) + "\n")
    path = out / f"{name}-{protocol}.md"
    path.write_text(format_report(report, exp))
    log(f"wrote {path}")
    return path


def relative_paths(report: Any, out: Path, data: str | Path) -> Any:
    """The report with no path of the machine it ran on: folders under OUT relative to it, the
    data set's folder by its name (a report is read elsewhere, and says nothing of this disk)."""
    roots = [(str(Path(out).resolve()), ""), (str(Path(out)), ""), (str(Path(data).resolve()), Path(data).name)]
    roots += [(str(Path(data)), Path(data).name)]

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            for root, name in roots:
                if root not in ("", ".") and (value == root or value.startswith(root.rstrip("/") + "/")):
                    rest = value[len(root) :].lstrip("/")
                    return "/".join(p for p in (name, rest) if p) or "."
        return value

    return fix(report)


NOTES = "Notes (written after the run):"


def _beside(path: Path, name: str, protocol: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The seeds set's report and the reference code's rows (REFERENCE_FILE) beside a report."""
    seeds, reference = path.with_name(f"seeds-{protocol}.json"), path.with_name(REFERENCE_FILE.format(name))
    return tuple(json.loads(p.read_text()) if p.is_file() else None for p in (seeds, reference))  # type: ignore[return-value]


def rewrite_report(json_path: str | Path, seeds: dict[str, Any] | None = None) -> Path:
    """Write NAME-PROTOCOL.md again from its JSON, after the rule or the format changed: paths
    made relative, verdicts judged anew (from `seeds`, else the seeds report beside it), and the
    hand-written notes of the old Markdown (from NOTES on) kept as they were."""
    json_path = Path(json_path)
    report = json.loads(json_path.read_text())
    if m := re.search(r"--out (\S+)", report["command"]):  # written before paths were made relative
        report = relative_paths(report, Path(m[1]), report["data"])
        report["command"] = re.sub(r"--data \S+", f"--data {Path(report['data']).name}", report["command"])
        report["command"] = re.sub(r"--out \S+", "--out OUT", report["command"])
    report["data"] = Path(report["data"]).name
    report["ground_truth_paper"] = SETS[report["set"]].ground_truth_paper  # only Table 1 has one
    found_seeds, reference = _beside(json_path, report["set"], report["protocol"])
    report["verdicts"] = judge(report, seeds if seeds is not None else found_seeds, reference)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md = json_path.with_suffix(".md")
    old = md.read_text() if md.is_file() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    md.write_text(format_report(report, SETS[report["set"]]) + ("\n" + notes if notes else ""))
    return md


CURVE_KEYS = {"class_iou": "val_fcn_class_iou", "hist_L": "val_hist_L", "hist_a": "val_hist_a", "hist_b": "val_hist_b"}


def curve(run_dir: Path) -> list[dict[str, Any]]:
    """A run's validations from its log: step, epoch (steps / steps of one epoch), class IoU
    (paper mode; FCN-score on the validation subset) and the Lab histogram intersections."""
    config = json.loads((run_dir / "config.json").read_text())
    every = config.get("val_every") or 1
    points = []
    for r in read_log(run_dir):
        if "val_hist_L" in r:
            points.append(
                {"step": r["step"], "epoch": r["step"] / every, **{k: r.get(v) for k, v in CURVE_KEYS.items()}}
            )
    return points


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, log: Callable[[str], None] = print) -> str | None:
    """One figure: class IoU and the L, a, b intersections against epochs, a line per row. Needs
    matplotlib (the `plots` extra); without it the report's table holds the same figures."""
    plt = pyplot()
    if plt is None:
        log('no plot: matplotlib is not installed (pip install "pix2pix[plots]")')
        return None
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    titles = {"class_iou": "FCN class IoU", "hist_L": "L intersection", "hist_a": "a intersection"}
    titles["hist_b"] = "b intersection"
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        for name, points in curves.items():
            xs = [p["epoch"] for p in points if p[key] is not None]
            ax.plot(xs, [p[key] for p in points if p[key] is not None], marker="o", ms=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Validation every epoch (the first 100 val pairs, paper mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _curve_lines(report: dict[str, Any]) -> list[str]:
    if not report.get("curves"):
        return []
    lines = [
        "Validation every epoch (the fixed first val pairs, paper mode): class IoU | L / a / b intersection.",
        "",
        "| epoch | " + " | ".join(f"{name} class IoU | {name} L / a / b" for name in report["curves"]) + " |",
        "|---|" + "---|---|" * len(report["curves"]),
    ]
    epochs = sorted({round(p["epoch"], 2) for points in report["curves"].values() for p in points})
    for e in epochs:
        cells = []
        for points in report["curves"].values():
            p = next((p for p in points if round(p["epoch"], 2) == e), None)
            colour = " / ".join(f"{p[k]:.2f}" for k in LAB) if p else "-"
            cells.append(f"{_fmt_or_dash(p['class_iou']) if p else '-'} | {colour}")
        lines.append(f"| {e:g} | " + " | ".join(cells) + " |")
    if report.get("plot"):
        lines += ["", f"![curves]({report['plot']})"]
    return [*lines, ""]


def _train_rows(
    name: str, configs: list[tuple[Row, TrainConfig]], out: Path, progress: bool, log: Callable[[str], None]
) -> None:
    """Train each row's run (finished runs are skipped, stopped ones resumed). A row another
    process is training is passed over, so two processes can share a set; the set is complete
    only when no row was passed over (RunBusyError names them otherwise)."""
    busy = []
    for i, (row, cfg) in enumerate(configs, 1):
        run_dir, tag = out / "runs" / run_name(cfg), f"[{name} {i}/{len(configs)}] {row.name}"
        log(f"{tag}: training in {run_dir}")
        try:
            if not train_row(cfg, run_dir, progress):
                raise KeyboardInterrupt(f"stopped while training {run_dir}; run the same command again to continue")
        except RunBusyError:
            log(f"{tag}: another process is training it; next row")
            busy.append(row.name)
    if busy:
        raise RunBusyError(
            f"{name}: {len(busy)} row(s) still being trained by other processes ({', '.join(busy)}); "
            "run the same command again when they finish"
        )


def _segmenter(
    data: str | Path, out: Path, size: int, steps: int | None, device: str, progress: bool, log: Callable[[str], None]
) -> Path:
    """OUT/segmenter-SIZEpx[-STEPSsteps], trained on the real training photos unless it is there.
    Named by its recipe: a segmenter of another recipe is another folder (and scores are redone)."""
    path = out / (f"segmenter-{size}px" + (f"-{steps}steps" if steps else ""))
    if not (path / "done.json").is_file():
        log(f"training the FCN-score segmenter in {path}")
        train_segmenter(data, path, size=size, steps=steps, device=device, progress=progress)
    return path


# The controls of FCN-scored sets: a barely trained generator (L1, a few hundred steps)
CONTROL_STEPS = 300
CONTROL_ROWS = (Row(f"Control: L1 after {CONTROL_STEPS} steps", {"objective": "l1", "max_steps": CONTROL_STEPS}),)
BLANK_ROW = "Control: one blank image for every input (the layout prior)"
FIT_PAIRS = 500  # training pairs a label->photo row's fit is measured on: as many as the val set


def control_configs(
    exp: ExperimentSet, data: str | Path, protocol: str, device: str = "auto", extra: dict[str, Any] | None = None
) -> list[tuple[Row, TrainConfig]]:
    """The trained control rows of an FCN-scored set. They leave out the set's own overrides
    (table2's batch 10, under which 300 steps would be half its schedule; the longer set's
    epochs and validation): one barely trained
    generator, the same run for every set, so its score compares across reports."""
    bare = replace(exp, overrides={}, reduced_overrides={}, val_every=0, val_images=0)
    return [(row, row_config(bare, row, data, protocol, device, extra)) for row in CONTROL_ROWS]


@dataclass
class _Scoring:
    """Scores runs' models (once: the scores are kept beside each run) for a report."""

    data: str | Path
    size: int
    task: str  # the set's task, which names the saved scores
    eval_task: str  # what evaluate_model computes
    segmenter: Path | None = None
    device: str = "auto"
    log: Callable[[str], None] = print
    progress: bool = False

    def scores(self, model: Path, where: Path) -> dict[str, Any]:
        path = scores_file(where, self.task)
        if path.is_file():
            kept = json.loads(path.read_text())
            if kept.get("segmenter") == (str(self.segmenter) if self.segmenter else None):
                return kept  # scored before with the same segmenter (another one: score again)
            if self.segmenter is None and "color" in kept:
                return kept  # colour-only sets (figure7) take the colour scores of an FCN scoring as they are
        self.log(f"scoring {model}")
        scores = evaluate_model(
            model,
            self.data,
            out=where / f"eval-{self.task}",
            size=self.size,
            task=self.eval_task,
            segmenter=self.segmenter,
            device=self.device,
            overwrite=True,  # no scores were saved: what the folder holds is an interrupted scoring
            progress=self.progress,
        )
        path.write_text(json.dumps(scores, indent=2) + "\n")
        return scores

    def row(self, row: Row, run_dir: Path, fit: bool = False) -> dict[str, Any]:
        scores = self.scores(run_dir / "model", run_dir)
        trained = json.loads((run_dir / "done.json").read_text())
        trained["seconds"] = round(training_seconds([r for r in read_log(run_dir) if "time" in r]), 1)
        result = {
            "row": row.name,
            "run": str(run_dir),
            "paper": row.paper,
            "seed000": row.seed000,
            "training": trained,
            "scores": scores,
        }
        if fit:
            result["fit"] = self.fit(run_dir)
        return result

    def fit(self, run_dir: Path) -> dict[str, Any]:
        """The final generator's distances to the photos of FIT_PAIRS training pairs, resized as
        at test time (no jitter, no mirroring) and run as at test time. Beside the val scores this
        shows overfitting, seed 003's case for augmentation and against L2: a model that fits
        its training photos much closer than the val photos."""
        path = run_dir / "fit-train.json"
        if not path.is_file():
            self.log(f"scoring {run_dir / 'model'} on the training pairs (the first {FIT_PAIRS})")
            scores = evaluate_model(
                run_dir / "model",
                self.data,
                out=run_dir / "eval-train-fit",
                size=self.size,
                split="train",
                task="image",
                limit=FIT_PAIRS,
                gallery=8,
                device=self.device,
                overwrite=True,  # no fit was saved: what the folder holds is an interrupted scoring
                progress=self.progress,
            )
            kept = {"split": "train", "images": scores["images"], "image": scores["image"]}
            path.write_text(json.dumps(kept, indent=2) + "\n")
            return kept
        return json.loads(path.read_text())

    def blank(self, folder: Path, direction: str) -> dict[str, Any]:
        """A generator whose weights are all zero: tanh(0) = 0, mid-grey, whatever the input. Its
        card carries the set's direction: evaluation reads the input and the real photo by it,
        and the default (AtoB) would score labels segmented from the Cityscapes photo half."""
        if not (folder / "model" / "config.json").is_file():
            depth = unet_depth_for_size(self.size)
            generator = UNetGenerator(3, 3, base_channels=1, depth=depth, dropout=0.0)
            for tensor in generator.state_dict().values():
                tensor.zero_()
            card = ModelConfig(
                "unet", {"base_channels": 1, "depth": depth, "dropout": 0.0}, direction=direction, crop_size=self.size
            )
            save_model(folder / "model", generator, card)
        scores = self.scores(folder / "model", folder)
        return {"row": BLANK_ROW, "run": str(folder), "paper": None, "training": {}, "scores": scores}


def _metric(scores: dict[str, Any], key: str) -> float | None:
    for group in ("segmentation", "fcn", "color"):
        if key in scores.get(group, {}):
            return scores[group][key]
    return scores.get(key)


def _fmt_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"  # None: the class is absent from the ground truth


def seed_spread(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows named "NAME (seed N)" grouped by NAME: each metric's mean and its range (max - min)
    over the seeds, for the groups with at least two scored seeds."""
    groups: dict[str, list[list[float | None]]] = {}
    for r in report["rows"]:
        if m := re.fullmatch(r"(.*) \(seed \d+\)", r["row"]):
            groups.setdefault(m[1], []).append([_metric(r["scores"], k) for k in report["metric_names"]])
    spread = []
    for name, runs in groups.items():
        columns = [[v for v in column if v is not None] for column in zip(*runs, strict=True)]
        if min(len(c) for c in columns) >= 2:
            spread.append(
                {
                    "row": name,
                    "seeds": len(runs),
                    "mean": [sum(c) / len(c) for c in columns],
                    "range": [max(c) - min(c) for c in columns],
                }
            )
    return spread


def _spread_lines(report: dict[str, Any]) -> list[str]:
    if not report.get("spread"):
        return []
    head = " / ".join(report["metric_names"])
    lines = [
        "Spread over seeds (the same row trained from different seeds):",
        "",
        f"| Row | seeds | mean ({head}) | range, max - min ({head}) |",
        "|---|---|---|---|",
    ]
    for g in report["spread"]:
        mean, spread = (" / ".join(f"{v:.3f}" for v in g[k]) for k in ("mean", "range"))
        lines.append(f"| {g['row']} | {g['seeds']} | {mean} | {spread} |")
    return [*lines, ""]


def _fit_lines(report: dict[str, Any]) -> list[str]:
    rows = [r for r in report["rows"] if "fit" in r and "image" in r["scores"]]
    if not rows:
        return []
    lines = [
        f"Distances to the real photos: L1 (mean absolute difference, pixels in [0, 1]), PSNR (dB) and "
        f"SSIM on the {rows[0]['scores']['images']} val pairs, and L1 on {rows[0]['fit']['images']} "
        "training pairs, resized and run as at test time (no jitter, no mirroring). A row whose "
        "training L1 falls far below its val L1, more than the other rows', is overfitting. The last "
        "column is the val outputs' colour distribution against the real photos' (Lab histogram "
        "intersections, as Figure 7: 1 = the same).",
        "",
        "| Row | val L1 | train L1 | val - train L1 | val PSNR | val SSIM | L / a / b intersection |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        val, train = r["scores"]["image"], r["fit"]["image"]
        cells = [f"{val['l1']:.4f}", f"{train['l1']:.4f}", f"{val['l1'] - train['l1']:+.4f}"]
        colour = r["scores"].get("color", {})
        hist = " / ".join(f"{colour[f'hist_{c}']:.2f}" for c in "Lab") if "hist_b" in colour else "-"
        cells += [f"{val['psnr']:.2f}", f"{val['ssim']:.3f}", hist]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def format_report(report: dict[str, Any], exp: ExperimentSet) -> str:
    """The Markdown report: how it was run, the scores beside the paper's, what the segmenter
    can tell apart, the seed spread, each row's fit, per-class IoU and where the runs are."""
    lines = _header_lines(report, exp) + _score_lines(report) + verdict_lines(report)
    lines += _spread_lines(report) + _curve_lines(report) + _fit_lines(report)
    if exp.task == "photo2label":
        lines += [
            "Scores: each output pixel is mapped to the nearest Cityscapes label colour; per-pixel "
            "accuracy, mean per-class accuracy and mean class IoU over the 19 train classes from one "
            "confusion matrix over the whole val set (pix2pix's formula; a class with no ground-truth "
            "pixels counts as 0 in the means, which does not happen on the full val set).",
            "",
        ]
    lines += _per_class_lines(report) + _run_lines(report, exp.task)
    return "\n".join(lines) + "\n"


def _header_lines(report: dict[str, Any], exp: ExperimentSet) -> list[str]:
    lines = [
        f"# {report['title']}",
        "",
        f"Protocol: **{report['protocol']}**. Machine: {report['machine']}. Date: {report['date']}. "
        f"pix2pix {report['version']}.",
        "",
        f"Command: `{report['command']}` (OUT: the output folder; the paths below are relative to it, "
        "and the data set is named by its folder).",
        "",
    ]
    if report["reduced"]:
        lines += [
            "Reduced from the paper's protocol: 256 px -> 128 px (jitter 143 -> 128, U-Net 7 levels; the "
            "70x70 D then sees twice the fraction of the image side), epochs 100 + 100 -> 1 + 1 (the first at "
            "lr 2e-4, the second at 1e-4: the reference's per-epoch linear rule). Everything else (data, "
            "widths, objective, lambda = 100, Adam, batch size, the full val set) is the paper's. Expect "
            "lower scores than the paper's.",
            "",
        ]
    if exp.fcn_scored:
        lines += [FCN_PROTOCOL, ""]
    if report["extra"]:
        lines += ["Also changed: " + ", ".join(f"`{k} = {v}`" for k, v in report["extra"].items()) + ".", ""]
    return lines


def _score_lines(report: dict[str, Any]) -> list[str]:
    """The main table: rows, the ground truth, the controls; then the segmenter's verdict."""
    names = report["metric_names"]
    head = " / ".join(names)
    seed = any(r.get("seed000") for r in report["rows"])  # seed 000's reproduction, beside the paper's
    extra_head, extra_rule = (f" seed 000 ({head}) |", "---|") if seed else ("", "")
    lines = [
        f"| Row | ours ({head}) | paper ({head}) |{extra_head} steps | train s |",
        f"|---|---|---|{extra_rule}---|---|",
    ]

    def fmt(values: list[float | None] | tuple[float, ...] | None) -> str:
        if values is None:
            return "-"
        return " / ".join("-" if v is None else f"{v:.2f}" for v in values)

    def line(name: str, ours, paper, seed000, training: dict[str, Any]) -> str:
        cells = [name, fmt(ours), fmt(paper), *([fmt(seed000)] if seed else [])]
        cells += [str(training.get("step", "-")), str(training.get("seconds", "-"))]
        return "| " + " | ".join(cells) + " |"

    for r in report["rows"]:
        ours = [_metric(r["scores"], k) for k in names]
        lines.append(line(r["row"], ours, r["paper"], r.get("seed000"), r.get("training", {})))
    gt = next((r["scores"].get("fcn_ground_truth") for r in report["rows"] if "fcn_ground_truth" in r["scores"]), None)
    if gt is not None and all(k in gt for k in names):  # not for colour sets scored from an FCN scoring
        truth = [gt[k] for k in names]
        name = "Ground truth (segmenter on real photos)"
        lines.append(line(name, truth, report["ground_truth_paper"], report.get("ground_truth_seed000"), {}))
    for r in report.get("controls", []):
        ours = [_metric(r["scores"], k) for k in names]
        lines.append(line(r["row"], ours, None, None, r.get("training", {})))
    lines += [""]
    if report.get("controls") and gt is not None and "class_iou" in gt:
        iou = [_metric(r["scores"], "class_iou") for r in report["controls"]]
        margin = gt["class_iou"] - max(v for v in iou if v is not None)
        verdict = "separates" if margin >= 0.10 else "does NOT separate"
        lines += [
            f"The segmenter {verdict} real photos from the controls: ground-truth class IoU "
            f"{gt['class_iou']:.2f}, {margin:+.2f} against the best control (the aim is at least +0.10).",
            "",
        ]
    return lines


def _per_class_lines(report: dict[str, Any]) -> list[str]:
    per_class = [r for r in report["rows"] if "per_class_iou" in r["scores"].get("segmentation", {})]
    if not per_class:
        return []
    classes = per_class[0]["scores"]["segmentation"]["classes"]
    lines = ["Per-class IoU:", "", "| class | " + " | ".join(r["row"] for r in per_class) + " |"]
    lines.append("|---|" + "---|" * len(per_class))
    for i, c in enumerate(classes):
        vals = " | ".join(_fmt_or_dash(r["scores"]["segmentation"]["per_class_iou"][i]) for r in per_class)
        lines.append(f"| {c} | {vals} |")
    return [*lines, ""]


def _run_lines(report: dict[str, Any], task: str) -> list[str]:
    lines = [
        f"Runs (training folders, each with log.jsonl, samples/ and model/; eval-{task}/ holds the gallery):",
        "",
    ]
    for r in report["rows"]:
        trained = r.get("training", {})
        losses = ", ".join(f"{k} {v:.3f}" for k, v in trained.get("losses", {}).items())
        lines.append(f"- {r['row']}: `{r['run']}`: {trained.get('step', '?')} steps; last logged losses: {losses}")
    return lines
