"""The built-in data generator: text pairs from the file the caller names (or templated), deterministic per seed."""

from __future__ import annotations

import json

import pytest

from st_unirep.training.synthetic import generate_default_data

SMALL = dict(ocr_per_phrase=1, heldout_per_phrase=1, vqa_single=4, vqa_multi=2, text_pairs=6)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_text_pairs_come_from_the_named_file_else_from_templates(tmp_path):
    graded = tmp_path / "pairs.jsonl"
    pairs = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": i % 6, "extra": 1} for i in range(10)]
    graded.write_text("".join(json.dumps(row) + "\n" for row in pairs), encoding="utf-8")
    drawn = _rows(generate_default_data(tmp_path / "a", stsb_path=graded, **SMALL) / "text_pair.jsonl")
    assert len(drawn) == 6 and {row["sentence1"] for row in drawn} < {row["sentence1"] for row in pairs}
    assert all(set(row) == {"sentence1", "sentence2", "score"} and isinstance(row["score"], float) for row in drawn)
    templated = _rows(generate_default_data(tmp_path / "b", **SMALL) / "text_pair.jsonl")
    assert len(templated) == 6 and {row["score"] for row in templated} == {5.0, 2.0}
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        generate_default_data(tmp_path / "c", stsb_path=tmp_path / "missing.jsonl", **SMALL)


def test_the_same_seed_writes_the_same_files(tmp_path):
    first = generate_default_data(tmp_path / "a", seed=3, **SMALL)
    second = generate_default_data(tmp_path / "b", seed=3, **SMALL)
    other = generate_default_data(tmp_path / "c", seed=4, **SMALL)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert {"ocr.jsonl", "heldout/ocr.jsonl", "vqa_single.jsonl", "vqa_multi.jsonl", "text_pair.jsonl"} <= {
        str(p) for p in files
    }
    assert all((first / p).read_bytes() == (second / p).read_bytes() for p in files)
    assert (first / "vqa_single.jsonl").read_bytes() != (other / "vqa_single.jsonl").read_bytes()
