"""bench.metrics against definitions written out independently with plain loops or closed forms."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torchmetrics.functional.classification import multiclass_calibration_error

from bench.metrics import (
    adaptive_calibration_error,
    aurc,
    bin_indices,
    classification_metrics,
    classwise_calibration_error,
    expected_calibration_error,
    misclassification_auroc,
    ood_metrics,
    regression_metrics,
    reliability,
)
from bench.metrics.ranking import Ranking, auroc


def reference_bin(c: float, n_bins: int) -> int:
    """The stated rule in exact arithmetic: the first bin b with c ≤ (b + 1)/M."""
    exact = Fraction(c)
    return next(b for b in range(n_bins) if exact <= Fraction(b + 1, n_bins))


def reference_ece(conf, correct, n_bins: int) -> float:
    """Equal-width L1 ECE by a loop over bins and samples."""
    total = 0.0
    for b in range(n_bins):
        members = [i for i in range(len(conf)) if reference_bin(float(conf[i]), n_bins) == b]
        if members:
            acc = sum(float(correct[i]) for i in members) / len(members)
            mean_conf = sum(float(conf[i]) for i in members) / len(members)
            total += len(members) * abs(acc - mean_conf)
    return total / len(conf)


def reference_aurc(conf, err) -> float:
    """AURC of one ordering: samples are accepted in the given order."""
    risks, errors = [], 0.0
    for k, e in enumerate(err, start=1):
        errors += e
        risks.append(errors / k)
    return sum(risks) / len(risks)


# --- binning -------------------------------------------------------------------------------


def test_binning_edges_go_to_the_lower_bin_and_the_ends_are_inside():
    values = [0.0, 0.1, 0.25, 0.26, 0.5, 0.75, 0.99, 1.0]  # 0.25 / 0.5 / 0.75 exact in binary
    assert bin_indices(np.array(values), 4).tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    assert [reference_bin(v, 4) for v in values] == [0, 0, 0, 1, 1, 2, 3, 3]


def test_binning_floating_point_edges_as_documented():
    # 0.2 is stored slightly above 0.2, yet 0.2 * 5 rounds to 1.0: the lower bin.
    assert Fraction(0.2) > Fraction(1, 5) and bin_indices(np.array([0.2]), 5).tolist() == [0]
    # Every edge k/15 (as the nearest double) lands in the lower bin k − 1.
    edges = np.array([k / 15 for k in range(1, 16)])
    assert bin_indices(edges, 15).tolist() == list(range(15))
    # Not so for every M: 0.28 * 25 rounds to 7.000000000000001, the upper bin.
    assert bin_indices(np.array([0.28]), 25).tolist() == [7]


def test_reliability_matches_loops_and_leaves_empty_bins_nan():
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.3, 1.0, 40), [0.0, 0.5, 0.75, 1.0]])
    correct = rng.random(len(conf)) < conf
    out = reliability(torch.tensor(conf), torch.tensor(correct), n_bins=8)
    assert out["edges"].tolist() == [b / 8 for b in range(9)]
    for b in range(8):
        members = [i for i in range(len(conf)) if reference_bin(conf[i], 8) == b]
        assert out["counts"][b] == len(members)
        if members:
            assert out["confidence"][b] == pytest.approx(np.mean([conf[i] for i in members]))
            assert out["accuracy"][b] == pytest.approx(np.mean([correct[i] for i in members]))
        else:
            assert math.isnan(out["confidence"][b]) and math.isnan(out["accuracy"][b])
    assert out["counts"].dtype == np.int64 and out["counts"].sum() == len(conf)
    assert out["counts"][1] == 0  # nothing in (1/8, 2/8]: the NaN branch above did run
    expected = reference_ece(conf, correct, 8)
    assert expected_calibration_error(conf, correct, n_bins=8) == pytest.approx(expected)


def test_confidence_one_is_counted_in_the_last_bin():
    # Wrong at confidence exactly 1.0 (gap 1) and right at 0.7 (gap 0.3): the gap of 1 counts
    # only if the sample at 1.0 is binned.
    m = classification_metrics(torch.tensor([[1.0, 0.0], [0.3, 0.7]]), torch.tensor([1, 1]))
    assert m["ece"] == pytest.approx((1.0 + 0.3) / 2) and m["mce"] == pytest.approx(1.0)
    assert reliability([1.0, 1.0], [0, 1])["counts"][-1] == 2


def test_perfect_calibration_gives_zero_ece_and_mce():
    # Each confidence level has exactly that accuracy and its own bin; argmax is class 0.
    probs, labels = [], []
    for conf, n, right in [(0.5, 4, 2), (0.625, 8, 5), (0.75, 4, 3), (0.875, 8, 7), (1.0, 3, 3)]:
        probs += [[conf, 1 - conf]] * n
        labels += [0] * right + [1] * (n - right)
    m = classification_metrics(np.array(probs), np.array(labels))
    assert m["acc"] == pytest.approx(20 / 27)
    assert m["ece"] == pytest.approx(0.0, abs=1e-15) and m["mce"] == pytest.approx(0.0, abs=1e-15)


def test_ece_and_mce_agree_with_torchmetrics_away_from_edges():
    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(500, 6, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 6, (500,), generator=gen)
    conf = probs.max(1).values * 15
    assert (conf - conf.round()).abs().min() > 1e-9  # no confidence on a bin edge
    m = classification_metrics(probs, labels)
    for key, norm_ in (("ece", "l1"), ("mce", "max")):
        ref = multiclass_calibration_error(probs, labels, num_classes=6, n_bins=15, norm=norm_)
        assert m[key] == pytest.approx(ref.item(), rel=1e-6)  # torchmetrics casts to float32
    assert m["ece"] == pytest.approx(
        reference_ece(probs.max(1).values, probs.argmax(1) == labels, 15)
    )


def test_adaptive_ece_hand_worked():
    # Stable sort: 0.6 (#1), 0.6 (#3), 0.7, 0.8, 0.9; array_split 5 into 2 → sizes 3 and 2.
    # Chunk 1: conf 1.9/3, acc 1/3 → gap 0.3; chunk 2: conf 0.85, acc 1 → gap 0.15.
    conf, correct = [0.9, 0.6, 0.8, 0.6, 0.7], [1, 0, 1, 1, 0]
    assert adaptive_calibration_error(conf, correct, 2) == pytest.approx((3 * 0.3 + 2 * 0.15) / 5)
    # Fewer samples than bins: each sample is its own chunk, the empty ones weigh nothing.
    assert adaptive_calibration_error([0.2, 0.9], [1, 1], 15) == pytest.approx((0.8 + 0.1) / 2)
    # Ties straddling a cut keep their input order: chunks {#0, #1} and {#2, #3}.
    assert adaptive_calibration_error([0.5] * 4, [1, 0, 0, 0], 2) == pytest.approx(0.25)
    assert adaptive_calibration_error([0.5] * 4, [0, 0, 1, 0], 2) == pytest.approx(0.25)
    assert adaptive_calibration_error([0.5] * 4, [1, 1, 0, 0], 2) == pytest.approx(0.5)


def test_classwise_ece_by_loops_with_exact_zeros():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), size=60)
    probs[rng.random(probs.shape) < 0.3] = 0.0  # exact zeros, the first bin
    probs[:, 0] += probs.sum(1) == 0
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 4, 60)
    assert (probs == 0.0).sum() > 20
    expected = np.mean(
        [reference_ece(probs[:, k], [int(y == k) for y in labels], 15) for k in range(4)]
    )
    assert classwise_calibration_error(probs, labels) == pytest.approx(expected)
    assert classification_metrics(probs, labels)["cwece"] == pytest.approx(expected)


# --- ranking of errors ---------------------------------------------------------------------


def test_misclassification_auroc_by_pairwise_counting_with_ties():
    rng = np.random.default_rng(3)
    conf = rng.choice([0.4, 0.6, 0.8, 1.0], size=50)  # many ties
    correct = rng.random(50) < conf
    wrong, right = np.flatnonzero(~correct), np.flatnonzero(correct)
    wins = sum(
        1.0 if conf[i] < conf[j] else 0.5 if conf[i] == conf[j] else 0.0
        for i in wrong
        for j in right
    )
    assert misclassification_auroc(conf, correct) == pytest.approx(wins / (len(wrong) * len(right)))


def test_misclassification_auroc_is_nan_with_one_class():
    assert math.isnan(misclassification_auroc([0.9, 0.7], [1, 1]))
    assert math.isnan(misclassification_auroc([0.9, 0.7], [0, 0]))
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    assert math.isnan(classification_metrics(probs, torch.tensor([0, 1]))["misclass_auroc"])


def test_aurc_by_a_loop_without_ties():
    rng = np.random.default_rng(4)
    conf = rng.random(30)
    correct = rng.random(30) < conf
    order = sorted(range(30), key=lambda i: -conf[i])
    expected = reference_aurc(conf[order], [1 - int(correct[i]) for i in order])
    assert aurc(conf, correct) == pytest.approx(expected)


def test_aurc_with_ties_is_the_mean_over_all_tie_orders():
    conf = [0.9, 0.7, 0.9, 0.5, 0.7, 0.9, 0.2]
    err = [0, 1, 1, 0, 0, 0, 1]
    values = [
        reference_aurc([conf[i] for i in perm], [err[i] for i in perm])
        for perm in itertools.permutations(range(7))
        if all(conf[a] >= conf[b] for a, b in itertools.pairwise(perm))
    ]
    assert len(values) == 3 * 2 * 1 * 2  # 3! orders of the 0.9s, 2! of the 0.7s
    assert aurc(conf, [1 - e for e in err]) == pytest.approx(np.mean(values))
    assert aurc(conf[::-1], [1 - e for e in err[::-1]]) == pytest.approx(np.mean(values))


def test_classification_basics_by_loops_for_torch_and_numpy():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [1.0, 0.0, 0.0]])
    labels = np.array([0, 2, 0, 1])
    nll = -np.mean([math.log(max(probs[i, y], 1e-300)) for i, y in enumerate(labels)])
    brier = np.mean(
        [sum((probs[i, k] - (k == y)) ** 2 for k in range(3)) for i, y in enumerate(labels)]
    )
    for m in (
        classification_metrics(probs, labels),
        classification_metrics(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels)),
    ):
        assert m["nll"] == m["loss"] == pytest.approx(nll, rel=1e-6)
        assert m["acc"] == 0.5 and m["brier"] == pytest.approx(brier, rel=1e-6)
        assert all(isinstance(v, float) for v in m.values())
    with pytest.raises(ValueError, match="probs"):
        classification_metrics(probs, labels[:3])


# --- regression ----------------------------------------------------------------------------


def test_regression_nll_and_mse_closed_form():
    mean, var = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
    y = np.array([0.5, -1.0, -2.0])
    m = regression_metrics(torch.tensor(mean), torch.tensor(var), torch.tensor(y))
    assert m["nll"] == pytest.approx(-np.mean(norm.logpdf(y, mean, np.sqrt(var))))
    assert m["loss"] == pytest.approx((0.25 + 4.0) / 3) and m["rmse"] == math.sqrt(m["loss"])


def test_coverage_hand_case():
    # z-quantiles 0.674 / 1.282 / 1.645 / 1.960 of N(0, 1).
    y = np.array([0.0, 0.5, 0.7, 1.0, 1.5, 2.0, -2.5, 3.0])
    m = regression_metrics(np.zeros(8), np.ones(8), y)
    observed = {"coverage50": 2 / 8, "coverage80": 4 / 8, "coverage90": 5 / 8, "coverage95": 5 / 8}
    assert {k: m[k] for k in observed} == pytest.approx(observed)
    assert m["coverage_error"] == pytest.approx((0.25 + 0.3 + 0.275 + 0.325) / 4)


def test_coverage_of_samples_from_the_predicted_gaussian_is_nominal():
    n = 200_000
    rng = np.random.default_rng(5)
    mean, std = rng.normal(size=n), rng.uniform(0.1, 3.0, n)
    y = rng.normal(mean, std)
    m = regression_metrics(mean, std**2, y)
    for level in (0.5, 0.8, 0.9, 0.95):
        se = math.sqrt(level * (1 - level) / n)  # binomial standard error, ≤ 0.0011
        assert abs(m[f"coverage{round(100 * level)}"] - level) < 4 * se
    assert m["coverage_error"] < 4 * math.sqrt(0.25 / n)


# --- OOD -----------------------------------------------------------------------------------


def test_ood_identical_and_separated_scores():
    same = ood_metrics([0.1, 0.4, 0.7, 0.9], [0.1, 0.4, 0.7, 0.9])
    assert same["auroc"] == pytest.approx(0.5)
    apart = ood_metrics(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.8]))
    assert apart == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}


def test_ood_auroc_and_aupr_by_loops_with_ties():
    rng = np.random.default_rng(6)
    s_in, s_out = rng.integers(0, 8, 40) / 4, rng.integers(3, 12, 25) / 4  # many ties
    wins = sum(1.0 if o > i else 0.5 if o == i else 0.0 for o in s_out for i in s_in)
    ap, recall_before = 0.0, 0.0
    for t in sorted(set(s_in) | set(s_out), reverse=True):
        tp, fp = sum(s >= t for s in s_out), sum(s >= t for s in s_in)
        recall = tp / len(s_out)
        ap += (recall - recall_before) * tp / (tp + fp)
        recall_before = recall
    m = ood_metrics(s_in, s_out)
    assert m["auroc"] == pytest.approx(wins / (len(s_in) * len(s_out)))
    assert m["aupr"] == pytest.approx(ap)


def test_fpr95_hand_case():
    # 95 % of 20 OOD scores = 19: the highest such threshold is 2 (flags 2 … 20); threshold
    # 2.5 flags only 18. In-distribution scores ≥ 2: 2.0, 2.5, 3, 25 → 4 of 6.
    s_out = np.arange(1.0, 21.0)
    s_in = np.array([0.5, 1.5, 2.0, 2.5, 3.0, 25.0])
    assert ood_metrics(s_in, s_out)["fpr95"] == pytest.approx(4 / 6)


# --- ranking: the same numbers as scikit-learn, without its per-call validation -------------


def ranking_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, is_positive, scores): continuous, heavily tied, all tied, tiny, large."""
    rng = np.random.default_rng(7)
    cases = [
        ("continuous", rng.random(360) < 0.2, rng.random(360)),
        ("five levels", rng.random(360) < 0.5, rng.integers(0, 5, 360).astype(float)),
        ("all tied", np.arange(40) % 3 == 0, np.full(40, 0.25)),
        ("two", np.array([True, False]), np.array([0.3, 0.7])),
        ("two tied", np.array([False, True]), np.array([0.5, 0.5])),
        ("three", np.array([True, False, True]), np.array([0.1, 0.4, 0.9])),
        ("one positive", np.arange(9) == 4, rng.integers(0, 3, 9).astype(float)),
        ("large, rounded", rng.random(10_000) < 0.1, np.round(rng.normal(size=10_000), 2)),
    ]
    positive = rng.random(500) < 0.3  # scores that depend on the label: AUROC far from ½
    cases.append(("informative", positive, np.round(rng.normal(positive * 1.5), 1)))
    return cases


@pytest.mark.parametrize(("name", "positive", "scores"), ranking_cases())
def test_ranking_metrics_are_sklearns(name: str, positive: np.ndarray, scores: np.ndarray):
    ranking = Ranking.of(positive, scores)
    assert auroc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert ranking.auroc() == auroc(positive, scores)
    # Average precision: the same operations in the same order, so the same float.
    assert ranking.average_precision() == average_precision_score(positive, scores)
    fpr, tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    for level in (0.5, 0.95, 1.0):
        assert ranking.fpr_at_tpr(level) == fpr[np.argmax(tpr >= level)]


def test_ood_metrics_and_misclassification_auroc_are_sklearns():
    rng = np.random.default_rng(8)
    s_in, s_out = np.round(rng.random(360), 2), np.round(rng.random(360) + 0.2, 2)
    s_in = torch.tensor(s_in, dtype=torch.float32).double().numpy()  # as a float32 tensor holds it
    is_ood, scores = np.r_[np.zeros(360), np.ones(360)], np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(is_ood, scores, drop_intermediate=False)
    m = ood_metrics(torch.tensor(s_in, dtype=torch.float32), s_out)
    assert m["auroc"] == pytest.approx(roc_auc_score(is_ood, scores), abs=1e-12)
    assert m["aupr"] == average_precision_score(is_ood, scores)
    assert m["fpr95"] == fpr[np.argmax(tpr >= 0.95)]
    conf = rng.choice([0.3, 0.55, 0.7, 0.9, 1.0], size=360)
    correct = rng.random(360) < conf
    expected = roc_auc_score(~correct, 1.0 - conf)
    assert misclassification_auroc(conf, correct) == pytest.approx(expected, abs=1e-12)


def test_ranking_without_both_classes_is_nan():
    assert math.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auroc(np.zeros(4, dtype=bool), [0.1, 0.2, 0.3, 0.4]))
    assert math.isnan(auroc([], []))
    negatives_only = Ranking.of([0, 0], [0.4, 0.6])
    assert math.isnan(negatives_only.average_precision())
    assert math.isnan(negatives_only.fpr_at_tpr(0.95))
    assert math.isnan(Ranking.of([1, 1], [0.4, 0.6]).auroc())


def test_non_finite_scores_are_refused_as_by_sklearn():
    with pytest.raises(ValueError, match="NaN"):
        roc_auc_score([0, 1], [0.5, np.nan])  # the reference refuses them too
    with pytest.raises(ValueError, match="must be finite"):
        ood_metrics([0.1, np.nan], [0.5])
    with pytest.raises(ValueError, match="must be finite"):
        ood_metrics([0.1, 0.2], [np.inf])
    with pytest.raises(ValueError, match="must be finite"):
        misclassification_auroc([0.9, np.nan, 0.4], [1, 0, 1])
    # One class: NaN before the scores are looked at, as misclassification_auroc always did.
    assert math.isnan(misclassification_auroc([0.9, np.nan], [1, 1]))


def test_ranking_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        Ranking.of([0, 1, 1], [0.2, 0.4])
