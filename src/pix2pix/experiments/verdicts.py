"""Verdicts on a report's comparisons, from one stated rule applied by code.

Every reduced-protocol row is one training run, and the same row trained from another seed
moves: the `seeds` set measures by how much (its report's `spread`). A gap between two rows
means something only against that spread. The rule, on one score (class IoU for the FCN sets):

1. A row's spread r: its range over seeds where the `seeds` set trained it (the same run
   folder); else the largest range measured, for a labels -> photo row with L1 in its objective
   (the kind of row the seeds set measured); else UNMEASURED_FACTOR times that (rows without L1,
   or of another task, whose spread is not measured and are likely less stable: Table 6's cGAN
   moved 0.02 class IoU between two runs of the same config).
2. The gap between two rows: the distance between their values; a row with several seeds counts
   by all of them (the distance to its nearest seed, 0 when the other row lies among them).
3. With s = the larger of the two rows' spreads: the gap is **within the spread** when it is
   at most s, **at its edge** when it is at most 2 s, and **beyond it** above 2 s. Gaps are
   compared after rounding to 3 decimals, the precision the reports print.

Against the paper (rows with the paper's figures): the paper orders two rows when their figures
differ, and ties them when they are equal. A comparison is **reproduced** when our gap is beyond
the spread in the paper's direction (or within it, for a tie), **not reproduced** when it is
beyond the spread the other way (or beyond it, for a tie), and **undecided** otherwise.
Sets without the paper's figures compare each row with the set's first (the paper's setting).
The seeds set itself is the measure, not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import PurePath
from typing import Any

UNMEASURED_FACTOR = 2.0
WITHIN, EDGE, BEYOND = "within the spread", "at its edge", "beyond it"
REPRODUCED, NOT_REPRODUCED, UNDECIDED = "reproduced", "not reproduced", "undecided"


def _score(scores: dict[str, Any], key: str) -> float | None:
    for group in ("segmentation", "fcn", "color"):
        if key in scores.get(group, {}):
            return scores[group][key]
    return None


def _run_key(run: str) -> str:
    """A run folder's name (its config's name and hash), wherever the report was written."""
    return PurePath(run.replace("\\", "/")).name


def _objective(run: str) -> tuple[str, str]:
    """(task, objective) from a run folder named TASK-OBJECTIVE-SIZEpx-HASH."""
    m = re.fullmatch(r"(photo2label|label2photo)-(.+)-\d+px-[0-9a-f]+", _run_key(run))
    return (m[1], m[2]) if m else ("", "")


@dataclass(frozen=True)
class Spread:
    """What the seeds set measured on one score: each seeded run's group and its seeds' values."""

    metric: str
    groups: dict[str, tuple[float, ...]]  # seeds set row name (e.g. "L1") -> its seeds' values
    runs: dict[str, str]  # run folder name -> its group

    @classmethod
    def from_seeds(cls, seeds: dict[str, Any], metric: str = "class_iou") -> Spread:
        groups: dict[str, list[float]] = {}
        runs: dict[str, str] = {}
        for r in seeds["rows"]:
            m = re.fullmatch(r"(.*) \(seed \d+\)", r["row"])
            value = _score(r["scores"], metric)
            if m and value is not None:
                groups.setdefault(m[1], []).append(value)
                runs[_run_key(r["run"])] = m[1]
        return cls(metric, {k: tuple(v) for k, v in groups.items() if len(v) >= 2}, runs)

    @property
    def largest(self) -> float:
        return max((max(v) - min(v) for v in self.groups.values()), default=0.0)

    def values(self, run: str, value: float) -> tuple[float, ...]:
        """A row's values: all its seeds where the seeds set trained it, else its one value."""
        return self.groups.get(self.runs.get(_run_key(run), ""), (value,))

    def of(self, run: str) -> tuple[float, str]:
        """A row's spread and where it comes from (rule 1)."""
        group = self.runs.get(_run_key(run))
        if group in self.groups:
            v = self.groups[group]
            return max(v) - min(v), f"{group}'s {len(v)} seeds"
        task, objective = _objective(run)
        if task == "label2photo" and "l1" in objective.split("+"):
            return self.largest, "largest measured"
        return UNMEASURED_FACTOR * self.largest, f"not measured: {UNMEASURED_FACTOR:g} x largest"


@dataclass(frozen=True)
class Verdict:
    a: str
    b: str
    ours: tuple[float, float]  # the rows' values (a multi-seed row: its mean)
    gap: float  # signed: a - b, from the nearest seeds (0 when they overlap)
    spread: float  # s = the larger of the two rows' spreads
    basis: str  # where s comes from
    verdict: str  # WITHIN, EDGE or BEYOND
    paper: tuple[float, float] | None = None
    outcome: str | None = None  # against the paper: REPRODUCED, NOT_REPRODUCED, UNDECIDED

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def classify(gap: float, spread: float) -> str:
    """Rule 3. Rounded to the reports' 3 decimals, so that 0.028 against 2 x 0.014 is the edge."""
    gap, spread = round(abs(gap), 3), round(spread, 3)
    if gap <= spread:
        return WITHIN
    return EDGE if gap <= round(2 * spread, 3) else BEYOND


def _gap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Signed distance from the nearest values: > 0 when every a is above every b."""
    if min(a) > max(b):
        return min(a) - max(b)
    if max(a) < min(b):
        return max(a) - min(b)
    return 0.0


def outcome(paper: tuple[float, float], gap: float, verdict: str) -> str:
    paper_gap = round(paper[0] - paper[1], 2)
    if paper_gap == 0:  # the paper ties the two rows
        return REPRODUCED if verdict == WITHIN else NOT_REPRODUCED if verdict == BEYOND else UNDECIDED
    if verdict != BEYOND:
        return UNDECIDED
    return REPRODUCED if (gap > 0) == (paper_gap > 0) else NOT_REPRODUCED


def compare(report: dict[str, Any], spread: Spread) -> list[Verdict]:
    """Every comparison of a report, judged by the rule: each pair of rows with the paper's
    figures, or each row against the first where the paper has none."""
    metric = spread.metric
    if metric not in report["metric_names"]:
        return []
    index = report["metric_names"].index(metric)
    rows = [r for r in report["rows"] if _score(r["scores"], metric) is not None]
    with_paper = [r for r in rows if r.get("paper")]
    pairs = list(combinations(with_paper, 2)) if len(with_paper) >= 2 else [(rows[0], r) for r in rows[1:]]
    verdicts = []
    for a, b in pairs:
        va, vb = (spread.values(r["run"], _score(r["scores"], metric)) for r in (a, b))
        (sa, why_a), (sb, why_b) = spread.of(a["run"]), spread.of(b["run"])
        s, basis = (sa, why_a) if sa >= sb else (sb, why_b)
        gap = _gap(va, vb)
        verdict = classify(gap, s)
        paper = (a["paper"][index], b["paper"][index]) if a.get("paper") and b.get("paper") else None
        verdicts.append(
            Verdict(
                a["row"],
                b["row"],
                (sum(va) / len(va), sum(vb) / len(vb)),
                gap,
                s,
                basis,
                verdict,
                paper,
                outcome(paper, gap, verdict) if paper else None,
            )
        )
    return verdicts


def against_controls(report: dict[str, Any], spread: Spread) -> list[Verdict]:
    """Each row against the strongest control (the barely trained generator), by the same rule:
    a row "well above" the controls is one beyond the spread above it."""
    metric = spread.metric
    controls = [c for c in report.get("controls", []) if _score(c["scores"], metric) is not None]
    if not controls:
        return []
    best = max(controls, key=lambda c: _score(c["scores"], metric))
    top = _score(best["scores"], metric)
    out = []
    for r in report["rows"]:
        value = _score(r["scores"], metric)
        if value is None:
            continue
        values = spread.values(r["run"], value)
        s, basis = spread.of(r["run"])
        gap = _gap(values, (top,))
        out.append(Verdict(r["row"], best["row"], (sum(values) / len(values), top), gap, s, basis, classify(gap, s)))
    return out


def reference_values(reference: dict[str, Any], metric: str) -> dict[str, tuple[float, ...]]:
    """Row name -> the reference code's values over its seeds (benchmarks/reference_protocol.py)."""
    index = reference["metric_names"].index(metric)
    values: dict[str, list[float]] = {}
    for r in reference["rows"]:
        if r["scores"][index] is not None:
            values.setdefault(r["row"], []).append(r["scores"][index])
    return {k: tuple(v) for k, v in values.items()}


def against_reference(report: dict[str, Any], spread: Spread, reference: dict[str, Any]) -> list[Verdict]:
    """Each of our rows against the same row trained by the reference code at the same protocol:
    within its spread (ours is where the reference code lands), at its edge, or beyond it. s is
    the larger of our row's spread (rule 1) and the reference row's range over its seeds."""
    theirs = reference_values(reference, spread.metric)
    out = []
    for r in report["rows"]:
        value = _score(r["scores"], spread.metric)
        if value is None or r["row"] not in theirs:
            continue
        ours, ref = spread.values(r["run"], value), theirs[r["row"]]
        s, basis = spread.of(r["run"])
        if max(ref) - min(ref) > s:
            s, basis = max(ref) - min(ref), f"the reference's {len(ref)} seeds"
        gap = _gap(ours, ref)
        out.append(
            Verdict(
                r["row"],
                "reference code",
                (sum(ours) / len(ours), sum(ref) / len(ref)),
                gap,
                s,
                basis,
                classify(gap, s),
            )
        )
    return out


def reference_outcomes(report: dict[str, Any], spread: Spread, reference: dict[str, Any]) -> dict[tuple[str, str], str]:
    """The paper's comparisons judged on the reference code's rows by the same rule: where the
    reference code gives the same outcome as ours, the deviation is the protocol's."""
    theirs = reference_values(reference, spread.metric)
    index = report["metric_names"].index(spread.metric)
    rows = {r["row"]: r for r in report["rows"]}
    out = {}
    for a, b in combinations([n for n in rows if n in theirs and rows[n].get("paper")], 2):
        s = max(spread.of(rows[a]["run"])[0], spread.of(rows[b]["run"])[0])
        for name in (a, b):
            s = max(s, max(theirs[name]) - min(theirs[name]))
        gap = _gap(theirs[a], theirs[b])
        paper = (rows[a]["paper"][index], rows[b]["paper"][index])
        out[(a, b)] = outcome(paper, gap, classify(gap, s))
    return out


TOWARDS, AWAY, STILL = "towards the paper", "away from the paper", "no move beyond the spread"


def movement(report: dict[str, Any], spread: Spread, start: float = 2.0) -> list[dict[str, Any]]:
    """With longer training (report['curves']: a validation every epoch), does each of the
    paper's pairs move towards the paper's ordering? The pair's gap at epoch `start` (the short
    protocol's length) against its gap at the last validation; a move counts when it exceeds
    the pair's spread s (rule 1). Validation scores a fixed subset, so its figures are compared
    with each other only."""
    curves = report.get("curves") or {}
    index = report["metric_names"].index(spread.metric) if spread.metric in report["metric_names"] else None
    rows = {r["row"]: r for r in report["rows"] if r["row"] in curves and curves[r["row"]] and r.get("paper")}
    out = []
    for a, b in combinations(rows, 2):
        at = {}
        for name in (a, b):
            points = [p for p in curves[name] if p.get(spread.metric) is not None]
            early = next((p for p in points if p["epoch"] >= start - 1e-9), None)
            at[name] = (early, points[-1] if points else None)
        if None in (*at[a], *at[b]) or index is None:
            continue
        early = at[a][0][spread.metric] - at[b][0][spread.metric]
        late = at[a][1][spread.metric] - at[b][1][spread.metric]
        paper = round(rows[a]["paper"][index] - rows[b]["paper"][index], 2)
        s = max(spread.of(rows[a]["run"])[0], spread.of(rows[b]["run"])[0])
        change = late - early
        if round(abs(change), 3) <= round(s, 3) or paper == 0:
            verdict = STILL
        else:
            verdict = TOWARDS if (change > 0) == (paper > 0) else AWAY
        epochs = (at[a][0]["epoch"], at[a][1]["epoch"])
        out.append(
            {"a": a, "b": b, "epochs": epochs, "gaps": (early, late), "paper": paper, "spread": s, "verdict": verdict}
        )
    return out


def ceiling(report: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluator's ceiling: the real photos scored by the segmenter. A row that beats them on
    any score, or on some classes, shows where the segmenter cannot tell outputs from photos."""
    gt = next((r["scores"].get("fcn_ground_truth") for r in report["rows"] if "fcn_ground_truth" in r["scores"]), None)
    if gt is None or "class_iou" not in gt:
        return None
    names = ("pixel_acc", "class_acc", "class_iou")
    above: dict[str, list[str]] = {k: [] for k in names}
    classes: dict[str, int] = {}
    for r in report["rows"]:
        seg = r["scores"].get("segmentation") or r["scores"].get("fcn") or {}
        for k in names:
            if k in seg and seg[k] > gt[k]:
                above[k].append(r["row"])
        ours, truth = seg.get("per_class_iou"), gt.get("per_class_iou")
        if ours and truth:
            pairs = zip(ours, truth, strict=True)
            classes[r["row"]] = sum(1 for o, t in pairs if o is not None and t is not None and o > t)
    best = max(_score(r["scores"], "class_iou") or 0.0 for r in report["rows"])
    return {
        "ground_truth": [gt[k] for k in names],
        "rows_above": above,
        "classes_above": classes,
        "best_row_class_iou": best,
        "margin": gt["class_iou"] - best,
    }


def _signed(gap: float) -> str:
    return f"{round(gap, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"


def verdict_lines(report: dict[str, Any]) -> list[str]:
    """The report's Markdown section for report['verdicts'] (written by `judge`)."""
    judged = report.get("verdicts")
    if not judged:
        return []
    metric = judged["metric"]
    lines = [
        f"Verdicts by rule (`pix2pix.experiments.verdicts`), on {metric}: a gap is within the seed spread s "
        "(at most s), at its edge (at most 2 s) or beyond it. s is a row's range over the `seeds` set's "
        f"three seeds, the largest range measured ({judged['largest']:.3f}) for other labels -> photo rows "
        f"with L1, and {UNMEASURED_FACTOR:g} x that where no spread is measured. A row trained from several "
        "seeds counts by its nearest seed. Against the paper: reproduced = beyond the spread in the paper's "
        "direction (within it where the paper ties); not reproduced = beyond it the other way.",
        "",
    ]
    ref = "reference" in judged
    lines += [
        "| comparison | ours | gap | s (from) | verdict | paper | against the paper |"
        + (" reference code, same protocol |" if ref else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if ref else ""),
    ]
    for v in judged["comparisons"]:
        paper = f"{v['paper'][0]:.2f} / {v['paper'][1]:.2f}" if v["paper"] else "-"
        lines.append(
            f"| {v['a']} vs {v['b']} | {v['ours'][0]:.3f} / {v['ours'][1]:.3f} | {_signed(v['gap'])} | "
            f"{v['spread']:.3f} ({v['basis']}) | {v['verdict']} | {paper} | {v['outcome'] or '-'} |"
            + (f" {v.get('reference_outcome') or 'not trained yet'} |" if ref else "")
        )
    lines.append("")
    if ref:
        lines += [
            "Each row against the same row trained by the reference code (its own train.py, the same data, "
            "size, epochs, learning-rate rule and seed; benchmarks/reference_protocol.py), scored by the same "
            "scorer. Within the spread: ours lands where the reference code does.",
            "",
            "| row | ours | reference code | gap | s (from) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for v in judged["reference"]:
            lines.append(
                f"| {v['a']} | {v['ours'][0]:.3f} | {v['ours'][1]:.3f} | {_signed(v['gap'])} | "
                f"{v['spread']:.3f} ({v['basis']}) | {v['verdict']} |"
            )
        lines.append("")
    if judged.get("controls"):
        control = judged["controls"][0]["b"]
        beyond = [v["a"] for v in judged["controls"] if v["verdict"] == BEYOND and v["gap"] > 0]
        other = [f"{v['a']} ({v['gap']:+.3f}, {v['verdict']})" for v in judged["controls"] if v["a"] not in beyond]
        lines += [
            f"Against the strongest control ({control}): beyond the spread above it: "
            + (", ".join(beyond) or "none")
            + ("; not: " + ", ".join(other) if other else "")
            + ".",
            "",
        ]
    if judged.get("movement"):
        lines += [
            "Longer training, pair by pair: the gap on the validation subset at the short protocol's length "
            "(epoch 2) and at the last validation; a move counts when it exceeds the pair's spread s.",
            "",
            "| pair | paper's gap | gap at epoch | gap at epoch | s | with training |",
            "|---|---|---|---|---|---|",
        ]
        for m in judged["movement"]:
            (e0, e1), (g0, g1) = m["epochs"], m["gaps"]
            lines.append(
                f"| {m['a']} vs {m['b']} | {m['paper']:+.2f} | {_signed(g0)} ({e0:g}) | {_signed(g1)} ({e1:g}) | "
                f"{m['spread']:.3f} | {m['verdict']} |"
            )
        lines.append("")
    if judged.get("ceiling"):
        c = judged["ceiling"]
        above = [f"{k} ({', '.join(v)})" for k, v in c["rows_above"].items() if v]
        classes = [f"{k} {n}" for k, n in c["classes_above"].items() if n]
        lines += [
            "The evaluator's ceiling: the real photos score "
            + " / ".join(f"{x:.3f}" for x in c["ground_truth"])
            + f"; the best row stands {c['margin']:.3f} class IoU below them (the aim is at least 0.03). "
            + ("Rows above the real photos: " + "; ".join(above) + ". " if above else "No row beats them on a score. ")
            + ("Classes on which a row beats them: " + ", ".join(classes) + "." if classes else ""),
            "",
        ]
    return lines


def judge(
    report: dict[str, Any],
    seeds: dict[str, Any] | None,
    reference: dict[str, Any] | None = None,
    metric: str = "class_iou",
) -> dict[str, Any] | None:
    """report['verdicts'] for a report, from the seeds set's report (None: no spread measured, no
    verdicts) and, where given, the same rows trained by the reference code at the same protocol."""
    if seeds is None or report.get("set") == "seeds" or metric not in report["metric_names"]:
        return None
    spread = Spread.from_seeds(seeds, metric)
    if not spread.groups:
        return None
    comparisons = [v.to_json() for v in compare(report, spread)]
    judged = {
        "metric": metric,
        "largest": spread.largest,
        "unmeasured_factor": UNMEASURED_FACTOR,
        "comparisons": comparisons,
        "controls": [v.to_json() for v in against_controls(report, spread)],
        "ceiling": ceiling(report),
    }
    if report.get("curves"):
        judged["movement"] = movement(report, spread)
    same = reference is not None and (reference.get("set"), reference.get("protocol")) == (
        report.get("set"),
        report.get("protocol"),
    )
    if same and reference["rows"]:
        judged["reference"] = [v.to_json() for v in against_reference(report, spread, reference)]
        theirs = reference_outcomes(report, spread, reference)
        for v in comparisons:
            v["reference_outcome"] = theirs.get((v["a"], v["b"]))
    return judged
