"""The base of the losses that wrap another: they embed once and hand the embeddings down."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sentence_transformers.base.losses import uses_gradient_cache
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss as STMatryoshkaLoss
from torch import Tensor, nn

from st_unirep.losses.schedulable import TemperatureScheduled, WeightScheduled


class LossWrapper(nn.Module):
    """A loss around ``loss`` (:class:`RegularizedLoss`, :class:`MatryoshkaLoss`, :class:`CachedLoss`).

    Composition is by embeddings, never by hooks: the outermost wrapper runs the model once per input column and
    passes the embeddings to each inner loss's ``compute_loss_from_embeddings``, down to the task loss. When the
    stack holds a :class:`CachedLoss` (:meth:`gradient_cache`), that one runs the GradCache passes on behalf of the
    outermost wrapper, whose whole objective (every term of every layer) then sees the full batch.

    Schedules (:mod:`st_unirep.losses.schedulable`) talk to the outermost loss; temperature and weight warm-up pass
    down to :meth:`schedule_target`.
    """

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def embed(self, sentence_features: Iterable[dict[str, Any]]) -> list[dict[str, Tensor]]:
        """One model call per input column; the model's output features (``sentence_embedding`` and, with
        attention pooling, ``pooling_attention``). Never a merged forward: every column keeps its own rows."""
        return [self.model(features) for features in sentence_features]

    def gradient_cache(self) -> LossWrapper | None:
        """The :class:`CachedLoss` of this stack (which then embeds in mini-batches), or None without one."""
        if isinstance(self.loss, LossWrapper):
            return self.loss.gradient_cache()
        if uses_gradient_cache(self.loss):
            name = type(self.loss).__name__
            if isinstance(self.loss, STMatryoshkaLoss):
                reason = (
                    "sentence-transformers' MatryoshkaLoss around a gradient-caching loss has rebound that loss's "
                    "calculate_loss, so its cached pass cannot take other terms; use st_unirep.losses.MatryoshkaLoss"
                )
            else:
                reason = (
                    f"{name} runs its own GradCache passes, which take no other terms; wrap the plain loss in "
                    "st_unirep.losses.CachedLoss instead (CachedLoss(MultipleNegativesRankingLoss(model)) is "
                    "CachedMultipleNegativesRankingLoss)"
                )
            raise ValueError(f"{type(self).__name__} cannot compose {name}: {reason}")
        return None

    def schedule_target(self) -> nn.Module:
        """The loss that temperature and weight schedules reach through this wrapper."""
        return self.loss

    def set_temperature(self, temperature: float) -> None:
        target = self.schedule_target()
        if isinstance(target, TemperatureScheduled):
            target.set_temperature(temperature)

    def scheduled_weights(self) -> dict[str, float]:
        target = self.schedule_target()
        return target.scheduled_weights() if isinstance(target, WeightScheduled) else {}

    def set_weight_scale(self, scales: Mapping[str, float]) -> None:
        target = self.schedule_target()
        if isinstance(target, WeightScheduled):
            target.set_weight_scale(scales)
        elif scales:
            raise ValueError(f"{type(target).__name__} has no scheduled weights; got scales for {sorted(scales)}")
