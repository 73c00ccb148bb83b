"""The baseline every st_unirep number is compared with: sentence-transformers' standard fine-tuning recipe.

The backbone as sentence-transformers loads it (its own mean ``Pooling`` + ``Normalize`` for a sentence-transformers
folder, mean pooling added for a plain transformers folder), ``CoSENTLoss`` on graded pairs and
``MultipleNegativesRankingLoss`` on (query, positive) pairs, trained with ST's own trainer on the same sources,
batches, epochs, learning rate and frozen embeddings as the st_unirep run it is compared with. E5-style prompts
(``"query: "`` / ``"passage: "`` in the model's config) are applied in training as the model card prescribes, so
the baseline is evaluated the way it was trained (``evaluation.evaluate`` uses the same prompts).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

from st_unirep.tasks import get_task
from st_unirep.training.arguments import training_arguments
from st_unirep.training.config import TrainConfig
from st_unirep.training.data import load_sources
from st_unirep.training.prompts import encoder_prompts

logger = logging.getLogger(__name__)


def train_st_recipe(config: TrainConfig, output_dir: str | Path) -> Path:
    """Fine-tune ``config.backbone`` with the standard recipe on ``config.sources``; save to ``output_dir``.

    Reads from ``config``: ``backbone``, ``sources``, ``freeze_embeddings``, ``num_train_epochs``, ``max_steps``,
    ``per_device_train_batch_size``, ``gradient_accumulation_steps``, ``bf16``, ``learning_rate``, ``warmup_ratio``,
    ``lr_scheduler_type``, ``weight_decay``, ``batch_sampler``, ``max_seq_length``, ``seed``.
    The st_unirep-only fields (head, losses, schedules) do not apply.
    """
    if not config.sources:
        raise ValueError("train_st_recipe needs config.sources (the evaluation-layout training sets)")
    data, report = load_sources(config.sources)
    logger.info("ST recipe on %s: %s", config.backbone, report.rows)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(config.backbone)
    inference_max_seq_length = model.max_seq_length
    if config.max_seq_length is not None:  # the same training-only cap as the st_unirep run
        model.max_seq_length = config.max_seq_length
    if config.freeze_embeddings:
        model[0].auto_model.get_input_embeddings().requires_grad_(False)
    losses = {}
    for name in data:
        family = get_task(name).loss
        if family == "graded_pair":  # scores in [0, 1] from load_sources; CoSENT only uses their order
            losses[name] = CoSENTLoss(model)
        elif family == "instruction":
            losses[name] = MultipleNegativesRankingLoss(model)
        else:
            raise ValueError(f"The sentence-transformers recipe has no loss for task {name!r} ({family})")
    output_dir = Path(output_dir)
    args = training_arguments(
        config,
        output_dir / "checkpoints",
        multi_dataset_batch_sampler="proportional",
        prompts=encoder_prompts(model.prompts, {t: d.column_names for t, d in data.items()}) or None,
        save_strategy="no",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=losses)
    trainer.train()
    model.max_seq_length = inference_max_seq_length
    model.save(str(output_dir))
    return output_dir


__all__ = ["train_st_recipe"]
