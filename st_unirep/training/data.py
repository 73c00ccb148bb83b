"""The training data format (one JSON Lines file or folder per task) → a validated ``datasets.DatasetDict``.

Rows per task (image paths are relative to the JSONL file; several images per sample are allowed)::

    text_pair   {"sentence1": str, "sentence2": str, "score": number}        score within the configured range
    instr       {"query": str, "positive": str}
    ocr         {"images": [path, ...], "query"?: str, "positive": str, "negative"?: str}
    vqa_single  {"images": [path, ...], "question": str, "answer": str, "negative"?: str}
    vqa_multi   {"images": [path, ...], "conversation": [{"role": "user"|"assistant", "content": str}, ...],
                 "answer": str, "negative"?: str}

A data root holds ``<task>.jsonl`` or a folder ``<task>/`` of ``*.jsonl`` files for any subset of the tasks.
Each task becomes one dataset whose columns are what the task's loss reads, in order:

    text_pair   sentence1, sentence2, score
    instr       query, positive
    ocr         anchor {"text": query or None, "image": [abs paths]}, positive[, negative]
    vqa_single  anchor {"text": question, "image": [abs paths]}, positive[, negative]
    vqa_multi   anchor [chat messages, the images in the first user turn], positive[, negative]

Images stay paths (decoded by the model's ``Backbone`` at batch time), so a corpus of images is never held in
RAM; each path is checked when the data is loaded (it exists, and PIL verifies the file without decoding it; a JPEG
must be complete). Files are UTF-8 (a byte-order mark allowed). Every bad row raises a ``DataError`` naming file,
line, field and what was expected — a key the task does not know (e.g. ``"negatives"``) included — unless
``skip_invalid=True``, which skips them and lists every one in the ``LoadReport`` (``errors``:
``file:line: reason``; a run writes them to ``<output_dir>/skipped_rows.txt``).

Which files are read, under the data root (``--data``); ``TASKS`` is :data:`st_unirep.tasks.TASKS`:

- ``<task>.jsonl`` directly in the root, and every ``*.jsonl`` directly in a folder ``<task>/`` (not in its
  subfolders), for every task of ``TASKS``.
- Any other ``*.jsonl`` in the root (``text-pair.jsonl``, ``captions.jsonl``, ``Instr.jsonl``) is an error naming
  it and the task names; so is a file named after a task that is not ``<task>.jsonl`` (``instr.json``,
  ``instr.JSONL``, ``instr.jsonl.gz``), and a folder of ``*.jsonl`` files whose name is a near miss of a task's
  (``text-pair/``, ``OCR/``, ``vqa_singles/``).
- A task file with no rows (empty, or blank lines only) is an error, in a task folder too; so is a task folder with
  no ``*.jsonl`` in it unless ``<task>.jsonl`` is beside it (then the folder may hold that file's images).
- Every other file (``README.md``, images, hidden files) and folder (``images/``, ``heldout/``) is not data and is
  not flagged.

With ``skip_invalid=True`` each of these errors is a logged warning instead, listed in ``LoadReport.errors``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from st_unirep.errors import DataError, did_you_mean, iter_jsonl
from st_unirep.task_rows import check_keys
from st_unirep.tasks import TASKS, get_task

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load kept and (with ``skip_invalid``) skipped, per task."""

    rows: dict[str, int] = field(default_factory=dict)  # rows kept per task
    skipped: dict[str, int] = field(default_factory=dict)  # invalid rows skipped per task
    errors: list[str] = field(default_factory=list)  # every skipped row or file: "file:line: field ...: reason"


def parse_row(task: str, row: Any, where: tuple[Path, int], score_range: tuple[float, float]) -> dict[str, Any]:
    """Validate one decoded JSON row of ``task`` and return its dataset columns (the registry's row parser)."""
    spec = get_task(task)
    if not isinstance(row, dict):
        raise DataError(*where, "<row>", f"expected a JSON object, got {type(row).__name__}")
    check_keys(row, spec.row_keys, where)
    return spec.parse_row(row, where, score_range)


def _task_files(root: Path, task: str) -> list[Path]:
    single, folder = root / f"{task}.jsonl", root / task
    files = [single] if single.is_file() else []
    if folder.is_dir():
        files += sorted(folder.glob("*.jsonl"))
    return files


def _problem(message: str, skip_invalid: bool, report: LoadReport) -> None:
    """A data problem that is not one row's: an error, or with ``skip_invalid`` a warning kept in the report."""
    if not skip_invalid:
        raise DataError.for_file(message)
    logger.warning("%s (skipped: skip_invalid)", message)
    report.errors.append(message)


def _entry_problem(path: Path, tasks: tuple[str, ...]) -> str | None:
    """Why a file or folder directly in the data root would be silently ignored although it looks like data."""
    name, files = path.name, [f"{t}.jsonl" for t in tasks]
    stem = name.split(".", 1)[0]
    if name.startswith("."):  # hidden: an editor's or a tool's, not data
        return None
    if path.is_file() and path.suffix.lower() == ".jsonl" and name not in files:
        hint = did_you_mean(name, files)
        return f"{name!r} is not a task file; expected <task>.jsonl with a task of {list(tasks)}{hint}"
    if path.is_file() and stem.lower() in tasks and name not in files:
        return (
            f"{name!r} is named after task {stem.lower()!r} but only {stem.lower()}.jsonl (JSON Lines, UTF-8) is read"
        )
    if not path.is_dir():
        return None
    if name in tasks and not any(path.glob("*.jsonl")) and not (path.parent / f"{name}.jsonl").is_file():
        return f"task folder {name!r} holds no *.jsonl file (only <task>/*.jsonl directly inside are read)"
    hint = did_you_mean(name, tasks)
    if name not in tasks and hint and any(path.glob("*.jsonl")):
        return f"folder {name!r} of .jsonl files is not a task folder{hint}; task folders are named {list(tasks)}"
    return None


def _check_data_files(root: Path, tasks: tuple[str, ...], skip_invalid: bool, report: LoadReport) -> None:
    """Nothing in ``root`` that looks like data is ignored without a word (the rules: the module docstring)."""
    for path in sorted(root.iterdir()):
        problem = _entry_problem(path, tasks)
        if problem is not None:
            _problem(f"{path}: {problem}", skip_invalid, report)


def _read_task(
    task: str, files: list[Path], score_range: tuple[float, float], skip_invalid: bool, report: LoadReport
) -> tuple[list[dict[str, Any]], list[tuple[Path, int]], int]:
    """The rows of ``task``'s files, where each came from, and how many bad rows were skipped."""
    rows, wheres, skipped = [], [], 0
    for path in files:
        lines = 0
        for number, raw in iter_jsonl(path):
            lines += 1
            try:
                if isinstance(raw, DataError):
                    raise raw
                rows.append(parse_row(task, raw, (path, number), score_range))
                wheres.append((path, number))
            except DataError as error:
                if not skip_invalid:
                    raise
                skipped += 1
                report.errors.append(str(error))
        if not lines:
            _problem(f"{path}: task {task!r} has no rows in this file (it is empty)", skip_invalid, report)
    return rows, wheres, skipped


def _check_negatives(task: str, rows: list[dict[str, Any]], wheres: list[tuple[Path, int]]) -> None:
    """A ``negative`` on every row of a task or on none (a batch needs the same columns)."""
    with_negative = sum("negative" in r for r in rows)
    if 0 < with_negative < len(rows):
        first = next(i for i, r in enumerate(rows) if "negative" not in r)
        raise DataError(
            *wheres[first],
            "negative",
            f"{with_negative} of {len(rows)} {task} rows have a negative: give one to every row "
            "of a task or to none (a batch needs the same columns)",
        )


def load_task_data(
    root: str | os.PathLike,
    score_range: tuple[float, float] = (0.0, 5.0),
    skip_invalid: bool = False,
    tasks: tuple[str, ...] = tuple(TASKS),
) -> tuple[DatasetDict, LoadReport]:
    """Read every task found under ``root`` into a ``DatasetDict`` (one dataset per task), validating every row.

    Args:
        root: Folder with ``<task>.jsonl`` files or ``<task>/`` folders of JSONL files (the rules: module docstring).
        score_range: Allowed range of ``text_pair`` scores.
        skip_invalid: Skip (and list in the report) bad rows and files instead of raising on the first.
        tasks: The tasks to look for.

    Returns:
        The ``DatasetDict`` and a :class:`LoadReport`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Training data folder {str(root)!r} does not exist")
    report = LoadReport()
    _check_data_files(root, tasks, skip_invalid, report)
    data = {}
    for task in tasks:
        files = _task_files(root, task)
        if not files:
            continue
        rows, wheres, skipped = _read_task(task, files, score_range, skip_invalid, report)
        if rows:
            _check_negatives(task, rows, wheres)
            data[task] = Dataset.from_list(rows)
        report.rows[task] = len(rows)
        if skipped:
            report.skipped[task] = skipped
            logger.warning("%s: skipped %d invalid row(s) of %s", root, skipped, task)
    if not data:
        raise DataError.for_file(
            f"No task data under {str(root)!r}: expected any of {[t + '.jsonl' for t in tasks]} or <task>/ folders"
        )
    return DatasetDict(data), report


def load_sources(sources: list[dict[str, Any]]) -> tuple[DatasetDict, LoadReport]:
    """Training data straight from files in the evaluation data layouts (any split, any folder alike).

    Each source is ``{"path": ..., "task": "text_pair" | "instr", "score_range"?: [lo, hi]}``:

    - ``text_pair`` from a graded-pairs file (``{"sentence1", "sentence2", "score"}``): the score is mapped to
      [0, 1] with the source's ``score_range`` (default: ``evaluation.datasets.SCORE_RANGES`` by folder name), so
      sets on different scales (STS-B 0–5, SICK 1–5) train one calibrated score; the losses then use (0, 1).
    - ``instr`` from a binary-pairs file (``{"sentence1", "sentence2", "label"}``): the label-1 rows as
      (query, positive); label-0 rows are not used (a non-paraphrase is not "unrelated", so it has no place on
      the graded scale, and the in-batch negatives already teach what is not a paraphrase).
    - ``instr`` from a retrieval folder (``queries.jsonl``, ``corpus.jsonl``, ``qrels.jsonl``): one
      (question, relevant passage) row per judged pair.

    Rows of one task from several sources are concatenated (in source order). A missing path or a source that
    does not fit its task raises a ValueError naming the source.
    """
    from st_unirep.evaluation.datasets import SCORE_RANGES, read_pairs, read_text_retrieval

    rows: dict[str, list[dict[str, Any]]] = {}
    report = LoadReport()
    for index, source in enumerate(sources):
        where = f"sources[{index}]"
        if not isinstance(source, dict) or "path" not in source or "task" not in source:
            raise ValueError(f"{where}: expected {{path, task[, score_range]}}, got {source!r}")
        unknown = sorted(set(source) - {"path", "task", "score_range"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected path, task and optionally score_range")
        path, task = Path(source["path"]), source["task"]
        if not path.exists():
            raise ValueError(f"{where}: path {str(path)!r} does not exist")
        # The dataset's name (for its score range): the folder above a split file or split folder.
        name = path.parent.name if path.is_file() or path.name in ("train", "dev", "test") else path.name
        family = get_task(task).loss if task in TASKS else None
        if family == "graded_pair":
            if not path.is_file():
                raise ValueError(f"{where}: task {task} needs a graded-pairs .jsonl file, got folder {str(path)!r}")
            pairs = read_pairs(path, name)
            if pairs.kind != "graded":
                raise ValueError(f"{where}: task {task} needs graded rows ('score'), {path} has 0/1 labels")
            lo, hi = source.get("score_range") or SCORE_RANGES.get(name, pairs.score_range)
            if not lo < hi or min(pairs.gold) < lo or max(pairs.gold) > hi:
                raise ValueError(
                    f"{where}: scores of {path} span [{min(pairs.gold)}, {max(pairs.gold)}], outside score_range "
                    f"[{lo}, {hi}]"
                )
            new = [
                {"sentence1": a, "sentence2": b, "score": (g - lo) / (hi - lo)}
                for a, b, g in zip(pairs.sentences1, pairs.sentences2, pairs.gold, strict=True)
            ]
        elif family == "instruction":
            if path.is_file():
                pairs = read_pairs(path, name)
                if pairs.kind != "binary":
                    raise ValueError(f"{where}: task {task} from a pairs file needs 0/1 'label' rows ({path})")
                new = [
                    {"query": a, "positive": b}
                    for a, b, g in zip(pairs.sentences1, pairs.sentences2, pairs.gold, strict=True)
                    if g == 1
                ]
            else:
                data = read_text_retrieval(path, name)
                new = [
                    {"query": q, "positive": data.corpus[d]}
                    for q, docs in zip(data.queries, data.relevant, strict=True)
                    for d in sorted(docs)
                ]
        else:
            text_tasks = " or ".join(repr(t.name) for t in TASKS.values() if t.loss in ("graded_pair", "instruction"))
            raise ValueError(f"{where}: task must be {text_tasks} for these layouts, got {task!r}")
        logger.info("%s: %d %s rows from %s", where, len(new), task, path)
        rows.setdefault(task, []).extend(new)
    for task, task_rows in rows.items():
        report.rows[task] = len(task_rows)
    if not rows:
        raise ValueError("sources is empty: give at least one {path, task} source")
    return DatasetDict({task: Dataset.from_list(task_rows) for task, task_rows in rows.items()}), report
