"""DevEvaluator: the project's metrics as a sentence-transformers evaluator, on hand-made embeddings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

from st_unirep.evaluation.datasets import PairData, RetrievalData
from st_unirep.evaluation.dev_evaluator import DevEvaluator


class _Card:
    def __init__(self):
        self.seen = []

    def set_evaluation_metrics(self, evaluator, metrics, epoch=0, step=0):
        self.seen.append(dict(metrics))


class _Lookup(torch.nn.Module):
    """A model whose embedding of each input is given by a table: the metrics of chosen embeddings, no network."""

    def __init__(self, table: dict[str, list[float]]):
        super().__init__()
        self.table = {key: np.asarray(value, dtype=np.float32) for key, value in table.items()}
        self.prompts = {}
        self.model_card_data = _Card()

    def encode(self, items, normalize_embeddings=True, **kwargs):
        vectors = np.stack([self.table[item] for item in items])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _angle(score: float, top: float = 5.0) -> list[float]:
    """A unit vector whose cosine with (1, 0) is 2 * score / top - 1: (cos + 1) / 2 is exactly the scaled score."""
    cosine = 2 * score / top - 1
    return [cosine, math.sqrt(max(0.0, 1 - cosine**2))]


GOLD = [0.0, 1.0, 2.5, 4.0, 5.0]
STS = PairData("sts", "graded", [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)], GOLD, (0.0, 5.0))
QA = RetrievalData("qa", ["q0", "q1", "q2"], ["d0", "d1", "d2", "d3"], [{0}, {1}, {2}])
ONE_HOT = {f"{side}{i}": [float(i == j) for j in range(4)] for side in "qd" for i in range(4)}


def _perfect_model() -> _Lookup:
    table = {f"a{i}": [1.0, 0.0] for i in range(5)} | {f"b{i}": _angle(score) for i, score in enumerate(GOLD)}
    return _Lookup({key: value + [0.0, 0.0] for key, value in table.items()} | ONE_HOT)


def test_perfect_embeddings_give_r_at_1_one_spearman_one_and_ece_zero():
    evaluator = DevEvaluator([STS, QA])
    metrics = evaluator(_perfect_model())
    assert metrics["qa_r@1"] == 1.0 and metrics["qa_mrr@10"] == 1.0 and metrics["qa_ndcg@10"] == pytest.approx(1.0)
    assert metrics["sts_spearman"] == pytest.approx(1.0) and metrics["sts_pearson"] == pytest.approx(1.0)
    assert metrics["sts_ece"] == pytest.approx(0.0, abs=1e-6) and metrics["sts_brier"] == pytest.approx(0.0, abs=1e-6)
    # several datasets: the primary metric is the mean of each one's main metric (spearman, ndcg@10)
    assert evaluator.primary_metric == "score" and metrics["score"] == pytest.approx(1.0)
    assert isinstance(evaluator, SentenceEvaluator) and evaluator.greater_is_better


def test_a_hand_computed_ranking():
    """q0's relevant d0 comes second (cos 0.6 < 0.8 with d1); q1 and q2 find theirs first."""
    table = dict(ONE_HOT, q0=[0.6, 0.8, 0.0, 0.0])
    metrics = DevEvaluator([QA]).compute_metrics(_Lookup(table))
    assert metrics["qa_r@1"] == pytest.approx(2 / 3) and metrics["qa_r@5"] == 1.0
    assert metrics["qa_mrr@10"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert metrics["qa_ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 + 1) / 3)


def test_primary_metric_prefix_direction_and_model_card():
    model = _perfect_model()
    evaluator = DevEvaluator([STS], name="dev")
    assert evaluator.primary_metric == "dev_sts_spearman"
    metrics = evaluator(model, epoch=1, steps=10)
    assert set(metrics) == {"dev_sts_spearman", "dev_sts_pearson", "dev_sts_ece", "dev_sts_brier"}
    assert model.model_card_data.seen == [metrics]
    assert DevEvaluator([QA]).primary_metric == "qa_ndcg@10"
    for metric, greater in [("sts_spearman", True), ("ocr_t2i_r@1", True), ("score", True), ("sts_ece", False)]:
        assert DevEvaluator.greater_is_better_for(metric) is greater, metric
    for metric in ("eval_sts_brier", "qa_ece@qa", "vnpara_vi_ece@paraphrase", "eval_loss"):
        assert DevEvaluator.greater_is_better_for(metric) is False, metric


def test_evaluation_does_not_leave_the_model_in_eval_mode(tmp_path):
    model = _perfect_model()
    model.train()
    DevEvaluator([QA])(model, output_path=str(tmp_path), epoch=0.5, steps=3)
    assert model.training
    header, row = (tmp_path / "dev_results.csv").read_text().splitlines()
    assert header.startswith("epoch,steps,qa_r@1,") and row.startswith("0.5,3,1.0,")


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def dev_root(tmp_path):
    """A data root in the shared layouts: graded pairs, text retrieval, captions <-> images."""
    root = tmp_path / "data"
    _write(
        root / "sts" / "dev.jsonl",
        [{"sentence1": f"a{i}", "sentence2": f"b{i}", "score": s} for i, s in enumerate(GOLD)],
    )
    _write(root / "qa" / "dev" / "queries.jsonl", [{"id": f"q{i}", "text": f"q{i}"} for i in range(3)])
    _write(root / "qa" / "dev" / "corpus.jsonl", [{"id": f"d{i}", "text": f"d{i}"} for i in range(4)])
    _write(
        root / "qa" / "dev" / "qrels.jsonl", [{"query_id": f"q{i}", "doc_id": f"d{i}", "score": 1} for i in range(3)]
    )
    (root / "pics" / "dev" / "images").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(root / "pics" / "dev" / "images" / f"{i}.png")
    _write(
        root / "pics" / "dev" / "captions.jsonl", [{"image": f"images/{i}.png", "caption": f"c{i}"} for i in range(2)]
    )
    (root / "train_only").mkdir()
    _write(root / "train_only" / "train.jsonl", [{"sentence1": "x", "sentence2": "y", "score": 1}])
    return root


def test_from_folder_reads_the_shared_layouts(dev_root):
    evaluator = DevEvaluator.from_folder(dev_root)
    assert [data.name for data in evaluator.datasets] == ["pics", "qa", "sts"]  # the split's datasets, by name
    text_only = DevEvaluator.from_folder(dev_root, images=False)
    assert [data.name for data in text_only.datasets] == ["qa", "sts"]
    chosen = DevEvaluator.from_folder(dev_root, datasets=["sts"])
    assert [data.name for data in chosen.datasets] == ["sts"] and chosen.primary_metric == "sts_spearman"
    metrics = chosen(_perfect_model())
    assert metrics["sts_spearman"] == pytest.approx(1.0)
    one = DevEvaluator.from_folder(dev_root / "qa")  # a dataset folder itself
    assert [data.name for data in one.datasets] == ["qa"]


def test_from_folder_errors_name_what_was_found(dev_root):
    with pytest.raises(
        ValueError, match=r"dev datasets \['stsb'\] have no 'dev' split under .*; found \['pics', 'qa', 'sts'\]"
    ):
        DevEvaluator.from_folder(dev_root, datasets=["stsb"])
    with pytest.raises(ValueError, match="No text-only dataset with a 'dev' split"):
        DevEvaluator.from_folder(dev_root, datasets=["pics"], images=False)
    with pytest.raises(ValueError, match="dataset names must differ"):
        DevEvaluator([STS, STS])
    with pytest.raises(ValueError, match="at least one dataset"):
        DevEvaluator([])
