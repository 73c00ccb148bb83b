"""The output folder of a training run (issues 15, 17): what a run refuses, clears, replaces and leaves beside the
model; evaluation on dev data during training and the best checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from st_unirep.modules.stable_projection import StableProjection
from st_unirep.training.run import run_training
from st_unirep.training.run_layout import RunLayout, save_atomically
from tests.training.test_train import _config, small_data  # noqa: F401  (fixture)


def _checkpoints(output: Path) -> list[str]:
    return sorted(path.name for path in RunLayout(output).checkpoints.glob("checkpoint-*"))


def _health_steps(output: Path) -> list[int]:
    lines = RunLayout(output).health_log.read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_overwrite_clears_the_earlier_runs_checkpoints_and_keeps_the_new_ones(tmp_path, small_data):  # noqa: F811
    """Regression: with --overwrite_output_dir the earlier run's checkpoint-2/-4 stayed, the oldest-first rotation
    deleted the new run's checkpoints as soon as they were written, and `resume last` would resume the old run."""
    output = tmp_path / "out"
    run_training(_config(output, small_data, max_steps=4, save_steps=2, health_every=2))
    assert _checkpoints(output) == ["checkpoint-2", "checkpoint-4"] and _health_steps(output) == [0, 2, 4]
    run_training(_config(output, small_data, max_steps=2, save_steps=1, health_every=1, overwrite_output_dir=True))
    assert _checkpoints(output) == ["checkpoint-1", "checkpoint-2"]  # this run's, none of the earlier run's
    assert _health_steps(output) == [0, 1, 2]  # this run's health log only
    assert json.loads(RunLayout(output).train_config.read_text())["max_steps"] == 2


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, small_data):  # noqa: F811
    """Regression: `--output_dir .` in a project replaced its README.md and config.json by the model's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    (project / "config.json").write_text("{}")
    with pytest.raises(FileExistsError) as info:
        run_training(_config(project, small_data, max_steps=1))
    assert str(info.value) == (
        f"output_dir '{project}' is not empty (README.md, config.json) and holds no st_unirep run; the run's files "
        "(model/, train_log.json, train_config.json, ...) would replace any of the same names. Choose an empty or new "
        "--output_dir, or pass --overwrite_output_dir true to write into it anyway."
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
    assert (output / "model" / "modules.json").is_file()


def test_a_full_disk_at_the_final_save_leaves_the_earlier_model_intact(tmp_path, small_data, monkeypatch):  # noqa: F811
    """Regression: a full disk at the final save left config.json without weights. Now the model goes to a staging
    folder first; a module's save failing midway (after the backbone's weights were written) replaces nothing."""
    output = run_training(_config(tmp_path / "out", small_data, max_steps=1))  # the model folder
    before = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}

    def full_disk(self, output_path, *args, **kwargs):
        (Path(output_path) / "partial.bin").write_bytes(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StableProjection, "save", full_disk)
    with pytest.raises(OSError) as info:
        run_training(_config(tmp_path / "out", small_data, max_steps=1, overwrite_output_dir=True))
    assert str(info.value) == (
        f"Saving the trained model into '{output}' failed ([Errno 28] No space left on device); nothing was "
        "replaced: the folder holds what it held before (checkpoints, if save_steps > 0, are in the run's "
        "checkpoints/ folder)."
    )
    after = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert after == before  # every file of the model, byte for byte, and nothing else
    assert not list(output.parent.glob(".saving-*")) and not list(output.parent.rglob("partial.bin"))


class _FakeModel:
    def __init__(self, files: dict[str, str]):
        self.files = files

    def save(self, path: str) -> None:
        for name, text in self.files.items():
            (Path(path) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(path) / name).write_text(text)


def test_a_new_model_replaces_every_file_of_the_old_one(tmp_path):
    """The earlier model's module folders and weight shards that the new save lacks go with it; the run's other files
    beside the model folder (data, checkpoints) stay."""
    output = tmp_path / "run" / "model"
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
    (tmp_path / "run" / "data").mkdir()
    (tmp_path / "run" / "data" / "instr.jsonl").write_text("{}")
    new = {"modules.json": json.dumps([{"idx": 0, "path": ""}, {"idx": 1, "path": "1_Pool"}])}
    new |= {"model.safetensors": "new weights", "1_Pool/config.json": "new pool"}
    save_atomically(_FakeModel(new), output)
    files = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert files == ["data/instr.jsonl", "model/1_Pool/config.json", "model/model.safetensors", "model/modules.json"]
    assert (output / "1_Pool" / "config.json").read_text() == "new pool"


def test_skipped_rows_listing_and_heldout_result_describe_this_run_only(tmp_path, small_data):  # noqa: F811
    """Regression: an overwritten run's skipped_rows.txt and heldout_ocr.json stayed beside a model they do not
    describe."""
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    with open(data / "instr.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"query": "q", "positive": "p", "negatives": ["n"]}\n')
    layout = RunLayout(tmp_path / "out")
    run_training(_config(layout.root, str(data), max_steps=1, skip_invalid=True))
    (listing,) = layout.skipped_rows.read_text().splitlines()
    assert listing.endswith("field 'negatives': unknown key; a row of this task has keys ['query', 'positive']")
    layout.heldout_ocr.write_text('{"r@1": 1.0}')  # as a default-data run leaves it
    run_training(_config(layout.root, small_data, max_steps=1, overwrite_output_dir=True))
    assert not layout.skipped_rows.exists() and not layout.heldout_ocr.exists()


def _weights(path) -> dict:
    from sentence_transformers import SentenceTransformer

    return {k: v.clone() for k, v in SentenceTransformer(str(path), trust_remote_code=True).state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dev_metrics_reach_the_log_and_the_best_checkpoint_is_the_saved_model(tmp_path, monkeypatch):
    """Issue 17: the default job's built-in dev renderings are evaluated at step 0 and every eval_steps; with
    load_best_model_at_end the saved model is the best checkpoint's (step 2 here, not the last step 6). The dev
    numbers are scripted so that the best step is known; the real ones are the next test's."""
    from st_unirep.evaluation.dev_evaluator import DevEvaluator

    scripted = iter([0.1, 0.9, 0.3, 0.2])  # steps 0, 2, 4, 6
    seen = []

    def compute_metrics(self, model):
        seen.append([data.name for data in self.datasets])
        return {"ocr_t2i_ndcg@10": next(scripted), "ocr_t2i_r@1": 0.5}

    monkeypatch.setattr(DevEvaluator, "compute_metrics", compute_metrics)
    layout = RunLayout(tmp_path / "out")
    overrides = dict(max_steps=6, eval_steps=2, save_steps=2, save_total_limit=None, health_every=6)
    model = run_training(_config(layout.root, None, load_best_model_at_end=True, **overrides))  # the built-in data
    assert model == layout.model and seen == [["ocr"]] * 4
    log = json.loads(layout.train_log.read_text())
    dev = {row["step"]: row["eval_ocr_t2i_ndcg@10"] for row in log if "eval_ocr_t2i_ndcg@10" in row}
    assert dev == {0: 0.1, 2: 0.9, 4: 0.3, 6: 0.2}
    assert all("eval_ocr_t2i_r@1" in row for row in log if "eval_ocr_t2i_ndcg@10" in row)
    saved = _weights(layout.model)
    assert _same(saved, _weights(layout.checkpoints / "checkpoint-2"))
    assert not _same(saved, _weights(layout.checkpoints / "checkpoint-6"))
    # the model folder holds the model alone: the run's files are beside it
    assert not {"data", "tiny-backbone", "checkpoints", "train_log.json", "train_config.json"} & {
        p.name for p in layout.model.iterdir()
    }
    assert {"data", "tiny-backbone", "checkpoints", "train_log.json", "train_config.json", "heldout_ocr.json"} <= {
        p.name for p in layout.root.iterdir()
    }


def test_dev_sets_in_the_shared_layouts_are_evaluated_and_the_best_is_kept(tmp_path, small_data):  # noqa: F811
    """Real dev metrics of a graded set and a text retrieval set (the evaluation layouts) in train_log.json; with
    save_steps 0, a checkpoint only at each new best, and the saved model is the best one."""
    root = tmp_path / "dev"
    (root / "sts").mkdir(parents=True)
    pairs = [("a red car", "a red automobile", 5.0), ("a dog runs", "a cat sleeps", 1.0), ("tea", "green tea", 3.5)]
    (root / "sts" / "dev.jsonl").write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for a, b, s in pairs)
    )
    (root / "qa" / "dev").mkdir(parents=True)
    for name, rows in {
        "queries": [{"id": f"q{i}", "text": f"question {i}"} for i in range(3)],
        "corpus": [{"id": f"d{i}", "text": f"answer {i}"} for i in range(4)],
        "qrels": [{"query_id": f"q{i}", "doc_id": f"d{i}", "score": 1} for i in range(3)],
    }.items():
        (root / "qa" / "dev" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    layout = RunLayout(tmp_path / "out")
    run_training(
        _config(layout.root, small_data, max_steps=4, dev_data=str(root), eval_steps=2, load_best_model_at_end=True)
    )
    rows = [row for row in json.loads(layout.train_log.read_text()) if "eval_score" in row]
    assert [row["step"] for row in rows] == [0, 2, 4]
    assert {"eval_sts_spearman", "eval_sts_ece", "eval_qa_r@1", "eval_qa_ndcg@10", "eval_qa_ece"} <= set(rows[0])
    best = max(rows[1:], key=lambda row: row["eval_score"])  # the first of equal bests
    assert (layout.checkpoints / f"checkpoint-{best['step']}").is_dir()
    assert _same(_weights(layout.model), _weights(layout.checkpoints / f"checkpoint-{best['step']}"))


def test_a_misspelt_best_metric_fails_at_the_first_evaluation_naming_the_metrics(tmp_path, small_data):  # noqa: F811
    root = tmp_path / "dev" / "sts"
    root.mkdir(parents=True)
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": float(i)} for i in range(4)]
    (root / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _config(tmp_path / "out", small_data, max_steps=4, dev_data=str(root.parent), save_steps=1)
    config.metric_for_best_model = "stsb_spearman"
    with pytest.raises(ValueError, match=r"metric_for_best_model 'stsb_spearman' is not among .*'sts_spearman'"):
        run_training(config)
    assert not list(RunLayout(tmp_path / "out").checkpoints.glob("checkpoint-*"))  # at step 0: no step trained
