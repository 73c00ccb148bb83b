"""``UniRepTrainer``: sentence-transformers' trainer whose every log row carries st_unirep's callback metrics."""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformerTrainer
from transformers.trainer_callback import ProgressCallback

from st_unirep.training.console import CompactProgressCallback


class UniRepTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` with two changes, both through the documented extension points:

    - :meth:`log` (transformers: "subclass and override this method to inject custom behavior") first asks every
      callback with an ``add_metrics(state, logs)`` method (gradient norms, health, schedules, vaccine) to add its
      numbers to the row. The trainer appends a *copy* of the row to ``state.log_history`` before the callbacks'
      ``on_log`` run, and reporters (TensorBoard, W&B) run before user callbacks, so metrics added in ``on_log``
      reached the console only — never ``train_log.json`` or ``report_to``.
    - the progress bar's log dump is one readable line per logging step (:class:`CompactProgressCallback`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(CompactProgressCallback)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training row (not an evaluation's)
            for callback in self.callback_handler.callbacks:
                add_metrics = getattr(callback, "add_metrics", None)
                if callable(add_metrics):
                    add_metrics(self.state, logs)
        super().log(logs, start_time)


__all__ = ["UniRepTrainer"]
