"""The local mteb tasks: built from the shared layouts offline, and mteb's scores agree with ``evaluate``'s."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import mteb
import pytest
from mteb.abstasks import AbsTaskPairClassification, AbsTaskRetrieval, AbsTaskSTS

from st_unirep.evaluation.evaluate import evaluate
from st_unirep.evaluation.mteb_tasks import build_mteb_tasks, mteb_model, mteb_model_name, run_mteb
from tests.conftest import make_image

WORDS = "the a man woman guitar kitchen red blue circle square receipt total picture stage onion date".split()


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _sentences(n: int, seed: int) -> list[str]:
    # Varied lengths and words: the tiny random model maps near-identical short texts to cosines a few 1e-6
    # apart, where float32 rounding alone moves a Pearson correlation by 1e-3.
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 12))) + f" {i}" for i in range(n)]


@pytest.fixture
def toy_root(tmp_path) -> Path:
    root = tmp_path / "data"
    s1, s2 = _sentences(12, 1), _sentences(12, 2)
    _jsonl(
        root / "stsb_en" / "dev.jsonl",
        [{"sentence1": a, "sentence2": b, "score": i % 6} for i, (a, b) in enumerate(zip(s1, s2, strict=True))],
    )
    p1, p2 = _sentences(10, 3), _sentences(10, 4)
    _jsonl(
        root / "vnpara_vi" / "dev.jsonl",
        [{"sentence1": a, "sentence2": b, "label": i % 2} for i, (a, b) in enumerate(zip(p1, p2, strict=True))],
    )
    _jsonl(
        root / "viquad_vi" / "dev" / "queries.jsonl",
        [{"id": f"q{i}", "text": t} for i, t in enumerate(_sentences(5, 5))],
    )
    _jsonl(
        root / "viquad_vi" / "dev" / "corpus.jsonl",
        [{"id": f"d{i}", "text": t} for i, t in enumerate(_sentences(6, 6))],
    )
    qrels = [{"query_id": f"q{i}", "doc_id": f"d{i}", "score": 1} for i in range(5)]
    qrels.append({"query_id": "q0", "doc_id": "d5", "score": 1})  # a query with two relevant passages
    qrels.append({"query_id": "q1", "doc_id": "d5", "score": 0})  # judged irrelevant: not relevant
    _jsonl(root / "viquad_vi" / "dev" / "qrels.jsonl", qrels)
    images = root / "vicaption_vi" / "dev" / "images"
    images.mkdir(parents=True)
    looks = [("red", "ellipse"), ("blue", "rectangle"), ("green", "ellipse")]
    for i, (colour, shape) in enumerate(looks):
        make_image((64, 48), colour, shape).save(images / f"{i}.jpg")
    captions = _sentences(6, 7)
    _jsonl(
        root / "vicaption_vi" / "dev" / "captions.jsonl",
        [{"image": f"images/{i % 3}.jpg", "caption": caption} for i, caption in enumerate(captions)],
    )
    return root


def test_tasks_follow_the_layouts_and_load_offline(toy_root):
    tasks = {task.metadata.name: task for task in build_mteb_tasks(toy_root)}
    assert sorted(tasks) == ["stsb_en", "vicaption_vi_i2t", "vicaption_vi_t2i", "viquad_vi", "vnpara_vi"]
    sts = tasks["stsb_en"]
    assert isinstance(sts, AbsTaskSTS) and (sts.min_score, sts.max_score) == (0.0, 5.0)
    assert isinstance(tasks["vnpara_vi"], AbsTaskPairClassification)
    assert tasks["viquad_vi"].metadata.type == "Retrieval" and tasks["viquad_vi"].metadata.eval_langs == ["vie-Latn"]
    for direction in ("t2i", "i2t"):
        task = tasks[f"vicaption_vi_{direction}"]
        assert isinstance(task, AbsTaskRetrieval)
        assert (task.metadata.type, task.metadata.category) == ("Any2AnyRetrieval", direction)
        assert task.metadata.modalities == ["text", "image"]

    sts.load_data()
    assert sts.dataset["dev"]["score"] == [float(i % 6) for i in range(12)]
    viquad = tasks["viquad_vi"]
    viquad.load_data()
    split = viquad.dataset["default"]["dev"]
    assert len(split["queries"]) == 5 and len(split["corpus"]) == 6
    assert sum(len(docs) for docs in split["relevant_docs"].values()) == 6
    t2i = tasks["vicaption_vi_t2i"]
    t2i.load_data()
    corpus = t2i.dataset["default"]["dev"]["corpus"]
    assert len(corpus) == 3 and corpus[0]["image"].size == (64, 48)
    i2t = tasks["vicaption_vi_i2t"]
    i2t.load_data()
    assert all(len(captions) == 2 for captions in i2t.dataset["default"]["dev"]["relevant_docs"].values())


def test_image_capability_is_declared(tiny_model, toy_root):
    (t2i,) = [task for task in build_mteb_tasks(toy_root) if task.metadata.name.endswith("_t2i")]
    # mteb's default wrapper of a SentenceTransformer says text only, so it refuses the text→image task ...
    with pytest.raises(ValueError, match="none overlap"):
        mteb.evaluate(tiny_model, t2i, cache=None, co2_tracker=False, show_progress_bar=False)
    # ... while ours takes the modalities from the model.
    wrapped = mteb_model(tiny_model, name="st-unirep/tiny")
    assert wrapped.mteb_model_meta.modalities == ["text", "image"]
    assert wrapped.mteb_model_meta.name == "st-unirep/tiny"


def test_image_tasks_are_skipped_for_a_text_only_model(tiny_model, toy_root):
    wrapped = mteb_model(tiny_model)
    wrapped.mteb_model_meta = wrapped.mteb_model_meta.model_copy(update={"modalities": ["text"]})
    for name in ("stsb_en", "vnpara_vi", "viquad_vi"):
        for path in (toy_root / name).rglob("*"):
            if path.is_file():
                path.unlink()
    assert run_mteb(wrapped, toy_root) == {}  # only the image dataset is left, and it is skipped


def test_mteb_agrees_with_evaluate(tiny_model, toy_root, tmp_path):
    ours, _ = evaluate(tiny_model, toy_root, show_progress_bar=False)
    theirs = run_mteb(tiny_model, toy_root, output_folder=tmp_path / "mteb", model_name="st-unirep/tiny")
    assert set(theirs) == {"stsb_en", "vnpara_vi", "viquad_vi", "vicaption_vi"}
    # Metrics defined the same way in both. mteb's hit_rate_at_k (pytrec_eval "success") is our r@k; its
    # recall_at_k is the fraction of a query's relevant items in the top k, which is our r@k only when each query
    # has one relevant item, so it is not compared (viquad q0 has two passages, each image two captions).
    retrieval = ["ndcg@10", "mrr@10", "r@1", "r@5", "r@10"]
    compared = {
        "stsb_en": ["spearman", "pearson"],
        "vnpara_vi": ["ap"],
        "viquad_vi": retrieval,
        "vicaption_vi": [f"{direction}_{key}" for direction in ("t2i", "i2t") for key in retrieval],
    }
    for name, keys in compared.items():
        for key in keys:
            assert theirs[name][key] == pytest.approx(ours[name][key], abs=1e-4), (name, key)
    assert theirs["stsb_en"]["main_score"] == theirs["stsb_en"]["spearman"]
    assert theirs["viquad_vi"]["main_score"] == theirs["viquad_vi"]["ndcg@10"]
    # Each image has two relevant captions, so mteb's recall@1 is at most 1/2 whatever r@1 is.
    assert theirs["vicaption_vi"]["i2t_recall@1"] <= 0.5
    written = {path.stem for path in (tmp_path / "mteb").rglob("*.json")}
    assert {"stsb_en", "vnpara_vi", "viquad_vi", "vicaption_vi_t2i", "vicaption_vi_i2t"} <= written


def _text_only(root: Path) -> Path:
    shutil.rmtree(root / "vicaption_vi")
    shutil.rmtree(root / "viquad_vi")
    return root


def test_two_models_results_go_to_two_folders(tiny_model, toy_root, tmp_path):
    """Before model names, both models' results were filed (and overwritten) under ``no_model_name__available``."""
    output, root = tmp_path / "mteb", _text_only(toy_root)
    for name in ("runs/first", "runs/second"):
        run_mteb(tiny_model, root, output_folder=output, model_name=name)
    models = sorted(path.name for path in (output / "results").iterdir())
    assert models == ["runs__first", "runs__second"]
    for model in models:
        assert {path.stem for path in (output / "results" / model).rglob("*.json")} >= {"stsb_en", "vnpara_vi"}


def test_a_nameless_model_is_refused_when_results_are_written(tiny_model, toy_root, tmp_path):
    root = _text_only(toy_root)
    with pytest.raises(ValueError, match="model_name"):
        run_mteb(tiny_model, root, output_folder=tmp_path / "mteb")
    with pytest.raises(ValueError, match="organization/model_name"):
        run_mteb(tiny_model, root, output_folder=tmp_path / "mteb", model_name="tiny")
    wrapped = mteb_model(tiny_model)
    assert run_mteb(wrapped, root, model_name="runs/renamed")  # names an already wrapped model
    assert wrapped.mteb_model_meta.name == "runs/renamed"


def test_model_names_come_from_the_model_folder(tmp_path):
    run = tmp_path / "minilm" / "st_unirep"
    (run / "model").mkdir(parents=True)
    assert mteb_model_name(run / "model") == "minilm/st_unirep"  # a training run's model/: the run's name
    assert mteb_model_name(run) == "minilm/st_unirep"
    assert mteb_model_name(tmp_path / "minilm") == f"{tmp_path.name}/minilm"
    assert mteb_model_name("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert mteb_model_name("all-MiniLM-L6-v2") == "local/all-MiniLM-L6-v2"
