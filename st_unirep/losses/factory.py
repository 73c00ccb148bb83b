"""The loss stack of a preset for one task: task loss → (GradCache) → Matryoshka → regularisers."""

from __future__ import annotations

from typing import Any

from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from torch import nn

from st_unirep.losses.cached_loss import CachedLoss
from st_unirep.losses.calibrated_text_pair_loss import CalibratedTextPairLoss
from st_unirep.losses.contrastive_triplet_loss import MARGINS, ContrastiveTripletLoss
from st_unirep.losses.instruction_loss import InstructionLoss
from st_unirep.losses.matryoshka_weights import quadratic_matryoshka_weights
from st_unirep.losses.regularized_loss import RegularizedLoss
from st_unirep.presets import Preset, get_preset

TASKS = ("text_pair", "instr", "ocr", "vqa_single", "vqa_multi")


def build_loss(
    model: nn.Module,
    task: str,
    preset: str | Preset = "unirep",
    *,
    score_range: tuple[float, float] | None = None,
    mini_batch_size: int | None = None,
    gather_across_devices: bool = False,
    loss_mode: str = "per_task",
    regularizers: bool = True,
    **overrides: Any,
) -> nn.Module:
    """``RegularizedLoss(MatryoshkaLoss(CachedLoss(task loss)))`` as the preset says, for ``task``.

    Args:
        model: The SentenceTransformer (its width bounds the Matryoshka dims).
        task: One of ``TASKS``.
        preset: A preset name or :class:`~st_unirep.presets.Preset`.
        score_range: ``(lo, hi)`` of the text-pair labels (required for ``text_pair``).
        mini_batch_size: Wrap the task loss in :class:`CachedLoss` with this mini-batch (None: no GradCache).
        gather_across_devices: Cross-device negatives under DDP.
        loss_mode: ``"per_task"`` (the preset's task losses) or ``"infonce"`` (symmetric InfoNCE for every task:
            the ablation baseline for the seeds' prefix-guided dynamic losses).
        regularizers: ``False`` drops uniformity, anti-collapse, orthogonality and entropy (ablation).
        **overrides: Preset fields to override (e.g. ``uniformity=0``).
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {list(TASKS)}")
    config = preset if isinstance(preset, Preset) else get_preset(preset)
    width = model.get_embedding_dimension()
    # A model built with output_dim=w has the preset's Matryoshka dims scaled to w (Preset.with_overrides).
    config = config.with_overrides(**{"output_dim": width, **overrides})
    if loss_mode not in ("per_task", "infonce"):
        raise ValueError(f"loss_mode must be 'per_task' or 'infonce', got {loss_mode!r}")
    if loss_mode == "infonce":  # the ablation baseline: symmetric InfoNCE for every task, labels ignored
        loss = InstructionLoss(model, cos_weight=0.0, gather_across_devices=gather_across_devices)
    elif task == "text_pair":
        if score_range is None:
            raise ValueError("task 'text_pair' needs score_range=(lo, hi) of its labels, e.g. (0, 5) for STS-B")
        weights = dict(config.text_pair_weights)
        if weights.get("logistic_weight"):  # the learned calibration sees every width the Matryoshka loss trains
            weights.setdefault("logistic_widths", tuple(sorted({width, *config.matryoshka_dims})))
        loss = CalibratedTextPairLoss(model, score_range, gather_across_devices=gather_across_devices, **weights)
    elif task == "instr":
        loss = InstructionLoss(
            model, cos_weight=config.instruction_cos_weight, gather_across_devices=gather_across_devices
        )
    else:
        margin, triplet_weight = MARGINS[config.triplet_margins][task]
        loss = ContrastiveTripletLoss(
            model, margin=margin, triplet_weight=triplet_weight, gather_across_devices=gather_across_devices
        )
    if mini_batch_size is not None:
        loss = CachedLoss(loss, mini_batch_size=mini_batch_size)

    dims = config.matryoshka_dims
    if dims:
        if config.matryoshka_weighting not in ("quadratic", "uniform"):
            raise ValueError(
                f"matryoshka_weighting must be 'quadratic' or 'uniform', got {config.matryoshka_weighting!r}"
            )
        weights = quadratic_matryoshka_weights(dims) if config.matryoshka_weighting == "quadratic" else None
        loss = MatryoshkaLoss(model, loss, dims, weights)
    on = 1.0 if regularizers else 0.0
    no_entropy = mini_batch_size is not None or config.pooling_mode == "mean"  # GradCache / no attention weights
    return RegularizedLoss(
        model,
        loss,
        uniformity=on * config.uniformity,
        anti_collapse=on * config.anti_collapse,
        anti_collapse_variant=config.anti_collapse_variant,
        orthogonality=on * config.orthogonality,
        attention_entropy=0.0 if no_entropy else on * config.attention_entropy,
    )
