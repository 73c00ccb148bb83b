"""Anti-collapse: penalise near-duplicate embeddings of different samples (ViUniEmbed, UniRep-M Defense 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_non_negative
from st_unirep.losses._citations import UNIREP_M, VIUNIEMBED, cite
from st_unirep.losses._functional import off_diagonal

VARIANTS = ("mean", "max")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown anti-collapse variant {variant!r}; expected one of {list(VARIANTS)}")


def anti_collapse(embeddings: Tensor, threshold: float = 0.95, variant: str = "mean") -> Tensor:
    """The penalty on one ``(n, d)`` set of unit vectors (see :class:`AntiCollapseLoss`)."""
    return anti_collapse_from_similarities(embeddings @ embeddings.T, threshold, variant)


def anti_collapse_from_similarities(similarities: Tensor, threshold: float = 0.95, variant: str = "mean") -> Tensor:
    """:func:`anti_collapse` from the ``(n, n)`` cosine matrix of one set (shared with other terms)."""
    similarities = off_diagonal(similarities)  # S_ij, i != j: (n (n - 1),)
    if variant == "mean":
        return F.relu(similarities - threshold).mean()
    return F.relu(10 * (similarities.max() - threshold))


class AntiCollapseLoss(EmbeddingLoss):
    r"""``mean`` (ViUniEmbed): :math:`\lambda_{ac}\,\mathbb{E}_{i \ne j} \max(0, S_{ij} - \delta)`;
    ``max`` (UniRep-M Defense 4): :math:`\lambda_{ac} \max(0, 10\,(\max_{i \ne j} S_{ij} - \delta))`; δ = 0.95.

    Within each column, averaged over columns: row i of two columns is a positive pair, which the task loss pulls
    above δ (paraphrases, an image and its transcription), so penalising it would fight the task.

    Args:
        model: The SentenceTransformer.
        weight: :math:`\lambda_{ac}` (>= 0).
        threshold: :math:`\delta`.
        variant: ``"mean"`` or ``"max"``.

    References:
        ViUniEmbed ("ViUniEmbed: Unified Embedding and Reranking with a Single, Calibrated Multimodal Vector");
        UniRep-M ("UniRep and UniRep-M: A Single Architecture for Unified Embedding and Reranking with Hierarchical
        Matryoshka Learning"), Defense 4.

    Inputs:
        +------------------+--------+
        | Texts / images   | Labels |
        +==================+========+
        | any columns      | none   |
        +------------------+--------+

    Example:
        ::

            loss = RegularizedLoss(model, task_loss, anti_collapse=1.0, anti_collapse_variant="max")
    """

    config_keys = ["weight", "threshold", "variant"]

    def __init__(self, model, weight: float = 1.0, threshold: float = 0.95, variant: str = "mean") -> None:
        super().__init__(model)
        check_non_negative("weight", weight)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine and must be in [-1, 1], got {threshold!r}")
        check_variant(variant)
        self.weight, self.threshold, self.variant = weight, threshold, variant

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        check_batch(type(self).__name__, embeddings, min_columns=1)
        penalties = [anti_collapse(column, self.threshold, self.variant) for column in embeddings]
        return {"anti_collapse": self.weight * torch.stack(penalties).mean()}

    @property
    def citation(self) -> str:
        return cite(VIUNIEMBED, UNIREP_M)
