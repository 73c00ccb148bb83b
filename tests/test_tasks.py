"""The task registry: every consumer reads it, so adding a task is one entry."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from st_unirep import tasks
from st_unirep.errors import DataError
from st_unirep.losses import InstructionLoss, build_loss
from st_unirep.presets import PRESETS
from st_unirep.tasks import IMAGE_TASKS, TASK_PREFIX_TOKENS, TASKS, Task, get_task
from st_unirep.training.data import load_task_data
from st_unirep.training.prompts import encoder_prompts
from tests.conftest import make_image

ROWS = {
    "text_pair": {"sentence1": "a", "sentence2": "b", "score": 3},
    "instr": {"query": "q", "positive": "p"},
    "ocr": {"images": ["x.png"], "positive": "TEXT"},
    "vqa_single": {"images": ["x.png"], "question": "what?", "answer": "a"},
    "vqa_multi": {"images": ["x.png"], "conversation": [{"role": "user", "content": "what?"}], "answer": "a"},
}


@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_parses_its_row_into_its_inputs_and_label(tmp_path, name):
    make_image().save(tmp_path / "x.png")
    task = get_task(name)
    columns = task.parse_row(ROWS[name], (tmp_path / f"{name}.jsonl", 1), (0.0, 5.0))
    expected = task.inputs + ((task.label,) if task.label else ())
    assert tuple(columns) == expected
    assert task.input_columns(list(columns)) == task.inputs
    assert set(ROWS[name]) <= set(task.row_keys)
    assert (name in IMAGE_TASKS) == task.images


def test_prefix_tokens_and_lookup_come_from_the_registry():
    assert TASK_PREFIX_TOKENS == ("<text_pair>", "<instr>", "<ocr>", "<vqa_single>", "<vqa_multi>")
    assert [t.prefix_token for t in TASKS.values()] == list(TASK_PREFIX_TOKENS)
    with pytest.raises(ValueError, match="Unknown task 'captions'.*text_pair"):
        get_task("captions")


def test_a_row_error_names_file_line_and_field(tmp_path):
    with pytest.raises(DataError, match=r"t\.jsonl:7: field 'score'"):
        get_task("text_pair").parse_row(
            {"sentence1": "a", "sentence2": "b", "score": 9}, (tmp_path / "t.jsonl", 7), (0, 5)
        )


def test_adding_a_task_is_one_registry_entry(tmp_path, monkeypatch, tiny_model):
    """A new text task registered once is loaded from its file, gets its loss, its prompts and its prefix token."""
    summary = Task(
        "summary",
        ("document", "summary"),
        lambda row, where, score_range: {"document": row["document"], "summary": row["summary"]},
        inputs=("document", "summary"),
        loss="instruction",
        encoder_prompts="query_document",
    )
    monkeypatch.setitem(TASKS, "summary", summary)
    rows = [{"document": f"long text {i}", "summary": f"short {i}"} for i in range(4)]
    (tmp_path / "summary.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")

    data, report = load_task_data(tmp_path, tasks=tuple(TASKS))
    assert report.rows == {"summary": 4} and data["summary"].column_names == ["document", "summary"]
    assert encoder_prompts({"query": "q: ", "document": "d: "}, {"summary": data["summary"].column_names}) == {
        "summary": {"document": "q: ", "summary": "d: "}
    }
    loss = build_loss(tiny_model, "summary", "unirep")
    assert isinstance(loss.loss, InstructionLoss)
    features = [tiny_model.tokenize(data["summary"][c]) for c in ("document", "summary")]
    assert torch.isfinite(sum(loss(features, None).values()))
    assert summary.prefix_token == "<summary>"


def test_a_triplet_task_without_a_margin_in_the_preset_is_refused(monkeypatch, tiny_model):
    monkeypatch.setitem(TASKS, "charts", replace(tasks.OCR, name="charts"))
    with pytest.raises(ValueError, match="triplet_margins has no entry for task 'charts'"):
        build_loss(tiny_model, "charts", PRESETS["unirep"])
