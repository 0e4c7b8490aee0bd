"""`pix2pix study report`: the paper's "% Turkers labeled real", with uncertainty, per method.

The measure: over the non-practice trials, the fraction where the participant picked the real
image as the fake one, i.e. judged the generated image real (Tables 4-5). 50% is chance: the
fakes cannot be told from real images.

Statistics, and why:

- Unit: the participant (session). Trials of one participant are not independent (people differ
  in skill and in bias), so the uncertainty comes from resampling participants, not trials.
- Estimate: pooled over participants, judged-real trials / trials (with complete sessions, all of
  the same length, this is also the mean of the participants' fractions).
- Interval: nonparametric bootstrap over participants (default 10,000 resamples, seeded):
  the standard error is the standard deviation of the resampled estimates, the 95% interval their
  2.5th and 97.5th percentiles. Reported like the paper's "x% ± y%" with ± the standard error
  (the paper does not say what its ± is; its values fit a standard error); the 95% interval and
  its half-width are given beside it.
- Difference between two methods: a two-sided permutation test over participants (the method
  labels of the two methods' participants shuffled; exact over all relabellings when there are
  at most as many as the resample count). Fisher's exact or chi-squared tests on trial counts
  would treat the ~40 trials of each participant as independent and overstate significance.
  With more than two methods, Holm-adjusted p-values are given too.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .design import Study, load_study
from .store import RESPONSES_FILE, SESSIONS_FILE, read_jsonl

DEFAULT_RESAMPLES = 10_000
PAPER_REFERENCE = (
    # (experiment, method, % judged real, the paper's ±)
    ("map -> photo (Table 4)", "L1", 0.8, 0.3),
    ("map -> photo (Table 4)", "L1+cGAN", 18.9, 2.5),
    ("photo -> map (Table 4)", "L1", 2.8, 1.0),
    ("photo -> map (Table 4)", "L1+cGAN", 6.1, 1.3),
    ("colorization (Table 5)", "L1+cGAN", 22.5, 1.6),
)


@dataclass
class Participant:
    session: str
    participant: str
    method: str
    worker_id: str | None
    total: int  # trials in the session, practice included
    exposure_ms: int
    judged_real: int = 0  # non-practice trials where the real image was picked as fake
    trials: int = 0  # non-practice trials answered
    answered: int = 0  # all trials answered, practice included
    answered_left: int = 0  # non-practice
    response_ms: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.answered >= self.total


def load_participants(root: str | Path) -> tuple[Study, list[Participant], list[str]]:
    """Every session of the study with its counts, and warnings about the files."""
    study = load_study(root)
    warnings = []
    sessions, bad = read_jsonl(study.root / SESSIONS_FILE)
    if bad:
        warnings.append(f"{SESSIONS_FILE}: skipped unreadable line(s) {bad}")
    people: dict[str, Participant] = {}
    for r in sessions:
        try:
            people[r["session"]] = Participant(
                session=r["session"],
                participant=r["participant"],
                method=r["method"],
                worker_id=r.get("worker_id"),
                total=int(r["practice"]) + int(r["trials"]),
                exposure_ms=int(r["exposure_ms"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            warnings.append(f"{SESSIONS_FILE}: skipped a malformed line ({err!r})")
    responses, bad = read_jsonl(study.root / RESPONSES_FILE)
    if bad:
        warnings.append(f"{RESPONSES_FILE}: skipped unreadable line(s) {bad}")
    seen = set()
    orphans = 0
    for r in responses:
        p = people.get(r.get("session"))
        key = (r.get("session"), r.get("trial"))
        if p is None:
            orphans += 1
            continue
        if key in seen:  # the server never writes these; the first answer stands if one appears
            continue
        seen.add(key)
        p.answered += 1
        if r.get("practice"):
            continue
        p.trials += 1
        p.judged_real += not r.get("correct")
        p.answered_left += r.get("answer") == "left"
        if isinstance(r.get("response_ms"), int | float):
            p.response_ms.append(float(r["response_ms"]))
    if orphans:
        warnings.append(f"{RESPONSES_FILE}: {orphans} answer(s) of sessions missing from {SESSIONS_FILE} skipped")
    unknown = sorted({p.method for p in people.values()} - set(study.methods))
    if unknown:
        warnings.append(f"sessions of methods not in study.json: {', '.join(unknown)}")
    return study, list(people.values()), warnings


def pooled_fraction(judged_real: np.ndarray, trials: np.ndarray) -> float:
    return float(judged_real.sum() / trials.sum())


def bootstrap_fraction(
    judged_real: np.ndarray, trials: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(standard error, 2.5th percentile, 97.5th percentile) of the pooled fraction, resampling
    participants with replacement."""
    m = len(trials)
    estimates = np.empty(resamples)
    for start in range(0, resamples, 1000):  # bounded memory: 1000 x m indices at a time
        stop = min(start + 1000, resamples)
        idx = rng.integers(0, m, size=(stop - start, m))
        estimates[start:stop] = judged_real[idx].sum(axis=1) / trials[idx].sum(axis=1)
    se = float(estimates.std(ddof=1)) if resamples > 1 else 0.0
    low, high = np.percentile(estimates, [2.5, 97.5])
    return se, float(low), float(high)


def permutation_test(
    judged_a: np.ndarray,
    trials_a: np.ndarray,
    judged_b: np.ndarray,
    trials_b: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, bool, int]:
    """Two-sided permutation test of "the two methods' participants come from one population",
    statistic: the difference of pooled fractions. Returns (p, exact, relabellings used); exact
    when all C(m_a + m_b, m_a) relabellings fit in `resamples`, else Monte Carlo with p = (1 + hits)
    / (1 + resamples)."""
    judged = np.concatenate([judged_a, judged_b]).astype(float)
    trials = np.concatenate([trials_a, trials_b]).astype(float)
    m_a, m = len(judged_a), len(judged_a) + len(judged_b)
    observed = abs(pooled_fraction(judged_a, trials_a) - pooled_fraction(judged_b, trials_b))
    tolerance = 1e-12  # relabellings that tie the observed difference count as extreme
    if math.comb(m, m_a) <= resamples:
        groups = np.array(list(itertools.combinations(range(m), m_a)), dtype=np.int64)
        exact, count = True, len(groups)
    else:
        groups = np.argsort(rng.random((resamples, m)), axis=1)[:, :m_a]
        exact, count = False, resamples
    in_a = np.zeros((len(groups), m), dtype=bool)
    np.put_along_axis(in_a, groups, True, axis=1)
    k_a, n_a = in_a @ judged, in_a @ trials
    k_b, n_b = judged.sum() - k_a, trials.sum() - n_a
    hits = int((np.abs(k_a / n_a - k_b / n_b) >= observed - tolerance).sum())
    p = hits / count if exact else (hits + 1) / (count + 1)
    return float(p), exact, count


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all pairs)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def build_report(
    root: str | Path, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, include_incomplete: bool = False
) -> dict[str, Any]:
    """The report as a JSON-ready dict (fractions in 0-1; see `format_markdown`).

    Example:
        >>> report = build_report("study", resamples=10_000, seed=0)  # doctest: +SKIP
        >>> report["methods"][0]["judged_real"], report["methods"][0]["se"]  # doctest: +SKIP
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    study, people, warnings = load_participants(root)
    by_method: dict[str, list[Participant]] = defaultdict(list)
    for p in people:
        by_method[p.method].append(p)
    methods, arrays = [], {}
    for i, name in enumerate(study.methods):
        started = by_method.get(name, [])
        complete = [p for p in started if p.complete]
        used = [p for p in (started if include_incomplete else complete) if p.trials > 0]
        entry: dict[str, Any] = {
            "method": name,
            "participants": len(used),
            "sessions_started": len(started),
            "sessions_complete": len(complete),
            "trials": sum(p.trials for p in used),
            "judged_real_trials": sum(p.judged_real for p in used),
            "judged_real": None,
            "se": None,
            "ci95": None,
            "ci95_half_width": None,
            "answered_left": None,
            "median_response_ms": None,
            "exposure_ms": sorted({p.exposure_ms for p in used}),
        }
        if used:
            k = np.array([p.judged_real for p in used], dtype=float)
            n = np.array([p.trials for p in used], dtype=float)
            arrays[name] = (k, n)
            se, low, high = bootstrap_fraction(k, n, resamples, np.random.default_rng([seed, i]))
            times = [t for p in used for t in p.response_ms]
            entry.update(
                judged_real=pooled_fraction(k, n),
                se=se,
                ci95=[low, high],
                ci95_half_width=(high - low) / 2,
                answered_left=sum(p.answered_left for p in used) / entry["trials"],
                median_response_ms=float(np.median(times)) if times else None,
            )
            if len(used) < 2:
                warnings.append(f"{name}: one participant: no uncertainty can be estimated")
        methods.append(entry)

    comparisons = []
    names = [m["method"] for m in methods if m["method"] in arrays]
    for i, (a, b) in enumerate(itertools.combinations(names, 2)):
        (k_a, n_a), (k_b, n_b) = arrays[a], arrays[b]
        p, exact, count = permutation_test(k_a, n_a, k_b, n_b, resamples, np.random.default_rng([seed, 1000 + i]))
        comparisons.append(
            {
                "a": a,
                "b": b,
                "difference": pooled_fraction(k_a, n_a) - pooled_fraction(k_b, n_b),
                "p_value": p,
                "exact": exact,
                "relabellings": count,
            }
        )
    for c, adjusted in zip(comparisons, holm([c["p_value"] for c in comparisons])):
        c["p_holm"] = adjusted

    return {
        "study": str(study.root),
        "question": study.question,
        "measure": "fraction of non-practice trials where the participant picked the real image as fake "
        "(judged the generated image real): the paper's '% Turkers labeled real'",
        "pairing": study.pairing,
        "protocol": study.raw.get("protocol"),
        "include_incomplete": include_incomplete,
        "uncertainty": {
            "method": "bootstrap over participants (pooled fraction re-estimated on each resample)",
            "resamples": resamples,
            "seed": seed,
            "plus_minus": "standard error (standard deviation of the bootstrap estimates)",
            "ci95": "percentile interval (2.5th, 97.5th) of the bootstrap estimates",
        },
        "test": {
            "method": "two-sided permutation test over participants; statistic: difference of pooled fractions",
            "why": "trials of one participant are not independent, so tests on trial counts (Fisher, chi-squared) "
            "would overstate significance",
            "multiple_comparisons": "Holm-adjusted p-values over all pairs",
        },
        "methods": methods,
        "comparisons": comparisons,
        "paper": [
            {"experiment": e, "method": m, "judged_real_percent": v, "plus_minus": pm}
            for e, m, v, pm in PAPER_REFERENCE
        ],
        "warnings": warnings,
    }


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table of methods, one of pairwise differences, the paper's numbers."""
    u = report["uncertainty"]
    exposures = sorted({ms for m in report["methods"] for ms in m["exposure_ms"]})
    exposure = ", ".join(f"{ms} ms" for ms in exposures) or "-"
    lines = [
        f"# Perceptual study: {Path(report['study']).name}",
        "",
        f'Question: "{report["question"]}" Figure: the fraction of non-practice trials where the participant '
        "picked the real image as fake, i.e. judged the generated image real (the paper's \"% Turkers labeled "
        f'real"; 50% = indistinguishable). Pairing: {report["pairing"]}; exposure: {exposure}.',
        "",
        "| method | judged real ± SE | 95% CI | ± 95% CI half-width | participants | trials | answered left |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report["methods"]:
        if m["judged_real"] is None:
            lines.append(f"| {m['method']} | - | - | - | 0 | 0 | - |")
            continue
        lines.append(
            f"| {m['method']} | {_pct(m['judged_real'])} ± {_pct(m['se'])} | {_pct(m['ci95'][0])} to "
            f"{_pct(m['ci95'][1])} | ± {_pct(m['ci95_half_width'])} | {m['participants']} | {m['trials']} | "
            f"{_pct(m['answered_left'], 0)} |"
        )
    who = (
        "all sessions with at least one non-practice answer"
        if report["include_incomplete"]
        else "complete sessions only"
    )
    lines += [
        "",
        f"± is the bootstrap standard error; 95% CI: bootstrap percentile interval ({u['resamples']:,} resamples of "
        f"participants, seed {u['seed']}). Participants: {who} ("
        + "; ".join(
            f"{m['method']}: {m['sessions_complete']} complete of {m['sessions_started']} started"
            for m in report["methods"]
        )
        + "). Practice trials are not counted.",
    ]
    if report["comparisons"]:
        lines += [
            "",
            "## Differences between methods",
            "",
            "| methods | difference | p (two-sided) | p (Holm) | test |",
            "|---|---|---|---|---|",
        ]
        for c in report["comparisons"]:
            kind = (
                f"exact, all {c['relabellings']:,} relabellings"
                if c["exact"]
                else f"{c['relabellings']:,} random relabellings"
            )
            lines.append(
                f"| {c['a']} vs {c['b']} | {100 * c['difference']:+.1f} points | {_p(c['p_value'])} | "
                f"{_p(c['p_holm'])} | permutation over participants, {kind} |"
            )
        lines += [
            "",
            "Permutation test over participants, not Fisher/chi-squared on trial counts: a participant's trials are "
            "not independent, and trial-level tests would overstate significance.",
        ]
    lines += [
        "",
        "## The paper's figures (% Turkers labeled real, ± as printed)",
        "",
        "| experiment | method | judged real |",
        "|---|---|---|",
    ]
    lines += [f"| {e} | {m} | {v}% ± {pm}% |" for e, m, v, pm in PAPER_REFERENCE]
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"
