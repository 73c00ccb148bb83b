"""Profiles fit on a model, saved in its folder, loaded with it; the calibrate command; calibrated_similarity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from st_unirep import calibrated_similarity
from st_unirep.calibrate import main as calibrate_main
from st_unirep.calibration import attach_profiles, find_calibration, fit_profiles, load_calibration

WORDS = ["red apple", "green pear", "blue sky", "dark night", "warm sun", "cold snow", "tall tree", "small cat"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _graded(tmp_path: Path, name="stsb_en") -> Path:
    rows = [
        {"sentence1": a, "sentence2": b, "score": float((i * 7 + j) % 6)}
        for i, a in enumerate(WORDS)
        for j, b in enumerate(WORDS)
        if i < j
    ]
    return _write(tmp_path / name / "train.jsonl", rows)


def _binary(tmp_path: Path) -> Path:
    rows = [
        {"sentence1": a, "sentence2": b, "label": int(i == j)} for i, a in enumerate(WORDS) for j, b in enumerate(WORDS)
    ]
    return _write(tmp_path / "para" / "train.jsonl", rows)


def _retrieval(tmp_path: Path) -> Path:
    folder = tmp_path / "qa" / "train"
    _write(folder / "queries.jsonl", [{"id": f"q{i}", "text": w} for i, w in enumerate(WORDS[:4])])
    _write(folder / "corpus.jsonl", [{"id": f"d{i}", "text": w + " here"} for i, w in enumerate(WORDS)])
    _write(folder / "qrels.jsonl", [{"query_id": f"q{i}", "doc_id": f"d{i}", "score": 1} for i in range(4)])
    return folder


def test_profiles_fit_save_and_load_with_the_model(tiny_model, tmp_path):
    spec = {"sts": [str(_graded(tmp_path))], "paraphrase": [str(_binary(tmp_path))], "qa": [str(_retrieval(tmp_path))]}
    profiles = fit_profiles(tiny_model, spec, dims=[16])
    by_name = {p.name: p for p in profiles}
    assert by_name["sts"].target == "graded" and by_name["sts"].pairs == 28
    assert by_name["paraphrase"].target == "binary" and by_name["paraphrase"].pairs == 64
    assert by_name["qa"].pairs == 4 * 8 and by_name["qa"].extra["mean_target"] == pytest.approx(4 / 32)
    assert by_name["sts"].widths == [16, 64]  # the model's width is always fitted
    attach_profiles(tiny_model, profiles)
    tiny_model.save(str(tmp_path / "model"))
    loaded = SentenceTransformer(str(tmp_path / "model"), trust_remote_code=True)
    assert find_calibration(loaded).profiles == find_calibration(tiny_model).profiles
    assert load_calibration(tmp_path / "model").names == ["paraphrase", "qa", "sts"]

    emb = loaded.encode(WORDS, convert_to_tensor=True)
    np.testing.assert_allclose(emb.numpy(), tiny_model.encode(WORDS), atol=1e-6)  # identity in forward
    unit = torch.nn.functional.normalize(emb.double(), dim=-1)
    cos = (unit @ unit.T).numpy()
    for name in ("sts", "qa"):
        expected = by_name[name](cos, 64)
        for model in (loaded, str(tmp_path / "model"), find_calibration(loaded)):
            got = calibrated_similarity(emb, emb, model=model, profile=name)
            np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    short = loaded.encode(WORDS, truncate_dim=16, convert_to_tensor=True)  # the 16-d map for 16-d prefixes
    unit = torch.nn.functional.normalize(short.double(), dim=-1)
    np.testing.assert_allclose(
        calibrated_similarity(short, short, model=loaded, profile="sts").numpy(),
        by_name["sts"]((unit @ unit.T).numpy(), 16),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match=r"Unknown calibration profile 'default'.*\['paraphrase', 'qa', 'sts'\]"):
        calibrated_similarity(emb, emb, model=loaded)
    with pytest.raises(ValueError, match="widths \\[16, 64\\], not 8"):
        calibrated_similarity(emb[:, :8], emb[:, :8], model=loaded, profile="sts")


def test_calibrated_similarity_errors(tiny_model):
    a = torch.ones(2, 4)
    with pytest.raises(ValueError, match="needs the model"):
        calibrated_similarity(a, a, profile="sts")
    with pytest.raises(ValueError, match="no calibration profiles.*st_unirep.calibrate"):
        calibrated_similarity(a, a, model=tiny_model)
    with pytest.raises(ValueError, match=r"finite.*a \[1\]"):
        calibrated_similarity(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), a[:, :2])


def test_calibrate_command_writes_the_profile_into_the_folder(tiny_model, tmp_path, capsys):
    folder = tmp_path / "model"
    tiny_model.save(str(folder))
    before = (folder / "modules.json").read_text()
    calibrate_main(["--model", str(folder), "--data", str(_binary(tmp_path)), "--profile", "default", "--dims", "16"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["profile"] == "default" and summary["pairs"] == 64 and summary["widths"] == [16, 64]
    modules = json.loads((folder / "modules.json").read_text())
    assert len(modules) == len(json.loads(before)) + 1 and modules[-1]["type"].endswith("ScoreCalibration")
    # a second profile joins the first (same module), and the model loads with both
    calibrate_main(["--model", str(folder), "--data", str(_graded(tmp_path)), "--profile", "sts"])
    assert len(json.loads((folder / "modules.json").read_text())) == len(modules)
    loaded = SentenceTransformer(str(folder), trust_remote_code=True)
    emb = loaded.encode(WORDS[:3])
    scores = calibrated_similarity(emb, emb, model=loaded)  # the default profile
    assert scores.shape == (3, 3) and float(scores.min()) >= 0 and float(scores.max()) <= 1


def test_calibrate_command_refuses_bad_data(tiny_model, tmp_path, capsys):
    folder = tmp_path / "model"
    tiny_model.save(str(folder))
    bad = _write(
        tmp_path / "mine" / "pairs.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "a"}]
    )
    with pytest.raises(SystemExit) as stop:
        calibrate_main(["--model", str(folder), "--data", str(bad), "--profile", "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'score'" in err and "--score_range" not in err
    scaled = _write(tmp_path / "mine" / "scaled.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 4}] * 3)
    with pytest.raises(SystemExit):
        calibrate_main(["--model", str(folder), "--data", str(scaled), "--profile", "x"])
    assert "--score_range" in capsys.readouterr().err
    calibrate_main(
        [
            "--model",
            str(folder),
            "--data",
            str(_graded(tmp_path, "mine2")),
            "--profile",
            "x",
            "--score_range",
            "0",
            "5",
            "--dims",
            "16",
        ]
    )
    assert load_calibration(folder).get("x").extra["mean_target"] == pytest.approx(
        np.mean([((i * 7 + j) % 6) / 5 for i in range(8) for j in range(8) if i < j])
    )
    with pytest.raises(SystemExit):
        calibrate_main(["--model", str(tmp_path / "nothing"), "--data", str(bad), "--profile", "x"])
