"""The trainer arguments every training run here shares (st_unirep's own and the sentence-transformers baseline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.base.evaluation import BaseEvaluator

from st_unirep.training.config import TrainConfig


def training_arguments(
    config: TrainConfig, output_dir: str | Path, evaluator: BaseEvaluator | None = None, **extra: Any
) -> SentenceTransformerTrainingArguments:
    """``SentenceTransformerTrainingArguments`` from ``config``'s schedule, batch, seed and evaluation fields;
    ``extra`` adds or replaces arguments (the sampler, prompts, saving) for one kind of run.

    The evaluation fields (:func:`evaluation_arguments`) apply when ``evaluator`` is given (the trainer needs it
    to evaluate); without one the run does not evaluate.
    """
    arguments = {
        "output_dir": str(output_dir),
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        # transformers 5 reads a float warmup_steps < 1 as the share of the steps (its warmup_ratio is deprecated)
        "warmup_steps": float(config.warmup_ratio),
        "lr_scheduler_type": config.lr_scheduler_type,
        "weight_decay": config.weight_decay,
        "bf16": config.bf16,
        "use_cpu": not torch.cuda.is_available(),
        "seed": config.seed,
        "data_seed": config.seed,
        "batch_sampler": config.batch_sampler,
        "logging_steps": config.logging_steps,
        "report_to": report_to(config.report_to),
    }
    arguments.update(save_arguments(config, evaluator))
    arguments.update(evaluation_arguments(config, evaluator))
    arguments.update(extra)
    return SentenceTransformerTrainingArguments(**arguments)


def evaluation_arguments(config: TrainConfig, evaluator: BaseEvaluator | None) -> dict[str, Any]:
    """The trainer's evaluation and best-checkpoint arguments from ``config`` (no evaluation without ``evaluator``).

    - ``eval_strategy`` / ``eval_steps`` (None: a tenth of the run), and one evaluation at step 0 (the untrained
      baseline; ``run.build_trainer`` adds a check that a misspelt ``metric_for_best_model`` fails there);
    - ``metric_for_best_model`` (None: the evaluator's ``primary_metric``) with its direction (``ece`` and
      ``brier`` lower is better) and ``load_best_model_at_end``; with ``save_steps`` 0 a checkpoint is written
      whenever that metric improves (``save_strategy="best"``).
    """
    if evaluator is None or not config.evaluates:
        return {"eval_strategy": "no"}
    metric = config.metric_for_best_model or evaluator.primary_metric
    greater = getattr(evaluator, "greater_is_better_for", None)
    arguments: dict[str, Any] = {
        "eval_strategy": config.resolved_eval_strategy,
        "eval_steps": config.eval_steps if config.eval_steps is not None else 0.1,
        "eval_on_start": True,
        "metric_for_best_model": metric,
        "greater_is_better": greater(metric) if callable(greater) else evaluator.greater_is_better,
        "load_best_model_at_end": config.load_best_model_at_end,
    }
    return arguments


def save_arguments(config: TrainConfig, evaluator: BaseEvaluator | None) -> dict[str, Any]:
    """Checkpoints every ``save_steps`` (0: none); with ``load_best_model_at_end``, an evaluator and ``save_steps`` 0,
    a checkpoint whenever the dev metric improves (``save_strategy="best"``), so the best one can be loaded."""
    if config.save_steps > 0:
        strategy = "steps"
    elif evaluator is not None and config.evaluates and config.load_best_model_at_end:
        strategy = "best"
    else:
        strategy = "no"
    return {
        "save_strategy": strategy,
        "save_steps": max(config.save_steps, 1),
        "save_total_limit": config.save_total_limit,
    }


def report_to(configured: list[str] | None) -> list[str]:
    """transformers' ``report_to``: the configured list, or TensorBoard when it is installed (else nothing)."""
    if configured is not None:
        return [name for name in configured if name != "none"]
    return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else []


__all__ = ["evaluation_arguments", "report_to", "save_arguments", "training_arguments"]
