"""The trainer arguments every training run here shares (st_unirep's own and the sentence-transformers baseline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainingArguments

from st_unirep.training.config import TrainConfig


def training_arguments(
    config: TrainConfig, output_dir: str | Path, **extra: Any
) -> SentenceTransformerTrainingArguments:
    """``SentenceTransformerTrainingArguments`` from ``config``'s schedule, batch and seed fields; ``extra`` adds or
    replaces arguments (the sampler, prompts, saving) for one kind of run."""
    arguments = {
        "output_dir": str(output_dir),
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "warmup_ratio": config.warmup_ratio,
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
    arguments.update(extra)
    return SentenceTransformerTrainingArguments(**arguments)


def report_to(configured: list[str] | None) -> list[str]:
    """transformers' ``report_to``: the configured list, or TensorBoard when it is installed (else nothing)."""
    if configured is not None:
        return [name for name in configured if name != "none"]
    return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else []


__all__ = ["report_to", "training_arguments"]
