"""Issue 15 (training side): nothing the user trained or gave is lost or silently ignored."""

from __future__ import annotations

import json

import pytest

from st_unirep.errors import DataError
from st_unirep.training.data import load_task_data
from st_unirep.training.run import run_training
from st_unirep.training.run_layout import RunLayout, save_atomically
from tests.training.test_train import _config, small_data  # noqa: F401  (fixture)


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


PAIRS = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": 3} for i in range(4)]


def test_a_second_run_into_a_finished_model_is_refused_unless_asked(tmp_path, small_data):  # noqa: F811
    """Regression: a new run into a folder with a finished model overwrote it and deleted its checkpoints."""
    output = run_training(_config(tmp_path / "out", small_data, max_steps=2, save_steps=1))
    before = (output / "model.safetensors").read_bytes() if (output / "model.safetensors").exists() else None
    with pytest.raises(FileExistsError, match=r"already holds a trained model or checkpoints .*--overwrite_output_dir"):
        run_training(_config(tmp_path / "out", small_data, max_steps=1))
    assert (output / "modules.json").is_file() and sorted(RunLayout(tmp_path / "out").checkpoints.glob("checkpoint-*"))
    if before is not None:
        assert (output / "model.safetensors").read_bytes() == before
    run_training(_config(tmp_path / "out", small_data, max_steps=1, overwrite_output_dir=True))  # asked: replaced


def test_a_failed_final_save_leaves_the_earlier_model_intact(tmp_path):
    class Model:
        def __init__(self, fail):
            self.fail = fail

        def save(self, path):
            from pathlib import Path

            (Path(path) / "modules.json").write_text("new")
            if self.fail:
                raise OSError(28, "No space left on device")
            (Path(path) / "model.safetensors").write_text("new weights")

    output = tmp_path / "model"
    output.mkdir()
    (output / "modules.json").write_text("old")
    (output / "model.safetensors").write_text("old weights")
    with pytest.raises(OSError, match=r"No space left on device.*nothing was replaced"):
        save_atomically(Model(fail=True), output)
    assert (output / "modules.json").read_text() == "old" and (
        output / "model.safetensors"
    ).read_text() == "old weights"
    assert not list(tmp_path.glob(".saving-*"))  # no half-written staging folder left behind
    save_atomically(Model(fail=False), output)
    assert (output / "model.safetensors").read_text() == "new weights" and not list(tmp_path.glob(".saving-*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nor the earlier model, moved aside


@pytest.mark.parametrize("name", ["text-pair.jsonl", "captions.jsonl"])
def test_a_misspelt_task_file_is_an_error_naming_it(tmp_path, name):
    _write(tmp_path / "instr.jsonl", [{"query": "q", "positive": "p"}] * 2)
    _write(tmp_path / name, PAIRS)
    with pytest.raises(
        DataError, match=rf"{name}' is not a task file; expected <task>.jsonl with a task of .*text_pair"
    ):
        load_task_data(tmp_path)
    data, report = load_task_data(tmp_path, skip_invalid=True)  # a loud warning, kept in the report
    assert list(data) == ["instr"] and any(name in e for e in report.errors)


def test_an_empty_task_file_and_a_misspelt_key_are_errors(tmp_path):
    (tmp_path / "instr.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="task 'instr' has no rows"):
        load_task_data(tmp_path)
    _write(tmp_path / "instr.jsonl", [{"query": "q", "positive": "p", "negatives": ["n"]}])
    with pytest.raises(DataError, match=r"instr.jsonl:1: field 'negatives': unknown key; a row of this task has keys"):
        load_task_data(tmp_path)


def test_other_folders_and_files_are_not_data(tmp_path):
    _write(tmp_path / "instr.jsonl", [{"query": "q", "positive": "p"}] * 2)
    (tmp_path / "images").mkdir()
    _write(tmp_path / "images" / "notes.jsonl", [{"x": 1}])
    (tmp_path / "README.md").write_text("about the data")
    data, report = load_task_data(tmp_path)
    assert report.rows == {"instr": 2} and not report.errors


def test_a_latin1_file_names_file_and_line(tmp_path):
    (tmp_path / "instr.jsonl").write_bytes(b'{"query": "q", "positive": "p"}\n{"query": "caf\xe9", "positive": "p"}\n')
    with pytest.raises(DataError, match=r"instr.jsonl:2: field '<row>': not UTF-8 text \(byte 0xe9"):
        load_task_data(tmp_path)


def test_a_corrupt_image_is_found_when_the_data_is_loaded(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _write(tmp_path / "ocr.jsonl", [{"images": ["broken.png"], "positive": "TEXT"}])
    with pytest.raises(
        DataError, match=r"ocr.jsonl:1: field 'images\[0\]': image file .*broken.png' is not a readable"
    ):
        load_task_data(tmp_path)


def test_skipped_rows_are_listed_beside_the_run(tmp_path, small_data):  # noqa: F811
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    with open(data / "instr.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"query": "", "positive": "p"}\nnot json\n')
    run_training(_config(tmp_path / "out", str(data), max_steps=1, skip_invalid=True))
    listing = RunLayout(tmp_path / "out").skipped_rows.read_text().splitlines()
    assert len(listing) == 2 and all("instr.jsonl:" in line for line in listing)
    assert "field 'query'" in listing[0] and "invalid JSON" in listing[1]


def test_train_script_refuses_a_finished_model_in_one_line(tmp_path, capsys):
    import importlib.util

    from tests.conftest import REPO

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "modules.json").write_text("[]")  # a model at the top of its folder (before issue 17)
    (tmp_path / "new" / "model").mkdir(parents=True)
    (tmp_path / "new" / "model" / "modules.json").write_text("[]")
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train" / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for folder in (tmp_path / "old", tmp_path / "new"):
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--output_dir", str(folder), "--max-steps", "200"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert (
            error.startswith(f"error: output_dir '{folder}' already holds a trained model") and error.count("\n") == 1
        )
