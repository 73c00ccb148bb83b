"""Training prompts from a text encoder's own query / passage prompts (E5-style models)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from st_unirep.tasks import get_task


def encoder_prompts(
    prompts: Mapping[str, str] | None, task_columns: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, str]]:
    """Per-task, per-column prompts from a model's ``"query"`` and ``"passage"`` (or ``"document"``) prompts.

    E5-style encoders were pre-trained with ``"query: "`` / ``"passage: "`` in front of every input and lose
    accuracy without them, so fine-tuning keeps them where inference will put them (``evaluation.evaluate`` and
    ``SentenceTransformer.encode(prompt_name=...)``). Each task's registry entry says where
    (:attr:`st_unirep.tasks.Task.encoder_prompts`): ``"symmetric"`` (graded pairs) puts ``"query: "`` on both
    sides; ``"query_document"`` (instructions) puts ``"query: "`` on the first input column and ``"passage: "`` on
    every other one (positives and any negatives); image tasks get none. Empty when the model has no non-empty
    query prompt.

    Args:
        prompts: the model's ``prompts`` (``SentenceTransformer.prompts``).
        task_columns: the columns of each task's dataset, by task name (label columns are skipped).
    """
    prompts = prompts or {}
    query = prompts.get("query")
    passage = prompts.get("passage") or prompts.get("document") or query
    if not query:
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, columns in task_columns.items():
        task = get_task(name)
        inputs = task.input_columns(list(columns))
        if task.encoder_prompts == "symmetric":
            out[name] = {column: query for column in inputs}
        elif task.encoder_prompts == "query_document":
            out[name] = {column: query if i == 0 else passage for i, column in enumerate(inputs)}
    return out
