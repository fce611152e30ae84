"""Which jobs of a sweep can train as one population: the batcher the ``population`` launcher
(``hydra_plugins/regbench_population``) asks.

Jobs share one program when they compute the same thing up to what a population lets vary per
member: ``seed``, every numeric regularizer hyperparameter, ``noise_precision`` and
``dataset.split_seed``/``dataset.split`` (and a reproduction's ``protocol`` indices). The
group key is therefore the job's identity (``bench.resume.identity``: the resolved config minus
paths and logging) with those removed. A job whose model or regularizers have no population form,
or whose training couples examples across members (gradient clipping by global norm, several
devices), gets no key and runs one at a time, with the reason printed.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Hashable

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from bench.build import build, target_name
from bench.data.base import ArrayDataModule
from bench.errors import ConfigError
from bench.population.train import train_group
from bench.regularizers.base import Regularizer
from bench.resume.identity import identity

__all__ = ["group_key", "member_memory_mb", "train_group"]

# Top-level keys that may differ between members: the seed; the likelihood's noise precision
# (the evaluation's predictive noise, reaching training only through a regularizer's numeric
# strength, e.g. dropout_prior's τ); ``protocol``: a reproduction's grid indices
# (conf/experiment/gal2016_uci.yaml), resolved into exactly such numbers.
PER_MEMBER_TOP = ("seed", "noise_precision", "protocol")
# Dataset keys that may differ between members: each distinct value is its own datamodule, of
# equal sizes (bench/population/data.py), e.g. a split seed, or a UCI set's published split.
PER_MEMBER_DATA = ("split_seed", "split")
STACKABLE_MODELS = ("bench.models.linear.Linear", "bench.models.mlp.MLP", "bench.models.cnn.CNN")
BYTES = 4  # float32; a float64 population needs twice the estimate


def group_key(cfg: DictConfig) -> tuple[Hashable | None, str]:
    """(key, description), or (None, why this job trains alone)."""
    for node in ("dataset", "model", "optimizer", "trainer"):
        if not isinstance(cfg.get(node), DictConfig) or "_target_" not in cfg[node]:
            return None, "not a regbench training job"
    why = _alone(cfg)
    if why:
        return None, why
    try:  # a datamodule reads no data when built; a missing dataset is refused here
        build(cfg.dataset, "dataset")
    except ConfigError as exc:
        return None, f"refused: {exc}"
    ident = identity(cfg)
    for key in PER_MEMBER_TOP:
        ident.pop(key, None)
    for key in PER_MEMBER_DATA:
        ident.get("dataset", {}).pop(key, None)
    for node in (ident.get("regularizer") or {}).values():
        for key in [k for k, v in node.items() if _numeric(v)]:
            node.pop(key)
    key = json.dumps(ident, sort_keys=True, default=str)
    regs = "+".join(cfg.get("regularizer") or {}) or "none"
    model = cfg.model._target_.rsplit(".", 1)[-1].lower()
    return key, f"{target_name(cfg.dataset)}/{model}/{regs}"


def _alone(cfg: DictConfig) -> str | None:
    """Why this job cannot join a population (None: it can)."""
    model = cfg.model._target_
    if model not in STACKABLE_MODELS:
        return f"model {model.rsplit('.', 1)[-1]} has no population form (batch norm)"
    for name, node in (cfg.get("regularizer") or {}).items():
        cls = get_class(node._target_)
        if not (issubclass(cls, Regularizer) and cls.population):
            return f"regularizer {name} has no population form"
    if not issubclass(get_class(cfg.dataset._target_), ArrayDataModule):
        return "the dataset is not an in-memory ArrayDataModule"
    if not cfg.dataset.get("in_memory", True):
        return "dataset.in_memory=false"
    if int(OmegaConf.select(cfg, "ensemble.members", default=1) or 1) != 1:
        return "ensemble.members > 1 (members of one run train one after another)"
    trainer = cfg.trainer
    if trainer.get("devices", 1) not in (1, "1", "auto") or int(trainer.get("num_nodes", 1)) != 1:
        return "several devices (DDP)"
    if trainer.get("gradient_clip_val") is not None:
        return "trainer.gradient_clip_val (a global norm would mix the members)"
    if int(trainer.get("accumulate_grad_batches", 1)) != 1:
        return "trainer.accumulate_grad_batches > 1"
    if cfg.get("compile") or cfg.get("channels_last"):
        return "compile / channels_last"
    return None


def _numeric(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def member_memory_mb(cfg: DictConfig) -> float:
    """What one member adds to a population: weights, gradient, two optimizer moments, frozen and
    best copies (6 × parameters), plus forward and backward activations of one batch. Shapes
    only: the network is built on the meta device, nothing is allocated."""
    dm = build(cfg.dataset, "dataset")  # no data is read: shapes are known before loading
    outputs = dm.num_outputs * (2 if cfg.get("heteroscedastic") else 1)
    shape = tuple(dm.input_shape)
    with torch.device("meta"):
        model = build(cfg.model, "model", input_shape=shape, num_outputs=outputs)
        batch = int(cfg.dataset.get("batch_size") or 128)
        sizes: list[int] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
            for m in model.modules()
            if not list(m.children())
        ]
        model(torch.empty(batch, *shape))
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    total = 6 * params + 3 * sum(sizes)
    return math.ceil(total * BYTES / 2**20 * 100) / 100
