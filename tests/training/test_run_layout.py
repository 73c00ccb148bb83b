"""RunLayout (issue 17): the model in a folder of its own, the run's files beside it; a free folder when not given."""

from __future__ import annotations

import pytest

from st_unirep.training.run_layout import RunLayout, free_output_dir, model_folder


def _finished(root):
    (root / "model").mkdir(parents=True)
    (root / "model" / "modules.json").write_text("[]")
    (root / "train_log.json").write_text("[]")


def test_the_paths_of_a_run():
    layout = RunLayout("out")
    assert layout.model.as_posix() == "out/model" and layout.checkpoints.as_posix() == "out/checkpoints"
    assert layout.data.as_posix() == "out/data" and layout.tiny_backbone.as_posix() == "out/tiny-backbone"
    assert layout.train_log.as_posix() == "out/train_log.json" and layout.health_log.as_posix().endswith(
        "out/checkpoints/health.jsonl"
    )


def test_a_finished_run_or_a_model_of_the_old_layout_is_refused_a_stopped_run_is_not(tmp_path):
    _finished(tmp_path / "new")
    with pytest.raises(FileExistsError, match=r"already holds a trained model or checkpoints \(model/modules.json\)"):
        RunLayout(tmp_path / "new").check()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "modules.json").write_text("[]")  # a model saved at the top of output/, before issue 17
    with pytest.raises(FileExistsError, match=r"\(modules.json\)"):
        RunLayout(tmp_path / "old").check()
    RunLayout(tmp_path / "old").check(overwrite=True)
    RunLayout(tmp_path / "new").check(resume=True)
    for scratch in ("data", "tiny-backbone", "checkpoints"):  # what a run stopped before its save leaves
        (tmp_path / "stopped" / scratch).mkdir(parents=True)
    RunLayout(tmp_path / "stopped").check()


def test_free_output_dir_never_picks_a_finished_run(tmp_path):
    """`python train/train.py --max_steps 200` after the default job: a new folder, not the default model's."""
    output = tmp_path / "output"
    assert free_output_dir(output) == output  # nothing there yet
    _finished(output)
    assert free_output_dir(output) == tmp_path / "output-2"
    _finished(tmp_path / "output-2")
    (tmp_path / "output-3").mkdir()
    (tmp_path / "output-3" / "notes.txt").write_text("mine")  # not a run: not written into either
    assert free_output_dir(output) == tmp_path / "output-4"
    (tmp_path / "output-4" / "data").mkdir(parents=True)  # a stopped run: started again in place
    assert free_output_dir(output) == tmp_path / "output-4"


def test_a_run_folder_stands_for_its_model(tmp_path):
    _finished(tmp_path / "output")
    assert model_folder(tmp_path / "output") == str(tmp_path / "output" / "model")
    assert model_folder(tmp_path / "output" / "model") == str(tmp_path / "output" / "model")
    assert model_folder("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
