"""Deep ensembles (Lakshminarayanan et al., 2017) and bagging: K independently trained networks.

Members differ only in their seed (and, for bagging, in the bootstrap resample they trained on);
each is evaluated in eval mode, so a member with dropout predicts deterministically. The
ensemble's prediction is the mixture of the members' predictions: the mean of their class
probabilities, or for regression the Gaussian moment-matched to their Gaussians.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench.uncertainty.base import (
    Prediction,
    Predictor,
    classification_prediction,
    mixture_classification,
    mixture_regression,
    network_outputs,
    regression_prediction,
)


class Ensemble(Predictor):
    """The members' mixture; ``Prediction.members`` keeps each member's own prediction."""

    prefix = "ens"
    label = "ensemble"

    def predict(self, batches: Iterable[torch.Tensor]) -> Prediction:
        batches = list(batches)  # every member sees the same inputs
        outs = [network_outputs(net, batches) for net in self.networks]
        if self.head.classification:
            members = [classification_prediction(out) for out in outs]
            pred = mixture_classification(torch.stack([m.probs for m in members]))
        else:
            members = [regression_prediction(*self.head.mean_var(out)) for out in outs]
            pred = mixture_regression(
                torch.stack([m.mean for m in members]), torch.stack([m.var for m in members])
            )
        pred.members = members
        return pred

    def summary(self) -> dict[str, float]:
        return {"ens/members": len(self.networks)}


def diversity(members: list[Prediction], targets: torch.Tensor) -> dict[str, float]:
    """How differently the members err — what decides how much averaging helps.

    For K members with error variance V and pairwise error covariance C, the averaged error has
    variance V/K + (K−1)/K·C: only the uncorrelated part averages away. ``error_corr`` is the
    mean pairwise Pearson correlation of the members' per-sample errors — 1 − p_k(y|x) for
    classification, the residual mean_k(x) − y for regression; ``disagreement`` (classification)
    is the mean pairwise fraction of samples whose predicted classes differ.
    """
    if members[0].probs is not None:
        errors = [1.0 - m.probs.gather(1, targets.view(-1, 1)).squeeze(1) for m in members]
        classes = [m.probs.argmax(dim=-1) for m in members]
    else:
        errors = [m.mean - targets.double() for m in members]
        classes = None
    pairs = [(i, j) for i in range(len(members)) for j in range(i + 1, len(members))]
    if not pairs:
        return {}
    corr = [torch.corrcoef(torch.stack([errors[i], errors[j]]))[0, 1].item() for i, j in pairs]
    out = {"error_corr": sum(corr) / len(corr)}
    if classes is not None:
        differ = [(classes[i] != classes[j]).double().mean().item() for i, j in pairs]
        out["disagreement"] = sum(differ) / len(differ)
    return out
