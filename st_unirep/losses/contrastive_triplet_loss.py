"""OCR and VQA: symmetric InfoNCE plus a hardest-negative triplet term (viPolyQwen, UniRep-M §5.2)."""

from __future__ import annotations

from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_non_negative, check_positive
from st_unirep.losses._functional import hardest_negative_triplet, local_logits, symmetric_info_nce


class ContrastiveTripletLoss(EmbeddingLoss):
    r"""Tasks ``ocr``, ``vqa_single``, ``vqa_multi``: anchors (image(s) + optional question) against answers.

    .. math::
        \mathcal{L} = \mathrm{InfoNCE}_{sym}(a, [p; n]; \tau)
            + \lambda_{trip}\,\tfrac1B \textstyle\sum_i
              \max\big(0, \max_{j \ne i} S_{ij}/\tau - S_{ii}/\tau + m\big)

    with :math:`S = a\,[p; n]^\top` (cosines; in-batch positives of other rows and the explicit negatives are the
    candidates), :math:`\tau = 0.07`. Margins: viPolyQwen m = 0.2 (0.3 and λ_trip = 1.5 for multi-turn VQA);
    UniRep-M m = 0.3 OCR, 0.25 VQA single, 0.3 VQA multi (``Preset.losses.triplet_margins``).

    Args:
        model: The SentenceTransformer.
        temperature: :math:`\tau` (> 0).
        margin: :math:`m` (>= 0), in scaled-similarity units as in viPolyQwen.
        triplet_weight: :math:`\lambda_{trip}` (>= 0).
        gather_across_devices: Under DDP, both terms see every rank's candidates (world_size × B of them).

    References:
        ../shared/seeds/003_*, 004_* (viPolyQwen §4.2), 001_* (UniRep-M §5.2).

    Requirements:
        Batch size >= 2 (in-batch negatives).

    Inputs:
        +--------------------------------------------+--------+
        | Texts / images                             | Labels |
        +============================================+========+
        | (anchor, positive)                         | none   |
        +--------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., n_k)   | none   |
        +--------------------------------------------+--------+

    Relations:
        ``MultipleNegativesSymmetricRankingLoss`` is the InfoNCE part (scale = 1/τ);
        ``BatchHardTripletLoss`` mines hardest negatives by label, this one by in-batch position.

    Example:
        ::

            loss = ContrastiveTripletLoss(model, margin=0.3)  # UniRep-M OCR
            # dataset columns: anchor (image + question), positive (text)[, negative]
    """

    config_keys = ["temperature", "margin", "triplet_weight", "gather_across_devices"]

    def __init__(
        self,
        model,
        temperature: float = 0.07,
        margin: float = 0.2,
        triplet_weight: float = 1.0,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(model)
        check_positive("temperature", temperature)
        check_non_negative("margin", margin)
        check_non_negative("triplet_weight", triplet_weight)
        self.temperature, self.margin, self.triplet_weight = temperature, margin, triplet_weight
        self.gather_across_devices = gather_across_devices

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        check_batch(type(self).__name__, embeddings, min_columns=2)
        anchors, positives, negatives = embeddings[0], embeddings[1], embeddings[2:]
        # On one device both terms read the same (B, C) similarity matrix: computed once.
        shared = None if self.gather_across_devices else local_logits(anchors, positives, self.temperature, negatives)
        out = {
            "nce": symmetric_info_nce(
                anchors,
                positives,
                self.temperature,
                negatives,
                gather_across_devices=self.gather_across_devices,
                logits=shared,
            )
        }
        if self.triplet_weight:
            out["triplet"] = self.triplet_weight * hardest_negative_triplet(
                anchors, positives, self.temperature, self.margin, negatives, self.gather_across_devices, logits=shared
            )
        return out

    @property
    def citation(self) -> str:
        return "viPolyQwen / UniRep-M seed drafts (../shared/seeds/); no published citation."


__all__ = ["ContrastiveTripletLoss"]
