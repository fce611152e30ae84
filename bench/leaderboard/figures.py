"""The report's figures: which ones a leaderboard gets, the numbers each one needs, its caption.

Curves (a metric over a method's grid, the L1 path, metrics over shift severity) come from the
records: mean over seeds with the 95 % Student-t interval as error bars, the numbers of the
tables. Reliability diagrams and uncertainty histograms come from the runs' ``predictions.npz``
(each board's leader and the baseline), pooled over the seeds of the configuration. A figure
is made only when its data exists. Drawing them is ``bench.leaderboard.plots``.

Only the report and wandb paths import this module (numpy, matplotlib).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from bench.leaderboard import format as fmt
from bench.leaderboard.columns import UNDERFIT
from bench.leaderboard.model import PREDICTIONS, BoardSection, Entry, Leaderboard
from bench.leaderboard.plots import Panel, Series, curves_png, histograms_png, reliability_png
from bench.leaderboard.stats import summarize

L1_KEYS = ("l1.strength", "elastic_net.l1_strength")
ARRAY_PREFIX = {"deterministic": "", "mc": "mc_", "ts": "ts_", "ens": "ens_"}  # in npz keys
NAMES = {"deterministic": "deterministic", "mc": "MC dropout", "ts": "temperature-scaled"}
NAMES["ens"] = "ensemble"
SCORES = ("max_prob", "variance", "mutual_info", "var_epistemic")  # histogrammed, in order
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Plot:
    """One figure: ``key`` names it within its section (``gap_vs_strength``, ``shift``)."""

    section_index: int
    section: str  # the section's label
    key: str
    title: str
    caption: str
    png: bytes


def report_plots(lb: Leaderboard, max_sections: int) -> list[Plot]:
    """Every figure of the first ``max_sections`` sections, in section order."""
    calibration = {part.section.key: part for part in lb.calibration.sections}
    cache: dict[str, Arrays | None] = {}
    out: list[Plot] = []
    for index, gap in enumerate(lb.gap.sections[:max_sections]):
        cal = calibration[gap.section.key]
        entries = [e for e in lb.entries if e.section.key == gap.section.key]
        figures = [*_grid_plots(lb, gap, entries), *_shift_plot(cal)]
        for n, (role, entry) in enumerate(featured(lb, gap, cal)):
            loaded = [a for a in (_load(r.run_dir, cache) for r in entry.runs) if a is not None]
            what = f"{role}: {entry.method.label} {_hparams(entry)}".strip()
            pooled = f"pooled over the {len(loaded)} of {len(entry.runs)} seeds with predictions"
            panels = reliability_panels(loaded)
            if panels:
                text = (
                    f"Reliability of the {what}, {pooled}: accuracy per confidence bin against "
                    "the diagonal, samples per bin below; one panel per prediction type."
                )
                png = reliability_png(panels, what)
                figures.append((f"reliability_{n}", f"Reliability: {what}", text, png))
            panels = _histogram_panels(loaded, entry)
            if panels:
                text = (
                    f"Uncertainty scores of the {what}, {pooled}: the test set (in-distribution) "
                    "against each OOD partner, higher = more uncertain; AUROC from the records."
                )
                png = histograms_png(panels, what)
                figures.append((f"ood_{n}", f"Uncertainty in vs out: {what}", text, png))
        out += [Plot(index, gap.section.label, *figure) for figure in figures]
    return out


def featured(lb: Leaderboard, gap: BoardSection, cal: BoardSection) -> list[tuple[str, Entry]]:
    """The entries whose predictions are drawn: each board's leader and the baseline."""
    leaders = [
        (role, next((r.entry for r in part.rows if r.ranked), None))
        for role, part in (("calibration leader", cal), ("gap leader", gap))
    ]
    merged: dict[int, tuple[list[str], Entry]] = {}
    for role, entry in [*leaders, (f"baseline ({lb.options.baseline})", gap.baseline)]:
        if entry is not None:
            merged.setdefault(id(entry), ([], entry))[0].append(role)
    return [(" and ".join(roles), entry) for roles, entry in merged.values()]


def _hparams(entry: Entry) -> str:
    return ", ".join(f"{k}={fmt.number(v)}" for k, v in entry.shown_hparams().items())


# --- curves from the records ---------------------------------------------------------------


def _grid_plots(lb: Leaderboard, gap: BoardSection, entries: list[Entry]) -> list[tuple]:
    """The ranking metric (and the underfitting one) over each swept method's grid; the L1
    path (sparsity and test loss over λ)."""
    sort, fit, base = lb.gap.sort, UNDERFIT[gap.section.task][0], gap.baseline
    select = lb.options.select
    ref = {k: base.stat(k) if base else None for k in (sort, fit, "test/loss")}
    by_method: dict[str, list[Entry]] = {}
    for e in entries:
        if e.method.swept:
            by_method.setdefault(e.method.label, []).append(e)
    methods = list(by_method.items())
    rows = [
        [
            Panel(
                name if metric == sort else "",
                es[0].method.short(es[0].method.swept[0]),
                metric,
                _series(es, metric, es[0].method.swept[0]),
                ref[metric],
            )
            for name, es in chunk
        ]
        for chunk in (methods[i : i + 4] for i in range(0, len(methods), 4))
        for metric in dict.fromkeys((sort, fit))  # one row when --sort is the fit metric
    ]
    out = []
    if rows:
        text = (
            f"{sort} (upper row) and {fit} (lower row) at every grid point of each swept method: "
            f"mean over seeds, error bars the 95 % CI; ★ the point selected on {select}; grey: "
            "the baseline's mean and CI."
        )
        png = curves_png(gap.section.label, rows, figure_legend=False)
        out.append(("gap_vs_strength", f"{sort} vs hyperparameter", text, png))
    l1 = [(e, k) for e in entries for k in L1_KEYS if k in e.hparams]
    if l1:
        row = [
            Panel("", "λ (L1 strength)", m, ref=ref.get(m) if m == "test/loss" else None)
            for m in ("sparsity", "test/loss")
        ]
        lines: dict[tuple[str, str], list[Entry]] = {}  # (λ key, method) -> its entries
        for e, key in l1:
            lines.setdefault((key, e.method.label), []).append(e)
        for (key, _), es in lines.items():
            for panel in row:
                panel.series += _series(es, panel.ylabel, key)
        text = (
            "The L1 path: the fraction of exactly-zero weights and the test loss against λ, mean "
            f"over seeds with 95 % CI; ★ the λ selected on {select}."
        )
        png = curves_png(gap.section.label, [row], figure_legend=True)
        out.append(("l1_path", "L1 path: sparsity and test loss vs λ", text, png))
    return out


def _series(entries: list[Entry], metric: str, x_key: str) -> list[Series]:
    """x is ``x_key``; one series per value of the method's other swept hyperparameters."""
    lines: dict[str, Series] = {}
    for e in sorted((e for e in entries if x_key in e.hparams), key=lambda e: e.hparams[x_key]):
        rest = ", ".join(
            f"{e.method.short(k)}={fmt.number(e.hparams[k])}"
            for k in e.method.swept
            if k != x_key and k in e.hparams
        )
        line = lines.setdefault(rest, Series(f"{e.method.label} {rest}".strip()))
        line.x.append(e.hparams[x_key])
        line.y.append(e.stat(metric))
        line.selected.append(e.selected)
    return list(lines.values())


def _shift_plot(cal: BoardSection) -> list[tuple]:
    """Accuracy and ECE (regression: RMSE and NLL) over severity, mean over corruptions: one
    column per prediction type, one colour per selected method."""
    metrics = ("acc", "ece") if cal.section.task == "classification" else ("rmse", "nll")
    colors: dict[str, str] = {}
    columns: dict[str, list[Panel]] = {}
    corruptions: set[str] = set()
    for row in (r for r in cal.rows if r.entry.selected and r.prediction in PREDICTIONS):
        label, p = f"{row.method.label} {fmt.hparams(row)}".strip(), PREDICTIONS[row.prediction]
        for i, metric in enumerate(metrics):
            per_run = []
            for run in row.entry.runs:
                means, seen = severity_means(run.metrics, p, metric)
                clean = run.value(f"{p}test/{metric}")
                per_run.append({0.0: clean, **means} if means and clean is not None else means)
                corruptions |= seen
            levels = sorted({s for per in per_run for s in per})
            if not any(s > 0 for s in levels):
                continue
            stats = [summarize([per[s] for per in per_run if s in per]) for s in levels]
            color = colors.setdefault(label, f"C{len(colors) % 10}")
            column = columns.setdefault(
                row.prediction,
                [
                    Panel(NAMES[row.prediction] if j == 0 else "", "severity (0 = clean)", m)
                    for j, m in enumerate(metrics)
                ],
            )
            column[i].series.append(Series(label, levels, stats, [False] * len(levels), color))
    if not columns:
        return []
    rows = [[columns[k][i] for k in PREDICTIONS if k in columns] for i in range(len(metrics))]
    text = (
        f"{' and '.join(metrics)} under dataset shift ({', '.join(sorted(corruptions))}) against "
        "severity, averaged over the corruptions; one column per prediction type, one colour per "
        "selected method; mean over seeds with 95 % CI."
    )
    return [("shift", "Dataset shift", text, curves_png(cal.section.label, rows, True))]


def severity_means(
    metrics: dict[str, float | None], prefix: str, metric: str
) -> tuple[dict[float, float], set[str]]:
    """severity -> mean over corruptions of ``{prefix}shift/<corruption>/<severity>/<metric>``
    (``shift/mean/...`` summaries skipped), and the corruptions seen."""
    values: dict[float, list[float]] = {}
    seen: set[str] = set()
    head = f"{prefix}shift/"
    for key, value in metrics.items():
        parts = key[len(head) :].split("/") if key.startswith(head) else []
        if len(parts) != 3 or parts[2] != metric or parts[0] == "mean":
            continue
        try:
            severity = float(parts[1])
        except ValueError:  # not a severity level
            continue
        if isinstance(value, int | float) and np.isfinite(value):
            values.setdefault(severity, []).append(float(value))
            seen.add(parts[0])
    return {s: float(np.mean(v)) for s, v in values.items()}, seen


# --- predictions.npz: reliability and uncertainty histograms ------------------------------


def _load(run_dir: str, cache: dict[str, Arrays | None]) -> Arrays | None:
    """A run's predictions.npz, None when it has none or it is broken (a broken file is
    reported, with its reason, among the left-out files by the ens-of-seeds step)."""
    if run_dir not in cache:
        path = os.path.join(run_dir, "predictions.npz")
        cache[run_dir] = None
        if os.path.exists(path):
            try:
                with np.load(path, allow_pickle=False) as npz:
                    cache[run_dir] = {k: npz[k] for k in npz.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                cache[run_dir] = None
    return cache[run_dir]


def reliability_panels(loaded: list[Arrays]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Panel name -> (probs, labels): each prediction type pooled over seeds, and the seed
    ensemble (mean of the seeds' probabilities) when two or more seeds share a test set."""
    panels = {}
    for prediction, prefix in ARRAY_PREFIX.items():
        have = [a for a in loaded if f"{prefix}probs" in a and "labels" in a]
        if have:
            probs = np.concatenate([a[f"{prefix}probs"] for a in have])
            panels[NAMES[prediction]] = (probs, np.concatenate([a["labels"] for a in have]))
    plain = [a for a in loaded if "probs" in a and "labels" in a]
    if len(plain) >= 2 and all(
        a["probs"].shape == plain[0]["probs"].shape
        and np.array_equal(a["labels"], plain[0]["labels"])
        for a in plain
    ):
        mean = np.mean([a["probs"].astype(np.float64) for a in plain], axis=0)
        panels[f"ens-of-seeds ({len(plain)} seeds)"] = (mean, plain[0]["labels"])
    return panels


def ood_keys(keys: set[str], prefix: str) -> dict[tuple[str, str], str]:
    """(partner, score) -> npz key ``{prefix}ood_<partner>_<score>``. Partners and scores both
    hold underscores (``fashion_mnist``, ``expected_entropy``), so the score is the longest
    of the prefix's test-set scores (``{prefix}scores_<score>``) that ends the key."""
    head = f"{prefix}scores_"
    scores = sorted((k[len(head) :] for k in keys if k.startswith(head)), key=len, reverse=True)
    out = {}
    for key in sorted(k for k in keys if k.startswith(f"{prefix}ood_")):
        rest = key[len(prefix) + 4 :]
        score = next((s for s in scores if rest.endswith(f"_{s}")), None)
        if score is not None:
            out[(rest[: -len(score) - 1], score)] = key
    return out


def _histogram_panels(loaded: list[Arrays], entry: Entry) -> list[tuple[str, str, dict]]:
    """(title, score, label -> pooled scores): per prediction type and shown score, the test
    set against each OOD partner (AUROC, mean over seeds, from the records)."""
    keys = set().union(*(a.keys() for a in loaded)) if loaded else set()
    panels = []
    for prediction, prefix in ARRAY_PREFIX.items():
        pairs = ood_keys(keys, prefix)
        for score in SCORES:
            groups = {"test (in-distribution)": _pool(loaded, f"{prefix}scores_{score}")}
            for (partner, s), key in pairs.items():
                if s == score:
                    auroc = entry.stat(f"{PREDICTIONS[prediction]}ood/{partner}/{score}/auroc")
                    label = f"{partner} (AUROC {fmt.number(auroc.mean, 3)})" if auroc.n else partner
                    groups[label] = _pool(loaded, key)
            if len(groups) > 1 and len(groups["test (in-distribution)"]):
                panels.append((f"{NAMES[prediction]}: {score}", score, groups))
    return panels


def _pool(loaded: list[Arrays], key: str) -> np.ndarray:
    return np.concatenate([a[key].astype(np.float64).ravel() for a in loaded if key in a] or [[]])
