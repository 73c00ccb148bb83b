"""Training straight from the evaluation layouts: load_sources, the text-encoder options and the ST recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from st_unirep.training.config import load_config
from st_unirep.training.data import load_sources
from st_unirep.training.prompts import encoder_prompts
from st_unirep.training.run import build_trainer
from st_unirep.training.st_recipe import train_st_recipe
from tests.conftest import REPO
from tests.test_presets import build_tiny_bert


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path) -> list[dict]:
    words = ["hello", "world", "the", "cat", "dog", "a"]
    sts = _jsonl(
        tmp_path / "stsb_en" / "train.jsonl",
        [
            {"sentence1": f"the {w}", "sentence2": f"a {w} {v}", "score": i % 6}
            for i, (w, v) in enumerate((w, v) for w in words for v in words)
        ],
    )
    sick = _jsonl(
        tmp_path / "sick_en" / "train.jsonl",
        [{"sentence1": f"a {w}", "sentence2": f"the {w}", "score": 1 + i % 5} for i, w in enumerate(words)],
    )
    para = _jsonl(
        tmp_path / "vnpara_vi" / "train.jsonl",
        [{"sentence1": f"cat {w}", "sentence2": f"dog {w}", "label": i % 2} for i, w in enumerate(words)],
    )
    quad = tmp_path / "viquad_vi" / "train"
    _jsonl(quad / "queries.jsonl", [{"id": f"q{i}", "text": f"hello {w}"} for i, w in enumerate(words)])
    _jsonl(quad / "corpus.jsonl", [{"id": f"d{i}", "text": f"world {w} {w}"} for i, w in enumerate(words[:3])])
    _jsonl(quad / "qrels.jsonl", [{"query_id": f"q{i}", "doc_id": f"d{i % 3}", "score": 1} for i in range(6)])
    return [
        {"path": str(sts), "task": "text_pair"},
        {"path": str(sick), "task": "text_pair"},
        {"path": str(para), "task": "instr"},
        {"path": str(quad), "task": "instr"},
    ]


def test_sources_map_scores_per_source_and_keep_only_positive_pairs(sources):
    data, report = load_sources(sources)
    assert report.rows == {"text_pair": 36 + 6, "instr": 3 + 6}
    scores = data["text_pair"]["score"]
    assert scores[:6] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])  # STS-B: score / 5
    assert scores[36:41] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])  # SICK: (score - 1) / 4
    instr = data["instr"]
    assert instr[0] == {"query": "cat world", "positive": "dog world"}  # label-1 rows only (i = 1, 3, 5)
    assert instr[3] == {"query": "hello hello", "positive": "world hello hello"}  # question -> its passage
    assert len(instr) == 9


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"path": "missing.jsonl"}, "does not exist"),
        ({"task": "ocr"}, "task must be 'text_pair' or 'instr'"),
        ({"score_range": [0, 3]}, r"span \[0.0, 5.0\], outside score_range \[0, 3\]"),
        ({"weight": 2}, r"unknown key\(s\) \['weight'\]"),
    ],
)
def test_bad_sources_are_named(sources, change, match):
    bad = [{**sources[0], **change}]
    with pytest.raises(ValueError, match=r"sources\[0\]: .*" + match):
        load_sources(bad)


def test_a_task_that_does_not_fit_the_layout_is_refused(sources):
    with pytest.raises(ValueError, match="needs graded rows"):
        load_sources([{"path": sources[2]["path"], "task": "text_pair"}])
    with pytest.raises(ValueError, match="needs 0/1 'label' rows"):
        load_sources([{"path": sources[0]["path"], "task": "instr"}])


def test_text_encoder_training_freezes_embeddings_and_gives_the_head_its_rate(tmp_path, sources):
    bert = build_tiny_bert(tmp_path / "bert")
    config = load_config(
        REPO / "train" / "configs" / "text-minilm.yaml",
        {
            "backbone": bert,
            "sources": sources,
            "output_dir": str(tmp_path / "out"),
            "output_dim": 32,
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "logging_steps": 1,
            "health_every": 2,
            "max_seq_length": 5,
            # no learned-calibration parameters here: this test is about the backbone and head groups
            "text_pair_weights": {"cosent_weight": 1.0, "mse_weight": 0.0, "kl_weight": 0.0, "rank_weight": 0.0},
        },
    )
    trainer, _ = build_trainer(config)
    model = trainer.model
    assert model.max_seq_length == 5 and trainer.inference_max_seq_length == 64  # the tiny BERT's positions
    embeddings = model[0].model.get_input_embeddings().weight
    before = embeddings.detach().clone()
    layer = next(p for n, p in model[0].model.named_parameters() if "encoder" in n and p.ndim == 2)
    layer_before = layer.detach().clone()
    trainer.train()
    assert torch.equal(embeddings, before)  # frozen
    assert not torch.equal(layer, layer_before)  # the encoder trains
    groups = trainer.optimizer.param_groups
    assert [g["initial_lr"] for g in groups] == [config.learning_rate, config.head_learning_rate]
    head = {id(p) for m in list(model)[1:] for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head
    assert trainer.state.log_history[0]["loss"] > 0


def test_st_recipe_uses_the_models_prompts_and_trains(tmp_path, sources):
    bert = build_tiny_bert(tmp_path / "bert")
    model = SentenceTransformer(bert)
    columns = {"text_pair": ["sentence1", "sentence2", "score"], "instr": ["query", "positive"]}
    assert encoder_prompts(model.prompts, columns) == {}
    model.prompts = {"query": "query: ", "passage": "passage: "}
    assert encoder_prompts(model.prompts, columns) == {
        "text_pair": {"sentence1": "query: ", "sentence2": "query: "},
        "instr": {"query": "query: ", "positive": "passage: "},
    }
    config = load_config(
        None,
        {
            "backbone": bert,
            "sources": sources,
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "freeze_embeddings": True,
            "learning_rate": 1e-3,
        },
    )
    path = train_st_recipe(config, tmp_path / "recipe")
    trained = SentenceTransformer(str(path))
    assert [type(m).__name__ for m in trained] == [type(m).__name__ for m in model]  # mean pooling kept, no head
    before = model.encode(["the cat"], convert_to_tensor=True)
    after = trained.encode(["the cat"], convert_to_tensor=True)
    assert not torch.allclose(before, after)
    w0 = model[0].auto_model.get_input_embeddings().weight
    w1 = trained[0].auto_model.get_input_embeddings().weight
    assert torch.equal(w0, w1)


def test_configs_of_the_real_quality_issue_point_at_the_train_splits():
    for name in ("text-minilm", "text-e5-small"):
        config = load_config(REPO / "train" / "configs" / f"{name}.yaml")
        assert config.sources and all("/train" in s["path"] for s in config.sources)
        assert not any("/dev" in s["path"] or "/test" in s["path"] for s in config.sources)


def test_the_saved_model_encodes_like_the_trained_model_in_memory(tmp_path, sources):
    """Regression: a stale spectral-norm cache made the in-memory model differ from the saved one."""
    bert = build_tiny_bert(tmp_path / "bert")
    config = load_config(
        None,
        {
            "backbone": bert,
            "sources": sources,
            "output_dir": str(tmp_path / "out"),
            "preset": "viuniembed",
            "output_dim": 32,
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-2,
            "health_every": 100,
        },
    )
    trainer, _ = build_trainer(config)
    trainer.train()
    texts = ["the cat", "hello world", "a dog"]
    in_memory = trainer.model.encode(texts, convert_to_tensor=True)
    trainer.model.save(str(tmp_path / "saved"))
    saved = SentenceTransformer(str(tmp_path / "saved"), trust_remote_code=True)
    reloaded = saved.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(in_memory, reloaded, atol=1e-5, rtol=1e-5)


def test_encoder_prompts_cover_every_input_column_and_only_text_tasks():
    prompts = {"query": "query: ", "document": "doc: "}
    columns = {"instr": ["query", "positive", "negative_1"], "ocr": ["anchor", "positive"], "text_pair": ["a", "b"]}
    assert encoder_prompts(prompts, columns) == {
        "instr": {"query": "query: ", "positive": "doc: ", "negative_1": "doc: "},  # "document" when no "passage"
        "text_pair": {"a": "query: ", "b": "query: "},
    }
    assert encoder_prompts({"query": "q: "}, {"instr": ["query", "positive"]}) == {
        "instr": {"query": "q: ", "positive": "q: "}  # no passage prompt: the query prompt on both sides
    }
    assert encoder_prompts({"query": "", "document": ""}, columns) == {}  # ST's empty defaults: none


def _bert_with_prompts(path: Path, prompts: dict) -> str:
    bert = build_tiny_bert(path)
    (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}), encoding="utf-8")
    return bert


def test_st_unirep_keeps_the_backbones_prompts_in_training_and_after_saving(tmp_path, sources):
    """Regression: build_model dropped E5's "query: " / "passage: ", so the st_unirep recipe trained and was
    evaluated without them while both baselines had them."""
    prompts = {"query": "query: ", "passage": "passage: ", "document": ""}
    bert = _bert_with_prompts(tmp_path / "bert", prompts)
    config = load_config(
        None,
        {
            "backbone": bert,
            "sources": sources,
            "output_dir": str(tmp_path / "out"),
            "preset": "viuniembed",
            "output_dim": 32,
            "max_steps": 1,
            "per_device_train_batch_size": 4,
            "health_every": 100,
        },
    )
    trainer, _ = build_trainer(config)
    # Documents get the passage prompt (issue 17: ST's encode_document picked the empty "document" one).
    expected = {**prompts, "document": "passage: "}
    assert trainer.model.prompts == expected
    assert trainer.args.prompts == {
        "text_pair": {"sentence1": "query: ", "sentence2": "query: "},
        "instr": {"query": "query: ", "positive": "passage: "},
    }
    trainer.model.save(str(tmp_path / "saved"))
    loaded = SentenceTransformer(str(tmp_path / "saved"), trust_remote_code=True)
    assert loaded.prompts == expected
    # The prompt really reaches the encoder: "query: " changes the embedding of a text.
    plain = loaded.encode(["the cat"], convert_to_tensor=True)
    prompted = loaded.encode(["the cat"], prompt_name="query", convert_to_tensor=True)
    assert not torch.allclose(plain, prompted)


def test_bad_prompts_in_the_backbone_config_name_the_file(tmp_path):
    from st_unirep.model import build_model

    bert = _bert_with_prompts(tmp_path / "bert", {"query": 3})
    with pytest.raises(ValueError, match=r"config_sentence_transformers.json: 'prompts' must map prompt names"):
        build_model(bert, "viuniembed", output_dim=32)


def test_training_leaves_fitted_and_learned_calibration_profiles_in_the_saved_model(tmp_path, sources):
    """`calibration:` profiles are fit on the trained model (train-split files only) and the learned logistic
    term leaves profile 'learned'; all load with the model and apply through calibrated_similarity."""
    import numpy as np

    from st_unirep import calibrated_similarity
    from st_unirep.calibration import find_calibration
    from st_unirep.training.run import run_training

    config = load_config(
        None,
        {
            "backbone": build_tiny_bert(tmp_path / "bert"),
            "sources": sources,
            "output_dir": str(tmp_path / "out"),
            "preset": "viuniembed",
            "output_dim": 32,
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "head_learning_rate": 1e-3,
            "loss_learning_rate": 0.05,
            "health_every": 100,
            "text_pair_weights": {
                "mse_weight": 0,
                "kl_weight": 0,
                "rank_weight": 0,
                "cosent_weight": 1,
                "logistic_weight": 1,
            },
            "instruction_cos_weight": 0.0,
            "calibration": {
                "sts": [sources[0]["path"]],
                "default": [sources[0]["path"], sources[1]["path"]],
                "paraphrase": [sources[2]["path"]],
                "qa": [sources[3]["path"]],
            },
        },
    )
    trainer, _ = build_trainer(config)
    (text_pair_params,) = [g for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.0]
    assert len(text_pair_params["params"]) == 4  # (log α, β) per width: 32 and the Matryoshka 8 / 12 / 16
    assert text_pair_params["lr"] == 0.05
    out = run_training(config)
    model = SentenceTransformer(str(out), trust_remote_code=True)
    calibration = find_calibration(model)
    assert calibration.names == ["default", "learned", "paraphrase", "qa", "sts"]
    assert calibration.get("sts").widths == [8, 12, 16, 32] and calibration.get("sts").pairs == 36
    assert calibration.get("default").pairs == 36 + 6 and calibration.get("qa").pairs == 6 * 3
    assert calibration.get("learned").target == "graded"
    emb = model.encode(["the cat", "a dog", "hello world"])
    cos = emb @ emb.T
    scores = calibrated_similarity(emb, emb, model=model).numpy()
    np.testing.assert_allclose(scores, calibration.get("default")(cos, 32), atol=1e-5)
    assert np.array_equal(np.argsort(scores, axis=1), np.argsort(cos, axis=1))


def test_a_missing_calibration_source_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"calibration.sts: source 'nowhere.jsonl' is not an existing file"):
        load_config(None, {"calibration": {"sts": ["nowhere.jsonl"]}})


def test_text_configs_fit_their_calibration_profiles_on_train_splits_only():
    expected = {
        "text-e5-small": {"sts", "relatedness", "paraphrase", "qa", "default"},
        "text-minilm": {"sts", "relatedness", "default"},
    }
    for name, profiles in expected.items():
        config = load_config(REPO / "train" / "configs" / f"{name}.yaml")
        assert set(config.calibration) == profiles
        paths = [p for sources in config.calibration.values() for p in sources]
        assert paths and all("/train" in p and "/dev" not in p and "/test" not in p for p in paths)
        assert config.text_pair_weights["cosent_weight"] > 0 and config.text_pair_weights["mse_weight"] == 0
