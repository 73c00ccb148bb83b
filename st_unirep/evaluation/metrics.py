"""Metrics on embeddings and scores, with the conventions written down (tested against hand-computed values)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score


def calibrated(cosines: np.ndarray) -> np.ndarray:
    """The calibrated relevance score (cos + 1) / 2."""
    return (np.asarray(cosines, dtype=np.float64) + 1.0) / 2.0


def correlation(cosines: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation of the cosine with the gold scores."""
    return {"spearman": float(spearmanr(cosines, gold).statistic), "pearson": float(pearsonr(cosines, gold).statistic)}


def calibration(predicted: np.ndarray, target: np.ndarray, bins: int = 10) -> dict[str, float]:
    r"""Calibration of scores ``predicted`` in [0, 1] against ``target`` in [0, 1].

    ``ece``: :math:`\sum_b \frac{n_b}{N} |\bar p_b - \bar s_b|` over ``bins`` equal-width bins of the prediction
    (the regression form of expected calibration error); ``brier``: :math:`\frac1N \sum (p - s)^2`.
    """
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    ece = reliability_ece(reliability_curve(predicted, target, bins))
    return {"ece": ece, "brier": float(np.mean((predicted - target) ** 2))}


def reliability_ece(curve: list[tuple[float, float, int]]) -> float:
    r"""The ECE of a :func:`reliability_curve`, :math:`\sum_b \frac{n_b}{N} |\bar p_b - \bar s_b|` (each row is
    :math:`(\bar p_b, \bar s_b, n_b)`): what :func:`calibration` gives for the same scores and bins."""
    total = sum(count for _, _, count in curve)
    return float(sum(count * abs(p - s) for p, s, count in curve) / total) if total else 0.0


def floor_bound_ece(target: np.ndarray, floor: float, bins: int = 10) -> float:
    r"""ECE of the best predictor that never scores below ``floor``: :math:`p_i = \max(s_i, \text{floor})`.

    A score :math:`(\cos + 1) / 2` below 0.5 needs a negative cosine. An encoder that gives (almost) no pair a
    negative cosine is at best this predictor with ``floor = 0.5``: exact on every pair the data rates ≥ 0.5 and
    at 0.5 on the rest, so its ECE is at least this value (same bins as :func:`calibration`).
    """
    target = np.asarray(target, dtype=np.float64)
    return calibration(np.maximum(target, floor), target, bins)["ece"]


def reliability_curve(predicted: np.ndarray, target: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean prediction, mean target, count) per non-empty equal-width bin, for a reliability diagram."""
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    return [
        (float(predicted[index == b].mean()), float(target[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]


def binary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Average precision and ROC-AUC of scores against 0/1 labels."""
    return {"ap": float(average_precision_score(labels, scores)), "roc_auc": float(roc_auc_score(labels, scores))}


def threshold_table(scores: np.ndarray, labels: np.ndarray, thresholds=None) -> list[dict[str, float]]:
    """Precision, recall and F1 of ``score >= t`` for each threshold on the calibrated score."""
    scores, labels = np.asarray(scores), np.asarray(labels).astype(bool)
    thresholds = np.round(np.arange(0.50, 1.0, 0.05), 2) if thresholds is None else thresholds
    rows = []
    for t in thresholds:
        chosen = scores >= t
        tp = float((chosen & labels).sum())
        precision = tp / chosen.sum() if chosen.any() else 1.0
        recall = tp / labels.sum() if labels.any() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {"threshold": float(t), "precision": precision, "recall": recall, "f1": f1, "selected": int(chosen.sum())}
        )
    return rows


def retrieval(scores: np.ndarray, relevant: list[set[int]], ks=(1, 5, 10)) -> dict[str, float]:
    r"""Ranking metrics of a ``(queries, candidates)`` score matrix, binary relevance.

    ``r@k``: share of queries with at least one relevant candidate in the top k (hit rate; with one relevant
    item per query it is recall@k); ``mrr@10``: mean of 1/rank of the first relevant item within the top 10
    (0 if none); ``ndcg@10``: :math:`\mathrm{DCG}@10 / \mathrm{IDCG}@10` with gain 1 and discount
    :math:`1/\log_2(r + 1)`.
    """
    scores = np.asarray(scores)
    if scores.shape[0] != len(relevant):
        raise ValueError(f"{scores.shape[0]} score rows but {len(relevant)} relevance sets")
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(max(ks), 10)]
    out = {f"r@{k}": 0.0 for k in ks} | {"mrr@10": 0.0, "ndcg@10": 0.0}
    for row, rel in zip(order, relevant, strict=True):
        hits = np.array([candidate in rel for candidate in row])
        for k in ks:
            out[f"r@{k}"] += float(hits[:k].any())
        first = np.flatnonzero(hits[:10])
        out["mrr@10"] += 1.0 / (first[0] + 1) if first.size else 0.0
        top = hits[:10]
        dcg = float((top / np.log2(np.arange(2, 2 + top.size))).sum())
        ideal = float((1.0 / np.log2(np.arange(2, 2 + min(len(rel), 10)))).sum())
        out["ndcg@10"] += dcg / ideal if ideal else 0.0
    return {key: value / len(relevant) for key, value in out.items()}


def embedding_health(anchors: np.ndarray, positives: np.ndarray, dims: tuple[int, ...] = ()) -> dict[str, float]:
    """Health statistics of paired unit embeddings ``(n, d)``.

    - ``std``: the mean over dimensions of the per-dimension standard deviation (0 when collapsed);
    - ``sim_p50`` / ``sim_p95``: quantiles of the cosine between different anchors (near 1 when collapsed);
    - ``pos_neg_gap``: mean cos(anchor_i, positive_i) minus mean cos(anchor_i, positive_j), j ≠ i;
    - ``mean_sim@d``: the mean cosine between different anchors on the renormalised first d dimensions.
    """
    n = anchors.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    sims = anchors @ anchors.T
    cross = anchors @ positives.T
    out = {
        "std": float(anchors.std(axis=0).mean()),
        "sim_p50": float(np.quantile(sims[off_diagonal], 0.5)),
        "sim_p95": float(np.quantile(sims[off_diagonal], 0.95)),
        "pos_neg_gap": float(np.diag(cross).mean() - cross[off_diagonal].mean()),
    }
    for dim in dims:
        prefix = truncate(anchors, dim)
        out[f"mean_sim@{dim}"] = float((prefix @ prefix.T)[off_diagonal].mean())
    return out


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The renormalised Matryoshka prefix of width ``dim``."""
    prefix = np.asarray(embeddings)[:, :dim]
    return prefix / np.maximum(np.linalg.norm(prefix, axis=1, keepdims=True), 1e-12)
