"""Training prompts from a text encoder's own query / passage prompts (E5-style models)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LABEL_COLUMNS = ("score", "label")


def encoder_prompts(
    prompts: Mapping[str, str] | None, task_columns: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, str]]:
    """Per-task, per-column prompts from a model's ``"query"`` and ``"passage"`` (or ``"document"``) prompts.

    E5-style encoders were pre-trained with ``"query: "`` / ``"passage: "`` in front of every input and lose
    accuracy without them, so fine-tuning keeps them where inference will put them (``evaluation.evaluate`` and
    ``SentenceTransformer.encode(prompt_name=...)``): ``text_pair`` is symmetric, ``"query: "`` on both sides;
    ``instr`` has ``"query: "`` on the query column and ``"passage: "`` on every other input column (positives and
    any negatives). Tasks of other kinds (images) get none. Empty when the model has no non-empty query prompt.

    Args:
        prompts: the model's ``prompts`` (``SentenceTransformer.prompts``).
        task_columns: the input columns of each task's dataset (label columns are skipped).
    """
    prompts = prompts or {}
    query = prompts.get("query")
    passage = prompts.get("passage") or prompts.get("document") or query
    if not query:
        return {}
    out: dict[str, dict[str, str]] = {}
    for task, columns in task_columns.items():
        columns = [c for c in columns if c not in LABEL_COLUMNS]
        if task == "text_pair":
            out[task] = {column: query for column in columns}
        elif task == "instr":
            out[task] = {column: query if column == "query" else passage for column in columns}
    return out
