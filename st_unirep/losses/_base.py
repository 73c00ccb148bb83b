"""What every st_unirep loss shares: one model call per input column, then maths on the embeddings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Normalize
from torch import Tensor, nn


def check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_batch(name: str, embeddings: list[Tensor], min_columns: int, min_batch: int = 2) -> None:
    """Shape checks on the host (no GPU sync): enough columns, same batch size, an in-batch loss needs B >= 2."""
    if len(embeddings) < min_columns:
        raise ValueError(f"{name} expects at least {min_columns} input columns, got {len(embeddings)}")
    batch = embeddings[0].shape[0]
    if any(e.shape[0] != batch for e in embeddings):
        raise ValueError(f"{name}: every column must have the same batch size, got {[e.shape[0] for e in embeddings]}")
    if batch < min_batch:
        raise ValueError(f"{name} compares samples within the batch and needs a batch of >= {min_batch}, got {batch}")


def check_scales(name: str, scales: Mapping[str, float], known: Mapping[str, float]) -> None:
    """``set_weight_scale``'s check: every name is a scheduled term and every scale a number >= 0."""
    unknown = sorted(set(scales) - set(known))
    if unknown:
        raise ValueError(f"{name} has no scheduled weight(s) {unknown}; it has {sorted(known)}")
    for term, scale in scales.items():
        check_non_negative(f"the weight scale of {term!r}", scale)


def summed(value: Tensor | dict[str, Tensor]) -> Tensor:
    """A loss value as one scalar: the sum of a dict of components (ST's convention for such losses)."""
    return torch.stack(list(value.values())).sum() if isinstance(value, dict) else value


def loss_from_embeddings(loss: nn.Module, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
    """The scalar value of ``loss`` on precomputed per-column embeddings (the model's raw ``sentence_embedding``).

    Any loss with sentence-transformers' ``compute_loss_from_embeddings(embeddings, labels)`` composes this way,
    ST's own (``MultipleNegativesRankingLoss``, ``CoSENTLoss``, …) as well as ours; an :class:`EmbeddingLoss` gets
    them L2-normalised first (its contract), any other loss exactly as its own ``forward`` would have.
    """
    if not hasattr(loss, "compute_loss_from_embeddings"):
        raise ValueError(
            f"{type(loss).__name__} has no compute_loss_from_embeddings(embeddings, labels), so it cannot be "
            "composed on embeddings computed once; wrap a loss that has one"
        )
    if isinstance(loss, EmbeddingLoss):
        embeddings = loss.unit(embeddings)
    return summed(loss.compute_loss_from_embeddings(embeddings, labels))


class EmbeddingLoss(nn.Module):
    """sentence-transformers' loss shape: ``forward`` embeds each column once; the maths is in
    ``compute_loss_from_embeddings(embeddings, labels)`` so it can be tested on raw tensors, and
    :meth:`components` names its weighted terms (their sum is the loss).

    Embeddings are L2-normalised here (a no-op for st_unirep models, which end in a normaliser; needed for any
    other model and after a Matryoshka truncation).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def embed(self, sentence_features: Iterable[dict[str, Any]]) -> list[Tensor]:
        return self.unit([self.model(features)["sentence_embedding"] for features in sentence_features])

    def unit(self, embeddings: list[Tensor]) -> list[Tensor]:
        """The embeddings L2-normalised, one ``(B, d)`` per column, as :meth:`compute_loss_from_embeddings` expects."""
        if self._model_normalizes():
            # Unit vectors already (a final Normalize; MatryoshkaLoss re-normalises its prefixes): normalising again
            # changes nothing, forward or backward (the projection onto the sphere's tangent is idempotent).
            return embeddings
        return [F.normalize(e, p=2, dim=-1) for e in embeddings]

    def _model_normalizes(self) -> bool:
        from st_unirep.modules.score_calibration import ScoreCalibration

        modules = list(self.model.children()) if isinstance(self.model, nn.Sequential) else []
        modules = [m for m in modules if not isinstance(m, ScoreCalibration)]  # identity in forward
        return bool(modules) and isinstance(modules[-1], Normalize)

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        return self.compute_loss_from_embeddings(self.embed(sentence_features), labels)

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        """The weighted terms of the loss by name (for logging); their sum is the loss."""
        raise NotImplementedError

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss on L2-normalised embeddings, one ``(B, d)`` tensor per column: the sum of :meth:`components`."""
        return summed(self.components(embeddings, labels))

    def scheduled_weights(self) -> dict[str, float]:
        """The configured weights a warm-up may scale, by term name (:class:`~st_unirep.losses.WeightScheduled`);
        none unless a loss says so."""
        return {}

    def set_weight_scale(self, scales: Mapping[str, float]) -> None:
        check_scales(type(self).__name__, scales, self.scheduled_weights())

    def get_config_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.config_keys}

    config_keys: list[str] = []
