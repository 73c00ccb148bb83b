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
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

from st_unirep.training.config import TrainConfig
from st_unirep.training.data import load_sources
from st_unirep.training.prompts import encoder_prompts

logger = logging.getLogger(__name__)


def train_st_recipe(config: TrainConfig, output_dir: str | Path) -> Path:
    """Fine-tune ``config.backbone`` with the standard recipe on ``config.sources``; save to ``output_dir``.

    Reads from ``config``: ``backbone``, ``sources``, ``freeze_embeddings``, ``num_train_epochs``, ``max_steps``,
    ``per_device_train_batch_size``, ``learning_rate``, ``warmup_ratio``, ``lr_scheduler_type``, ``weight_decay``,
    ``batch_sampler``, ``max_seq_length``, ``seed``. The st_unirep-only fields (head, losses, schedules) do not apply.
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
    if "text_pair" in data:
        losses["text_pair"] = CoSENTLoss(model)  # scores in [0, 1] from load_sources; CoSENT only uses their order
    if "instr" in data:
        losses["instr"] = MultipleNegativesRankingLoss(model)
    output_dir = Path(output_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        batch_sampler=config.batch_sampler,
        multi_dataset_batch_sampler="proportional",
        prompts=encoder_prompts(model.prompts, {t: d.column_names for t, d in data.items()}) or None,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="no",
        logging_steps=config.logging_steps,
        report_to=[],
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=losses)
    trainer.train()
    model.max_seq_length = inference_max_seq_length
    model.save(str(output_dir))
    return output_dir


__all__ = ["train_st_recipe"]
