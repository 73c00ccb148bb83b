"""OCR and VQA: symmetric InfoNCE plus a hardest-negative triplet term (viPolyQwen, UniRep-M §5.2)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_non_negative, check_positive, check_scales
from st_unirep.losses._citations import UNIREP_M, VIPOLYQWEN, cite
from st_unirep.losses._functional import hardest_negative_triplet, local_logits, symmetric_info_nce


class ContrastiveTripletLoss(EmbeddingLoss):
    r"""Tasks ``ocr``, ``vqa_single``, ``vqa_multi``: anchors (image(s) + optional question) against answers.

    .. math::
        \mathcal{L} = \mathrm{InfoNCE}_{sym}(a, [p; n]; \tau)
            + \lambda_{trip}\,\tfrac1B \textstyle\sum_i \max\big(0, \max_{j \ne i} S_{ij} - S_{ii} + m\big)
            \quad \text{(UniRep-M, margin_units="cosine")}

        \mathcal{L}_{trip} = \tfrac1B \textstyle\sum_i
              \max\big(0, \max_{j \ne i} S_{ij}/\tau - S_{ii}/\tau + m\big) \quad \text{(viPolyQwen, "scaled")}

    with :math:`S = a\,[p; n]^\top` (cosines; in-batch positives of other rows and the explicit negatives are the
    candidates), :math:`\tau = 0.07`. UniRep-M's margins are in cosine units, m = 0.3 OCR, 0.25 VQA single, 0.3 VQA
    multi; viPolyQwen writes its triplet on the scaled similarities (S/τ), m = 0.2 (0.3 and λ_trip = 1.5 for
    multi-turn VQA) — a cosine margin of only mτ ≈ 0.014 and a triplet gradient 1/τ ≈ 14× UniRep-M's. Each preset
    keeps its own seed's reading (``Preset.losses.triplet_margins`` / ``triplet_margin_units``).

    Args:
        model: The SentenceTransformer.
        temperature: :math:`\tau` (> 0).
        margin: :math:`m` (>= 0), in ``margin_units``.
        margin_units: ``"cosine"`` (UniRep-M: the hinge on cosines) or ``"scaled"`` (viPolyQwen: on S/τ).
        triplet_weight: :math:`\lambda_{trip}` (>= 0).
        gather_across_devices: Under DDP, both terms see every rank's candidates (world_size × B of them).

    References:
        viPolyQwen ("viPolyQwen: Synergizing Prefix-Guided Dynamic Loss Optimization and Attention Pooling for
        Unified Multimodal Embeddings") §4.2; UniRep-M ("UniRep and UniRep-M: A Single Architecture for Unified
        Embedding and Reranking with Hierarchical Matryoshka Learning") §5.2.

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

    config_keys = ["temperature", "margin", "margin_units", "triplet_weight", "gather_across_devices"]

    def __init__(
        self,
        model,
        temperature: float = 0.07,
        margin: float = 0.2,
        triplet_weight: float = 1.0,
        gather_across_devices: bool = False,
        margin_units: str = "cosine",
    ) -> None:
        super().__init__(model)
        if margin_units not in ("cosine", "scaled"):
            raise ValueError(f"margin_units must be 'cosine' or 'scaled', got {margin_units!r}")
        self.margin_units = margin_units
        check_positive("temperature", temperature)
        check_non_negative("margin", margin)
        check_non_negative("triplet_weight", triplet_weight)
        self.temperature, self.margin, self.triplet_weight = temperature, margin, triplet_weight
        self.gather_across_devices = gather_across_devices
        self._configured_triplet_weight = triplet_weight  # what a warm-up scales (set_weight_scale)

    def set_temperature(self, temperature: float) -> None:
        """:math:`\\tau` of both terms (a cooling schedule)."""
        check_positive("temperature", temperature)
        self.temperature = temperature

    def scheduled_weights(self) -> dict[str, float]:
        """The hardest-negative term warms up (see ``training.schedules.LossScheduleCallback``)."""
        return {"triplet": self._configured_triplet_weight}

    def set_weight_scale(self, scales: Mapping[str, float]) -> None:
        check_scales(type(self).__name__, scales, self.scheduled_weights())
        if "triplet" in scales:
            self.triplet_weight = self._configured_triplet_weight * scales["triplet"]

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
            # hardest_negative_triplet works on S/τ; a cosine-unit hinge is τ · relu(S/τ diff + m/τ) = relu(S diff + m)
            scale = self.temperature if self.margin_units == "cosine" else 1.0
            out["triplet"] = (
                self.triplet_weight
                * scale
                * hardest_negative_triplet(
                    anchors,
                    positives,
                    self.temperature,
                    self.margin / scale,
                    negatives,
                    self.gather_across_devices,
                    logits=shared,
                )
            )
        return out

    @property
    def citation(self) -> str:
        return cite(VIPOLYQWEN, UNIREP_M)


__all__ = ["ContrastiveTripletLoss"]
