"""The reliability diagram: a readable PNG, written atomically, whose bins match a binning
computed here by hand, drawn without touching the session's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bench import plots
from bench.metrics import classification_metrics
from bench.plots import reliability_diagram

REPO = Path(__file__).resolve().parents[1]


def softmax_panel(n: int, k: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n, k) of a noisy classifier and its labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += 1.5
    logits *= sharpness
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True), labels


def hand_binning(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    """Counts and accuracy per bin with plain loops: bin b holds (b/M, (b+1)/M], bin 0 also 0."""
    counts, hits = [0] * n_bins, [0] * n_bins
    for row, label in zip(probs, labels, strict=True):
        confidence, guess = max(row), list(row).index(max(row))
        for b in range(n_bins):
            if (confidence > b / n_bins or b == 0) and confidence <= (b + 1) / n_bins:
                counts[b] += 1
                hits[b] += int(guess == label)
                break
    accuracy = [h / c if c else np.nan for h, c in zip(hits, counts, strict=True)]
    return np.array(counts), np.array(accuracy)


def test_png_is_valid_and_grows_with_the_number_of_panels(tmp_path: Path):
    panels = {
        "deterministic": softmax_panel(200, 5, 3.0, 0),
        "MC dropout": softmax_panel(200, 5, 1.5, 1),
        "temperature-scaled": softmax_panel(200, 5, 1.0, 2),
    }
    one, three = tmp_path / "one.png", tmp_path / "three.png"
    reliability_diagram({"deterministic": panels["deterministic"]}, one, title="one")
    reliability_diagram(panels, three, title="three")
    image_one, image_three = imread(one), imread(three)
    assert image_one.ndim == 3 and image_one.shape[2] in (3, 4)
    height, width_one = image_one.shape[:2]
    assert 200 <= height <= 2000 and 200 <= width_one <= 2000
    assert image_three.shape[0] == height
    assert image_three.shape[1] > 2.5 * width_one
    # Not a blank canvas: the bars and text put many distinct colours on it.
    assert len(np.unique(image_three.reshape(-1, image_three.shape[2]), axis=0)) > 20


def test_bins_sum_to_n_and_match_a_hand_binning(tmp_path: Path):
    # Four classes, four bins (edges 0, .25, .5, .75, 1): confidences exactly 1.0 (last bin),
    # exactly 0.75 and 0.5 (inner edges belong to the lower bin), and a tie broken by argmax's
    # first maximum.
    probs = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.75, 0.25, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [0.2, 0.7, 0.05, 0.05],
            [0.1, 0.6, 0.2, 0.1],
            [0.3, 0.4, 0.2, 0.1],
            [0.9, 0.05, 0.05, 0.0],
        ]
    )
    labels = np.array([0, 2, 0, 1, 1, 1, 0, 0])
    drawn = reliability_diagram({"hand": (probs, labels)}, tmp_path / "hand.png", n_bins=4)
    counts, accuracy = hand_binning(probs, labels, 4)
    np.testing.assert_array_equal(drawn["hand"]["counts"], counts)
    np.testing.assert_allclose(drawn["hand"]["accuracy"], accuracy, equal_nan=True)
    # The same, worked out by hand: bin 0 is empty (no confidence can be below 1/4 here).
    np.testing.assert_array_equal(counts, [0, 2, 3, 3])
    np.testing.assert_allclose(accuracy, [np.nan, 0, 1, 2 / 3], equal_nan=True)
    np.testing.assert_allclose(drawn["hand"]["edges"], [0, 0.25, 0.5, 0.75, 1])


@pytest.mark.parametrize("n_bins", [15, 7])
def test_counts_of_every_panel_sum_to_n(tmp_path: Path, n_bins: int):
    panels = {"a": softmax_panel(360, 10, 2.0, 0), "b": softmax_panel(123, 3, 0.5, 1)}
    drawn = reliability_diagram(panels, tmp_path / "d.png", n_bins=n_bins)
    assert list(drawn) == ["a", "b"]
    for name, (probs, labels) in panels.items():
        assert drawn[name]["counts"].sum() == len(labels)
        np.testing.assert_array_equal(drawn[name]["counts"], hand_binning(probs, labels, n_bins)[0])


def test_writing_twice_leaves_only_the_png(tmp_path: Path):
    path = tmp_path / "plots" / "reliability.png"  # the folder does not exist yet
    panel = {"deterministic": softmax_panel(50, 4, 2.0, 0)}
    reliability_diagram(panel, path)
    first = path.read_bytes()
    reliability_diagram({"other": softmax_panel(50, 4, 0.5, 1)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["reliability.png"]
    assert path.read_bytes() != first
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bad_panels_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="at least one panel"):
        reliability_diagram({}, tmp_path / "x.png")
    probs, labels = softmax_panel(10, 3, 1.0, 0)
    with pytest.raises(ValueError, match="panel 'bad'"):
        reliability_diagram({"bad": (probs, labels[:5])}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_import_and_render_keep_the_session_backend(tmp_path: Path):
    # A fresh interpreter, so the backend was not already fixed by another test.
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        import numpy as np
        from bench.plots import reliability_diagram
        probs = np.array([[0.9, 0.1], [0.4, 0.6]])
        reliability_diagram({{"m": (probs, np.array([0, 0]))}}, {str(tmp_path / "s.png")!r})
        print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "s.png").exists()


# --- the kept frame (bench.plots builds axes, ticks and legend once per layout) -------------


def draw(tmp_path: Path, name: str, panels, **kwargs) -> bytes:
    path = tmp_path / f"{name}.png"
    reliability_diagram(panels, path, **kwargs)
    return path.read_bytes()


def test_a_kept_frame_draws_what_a_fresh_frame_draws(tmp_path: Path):
    a = {
        "deterministic": softmax_panel(360, 10, 2.0, 0),
        "temperature": softmax_panel(360, 10, 1.0, 1),
    }
    plots._frame.cache_clear()
    fresh = draw(tmp_path, "fresh", a, title="run a")
    # Other data, bin counts and titles through the same frame, and another layout between.
    draw(
        tmp_path,
        "b",
        {"x": softmax_panel(50, 3, 0.5, 2), "y": softmax_panel(9, 2, 4.0, 3)},
        title="b",
    )
    draw(tmp_path, "c", {"only": softmax_panel(80, 4, 1.0, 4)}, n_bins=5, title="two\nlines")
    draw(tmp_path, "d", a, n_bins=7, title="run d")
    assert plots._frame.cache_info().hits >= 2  # the frames were reused
    assert draw(tmp_path, "again", a, title="run a") == fresh


def test_a_failed_render_leaves_the_frame_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    a = {"deterministic": softmax_panel(200, 5, 2.0, 0)}
    before = draw(tmp_path, "before", a)
    with monkeypatch.context() as m:
        m.setattr(plots, "PNG_OPTIONS", {"compress_level": "not a level"})  # Pillow raises
        with pytest.raises(TypeError):
            draw(tmp_path, "broken", {"deterministic": softmax_panel(200, 5, 0.3, 9)})
    assert not (tmp_path / "broken.png").exists()
    assert draw(tmp_path, "after", a) == before  # no bars of the failed call left behind


def test_panel_titles_show_the_ece_of_results_json(tmp_path: Path):
    panels = {"a": softmax_panel(300, 6, 2.0, 5), "b": softmax_panel(300, 6, 0.7, 6)}
    reliability_diagram(panels, tmp_path / "t.png", n_bins=10, title="t")
    frame = plots._frame(2, 1)
    for ax, (name, (probs, labels)) in zip(frame.axes[0], panels.items(), strict=True):
        ece = classification_metrics(probs, labels)["ece"]  # what results.json reports
        assert ax.title.get_text() == f"{name}\nECE (15 bins) = {ece:.4f}   N = 300"


def test_threads_draw_what_one_thread_draws(tmp_path: Path):
    runs = [
        {"m": softmax_panel(120, 4, 0.5 + k, k), "n": softmax_panel(60, 4, 1.0, k)}
        for k in range(6)
    ]
    alone = [draw(tmp_path, f"alone{k}", p, title=f"run {k}") for k, p in enumerate(runs)]
    with ThreadPoolExecutor(3) as pool:
        together = list(
            pool.map(lambda k: draw(tmp_path, f"threads{k}", runs[k], title=f"run {k}"), range(6))
        )
    assert together == alone
