"""The five training tasks as data: one frozen :class:`Task` per task, in :data:`TASKS`.

Everything that differs between tasks lives here — the JSON keys of a data row and how a row becomes dataset
columns, which of those columns the loss reads as inputs and which is the label, whether a task carries images,
which loss family trains it and where a text encoder's query / document prompts go. The data loader, the loss
factory, the training prompts, the prefix tokens and the health probe read these entries; none of them branches on
a task's name. Adding a task is one entry here (and a row parser in :mod:`st_unirep.task_rows`).

Per-task loss *hyperparameters* (triplet margins) belong to the recipe, not the task: see
:attr:`st_unirep.presets.Preset.triplet_margins`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from st_unirep import task_rows

RowParser = Callable[[dict, tuple, tuple[float, float]], dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One training task."""

    name: str  # the task's name: data file <name>.jsonl or folder <name>/, key of the loss dict and of batches
    row_keys: tuple[str, ...]  # the JSON keys a data row may carry (required and optional)
    parse_row: RowParser  # (row, (file, line), score_range) -> the dataset columns of one row; raises DataError
    inputs: tuple[str, ...]  # the dataset columns every row has as inputs, in order (anchor, positive)
    label: str | None = None  # the label column (graded score), if any; every other column is an input
    images: bool = False  # rows carry images (the gradient vaccine anneals these tasks in)
    loss: str = "triplet"  # loss family: "graded_pair", "instruction" or "triplet" (losses.build_loss)
    # Where a text encoder's own prompts go (E5's "query: " / "passage: "): "symmetric" = the query prompt on every
    # input; "query_document" = the query prompt on the first input, the document prompt on the rest; None = none.
    encoder_prompts: str | None = None

    @property
    def prefix_token(self) -> str:
        """The task's prefix token (viPolyQwen §3.4), added to the tokenizer as one special token."""
        return f"<{self.name}>"

    def input_columns(self, column_names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The input columns of a dataset of this task: every column but the label (hard negatives included)."""
        return tuple(c for c in column_names if c != self.label)


_IMAGE_TASK = {"inputs": ("anchor", "positive"), "images": True, "loss": "triplet"}  # a "negative" column optional

TEXT_PAIR = Task(
    "text_pair",
    ("sentence1", "sentence2", "score"),
    task_rows.graded_pair,
    inputs=("sentence1", "sentence2"),
    label="score",
    loss="graded_pair",
    encoder_prompts="symmetric",
)
INSTR = Task(
    "instr",
    ("query", "positive"),
    task_rows.instruction,
    inputs=("query", "positive"),
    loss="instruction",
    encoder_prompts="query_document",
)
OCR = Task("ocr", ("images", "query", "positive", "negative"), task_rows.ocr, **_IMAGE_TASK)
VQA_SINGLE = Task("vqa_single", ("images", "question", "answer", "negative"), task_rows.vqa_single, **_IMAGE_TASK)
VQA_MULTI = Task("vqa_multi", ("images", "conversation", "answer", "negative"), task_rows.vqa_multi, **_IMAGE_TASK)

TASKS: dict[str, Task] = {task.name: task for task in (TEXT_PAIR, INSTR, OCR, VQA_SINGLE, VQA_MULTI)}
"""Every task, by name, in the order data is loaded and batches are mixed."""

TASK_PREFIX_TOKENS: tuple[str, ...] = tuple(task.prefix_token for task in TASKS.values())
"""The task prefix tokens of viPolyQwen / UniRep, added as single special tokens."""

IMAGE_TASKS: frozenset[str] = frozenset(name for name, task in TASKS.items() if task.images)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; expected one of {list(TASKS)}")
    return TASKS[name]


__all__ = [
    "IMAGE_TASKS",
    "INSTR",
    "OCR",
    "TASKS",
    "TASK_PREFIX_TOKENS",
    "TEXT_PAIR",
    "VQA_MULTI",
    "VQA_SINGLE",
    "Task",
    "get_task",
]
