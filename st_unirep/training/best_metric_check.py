"""``BestMetricCheckCallback``: a ``metric_for_best_model`` that no evaluation reports fails at the first evaluation."""

from __future__ import annotations

from transformers import TrainerCallback


class BestMetricCheckCallback(TrainerCallback):
    """Check, at the first evaluation (step 0 with ``eval_on_start``), that the evaluation reports
    ``args.metric_for_best_model``; raise a ``ValueError`` listing the reported metrics if not.

    transformers looks the metric up only when it compares checkpoints, at the first evaluation after step 0: a
    misspelt name (``stsb_spearman`` for ``stsb_en_spearman``) would fail after ``eval_steps`` of training.
    """

    def __init__(self) -> None:
        self.checked = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.checked or not args.metric_for_best_model or metrics is None:
            return
        self.checked = True
        wanted = args.metric_for_best_model
        key = wanted if wanted.startswith("eval_") else f"eval_{wanted}"
        if key not in metrics:
            timings = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
            reported = sorted(k.removeprefix("eval_") for k in metrics if k.startswith("eval_") and k not in timings)
            raise ValueError(
                f"metric_for_best_model {wanted!r} is not among the dev metrics; they are {reported} (from the dev "
                "evaluator, without 'eval_')"
            )


__all__ = ["BestMetricCheckCallback"]
