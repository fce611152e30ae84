"""scikit-learn is imported when a run needs it (digits/diabetes data, splits, scoring), not by
``import bench.train`` or ``bench-train --help``: a sweep's start-up and every config error pay
only for what they use (issue 9, figure 2).

The check runs in a fresh interpreter, since this test process has long imported everything.
The same interpreter then loads the digits data and scores a prediction, and must see sklearn
arrive: proof that the probe would notice an eager import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SKLEARN = ("sklearn", "sklearn.datasets", "sklearn.metrics", "sklearn.model_selection")

PROBE = textwrap.dedent(
    """
    import json, runpy, sys

    def loaded():
        return sorted(m for m in {watched!r} if m in sys.modules)

    report = {{}}
    import bench.train  # noqa: F401
    report["import"] = loaded()
    sys.argv = ["bench-train", "--help"]
    try:
        runpy.run_module("bench.train", run_name="__main__")
    except SystemExit as exc:
        report["help_exit"] = exc.code
    report["help"] = loaded()

    import numpy as np
    from bench.data.digits import DigitsDataModule
    from bench.metrics import classification_metrics, ood_metrics

    data = DigitsDataModule(train_size=50)
    data.setup("fit")
    report["data"] = loaded()
    probs = np.full((4, 10), 0.05)
    probs[np.arange(4), [0, 1, 2, 3]] = 0.55
    classification_metrics(probs, np.array([0, 1, 2, 4]))
    ood_metrics(np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    report["scored"] = loaded()
    print("REPORT" + json.dumps(report))
    """
).format(watched=SKLEARN)


def test_sklearn_is_imported_only_by_the_data_and_metrics_that_use_it():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))
    report = json.loads(line.removeprefix("REPORT"))
    assert report["help_exit"] in (None, 0)
    assert "== Configuration groups ==" in proc.stdout  # --help really ran Hydra's help
    assert report["import"] == [], "import bench.train pulled in sklearn"
    assert report["help"] == [], "bench-train --help pulled in sklearn"
    # The probe sees imports: loading digits needs sklearn's datasets and stratified splits
    # (which bring sklearn.metrics along; scoring itself uses bench.metrics.ranking).
    assert {"sklearn", "sklearn.datasets", "sklearn.model_selection"} <= set(report["data"])
    assert report["scored"] == sorted(SKLEARN)
