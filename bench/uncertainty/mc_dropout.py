"""Monte Carlo dropout (Gal & Ghahramani, 2016): T stochastic passes of a network trained with
dropout approximate its posterior predictive distribution.

Efficient by construction. Every model here is an ``nn.Sequential`` of blocks, so the blocks
before the first dropout layer (the deterministic prefix) run once per batch; only the
stochastic remainder runs T times, and not in a Python loop: its input is repeated along the
batch dimension for ``t_chunk`` samples at once, one forward of (t_chunk·B, …) rows, reshaped
to (t_chunk, B, out). ``t_chunk`` is as large as the ``memory_mb`` activation budget allows.
The prefix runs in sampling mode like the rest: a probe has checked that it is deterministic
there, so its one output is exactly what each of the T full passes would compute.

The masks come from their own seeded stream (a fork of torch's RNG), so a prediction is
reproducible and the training run's random stream is left exactly where it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from bench.data.checks import is_int, is_real
from bench.errors import ConfigError
from bench.models.blocks import stochastic_prefix_length
from bench.models.masks import fast_dropout
from bench.uncertainty.base import (
    Prediction,
    Predictor,
    classification_mixture,
    entropy,
    regression_mixture,
)

KEY = "callbacks.mc_dropout"  # where the settings live in the config, for error messages
PROBE_ROWS = 8  # rows of the probe batches that detect dropout and measure activations


@contextlib.contextmanager
def restored_modes(network: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's train/eval flag on exit, one by one (mixed modes included)."""
    modes = [(m, m.training) for m in network.modules()]
    try:
        yield network
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def sampling_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Every dropout active, every normalization layer on its running statistics.

    ``network.train()`` switches on dropout layers of any kind and functional dropout written
    as ``F.dropout(x, p, training=self.training)``; then every ``_NormBase`` (BatchNorm,
    InstanceNorm with running stats, SyncBatchNorm) goes back to eval, so samples neither use
    nor update batch statistics. Train mode may switch on other things in a user's module:
    stochastic depth (itself a Monte Carlo sample, welcome), noise layers, in-forward
    augmentation, or a custom running statistic that is not a ``_NormBase`` (which would then be
    updated). We accept that: the only general way to reach functional dropout is the module's
    own ``training`` flag, and our models contain nothing else that reads it. Every module's
    previous mode is restored on exit.
    """
    with restored_modes(network):
        network.train()
        for m in network.modules():
            if isinstance(m, _NormBase):
                m.eval()
        yield network


@contextlib.contextmanager
def random_stream(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """Fork the RNG the masks on ``device`` draw from, seeded with ``seed`` if given.

    Only the CPU generator and that device's CUDA generator are forked and seeded (not
    ``torch.manual_seed``, which would reseed every GPU without restoring them).
    """
    cuda: list[int] = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        if seed is not None:
            torch.default_generator.manual_seed(seed)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _param(network: nn.Module) -> torch.Tensor:
    return next(network.parameters())


def _to_network(x: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    return x.to(param.device, dtype=param.dtype if x.is_floating_point() else None)


@torch.no_grad()
def _differs(fn: nn.Module, x: torch.Tensor) -> bool:
    """Whether two calls of ``fn`` on ``x`` disagree; call it in sampling mode."""
    with random_stream(x.device, seed=0):
        return not torch.equal(fn(x), fn(x))


def has_active_dropout(network: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """A dropout layer with 0 < p < 1, or (functional dropout) two sampling passes on a random
    probe batch that differ. The probe leaves the global RNG and BN statistics untouched."""
    if any(isinstance(m, _DropoutNd) and 0 < m.p < 1 for m in network.modules()):
        return True
    probe = torch.randn((PROBE_ROWS, *input_shape), generator=torch.Generator().manual_seed(0))
    with sampling_mode(network):
        return _differs(network, _to_network(probe, _param(network)))


def check_stochastic(network: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Refuse, with one line, a network whose MC samples would all be identical."""
    if not has_active_dropout(network, tuple(input_shape)):
        name = type(network).__name__.lower()
        raise ConfigError(
            f"MC dropout needs active dropout, but model={name} has none: "
            "select regularizer=[dropout] or add dropout to the model"
        )


def deterministic_prefix(network: nn.Module, x: torch.Tensor) -> int:
    """How many leading blocks may run once per batch: those before the first dropout layer,
    if a probe confirms they are deterministic in sampling mode (functional dropout in an
    early block would not show in the structure); 0 for a model that is not a Sequential."""
    if not isinstance(network, nn.Sequential):
        return 0
    k = stochastic_prefix_length(network)
    if k == 0:
        return 0
    with sampling_mode(network):
        return 0 if _differs(nn.Sequential(*list(network)[:k]), x) else k


@torch.no_grad()
def activation_bytes_per_row(network: nn.Module, h: torch.Tensor) -> float:
    """Bytes of activations one input row costs in one pass of ``network``.

    Forward hooks on every leaf module sum the bytes of their outputs over one pass on ``h``
    (a few rows), plus the input itself, divided by the rows. Under no_grad a layer's input is
    freed once the next layer has run, so the sum over-counts the peak and the budget errs on
    the safe side; intermediates of functional ops inside a custom forward are not seen. The
    pass runs in eval mode: the shapes are those of a sampling pass, but no mask is drawn.
    """
    total = [h.numel() * h.element_size()]

    def count(module: nn.Module, inputs: Any, out: Any) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    leaves = [m for m in network.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with restored_modes(network):
            network.eval()(h)
    finally:
        for handle in handles:
            handle.remove()
    return total[0] / len(h)


# memory_mb: null picks the chunk budget by device. Measured on 2 CPU cores (scripts/bench_mc.py,
# CNN with dropout in its head, T=50): 8-16 MB chunks stay in cache and run ~1.6x faster than
# 256 MB ones; a GPU wants large chunks to fill the device.
AUTO_MEMORY_MB = {"cpu": 16.0, "cuda": 1024.0}


def _check(ok: bool, field: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{KEY}.{field} must be {allowed}, got {value!r}")


class MCDropout(Predictor):
    """T stochastic passes in sampling mode; the predictive distribution is their mixture.

    In an ensemble run it samples the first member (the one trained with the run's own seed),
    like ``Deterministic``, so ``mc/test/*`` means the same with and without an ensemble.
    After ``predict``, ``prefix_length`` and ``t_chunk`` (first batch) say how it ran.
    """

    prefix = "mc"
    label = "MC dropout"

    def __init__(self, samples: int = 50, memory_mb: float | None = None, seed: int = 0) -> None:
        _check(is_int(samples) and samples >= 1, "samples", "an integer >= 1", samples)
        finite = memory_mb is None or (is_real(memory_mb) and 0 < memory_mb < float("inf"))
        _check(finite, "memory_mb", "a number > 0 (megabytes) or null (auto)", memory_mb)
        _check(is_int(seed) and 0 <= seed < 2**63, "seed", "an integer in [0, 2**63)", seed)
        self.samples, self.seed = int(samples), int(seed)
        self.memory_mb = None if memory_mb is None else float(memory_mb)
        self.prefix_length: int | None = None
        self.t_chunk: int | None = None

    def summary(self) -> dict[str, float]:
        return {"mc/samples": self.samples}

    @torch.no_grad()
    def predict(self, batches: Iterable[torch.Tensor]) -> Prediction:
        network = self.networks[0]
        param = _param(network)
        parts: list[dict[str, torch.Tensor]] = []
        # nn.Dropout layers draw numpy masks on the CPU (bench/models/masks.py: 2-3x faster)
        with sampling_mode(network), random_stream(param.device, self.seed), fast_dropout(network):
            for x in batches:
                x = _to_network(x, param)
                if not parts:
                    self._plan(network, x)
                out = self.sample(x)
                parts.append(
                    _classification(out) if self.head.classification else self._regression(out)
                )
        if not parts:
            raise ValueError("MC dropout got no batches to predict")
        # per-input statistics are (B, ...) per batch; the samples' own values are (T, B)
        stats = {
            key: torch.cat([p[key] for p in parts], dim=-1 if key.startswith("sample_") else 0)
            for key in parts[0]
        }
        if self.head.classification:
            return classification_mixture(stats["probs"], stats["expected_entropy"])
        prediction = regression_mixture(stats["mean"], stats["epistemic"], stats["aleatoric"])
        prediction.mixture = (stats["sample_means"], stats["sample_vars"])
        return prediction

    def _plan(self, network: nn.Module, x: torch.Tensor) -> None:
        """Refuse a deterministic network; split it into prefix and remainder; size chunks."""
        check_stochastic(network, tuple(x.shape[1:]))
        probe = x[:PROBE_ROWS]
        self.prefix_length = k = deterministic_prefix(network, probe)
        blocks = list(network) if k else []
        self._prefix = nn.Sequential(*blocks[:k])
        self._remainder = nn.Sequential(*blocks[k:]) if k else network
        self._bytes_per_row = activation_bytes_per_row(self._remainder, self._prefix(probe))
        self._device_type = "cuda" if x.is_cuda else "cpu"
        self.t_chunk = self._chunk(len(x))

    def _chunk(self, rows: int) -> int:
        """Samples per batched forward: t_chunk·rows·bytes_per_row within the budget."""
        budget = (self.memory_mb or AUTO_MEMORY_MB[self._device_type]) * 2**20
        return max(1, min(self.samples, int(budget // (self._bytes_per_row * rows))))

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs of T stochastic passes on one batch, (T, B, out), CPU float64.

        Rows of one chunk are sample-major: row s·B + b is sample s of input b.
        """
        h = self._prefix(x)  # blocks before the first dropout: once per batch
        rows, t_chunk = len(x), self._chunk(len(x))
        outs = []
        for start in range(0, self.samples, t_chunk):
            t = min(t_chunk, self.samples - start)
            out = self._remainder(h.repeat(t, *[1] * (h.ndim - 1)))
            outs.append(out.reshape(t, rows, -1).double().cpu())
        return torch.cat(outs)

    def _regression(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        samples, rows, width = out.shape
        means, variances = self.head.mean_var(out.reshape(samples * rows, width))
        means = means.reshape(samples, rows)
        if self.head.heteroscedastic:
            variances = variances.reshape(samples, rows)
            aleatoric = variances.mean(dim=0)
        else:
            aleatoric = variances = torch.full((rows,), self.head.noise_var, dtype=torch.float64)
        # ddof 0: the predictive is the mixture of the T Gaussians, whose variance is exactly
        # mean(σ²_t) + the population variance of the μ_t (law of total variance).
        epistemic = means.var(dim=0, correction=0)
        return {
            "mean": means.mean(dim=0),
            "epistemic": epistemic,
            "aleatoric": aleatoric,
            "sample_means": means,  # the mixture's components, for its exact likelihood
            "sample_vars": variances,
        }


def _classification(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean probabilities and the expected entropy E_t H[p_t] of one batch's T samples."""
    probs = logits.softmax(dim=-1)
    return {"probs": probs.mean(dim=0), "expected_entropy": entropy(probs).mean(dim=0)}


def predict_split(
    predictor: Predictor, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[Prediction, torch.Tensor]:
    """A fitted predictor's prediction for (x, y) batches, and the targets y concatenated on the
    CPU (as the loader yields them: standardized for regression). For the validation split."""
    targets: list[torch.Tensor] = []

    def inputs() -> Iterator[torch.Tensor]:
        for x, y in batches:
            targets.append(y.cpu())
            yield x

    prediction = predictor.predict(inputs())
    return prediction, torch.cat(targets)
