"""The loss stack of a preset for one task: task loss → (GradCache) → Matryoshka → regularisers."""

from __future__ import annotations

from typing import Any

from torch import nn

from st_unirep.losses.cached_loss import CachedLoss
from st_unirep.losses.calibrated_text_pair_loss import CalibratedTextPairLoss
from st_unirep.losses.contrastive_triplet_loss import ContrastiveTripletLoss
from st_unirep.losses.instruction_loss import InstructionLoss
from st_unirep.losses.matryoshka_loss import MatryoshkaLoss
from st_unirep.losses.matryoshka_weights import quadratic_matryoshka_weights
from st_unirep.losses.regularized_loss import RegularizedLoss
from st_unirep.presets import Preset, get_preset
from st_unirep.tasks import Task, get_task


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

    The stack composes by embeddings: the model runs once per column and every layer works on those embeddings
    (``MatryoshkaLoss`` is st_unirep's, which takes them, not sentence-transformers', which hides them).

    Args:
        model: The SentenceTransformer (its width bounds the Matryoshka dims).
        task: A task name of the registry (:data:`st_unirep.tasks.TASKS`); its ``loss`` family picks the loss.
        preset: A preset name or :class:`~st_unirep.presets.Preset`.
        score_range: ``(lo, hi)`` of the text-pair labels (required for ``text_pair``).
        mini_batch_size: Wrap the task loss in :class:`CachedLoss` with this mini-batch (None: no GradCache).
        gather_across_devices: Cross-device negatives under DDP.
        loss_mode: ``"per_task"`` (the preset's task losses) or ``"infonce"`` (symmetric InfoNCE for every task:
            the ablation baseline for the seeds' prefix-guided dynamic losses).
        regularizers: ``False`` drops uniformity, anti-collapse, orthogonality and entropy (ablation).
        **overrides: Preset fields to override (e.g. ``uniformity=0``).
    """
    spec = get_task(task)
    config = preset if isinstance(preset, Preset) else get_preset(preset)
    width = model.get_embedding_dimension()
    # A model built with output_dim=w has the preset's Matryoshka dims scaled to w (Preset.with_overrides).
    config = config.with_overrides(**{"output_dim": width, **overrides})
    if loss_mode not in ("per_task", "infonce"):
        raise ValueError(f"loss_mode must be 'per_task' or 'infonce', got {loss_mode!r}")
    if loss_mode == "infonce":  # the ablation baseline: symmetric InfoNCE for every task, labels ignored
        loss = InstructionLoss(model, cos_weight=0.0, gather_across_devices=gather_across_devices)
    else:
        loss = _task_loss(model, spec, config, score_range, gather_across_devices)
    if mini_batch_size is not None:
        loss = CachedLoss(loss, mini_batch_size=mini_batch_size)

    recipe = config.losses
    dims = config.matryoshka_dims
    if dims:
        weights = quadratic_matryoshka_weights(dims) if recipe.matryoshka_weighting == "quadratic" else None
        loss = MatryoshkaLoss(model, loss, dims, weights)
    on = 1.0 if regularizers else 0.0
    if regularizers and recipe.attention_entropy and mini_batch_size is not None:
        raise ValueError(
            f"attention_entropy={recipe.attention_entropy} (UniRep's pooling-entropy term) needs the attention "
            "weights of a full forward pass, which GradCache (mini_batch_size) does not keep: set mini_batch_size "
            "to None, or attention_entropy to 0"
        )
    no_entropy = config.pooling_mode == "mean"  # sentence-transformers' mean pooling has no attention weights
    return RegularizedLoss(
        model,
        loss,
        uniformity=on * recipe.uniformity,
        anti_collapse=on * recipe.anti_collapse,
        anti_collapse_variant=recipe.anti_collapse_variant,
        orthogonality=on * recipe.orthogonality,
        attention_entropy=0.0 if no_entropy else on * recipe.attention_entropy,
    )


def _task_loss(
    model: nn.Module,
    task: Task,
    config: Preset,
    score_range: tuple[float, float] | None,
    gather_across_devices: bool,
) -> nn.Module:
    """The preset's loss for the task's loss family (:attr:`st_unirep.tasks.Task.loss`)."""
    recipe = config.losses
    if task.loss == "graded_pair":
        if score_range is None:
            raise ValueError(f"task {task.name!r} needs score_range=(lo, hi) of its labels, e.g. (0, 5) for STS-B")
        weights = dict(recipe.text_pair_weights)
        if weights.get("logistic_weight"):  # the learned calibration sees every width the Matryoshka loss trains
            width = model.get_embedding_dimension()
            weights.setdefault("logistic_widths", tuple(sorted({width, *config.matryoshka_dims})))
        return CalibratedTextPairLoss(model, score_range, gather_across_devices=gather_across_devices, **weights)
    if task.loss == "instruction":
        return InstructionLoss(
            model, cos_weight=recipe.instruction_cos_weight, gather_across_devices=gather_across_devices
        )
    if task.loss == "triplet":
        if task.name not in recipe.triplet_margins:
            raise ValueError(
                f"The preset's triplet_margins has no entry for task {task.name!r} "
                f"(it has {sorted(recipe.triplet_margins)})"
            )
        margin, triplet_weight = recipe.triplet_margins[task.name]
        return ContrastiveTripletLoss(
            model,
            margin=margin,
            margin_units=recipe.triplet_margin_units,
            triplet_weight=triplet_weight,
            gather_across_devices=gather_across_devices,
        )
    raise ValueError(f"Task {task.name!r} has unknown loss family {task.loss!r}")
