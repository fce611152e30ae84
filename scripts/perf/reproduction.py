"""Figures 11–12: the two speed-ups of the MC-dropout UCI reproduction, each against the code it
replaced, with a check inside the figure that both sides compute the same thing (a figure never
reports the speed of something wrong: a failed check raises).

11 masks — CPU dropout masks from numpy's SFC64 (``bench.models.masks.keep_mask``) against
torch's own ``bernoulli_`` (mt19937), on the shapes the reproduction draws most:

    population   a 240-member population's hidden layer, (240, 128, 50) float32, members at Gal's
                 four rates: ``MemberDropout`` vs its old per-member path,
                 ``torch.empty(shape).bernoulli_(keep.expand(shape))``
    one rate     the same shape at p = 0.05: ``FastDropout`` vs ``nn.Dropout`` (``F.dropout``)
    MC sampling  ``MCDropout.sample``: 10,000 samples of 100 rows through the UCI MLP (13 inputs
                 → 50 → 1, p = 0.05 on both), under ``fast_dropout`` vs with plain ``nn.Dropout``
                 — matmuls and all, the sampler's planning untimed

Check: every member's kept fraction within 5 sd of its keep and every kept unit scaled by 1/keep
(both sides); the two MC estimates of each row's predictive mean within 5 standard errors.

12 compose — ``SweepComposer.compose`` (Hydra's composition once per config-group structure, the
value overrides applied afterwards) vs ``ConfigLoaderImpl.load_sweep_config`` for every job:

    UCI          the reproduction's jobs, ``experiment=gal2016_uci dataset.name=yacht`` × split ×
                 p × τ: one group structure for all 240 jobs of a set, so per job with the
                 template cached (its one-off build is in ``extra``, not timed)
    benchmark    the default benchmark's jobs, ``experiment=benchmark +grid=<point> seed=<s>``: a
                 template per grid point and 3 jobs each, so a fresh composer per sweep (the
                 template builds timed)

Check: every job's ``OmegaConf.to_yaml`` and struct flag equal to Hydra's. Composition reads no
data (``${uci:...}`` stays unresolved in both), so no UCI folder is needed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.data.uci_protocol import register_resolvers as register_uci
from bench.models.masks import FastDropout, fast_dropout
from bench.models.mlp import MLP
from bench.population.stack import MemberDropout
from bench.regularizers.dropout import Dropout
from bench.resume.identity import register_resolvers as register_identity
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import MCDropout, random_stream, sampling_mode
from hydra_plugins.regbench_population.compose import SweepComposer
from perf.common import Result, alternate, seconds

CONF = Path(__file__).resolve().parents[2] / "conf"
MASKS, COMPOSE = "11 masks", "12 compose"
GAL_RATES = (0.005, 0.01, 0.05, 0.1)  # every UCI set's dropout_rates.txt
P = 0.05  # the one-rate and MC rows: a rate from Gal's grid
INPUTS, HIDDEN = 13, 50  # Boston housing's inputs; Gal's hidden width
SIGMAS = 5.0  # a check fails beyond 5 sd: ~6e-7 per test when the code is right
UCI_COMMAND = ("experiment=gal2016_uci", "dataset.name=yacht")


@dataclass(frozen=True)
class Sizes:
    members: int  # population rows: (members, rows, HIDDEN)
    rows: int
    samples: int  # MC rows: samples × mc_rows
    mc_rows: int
    uci_jobs: int  # jobs composed per repetition
    grids: int  # benchmark rows: grids × seeds jobs
    seeds: int


FULL = Sizes(members=240, rows=128, samples=10_000, mc_rows=100, uci_jobs=12, grids=4, seeds=3)
QUICK = Sizes(members=8, rows=16, samples=200, mc_rows=20, uci_jobs=2, grids=1, seeds=2)


def check_mask(mask: torch.Tensor, keep: torch.Tensor, what: str) -> float:
    """The largest |z| of a member's kept fraction (member = first dim, ``keep`` one per member);
    raises unless each is within 5 sd of its keep and each kept unit equals 1/keep."""
    keep = keep.double().reshape(-1)
    flat = mask.reshape(len(keep), -1).double()
    kept = flat != 0
    gap = kept.double().mean(dim=1) - keep
    sd = (keep * (1 - keep) / flat.shape[1]).sqrt()
    exact = torch.where(gap == 0, 0.0, math.inf)  # keep = 1: every unit, exactly
    z = torch.where(sd > 0, gap.abs() / sd, exact)
    if bool((z > SIGMAS).any()):
        raise RuntimeError(f"{what}: kept fraction {z.max():.1f} sd from keep (max {SIGMAS:g})")
    scale = (1 / keep)[:, None].expand_as(flat)
    if not torch.allclose(flat[kept], scale[kept], rtol=1e-6, atol=0):
        raise RuntimeError(f"{what}: kept units are not scaled by 1/keep")
    return float(z.max())


def old_member_dropout(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``MemberDropout``'s per-member path before ``keep_mask``: torch's ``bernoulli_``."""
    keep = (1 - p).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    scale = torch.empty(x.shape, dtype=x.dtype).bernoulli_(keep.expand(x.shape))
    return x * scale.div_(keep)


def population_rows(args: argparse.Namespace, s: Sizes) -> list[Result]:
    """The population hidden layer: per-member rates, then one rate for all."""
    torch.manual_seed(0)  # the checks' draws repeat: a pass or a failure is reproducible
    shape = (s.members, s.rows, HIDDEN)
    x, ones = torch.randn(shape), torch.ones(shape)
    rates = [GAL_RATES[m % len(GAL_RATES)] for m in range(s.members)]
    member = MemberDropout(rates, maps=False)
    keeps = 1 - member.p
    one_keep = torch.full((s.members,), 1 - P, dtype=torch.float64)
    fast, plain = FastDropout(P), nn.Dropout(P)
    z = {
        "ours": check_mask(member(ones), keeps, "MemberDropout"),
        "old": check_mask(old_member_dropout(ones, member.p), keeps, "old per-member path"),
        "fast": check_mask(fast(ones), one_keep, "FastDropout"),
        "torch": check_mask(plain(ones), one_keep, "nn.Dropout"),
    }
    extra = {"shape": shape, "max_kept_fraction_z": z}
    per_member = alternate(lambda: member(x), lambda: old_member_dropout(x, member.p),
                           args.reps, args.warmups)  # fmt: skip
    one_rate = alternate(lambda: fast(x), lambda: plain(x), args.reps, args.warmups)
    dims = "×".join(map(str, shape))
    return [
        per_member.result(
            MASKS,
            f"{s.members}-member hidden layer ({dims} float32, Gal's 4 rates): `MemberDropout` "
            "vs its old per-member `bernoulli_(keep.expand(shape))`",
            overhead=False,
            extra=extra,
        ),
        one_rate.result(
            MASKS,
            f"the same shape, one rate (p = {P:g}): `FastDropout` vs `nn.Dropout`",
            overhead=False,
            extra=extra,
        ),
    ]


@torch.no_grad()
def mc_row(args: argparse.Namespace, s: Sizes) -> Result:
    """``MCDropout.sample`` of the UCI MLP with numpy masks vs torch's."""
    torch.manual_seed(0)
    net = Dropout(p_input=P, p_dense=P).configure_model(MLP((INPUTS,), 1, widths=[HIDDEN]))
    x = torch.randn(s.mc_rows, INPUTS, generator=torch.Generator().manual_seed(0))
    predictor = MCDropout(samples=s.samples)
    predictor.fit([net], OutputHead("regression"))
    with sampling_mode(net), random_stream(x.device, seed=0):
        predictor.predict([x])  # plans the prefix and the chunks, as for a split's first batch

        def ours() -> torch.Tensor:
            with fast_dropout(net):
                return predictor.sample(x)

        def baseline() -> torch.Tensor:
            return predictor.sample(x)

        chunk_rows = (predictor.t_chunk or 1) * s.mc_rows
        with fast_dropout(net):
            layers = [m for m in net.modules() if isinstance(m, FastDropout)]
            keep = torch.tensor([1 - P], dtype=torch.float64)
            z_mask = max(check_mask(m(torch.ones(1, chunk_rows, HIDDEN)), keep, "MC FastDropout")
                         for m in layers)  # fmt: skip
        a, b = ours().squeeze(-1), baseline().squeeze(-1)
        se = ((a.var(dim=0) + b.var(dim=0)) / s.samples).sqrt()
        z_mean = float(((a.mean(dim=0) - b.mean(dim=0)).abs() / se).max())
        if not layers or z_mean > SIGMAS:
            raise RuntimeError(f"MC means differ by {z_mean:.1f} se ({len(layers)} fast layers)")
        timing = alternate(ours, baseline, args.reps, args.warmups)
    extra = {"samples": s.samples, "rows": s.mc_rows, "t_chunk": predictor.t_chunk,
             "max_kept_fraction_z": z_mask, "max_mean_z": z_mean}  # fmt: skip
    return timing.result(
        MASKS,
        f"MC sampling, T = {s.samples:,} × {s.mc_rows} rows, MLP {INPUTS}→{HIDDEN}→1, p = {P:g} "
        "on both: `MCDropout.sample` under `fast_dropout` vs `nn.Dropout`",
        overhead=False,
        extra=extra,
    )


def run_masks(args: argparse.Namespace) -> list[Result]:
    """Figure 11, on the CPU whatever ``--device`` says (on a GPU ``keep_mask`` is torch's)."""
    s = QUICK if args.quick else FULL
    return [*population_rows(args, s), mc_row(args, s)]


def loader_and_master(command: Sequence[str]) -> tuple[ConfigLoaderImpl, DictConfig]:
    """What ``bench-train --multirun <command>`` hands its launcher: the loader, the master."""
    register_uci()
    register_identity()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = loader.load_configuration("train", list(command), run_mode=RunMode.MULTIRUN)
    return loader, master


def check_composer(
    composer: SweepComposer, loader: ConfigLoaderImpl, master: DictConfig, jobs: list[list[str]]
) -> int:
    """Raise unless ``composer`` gives every job Hydra's own config; the number of jobs."""
    for job in jobs:
        ours, hydra = composer.compose(job), loader.load_sweep_config(master, list(job))
        same_yaml = OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydra)
        if not same_yaml or OmegaConf.is_struct(ours) != OmegaConf.is_struct(hydra):
            raise RuntimeError(f"SweepComposer differs from load_sweep_config: {' '.join(job)}")
    return len(jobs)


def uci_row(args: argparse.Namespace, s: Sizes) -> Result:
    loader, master = loader_and_master(UCI_COMMAND)
    jobs = [[*UCI_COMMAND, f"dataset.split={k % 20}", f"protocol.p_index={k % 4}",
             f"protocol.tau_index={k % 3}"] for k in range(s.uci_jobs)]  # fmt: skip
    composer = SweepComposer(loader, master)
    first_job_s = seconds(lambda: composer.compose(jobs[0]))  # builds the set's template
    checked = check_composer(composer, loader, master, jobs)
    timing = alternate(
        lambda: [composer.compose(job) for job in jobs],
        lambda: [loader.load_sweep_config(master, job) for job in jobs],
        args.reps,
        args.warmups,
    )
    return timing.result(
        COMPOSE,
        "UCI reproduction jobs (`experiment=gal2016_uci dataset.name=yacht`, split × p × τ), "
        "per job, the set's template cached: `SweepComposer` vs `load_sweep_config`",
        overhead=False,
        extra={"jobs": len(jobs), "jobs_checked": checked, "first_job_s": first_job_s,
               "templates": len(composer.templates)},
    )  # fmt: skip


def benchmark_row(args: argparse.Namespace, s: Sizes) -> Result:
    loader, master = loader_and_master(["experiment=benchmark"])
    points = sorted(p.stem for p in (CONF / "grid").glob("*.yaml"))
    points = points[:: max(1, len(points) // s.grids)][: s.grids]  # spread over the grid
    jobs = [["experiment=benchmark", f"+grid={g}", f"seed={seed}"]
            for g in points for seed in range(s.seeds)]  # fmt: skip
    checked = check_composer(SweepComposer(loader, master), loader, master, jobs)

    def sweep() -> list[DictConfig]:
        composer = SweepComposer(loader, master)  # a sweep's own: its templates built anew
        return [composer.compose(job) for job in jobs]

    timing = alternate(sweep, lambda: [loader.load_sweep_config(master, job) for job in jobs],
                       args.reps, args.warmups)  # fmt: skip
    return timing.result(
        COMPOSE,
        f"default benchmark jobs (`experiment=benchmark +grid=… seed=…`, {s.grids} grid points "
        f"× {s.seeds} seeds, a template each), a fresh composer per sweep vs `load_sweep_config`",
        overhead=False,
        extra={"jobs": len(jobs), "jobs_checked": checked, "grid_points": points},
    )


def run_compose(args: argparse.Namespace) -> list[Result]:
    """Figure 12."""
    s = QUICK if args.quick else FULL
    return [uci_row(args, s), benchmark_row(args, s)]
