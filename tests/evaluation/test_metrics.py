from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from st_unirep.evaluation import metrics


def test_perfect_embeddings_give_r1_and_zero_ece():
    eye = np.eye(5)
    assert metrics.retrieval(eye @ eye.T, [{i} for i in range(5)])["r@1"] == 1.0
    gold = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert metrics.calibration(gold, gold) == {"ece": 0.0, "brier": 0.0}


def test_three_query_toy_by_hand():
    # query 0: relevant {1}, ranking [1, 0, 2] -> rank 1; query 1: relevant {2}, ranking [0, 1, 2] -> rank 3;
    # query 2: relevant {0, 2}, ranking [1, 2, 0] -> ranks 2 and 3.
    scores = np.array([[0.5, 0.9, 0.1], [0.9, 0.5, 0.1], [0.1, 0.9, 0.5]])
    out = metrics.retrieval(scores, [{1}, {2}, {0, 2}], ks=(1, 2))
    assert out["r@1"] == pytest.approx(1 / 3)
    assert out["r@2"] == pytest.approx(2 / 3)
    assert out["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    ndcg = [1.0, (1 / math.log2(4)) / 1.0, (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))]
    assert out["ndcg@10"] == pytest.approx(sum(ndcg) / 3)


def test_correlation_equals_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert metrics.correlation(x, y)["spearman"] == pytest.approx(spearmanr(x, y).statistic)


def test_ece_by_hand():
    predicted = np.array([0.05, 0.15, 0.15, 0.95])
    target = np.array([0.0, 0.5, 0.3, 1.0])
    # bins: [0, .1): |.05 - 0| * 1/4; [.1, .2): |.15 - .4| * 2/4; [.9, 1]: |.95 - 1| * 1/4
    assert metrics.calibration(predicted, target)["ece"] == pytest.approx(0.05 / 4 + 0.25 / 2 + 0.05 / 4)
    assert metrics.calibration(predicted, target)["brier"] == pytest.approx(np.mean((predicted - target) ** 2))


def test_threshold_table_and_binary():
    scores = np.array([0.9, 0.8, 0.6, 0.4])
    labels = np.array([1, 0, 1, 0])
    row = {r["threshold"]: r for r in metrics.threshold_table(scores, labels, [0.7])}[0.7]
    assert (row["precision"], row["recall"], row["selected"]) == (0.5, 0.5, 2)
    assert metrics.binary(scores, labels)["roc_auc"] == pytest.approx(0.75)


def test_truncate_renormalises():
    x = np.array([[3.0, 4.0, 12.0]])
    np.testing.assert_allclose(metrics.truncate(x, 2), [[0.6, 0.8]])


def test_fewer_candidates_than_ten():
    out = metrics.retrieval(np.array([[0.1, 0.9, 0.5]]), [{2}])
    assert out["r@1"] == 0.0 and out["r@5"] == 1.0 and out["mrr@10"] == pytest.approx(0.5)
    assert out["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_floor_bound_ece_by_hand():
    # gold 0 and 1, floor 0.5: predictions 0.5 (bin 5, gold 0) and 1.0 (bin 9, exact): ECE = 0.5 * 0.5 = 0.25
    assert metrics.floor_bound_ece(np.array([0.0, 1.0]), 0.5) == pytest.approx(0.25)
    # gold 0.1, 0.3 both lifted into bin 5 (mean gold 0.2); gold 0.8 exact: ECE = 2/3 * 0.3 = 0.2
    assert metrics.floor_bound_ece(np.array([0.1, 0.3, 0.8]), 0.5) == pytest.approx(0.2)
    assert metrics.floor_bound_ece(np.array([0.6, 0.9]), 0.5) == 0.0  # nothing below the floor: exact
