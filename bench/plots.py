"""The reliability diagram: is a model right as often as it is confident?

One panel per prediction method, side by side. Each panel bins the top-label confidence into
equal-width bins and draws, per bin, the accuracy as a bar against the diagonal (perfect
calibration), the gap between accuracy and mean confidence shaded, and under it the number of
samples per bin (a bar far from the diagonal matters only if the bin holds many samples).
The bins and the ECE come from ``bench.metrics``, so the picture shows exactly what
``results.json`` reports.

Matplotlib is used through ``Figure`` and the Agg canvas directly, never through ``pyplot``:
that keeps no global state, so importing or calling this never changes the backend of a
user's interactive session (a notebook keeps its inline plots).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.atomic import write_bytes_atomic
from bench.metrics import ECE_BINS, classification_metrics, reliability

PANEL_WIDTH, FIGURE_HEIGHT, DPI = 3.6, 4.6, 110  # inches, inches, pixels per inch


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
    fig = Figure(figsize=(PANEL_WIDTH * len(panels), FIGURE_HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig: rendering needs no pyplot backend
    axes = fig.subplots(
        2, len(panels), sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 1]}
    )
    drawn: dict[str, dict[str, np.ndarray]] = {}
    for column, (name, (probs, labels)) in enumerate(panels.items()):
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        if probs.ndim != 2 or labels.shape != (len(probs),):
            raise ValueError(
                f"panel {name!r}: expected probs (N, K) and labels (N,), "
                f"got {probs.shape} and {labels.shape}"
            )
        bins = reliability(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins)
        ece = classification_metrics(probs, labels)["ece"]
        _draw_panel(axes[0, column], axes[1, column], bins, name, ece, n_bins, len(probs))
        drawn[name] = bins
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("samples")
    axes[0, 0].legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(Path(path), buffer.getvalue())
    return drawn


def _draw_panel(
    top: Axes,
    bottom: Axes,
    bins: dict[str, np.ndarray],
    name: str,
    ece: float,
    n_bins: int,
    n: int,
) -> None:
    """Accuracy bars, shaded gaps and the diagonal on ``top``; bin counts on ``bottom``."""
    left, width = bins["edges"][:-1], 1.0 / n_bins
    filled = bins["counts"] > 0  # empty bins have NaN means: nothing to draw
    acc, conf = bins["accuracy"][filled], bins["confidence"][filled]
    top.bar(
        left[filled],
        acc,
        width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    top.bar(
        left[filled],
        np.abs(acc - conf),
        width,
        bottom=np.minimum(acc, conf),
        align="edge",
        color="tab:red",
        alpha=0.35,
        hatch="//",
        edgecolor="tab:red",
        linewidth=0.5,
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1))
    # The ECE of results.json (test/ece) always uses ECE_BINS bins; say so if the bars differ.
    ece_label = "ECE" if n_bins == ECE_BINS else f"ECE ({ECE_BINS} bins)"
    top.set_title(f"{name}\n{ece_label} = {ece:.4f}   N = {n}", fontsize="medium")
    bottom.bar(
        left, bins["counts"], width, align="edge", color="gray", edgecolor="black", linewidth=0.5
    )
    bottom.set_xlabel("confidence (max probability)")
