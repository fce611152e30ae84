"""Drawing the report's figures: prepared numbers in, PNG bytes out.

What to draw — which entries, which metrics, the captions — is decided in
``bench.leaderboard.figures``; this module only lays out axes. Matplotlib runs through
``Figure`` and the Agg canvas, never ``pyplot``: no global state, so a notebook that builds a
report keeps its own backend. PNGs carry no ``Software`` stamp: same input, same bytes.
"""

from __future__ import annotations

import io
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.leaderboard.stats import Stat

DPI = 100


@dataclass
class Series:
    """One line: ``y[i]`` (over seeds) at ``x[i]``; ``selected[i]`` marks the chosen point."""

    label: str
    x: list[float] = field(default_factory=list)
    y: list[Stat] = field(default_factory=list)
    selected: list[bool] = field(default_factory=list)
    color: str | None = None


@dataclass
class Panel:
    """One axes of a curve figure; ``ref``, the baseline's statistic, is drawn as a band."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    ref: Stat | None = None


# --- curves: a metric against a hyperparameter or a severity --------------------------------


def curves_png(title: str, rows: list[list[Panel]], figure_legend: bool) -> bytes:
    """A grid of panels; ``figure_legend``: one legend for all, right of the grid."""
    ncols = max(len(r) for r in rows)
    fig = _figure(3.7 * ncols + (2.6 if figure_legend else 0.0), 2.7 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            if j < len(row):
                _draw_panel(axes[i, j], row[j], legend=not figure_legend)
            else:
                axes[i, j].set_visible(False)
    if figure_legend:
        labelled = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
        fig.legend(labelled.values(), labelled.keys(), loc="outside right upper", fontsize="small")
    fig.suptitle(_tex(_wrap(title)), fontsize="medium")
    return _png(fig)


def _draw_panel(ax: Axes, panel: Panel, legend: bool) -> None:
    """Error bars (95 % CI), a star on selected points, the baseline as a grey band."""
    xs: list[float] = []
    for s in panel.series:
        points = [(x, y, sel) for x, y, sel in zip(s.x, s.y, s.selected, strict=True) if y.n]
        if not points:
            continue
        x, mean = [p[0] for p in points], [p[1].mean for p in points]
        half = np.array([_half(p[1]) for p in points]).T
        bars = ax.errorbar(
            x, mean, yerr=half, marker="o", ms=4, capsize=3, color=s.color, label=_tex(s.label)
        )
        stars = [(px, py.mean) for px, py, sel in points if sel]
        for px, py in stars:
            ax.plot([px], [py], "*", ms=14, color=bars[0].get_color(), mec="black")
        xs += x
    if panel.ref is not None and panel.ref.n:
        ax.axhline(panel.ref.mean, color="gray", ls=":", lw=1, label="baseline")
        if panel.ref.has_ci:
            ax.axhspan(panel.ref.lo, panel.ref.hi, color="gray", alpha=0.2, lw=0)  # type: ignore[arg-type]
    _log_x(ax, xs)
    ax.set_title(_tex(panel.title), fontsize="medium")
    ax.set(xlabel=_tex(panel.xlabel), ylabel=_tex(panel.ylabel))
    ax.grid(alpha=0.3)
    if legend and (len(panel.series) > 1 or panel.ref is not None):
        ax.legend(fontsize="x-small")


def _half(s: Stat) -> tuple[float, float]:
    return (s.mean - s.lo, s.hi - s.mean) if s.has_ci else (0.0, 0.0)  # type: ignore[operator]


def _log_x(ax: Axes, xs: list[float]) -> None:
    """Log scale for grids spanning a decade or more (1e-5 … 1e-2), symlog when 0 is in it."""
    positive = [x for x in xs if x > 0]
    if len(positive) < 2 or max(positive) / min(positive) < 10 or min(xs) < 0:
        return
    if len(positive) == len(xs):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=min(positive))


# --- from predictions: reliability diagrams and uncertainty histograms ----------------------


def reliability_png(panels: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """``bench.plots.reliability_diagram``, the per-run figure, read back as bytes."""
    from bench.plots import reliability_diagram

    with tempfile.TemporaryDirectory() as tmp:  # it writes a file (atomically)
        path = Path(tmp) / "reliability.png"
        reliability_diagram(panels, path, title=_tex(_wrap(title)))
        return path.read_bytes()


def histograms_png(panels: list[tuple[str, str, dict[str, np.ndarray]]], title: str) -> bytes:
    """One axes per (title, score, label -> values): the groups' densities on shared bins, the
    first group (the in-distribution test set) filled."""
    ncols = min(4, len(panels))
    fig = _figure(4.0 * ncols, 3.0 * -(-len(panels) // ncols) + 0.5)
    axes = fig.subplots(-(-len(panels) // ncols), ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, score, groups) in zip(axes.flat, panels, strict=False):
        xlabel, shown = _score_axis(score, groups)
        edges = np.histogram_bin_edges(np.concatenate(list(shown.values())), bins=30)
        for i, (label, values) in enumerate(shown.items()):
            ax.hist(
                values,
                bins=edges,
                density=True,
                histtype="stepfilled" if i == 0 else "step",
                alpha=0.35 if i == 0 else 1.0,
                lw=1.5,
                label=_tex(label),
            )
        ax.set_title(_tex(name), fontsize="medium")
        ax.set(xlabel=_tex(xlabel), ylabel="density")
        ax.legend(fontsize="x-small")
    fig.suptitle(_tex(_wrap(title)), fontsize="medium")
    return _png(fig)


def _score_axis(score: str, groups: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    """``max_prob`` holds −max probability: shown as 1 − max probability; variances span
    decades: shown as log10."""
    if score == "max_prob":
        return "1 − max probability", {k: 1.0 + v for k, v in groups.items()}
    if score.startswith("var"):
        return f"log10 {score}", {k: np.log10(np.maximum(v, 1e-12)) for k, v in groups.items()}
    return score, groups


# --- matplotlib without pyplot ---------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself: rendering needs no pyplot backend
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})  # same input, same bytes
    return buffer.getvalue()


def _tex(text: str) -> str:
    """Config strings are text, not mathtext: a ``$`` in an option stays a dollar."""
    return text.replace("$", r"\$")


def _wrap(text: str, width: int = 120) -> str:
    return textwrap.fill(text, width)
