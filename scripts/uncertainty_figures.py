"""README's uncertainty figures: deterministic vs MC dropout vs temperature scaling vs ensembles.

One dropout MLP per seed with ``ensemble.members=K`` gives all four predictions at once (MC and
TS use member 0, the run's own network); a second run per seed with ``ensemble.bootstrap=true``
gives bagging. Prints markdown tables of means over seeds.

    .venv/bin/python scripts/uncertainty_figures.py --dataset digits --seeds 0 1 2
    .venv/bin/python scripts/uncertainty_figures.py --dataset mnist --seeds 0 --epochs 5 \
        --data-dir ../shared/data/torchvision
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from bench.train import CONF_DIR, run

METHODS = {"": "deterministic (weight scaling)", "mc/": "MC dropout", "ts/": "temperature"}


def one_run(run_dir: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    return run(cfg)


def mean(records: list[dict], key: str) -> str:
    values = [r["metrics"].get(key) for r in records]
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.3f}{sd}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "./data"))
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides")
    args = ap.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    common = [
        f"dataset={args.dataset}",
        "regularizer=[dropout]",
        "+callbacks=mc_dropout",
        f"callbacks.mc_dropout.samples={args.samples}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"ensemble.members={args.members}",
        f"evaluation.ood.data_dir={data_dir}",
        *args.extra,
    ]
    if args.dataset != "digits":
        common.append(f"dataset.data_dir={data_dir}")
    deep, bagged = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            deep.append(one_run(Path(tmp, f"deep{seed}"), [*common, f"seed={seed}"]))
            boot = [*common, f"seed={seed}", "ensemble.bootstrap=true"]
            bagged.append(one_run(Path(tmp, f"bag{seed}"), boot))
    partners = sorted({k.split("/")[1] for k in deep[0]["metrics"] if k.startswith("ood/")})
    ood_cols = [f"OOD AUROC {p}" for p in partners]
    setting = f"{args.epochs} epochs, T={args.samples}, K={args.members}"
    print(f"\n{args.dataset}, seeds {args.seeds}, {setting}")
    print("| prediction | acc | NLL | ECE | " + " | ".join(ood_cols) + " |")
    print("|---" * (4 + len(ood_cols)) + "|")
    rows = [(p, name, deep) for p, name in METHODS.items()]
    rows += [("ens/", f"deep ensemble of {args.members}", deep)]
    rows += [("ens/", f"bagging, {args.members} members", bagged)]
    for p, name, records in rows:
        cells = [mean(records, f"{p}test/{k}") for k in ("acc", "nll", "ece")]
        cells += [mean(records, f"{p}ood/{partner}/max_prob/auroc") for partner in partners]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| ensemble | disagreement | error correlation | member acc (mean) | ensemble acc |")
    print("|---|---|---|---|---|")
    for name, records in (("deep ensemble", deep), ("bagging", bagged)):
        keys = ("ens/test/disagreement", "ens/test/error_corr", "ens/members/test/acc/mean")
        cells = [mean(records, k) for k in (*keys, "ens/test/acc")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    mi = [mean(deep, f"mc/ood/{p}/mutual_info/auroc") for p in partners]
    print(
        "\nMC mutual-information OOD AUROC: "
        + ", ".join(f"{p} {v}" for p, v in zip(partners, mi, strict=True))
    )
    timing = {k: np.mean([r["timing"][k] for r in deep]) for k in deep[0]["timing"]}
    print("time split of one run (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))


if __name__ == "__main__":
    main()
