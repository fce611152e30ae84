"""The prediction contract shared by every post-training method.

- :class:`OutputHead` turns raw network outputs into a distribution: class probabilities, or a
  Gaussian mean and variance in the original target units.
- :class:`Prediction` is what a method returns for N samples: the distribution, per-sample
  uncertainty scores (higher = more uncertain, so every score ranks OOD samples the same way)
  and extra per-sample arrays worth saving in ``predictions.npz``.
- :class:`Predictor` is the method: ``fit`` once after training (bind the trained networks;
  temperature scaling also fits on the validation split), then ``predict`` any batches.

A predictor's ``prefix`` names its metrics: ``""`` writes ``test/*``, ``"mc"`` writes
``mc/test/*``; its arrays go to ``predictions.npz`` as ``<prefix>_<name>`` (``mc_probs``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class OutputHead:
    """How a network's raw output becomes a predictive distribution.

    Classification: the output is logits. Regression: column 0 is the standardized mean; with
    ``heteroscedastic`` column 1 is the log-variance (standardized units). Without a variance
    head the predictive variance is ``noise_var`` (the training MSE, original units), which the
    evaluation sets once the training split has been predicted — or, given a noise precision τ
    (``noise_precision``, original units), 1/τ: the Gaussian likelihood the network was trained
    under, as Gal & Ghahramani's protocol evaluates it.
    """

    task: str
    heteroscedastic: bool = False
    target_mean: float = 0.0
    target_std: float = 1.0
    noise_var: float = math.nan

    @classmethod
    def for_run(
        cls,
        network: nn.Module,
        task: str,
        heteroscedastic: bool,
        datamodule,
        noise_precision: float | None = None,
    ) -> OutputHead:
        """The head of a trained run: the datamodule's target scale and, without a variance
        head, 1/``noise_precision`` if given, else the training MSE of ``network`` in eval mode
        (the maximum-likelihood noise level of a Gaussian fitted to its residuals) as the
        predictive variance."""
        head = cls(
            task=task,
            heteroscedastic=heteroscedastic,
            target_mean=float(datamodule.target_mean),
            target_std=float(datamodule.target_std),
        )
        if task == "regression" and not heteroscedastic and noise_precision is not None:
            head.noise_var = 1.0 / float(noise_precision)
        elif task == "regression" and not heteroscedastic:
            x, y = datamodule.tensors["train"]
            mean, _ = head.mean_var(network_outputs(network, x.split(datamodule.eval_batch_size)))
            y = y.double().cpu() * head.target_std + head.target_mean
            head.noise_var = ((mean - y) ** 2).mean().item()
        return head

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def mean_var(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Regression: (mean, variance) in original units, float64."""
        mean = out[:, 0].double() * self.target_std + self.target_mean
        if self.heteroscedastic:
            var = out[:, 1].double().exp() * self.target_std**2
        else:
            var = torch.full_like(mean, self.noise_var)
        return mean, var


@dataclass
class Prediction:
    """A predictive distribution over N samples (float64, CPU).

    Classification sets ``probs`` (N, K) and, where the method has them, ``logits`` (N, K);
    regression sets ``mean`` and ``var`` (N,) in original units, and a mixture (MC samples,
    ensemble members) its components' means and variances in ``mixture`` ((S, N) each; the
    variances may be (N,) when shared), from which ``ll`` is the exact mixture likelihood.
    ``scores`` are per-sample uncertainty scores oriented so that higher means more uncertain
    (e.g. ``max_prob`` holds minus the maximum probability). ``arrays`` are extra per-sample
    arrays for predictions.npz (``entropy``, ``mutual_info``, ``var_epistemic`` ...).
    ``members`` holds the individual predictions of an ensemble's members (for their own metrics
    and the ensemble's diversity).
    """

    probs: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None
    mixture: tuple[torch.Tensor, torch.Tensor] | None = None
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    members: list[Prediction] | None = None

    def __len__(self) -> int:
        ref = self.probs if self.probs is not None else self.mean
        return 0 if ref is None else len(ref)


class Predictor(ABC):
    """A post-training prediction method. Subclasses implement ``predict``."""

    prefix: str = ""
    label: str = "deterministic"  # how plots and the terminal name the method

    def supports(self, head: OutputHead) -> bool:
        """Whether the method applies to this task (temperature scaling: classification only)."""
        return True

    def fit(
        self,
        networks: Sequence[nn.Module],
        head: OutputHead,
        val: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        """Bind the trained networks (an ensemble's members; otherwise one) and fit anything
        the method fits on validation data. Called once, before any ``predict``."""
        self.networks = list(networks)
        self.head = head

    @abstractmethod
    def predict(self, batches: Iterable[torch.Tensor]) -> Prediction:
        """The predictive distribution for the inputs of ``batches`` (in order)."""

    def summary(self) -> dict[str, float]:
        """Scalars about the method itself, as full result keys (``ts/temperature``)."""
        return {}


@torch.no_grad()
def network_outputs(network: nn.Module, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Raw outputs of ``network`` in eval mode over ``batches``, concatenated on the CPU.

    Inputs are moved to the network's device and floating dtype; the network's mode is restored.
    """
    was_training = network.training
    network.eval()
    param = next(network.parameters())
    outs = [
        network(x.to(param.device, dtype=param.dtype if x.is_floating_point() else None)).cpu()
        for x in batches
    ]
    network.train(was_training)
    return torch.cat(outs)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of ``probs``; 0·log 0 counts as 0."""
    return -(probs * torch.log(probs.clamp_min(1e-300))).sum(dim=-1)


def classification_prediction(logits: torch.Tensor) -> Prediction:
    """Probabilities and the logit-based scores of one deterministic network output."""
    logits = logits.double()
    probs = logits.softmax(dim=-1)
    scores = {
        "max_prob": -probs.max(dim=-1).values,
        "entropy": entropy(probs),
        "max_logit": -logits.max(dim=-1).values,
        "energy": -torch.logsumexp(logits, dim=-1),
    }
    return Prediction(
        probs=probs, logits=logits, scores=scores, arrays={"entropy": scores["entropy"]}
    )


def regression_prediction(mean: torch.Tensor, var: torch.Tensor) -> Prediction:
    """A Gaussian prediction; its uncertainty score is the predictive variance."""
    return Prediction(mean=mean, var=var, scores={"variance": var})


def mixture_classification(samples: torch.Tensor) -> Prediction:
    """The mean of S predictive distributions (S, N, K) — MC samples or ensemble members."""
    samples = samples.double()
    return classification_mixture(samples.mean(dim=0), entropy(samples).mean(dim=0))


def classification_mixture(probs: torch.Tensor, expected_entropy: torch.Tensor) -> Prediction:
    """A mixture's prediction from its mean probabilities and mean member entropy.

    Total uncertainty is the entropy of the mean, H[p̄]; aleatoric is the expected entropy
    E_s H[p_s]; their difference, the mutual information between the prediction and the
    model (the BALD score), is the epistemic part: never negative (Jensen), up to rounding
    (about -1e-16), hence the clamp.
    """
    total = entropy(probs)
    mutual_info = (total - expected_entropy).clamp_min(0.0)
    scores = {
        "max_prob": -probs.max(dim=-1).values,
        "entropy": total,
        "mutual_info": mutual_info,
        "expected_entropy": expected_entropy,
    }
    arrays = {"entropy": total, "expected_entropy": expected_entropy, "mutual_info": mutual_info}
    return Prediction(probs=probs, scores=scores, arrays=arrays)


def mixture_regression(means: torch.Tensor, variances: torch.Tensor) -> Prediction:
    """The Gaussian moment-matched to S Gaussians (S, N) — MC samples or ensemble members."""
    means, variances = means.double(), variances.double()
    prediction = regression_mixture(
        means.mean(dim=0), means.var(dim=0, correction=0), variances.mean(dim=0)
    )
    prediction.mixture = (means, variances)
    return prediction


def regression_mixture(
    mean: torch.Tensor, epistemic: torch.Tensor, aleatoric: torch.Tensor
) -> Prediction:
    """Mean of the means; variance = mean of the variances (aleatoric) + variance of the means
    (epistemic, ddof 0: the S members are the whole mixture, not a sample of it) — the law of
    total variance (Gal & Ghahramani, 2016)."""
    var = aleatoric + epistemic
    return Prediction(
        mean=mean,
        var=var,
        scores={"variance": var, "var_epistemic": epistemic},
        arrays={"var_epistemic": epistemic, "var_aleatoric": aleatoric},
    )
