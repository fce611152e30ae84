"""The reliability diagram: is a model right as often as it is confident?

One panel per prediction method, side by side. Each panel bins the top-label confidence into
equal-width bins and draws, per bin, the accuracy as a bar against the diagonal (perfect
calibration), the gap between accuracy and mean confidence shaded, and under it the number of
samples per bin (a bar far from the diagonal matters only if the bin holds many samples; the
panels share the count axis, so they compare at a glance). The bins and the ECE come from
``bench.metrics``, so the picture shows exactly what ``results.json`` reports.

Matplotlib is used through ``Figure`` and the Agg canvas directly, never through ``pyplot``:
that leaves pyplot's global state alone, so importing or calling this never changes the
backend of a user's interactive session (a notebook keeps its inline plots).

Every run draws one (a population of 100 members draws 100), so it is built for speed: ~4×
faster than the straightforward figure, each choice below measured. Building a figure costs
more than drawing the bars: every axes, tick and text is a Python object costing ~0.4 ms or
more. So the *frame* (axes, ticks, axis labels, diagonal, legend) is built once per layout and
kept (``_frame``); a call only adds the bars, sets the titles and the count axis, renders, and
removes the bars again. Also: fixed margins instead of constrained layout (which draws the
figure an extra time), each bar series one collection instead of a patch per bar, ticks only
where read (the accuracy axes leave the confidence ticks to the count axes just below), and
fast PNG compression (Pillow's default level costs more than the drawing).
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from bench.atomic import write_bytes_atomic
from bench.metrics import ECE_BINS, expected_calibration_error, reliability

PANEL_WIDTH, FIGURE_HEIGHT, DPI = 3.6, 4.6, 110  # inches, inches, pixels per inch
# Fixed margins in inches: tick and axis labels on the left and at the bottom, the two-line
# panel titles and each line of the suptitle on top.
LEFT, RIGHT, BOTTOM, PANEL_GAP, ROW_GAP = 0.62, 0.15, 0.5, 0.4, 0.2
PANEL_TITLE, SUPTITLE_LINE = 0.5, 0.22
UNIT_TICKS = np.linspace(0.0, 1.0, 6)  # 0, 0.2, … 1 on the confidence and accuracy axes
UNIT_LABELS = [f"{t:.1f}" for t in UNIT_TICKS]
PNG_OPTIONS = {"compress_level": 1}
EDGE = {"edgecolor": "black", "linewidth": 0.5}
GAP = {"facecolor": "tab:red", "edgecolor": "tab:red", "linewidth": 0.5, "alpha": 0.35}
GAP_HATCH = "//"

_drawing = threading.Lock()  # the kept frames are shared: one call draws at a time


def reliability_diagram(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    n_bins: int = ECE_BINS,
    title: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Draw one reliability panel per entry of ``panels`` into the PNG ``path`` (atomically).

    ``panels`` maps a method's name ("deterministic", "MC dropout" ...) to its (probs (N, K),
    labels (N,)). Returns, per panel, the bins drawn: ``bench.metrics.reliability``'s
    ``edges``, ``counts``, ``confidence`` and ``accuracy`` (NaN for empty bins).
    """
    if not panels:
        raise ValueError("reliability_diagram needs at least one panel")
    # The ECE of results.json always uses ECE_BINS bins; say so if the bars differ.
    ece_label = "ECE" if n_bins == ECE_BINS else f"ECE ({ECE_BINS} bins)"
    drawn, titles = {}, []
    for name, (probs, labels) in panels.items():  # all checked before the frame is touched
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        if probs.ndim != 2 or labels.shape != (len(probs),):
            raise ValueError(
                f"panel {name!r}: expected probs (N, K) and labels (N,), "
                f"got {probs.shape} and {labels.shape}"
            )
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
        drawn[name] = reliability(confidence, correct, n_bins)
        # results.json's test/ece: classification_metrics computes exactly this.
        ece = expected_calibration_error(confidence, correct, ECE_BINS)
        titles.append(f"{name}\n{ece_label} = {ece:.4f}   N = {len(probs)}")
    with _drawing:
        frame = _frame(len(panels), title.count("\n") + 1 if title else 0)
        png = frame.render(list(drawn.values()), titles, title)
    write_bytes_atomic(Path(path), png)
    return drawn


@dataclass
class _Frame:
    """A figure with everything but the data: ``render`` fills it in, draws, and empties it."""

    fig: Figure
    axes: np.ndarray  # (2, panels): accuracy axes on top, count axes below
    suptitle: Text | None

    def render(
        self, bins: list[dict[str, np.ndarray]], titles: list[str], title: str | None
    ) -> bytes:
        """The PNG bytes of the diagram of ``bins`` (one per panel) under these titles."""
        try:
            for (top, bottom), panel, panel_title in zip(self.axes.T, bins, titles, strict=True):
                _add_bars(top, bottom, panel)
                top.title.set_text(panel_title)
            _set_count_axis(self.axes[1, 0], max(int(b["counts"].max()) for b in bins))
            if self.suptitle is not None:
                self.suptitle.set_text(title)
            buffer = io.BytesIO()
            self.fig.savefig(buffer, format="png", pil_kwargs=PNG_OPTIONS)
            return buffer.getvalue()
        finally:  # the next call starts from the empty frame, even after an error
            for ax in self.axes.flat:
                for collection in list(ax.collections):
                    collection.remove()


@functools.lru_cache(maxsize=4)
def _frame(n_panels: int, title_lines: int) -> _Frame:
    """The frame for ``n_panels`` columns and a suptitle of ``title_lines`` lines (0: none),
    built on first use and kept (see the module docstring): a change of matplotlib's
    rcParams after that does not reach it."""
    width = PANEL_WIDTH * n_panels
    top_margin = PANEL_TITLE + (SUPTITLE_LINE * title_lines + 0.06 if title_lines else 0.0)
    fig = Figure(figsize=(width, FIGURE_HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself to fig: rendering needs no pyplot backend
    panel_width = (width - LEFT - RIGHT - PANEL_GAP * (n_panels - 1)) / n_panels
    panel_height = (FIGURE_HEIGHT - top_margin - BOTTOM - ROW_GAP) / 2  # mean of the rows
    fig.subplots_adjust(
        left=LEFT / width,
        right=1 - RIGHT / width,
        bottom=BOTTOM / FIGURE_HEIGHT,
        top=1 - top_margin / FIGURE_HEIGHT,
        wspace=PANEL_GAP / panel_width,  # subplots_adjust counts gaps in mean axes sizes
        hspace=ROW_GAP / panel_height,
    )
    suptitle = fig.suptitle("", y=1 - 0.06 / FIGURE_HEIGHT, va="top") if title_lines else None
    # Each row shares its y axis: only the first column labels it.
    axes = fig.subplots(
        2, n_panels, sharey="row", squeeze=False, gridspec_kw={"height_ratios": [3, 1]}
    )
    for top, bottom in axes.T:
        top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)  # calibrated
        # y given: else each draw measures the tick labels to keep the title clear of any.
        top.set_title("", fontsize="medium", y=1.0)
        top.set(xlim=(0, 1), xticks=[])  # the count axes below carry the confidence ticks
        bottom.set(xlim=(0, 1), xticks=UNIT_TICKS, xticklabels=UNIT_LABELS)
        bottom.set_xlabel("confidence (max probability)")
    first = axes[0, 0]
    first.set(ylim=(0, 1), yticks=UNIT_TICKS, yticklabels=UNIT_LABELS)
    first.set_ylabel("accuracy")
    axes[1, 0].set_ylabel("samples")
    handles = [
        Line2D([], [], linestyle="--", color="gray", linewidth=1, label="calibrated"),
        Patch(facecolor="tab:blue", **EDGE, label="accuracy"),
        Patch(**GAP, hatch=GAP_HATCH, label="gap to mean confidence"),
    ]
    first.legend(handles=handles, loc="upper left", fontsize="small")
    return _Frame(fig, axes, suptitle)


def _add_bars(top: Axes, bottom: Axes, bins: dict[str, np.ndarray]) -> None:
    """Accuracy bars and shaded gaps on ``top``; bin counts on ``bottom``."""
    left, width = bins["edges"][:-1], 1.0 / (len(bins["edges"]) - 1)
    filled = bins["counts"] > 0  # empty bins have NaN means: nothing to draw
    acc, conf = bins["accuracy"][filled], bins["confidence"][filled]
    low, high = np.minimum(acc, conf), np.maximum(acc, conf)
    _bars(top, left[filled], width, 0.0, acc, facecolor="tab:blue", **EDGE)
    _bars(top, left[filled], width, low, high - low, **GAP, hatch=GAP_HATCH)
    _bars(bottom, left, width, 0.0, bins["counts"], facecolor="gray", **EDGE)


def _bars(ax: Axes, left: np.ndarray, width: float, base, height: np.ndarray, **style) -> None:
    """Bars [left, left + width] × [base, base + height] as one collection: one artist draws
    much faster than ``ax.bar``'s patch per bar; the limits are fixed (no autolim)."""
    x0, x1 = left, left + width
    y0 = np.broadcast_to(base, np.shape(left))
    y1 = y0 + height
    corners = np.stack([np.c_[x0, y0], np.c_[x0, y1], np.c_[x1, y1], np.c_[x1, y0]], axis=1)
    ax.add_collection(PolyCollection(corners, **style), autolim=False)


def _set_count_axis(ax: Axes, max_count: int) -> None:
    """What autoscaling would choose for the shared count axis: from 0, a 5 % margin above the
    largest bin, a few round integer ticks."""
    top = max(max_count, 1) * 1.05
    ticks = MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10], integer=True).tick_values(0, top)
    ticks = ticks[ticks <= top]
    ax.set(ylim=(0, top), yticks=ticks, yticklabels=[f"{t:.0f}" for t in ticks])
