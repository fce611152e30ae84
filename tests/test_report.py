"""report.html: self-contained, escaped, the tables of the terminal, plots only with data — and
the page opened in a real headless Chromium (tables and images render, console stays empty).

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so the test needs no Python
package and no network port, yet reads what a screenshot flag cannot: each image decoded, the
console's messages with their level, failed loads, and a full-page screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

from bench.leaderboard import build_leaderboard
from bench.leaderboard.figures import ood_keys, reliability_panels, report_plots, severity_means
from bench.leaderboard.render import markdown
from bench.leaderboard.report import MAX_PLOT_SECTIONS, report_html, write_report
from bench.leaderboard.synthetic import config, metrics, write_sweep
from bench.record import run_record

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# --- a sweep with everything a report can show ---------------------------------------------


def fake_predictions(rng: np.random.Generator, labels: np.ndarray, mc: bool) -> dict:
    """predictions.npz as bench.evaluate writes it: probabilities, per-sample scores (higher =
    more uncertain; max_prob holds −max probability) on test and on two OOD partners."""
    arrays: dict[str, np.ndarray] = {"labels": labels}
    for prefix in ("", "ts_", *(["mc_"] if mc else [])):
        logits = rng.normal(size=(len(labels), 10)) + 4.0 * np.eye(10)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        arrays[f"{prefix}probs"] = probs.astype(np.float32)
        for group, n in (("scores", len(labels)), ("ood_noise", 50), ("ood_fashion_mnist", 60)):
            shift = 0.0 if group == "scores" else 0.5
            arrays[f"{prefix}{group}_max_prob"] = -rng.uniform(0.3, 1.0, n) + shift
            if prefix == "mc_":
                arrays[f"{prefix}{group}_mutual_info"] = rng.gamma(1.0, 0.05, n) + shift
                arrays[f"{prefix}{group}_expected_entropy"] = rng.gamma(2.0, 0.2, n)
    return arrays


def put(path: Path, cfg: dict, seed: int, regs: list, **kw) -> None:
    record = run_record(
        dataset="digits",
        model="mlp",
        regularizers=regs,
        seed=seed,
        epochs=30,
        metrics=kw.pop("m", None) or metrics(0.3, 0.1, random.Random(seed)),
        config=cfg,
        wall_time_s=1.0,
        versions={},
        extras={"best_epoch": 30, "sparsity": 0.0},
        **kw,
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Section 0: none, l1 and dropout (4-point grids, 2 seeds, predictions); section 1: a
    model option, a method option and a diverged run's directory all ``<script>alert(1)…``."""
    root = tmp_path_factory.mktemp("sweep")
    write_sweep(str(root), n_records=18, seeds=2, methods=("none", "l1", "dropout"))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 120)
    for path in sorted(root.rglob("results.json")):
        arrays = fake_predictions(rng, labels, mc="dropout" in str(path))
        np.savez(path.parent / "predictions.npz", **arrays)
    hostile = root / "hostile"
    for seed in (0, 1):
        for name, regs in (("none", {}), ("l2", {"l2": {"strength": 1e-3, "params": "weights"}})):
            cfg = config(str(hostile / name / str(seed)), seed, regs)
            cfg["model"]["name"] = SCRIPT
            put(hostile / name / str(seed), cfg, seed, list(regs))
        regs = {"l2": {"strength": 1e-3, "params": SCRIPT}}
        cfg = config(str(hostile / "l2-odd" / str(seed)), seed, regs)
        cfg["model"]["name"] = SCRIPT
        put(hostile / "l2-odd" / str(seed), cfg, seed, ["l2"])
    run_dir = hostile / SCRIPT / "0"  # the directory name holds "/": two levels, same text
    cfg = config(str(run_dir), 0, {"l2": {"strength": 10.0, "params": "weights"}})
    cfg["model"]["name"] = SCRIPT
    put(run_dir, cfg, 0, ["l2"], diverged_at={"epoch": 3, "step": 12})
    return root


def section_index(lb, hostile: bool) -> int:
    """The gap board's index of the hostile section or of write_sweep's."""
    labels = [part.section.label for part in lb.gap.sections]
    return next(i for i, label in enumerate(labels) if (SCRIPT in label) == hostile)


@pytest.fixture(scope="module")
def built(sweep: Path):
    lb = build_leaderboard([str(sweep)])
    plots = report_plots(lb, MAX_PLOT_SECTIONS)
    return lb, plots, write_report(lb, sweep, plots)


# --- the page itself -------------------------------------------------------------------------


class Tables(HTMLParser):
    """Cell texts of every <table>, and every <img> src."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk, at a fixed offset)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_strings_from_records_are_text_and_nothing_is_external(built):
    lb, plots, path = built
    page = path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # not from a record, and the report has none itself
    assert f"<h3>digits / mlp (model.name={ESCAPED})</h3>" in page  # a config value
    assert f"<td>l2[params=&quot;{ESCAPED}&quot;]</td>" in page  # a method option
    diverged = path.parent / "hostile" / SCRIPT / "0" / "results.json"  # a path
    assert f"diverged: {str(diverged).replace(SCRIPT, ESCAPED)} (epoch 3)" in page
    assert not re.search(r"https?:|url\(|@import", page)  # nothing to fetch from anywhere
    parser = Tables()
    parser.feed(page)
    assert len(parser.images) == len(plots) > 0
    for src, plot in zip(parser.images, plots, strict=True):
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data == plot.png
        with Image.open(BytesIO(data)) as image:
            assert image.size == png_size(data) and image.size[0] > 200


def test_tables_read_as_the_markdown_boards(built, sweep: Path):
    lb, _, path = built
    parser = Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    expected = []
    for board in lb.boards:
        lines = [line for line in markdown(lb, board).splitlines() if line.startswith("| ")]
        rows = [[c.strip() for c in line[2:-2].split(" | ")] for line in lines]
        rows = [r for r in rows if set(r) != {"---"}]
        start = 0
        for part in board.sections:  # one HTML table per section: header + its rows
            end = start + 1 + len(part.rows)
            expected.append(rows[start:end])
            start = end
    assert parser.tables == expected
    # One number by hand: gap/loss of `none` in section 0, mean ± t(0.975, 1)·sd/√2.
    values = [
        json.loads(p.read_text())["metrics"]["gap/loss"]
        for p in sorted((sweep / "section0" / "none-None").rglob("results.json"))
    ]
    mean, half = np.mean(values), sps.t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)
    header, *rows = parser.tables[section_index(lb, hostile=False)]
    cell = next(r for r in rows if r[1] == "none")[header.index("gap/loss")]
    shown_mean, shown_half = (float(x) for x in cell.split(" ± "))
    assert shown_mean == pytest.approx(mean, rel=1e-3)
    assert shown_half == pytest.approx(half, rel=0.05)  # printed to 2 significant digits


def test_each_plot_appears_only_with_its_data(built, tmp_path: Path):
    lb, plots, _ = built
    full, hostile = section_index(lb, hostile=False), section_index(lb, hostile=True)
    keys = {k for p in plots if p.section_index == full for k in [p.key]}
    # The full section: grids (l1, dropout), the L1 path, shift metrics, and predictions of
    # the calibration leader, the gap leader and the baseline (fewer when they coincide).
    roles = {k for k in keys if k.startswith("reliability_")}
    assert {"gap_vs_strength", "l1_path", "shift"} <= keys
    assert roles and {r.replace("reliability", "ood") for r in roles} <= keys
    gap = lb.gap.sections[full]
    cal = next(c for c in lb.calibration.sections if c.section.key == gap.section.key)
    leaders = {id(next(r.entry for r in part.rows if r.ranked)) for part in (gap, cal)}
    assert len(roles) == len(leaders | {id(gap.baseline)})
    # The hostile one has no predictions.npz and no L1: its l2 grid (one point diverged) and
    # shift curves only.
    assert {p.key for p in plots if p.section_index == hostile} == {"gap_vs_strength", "shift"}
    # Records without a grid, shift metrics or predictions: no plot, and the page says so.
    bare = {"train/loss": 0.1, "val/loss": 0.3, "test/loss": 0.3, "gap/loss": 0.2, "val/acc": 0.9}
    for seed in (0, 1):
        put(
            tmp_path / f"none{seed}",
            config(str(tmp_path / f"none{seed}"), seed, {}),
            seed,
            [],
            m={**bare, "test/acc": 0.9},
        )
    lb = build_leaderboard([str(tmp_path)])
    assert report_plots(lb, MAX_PLOT_SECTIONS) == []
    assert "No plot:" in report_html(lb, [])


def test_severity_means_average_corruptions_per_level():
    m = {
        "shift/blur/1/acc": 0.8,
        "shift/noise/1/acc": 0.6,
        "shift/blur/3/acc": 0.5,
        "shift/mean/acc": 0.1,
        "mc/shift/blur/1/acc": 0.0,
        "shift/blur/1/ece": 0.3,
        "shift/noise/3/acc": None,
    }
    assert severity_means(m, "", "acc") == ({1.0: pytest.approx(0.7), 3.0: 0.5}, {"blur", "noise"})
    assert severity_means(m, "mc/", "acc") == ({1.0: 0.0}, {"blur"})


def test_ood_keys_split_partner_and_score_on_underscores():
    keys = {
        "mc_scores_entropy",
        "mc_scores_expected_entropy",
        "mc_ood_fashion_mnist_entropy",
        "mc_ood_fashion_mnist_expected_entropy",
        "mc_ood_noise_entropy",
        "scores_entropy",
        "ood_noise_entropy",
        "ood_noise_unknown_score",
    }
    assert ood_keys(keys, "mc_") == {
        ("fashion_mnist", "entropy"): "mc_ood_fashion_mnist_entropy",
        ("fashion_mnist", "expected_entropy"): "mc_ood_fashion_mnist_expected_entropy",
        ("noise", "entropy"): "mc_ood_noise_entropy",
    }
    assert ood_keys(keys, "") == {("noise", "entropy"): "ood_noise_entropy"}


def test_reliability_panels_pool_seeds_and_average_the_seed_ensemble():
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2, 1])
    seeds = [{"probs": rng.dirichlet(np.ones(3), 4), "labels": labels} for _ in range(3)]
    seeds[0]["mc_probs"] = rng.dirichlet(np.ones(3), 4)
    panels = reliability_panels(seeds)
    assert list(panels) == ["deterministic", "MC dropout", "ens-of-seeds (3 seeds)"]
    probs, pooled = panels["deterministic"]
    assert probs.shape == (12, 3) and list(pooled) == [0, 1, 2, 1] * 3
    mean, ens_labels = panels["ens-of-seeds (3 seeds)"]
    by_hand = [[sum(s["probs"][i][k] for s in seeds) / 3 for k in range(3)] for i in range(4)]
    np.testing.assert_allclose(mean, by_hand)
    assert list(ens_labels) == [0, 1, 2, 1]
    seeds[2]["labels"] = np.array([2, 1, 0, 1])  # another test set: no ensemble of the three
    assert "ens-of-seeds (3 seeds)" not in reliability_panels(seeds)


def test_same_sweep_same_report_bytes(built, sweep: Path, tmp_path: Path):
    lb, _, path = built
    again = write_report(build_leaderboard([str(sweep)]), tmp_path)
    assert again.read_bytes() == path.read_bytes()


def test_cli_writes_the_report_without_torch_or_pyplot(sweep: Path, tmp_path: Path):
    code = "\n".join(
        [
            "import sys",
            "from bench.leaderboard.cli import main",
            f"code = main([{str(sweep / 'hostile')!r}, '--out', {str(tmp_path)!r}])",
            "heavy = [m for m in ('torch', 'lightning', 'matplotlib.pyplot') if m in sys.modules]",
            "print('RESULT', code, heavy, file=sys.stderr)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stderr.strip().splitlines()[-1] == "RESULT 0 []", out.stderr
    assert f"report: {tmp_path / 'report.html'}" in out.stdout
    names = {f"leaderboard_{b}.{k}" for b in ("gap", "calibration") for k in ("md", "csv", "json")}
    assert {p.name for p in tmp_path.iterdir()} == names | {"report.html"}
    assert "<h2>Generalization gap</h2>" in (tmp_path / "report.html").read_text()


# --- in a real browser -------------------------------------------------------------------


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: commands on the
    browser's fd 3, answers and events on its fd 4, each a JSON text ended by NUL."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()

        def as_fd_3_and_4() -> None:  # in the child, before exec
            a = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4
            b = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            "--headless",
            "--no-sandbox",  # CI runs as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers' /dev/shm is small
            "--remote-debugging-pipe",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
        ]
        self.process = subprocess.Popen(
            [binary, *args, "about:blank"],
            preexec_fn=as_fd_3_and_4,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.events = b"", 0, []
        self.session: str | None = None

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._in, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]
            self.events.append(reply)

    def wait(self, event: str, timeout: float = 60) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._read(timeout))

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._in)
        os.close(self._out)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip(
        "no Chromium on PATH (chromium or chromium-browser): the report's browser test needs "
        "Debian's chromium package (apt-get install chromium; .ci/run installs it)"
    )


CHECKS = """Promise.all([...document.images].map(i => i.decode().then(
    () => [i.naturalWidth, i.naturalHeight], () => [0, 0]))).then(images => ({
  images,
  tables: [...document.querySelectorAll('table')].map(t => t.rows.length),
  scripts: document.scripts.length,
  escaped: document.body.innerText.includes('l2[params="<script>alert(1)</script>"]'),
  height: document.documentElement.scrollHeight,
}))"""


def test_report_renders_in_headless_chromium(built, tmp_path: Path):
    binary = chromium()
    lb, plots, path = built
    browser = DevTools(binary, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable")
        width = 1400
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.send("Page.navigate", url=path.as_uri())
        browser.wait("Page.loadEventFired")
        found = browser.send(
            "Runtime.evaluate", expression=CHECKS, awaitPromise=True, returnByValue=True
        )["result"]["value"]
        height = min(found["height"], 16000)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(shot)
    print(f"screenshot of the report: {screenshot}")
    if os.environ.get("BENCH_REPORT_SCREENSHOT"):  # e.g. kept as a CI artifact
        shutil.copyfile(screenshot, os.environ["BENCH_REPORT_SCREENSHOT"])

    rows = [1 + len(part.rows) for board in lb.boards for part in board.sections]
    assert found["tables"] == rows  # every table, header and rows, in the DOM
    assert found["images"] == [list(png_size(p.png)) for p in plots]  # every image decoded
    assert found["scripts"] == 0 and found["escaped"]
    noise = [
        e["params"]
        for e in browser.events
        if e.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert noise == []  # the console stays empty: no error, no failed load
    with Image.open(screenshot) as image:
        assert image.size == (width, height)
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 200  # not a blank page
