"""The output folder of a training run (issue 15): what a run refuses, clears, replaces and leaves beside the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from st_unirep.modules.stable_projection import StableProjection
from st_unirep.training.run import run_training, save_atomically
from tests.training.test_train import _config, small_data  # noqa: F401  (fixture)


def _checkpoints(output: Path) -> list[str]:
    return sorted(path.name for path in (output / "checkpoints").glob("checkpoint-*"))


def _health_steps(output: Path) -> list[int]:
    lines = (output / "checkpoints" / "health.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_overwrite_clears_the_earlier_runs_checkpoints_and_keeps_the_new_ones(tmp_path, small_data):  # noqa: F811
    """Regression: with --overwrite_output_dir the earlier run's checkpoint-2/-4 stayed, the oldest-first rotation
    deleted the new run's checkpoints as soon as they were written, and `resume last` would resume the old run."""
    output = run_training(_config(tmp_path / "out", small_data, max_steps=4, save_steps=2, health_every=2))
    assert _checkpoints(output) == ["checkpoint-2", "checkpoint-4"] and _health_steps(output) == [0, 2, 4]
    run_training(
        _config(tmp_path / "out", small_data, max_steps=2, save_steps=1, health_every=1, overwrite_output_dir=True)
    )
    assert _checkpoints(output) == ["checkpoint-1", "checkpoint-2"]  # this run's, none of the earlier run's
    assert _health_steps(output) == [0, 1, 2]  # this run's health log only
    assert json.loads((output / "train_config.json").read_text())["max_steps"] == 2


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, small_data):  # noqa: F811
    """Regression: `--output_dir .` in a project replaced its README.md and config.json by the model's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    (project / "config.json").write_text("{}")
    with pytest.raises(FileExistsError) as info:
        run_training(_config(project, small_data, max_steps=1))
    assert str(info.value) == (
        f"output_dir '{project}' is not empty (README.md, config.json) and holds no st_unirep run; the trained "
        "model's files (README.md, config.json, model.safetensors, ...) would replace any of the same names. Choose "
        "an empty or new --output_dir, or pass --overwrite_output_dir true to write into it anyway."
    )
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "config.json"]
    assert (project / "README.md").read_text() == "my project"


def test_a_stopped_runs_leftovers_are_no_reason_to_refuse_and_are_cleared(tmp_path, small_data):  # noqa: F811
    """A run stopped before its final save leaves scratch (data, the tiny backbone, a health log, a staging folder):
    the next run goes ahead, with its own health log (not appended to the stopped run's)."""
    output = tmp_path / "out"
    (output / "checkpoints").mkdir(parents=True)
    (output / "checkpoints" / "health.jsonl").write_text('{"step": 0}\n{"step": 25}\n')
    (output / ".saving-abc").mkdir()
    (output / ".saving-abc" / "modules.json").write_text("[]")  # half-written by a killed save
    (output / "skipped_rows.txt").write_text("x.jsonl:1: field 'query': stale\n")
    run_training(_config(output, small_data, max_steps=2, health_every=2))
    assert _health_steps(output) == [0, 2]
    assert not list(output.glob(".saving-*")) and not list(output.glob(".replaced-*"))
    assert not (output / "skipped_rows.txt").exists()  # nothing skipped this time: no listing of other data
    assert (output / "modules.json").is_file()


def test_a_full_disk_at_the_final_save_leaves_the_earlier_model_intact(tmp_path, small_data, monkeypatch):  # noqa: F811
    """Regression: a full disk at the final save left config.json without weights. Now the model goes to a staging
    folder first; a module's save failing midway (after the backbone's weights were written) replaces nothing."""
    output = run_training(_config(tmp_path / "out", small_data, max_steps=1))
    before = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}

    def full_disk(self, output_path, *args, **kwargs):
        (Path(output_path) / "partial.bin").write_bytes(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StableProjection, "save", full_disk)
    with pytest.raises(OSError) as info:
        run_training(_config(tmp_path / "out", small_data, max_steps=1, overwrite_output_dir=True))
    assert str(info.value) == (
        f"Saving the trained model into '{output}' failed ([Errno 28] No space left on device); nothing was "
        "replaced: the folder holds what it held before (checkpoints, if save_steps > 0, are in its checkpoints/ "
        "folder)."
    )
    after = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    model_files = {
        name: data for name, data in before.items() if name.parts[0] not in ("checkpoints", "data", "tiny-backbone")
    }
    assert {name: after.get(name) for name in model_files} == model_files  # every file of the model, byte for byte
    assert not list(output.glob(".saving-*")) and not list(output.rglob("partial.bin"))


class _FakeModel:
    def __init__(self, files: dict[str, str]):
        self.files = files

    def save(self, path: str) -> None:
        for name, text in self.files.items():
            (Path(path) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(path) / name).write_text(text)


def test_a_new_model_replaces_every_file_of_the_old_one(tmp_path):
    """The earlier model's module folders and weight shards that the new save lacks are removed with it; the run's
    other files (data, checkpoints) stay."""
    output = tmp_path / "model"
    old = {
        "modules.json": json.dumps([{"idx": 0, "path": ""}, {"idx": 1, "path": "1_Pool"}, {"idx": 2, "path": "2_Old"}]),
        "model-00001-of-00002.safetensors": "old shard",
        "model.safetensors.index.json": "{}",
        "1_Pool/config.json": "old pool",
        "2_Old/config.json": "old module",
    }
    for name, text in old.items():
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_text(text)
    (output / "data").mkdir()
    (output / "data" / "instr.jsonl").write_text("{}")
    new = {"modules.json": json.dumps([{"idx": 0, "path": ""}, {"idx": 1, "path": "1_Pool"}])}
    new |= {"model.safetensors": "new weights", "1_Pool/config.json": "new pool"}
    save_atomically(_FakeModel(new), output)
    files = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    assert files == ["1_Pool/config.json", "data/instr.jsonl", "model.safetensors", "modules.json"]
    assert (output / "1_Pool" / "config.json").read_text() == "new pool"


def test_skipped_rows_listing_and_heldout_result_describe_this_run_only(tmp_path, small_data):  # noqa: F811
    """Regression: an overwritten run's skipped_rows.txt and heldout_ocr.json stayed beside a model they do not
    describe."""
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    with open(data / "instr.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"query": "q", "positive": "p", "negatives": ["n"]}\n')
    output = run_training(_config(tmp_path / "out", str(data), max_steps=1, skip_invalid=True))
    (listing,) = (output / "skipped_rows.txt").read_text().splitlines()
    assert listing.endswith("field 'negatives': unknown key; a row of this task has keys ['query', 'positive']")
    (output / "heldout_ocr.json").write_text('{"r@1": 1.0}')  # as a default-data run leaves it
    run_training(_config(tmp_path / "out", small_data, max_steps=1, overwrite_output_dir=True))
    assert not (output / "skipped_rows.txt").exists() and not (output / "heldout_ocr.json").exists()
