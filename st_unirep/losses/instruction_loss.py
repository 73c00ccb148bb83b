"""Instruction → response pairs: InfoNCE plus a direct cosine pull (viPolyQwen)."""

from __future__ import annotations

from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_non_negative, check_positive
from st_unirep.losses._citations import VIPOLYQWEN, cite
from st_unirep.losses._functional import symmetric_info_nce


class InstructionLoss(EmbeddingLoss):
    r"""Task ``instr``: :math:`\mathcal{L} = \mathrm{InfoNCE}_{sym}(a, b; \tau) + \lambda_{cos}\,\tfrac1B
    \textstyle\sum_i (1 - \cos(a_i, b_i))`, τ = 0.07 (viPolyQwen §4.2).

    Args:
        model: The SentenceTransformer.
        temperature: :math:`\tau` (> 0).
        cos_weight: :math:`\lambda_{cos}` (>= 0).
        gather_across_devices: Under DDP, the InfoNCE term sees every rank's pairs.

    References:
        viPolyQwen ("viPolyQwen: Synergizing Prefix-Guided Dynamic Loss Optimization and Attention Pooling for
        Unified Multimodal Embeddings") §4.2.

    Requirements:
        Batch size >= 2.

    Inputs:
        +---------------------+--------+
        | Texts               | Labels |
        +=====================+========+
        | (query, positive)   | none   |
        +---------------------+--------+

    Relations:
        ``MultipleNegativesSymmetricRankingLoss`` + ``CosineSimilarityLoss`` with label 1.

    Example:
        ::

            loss = InstructionLoss(model)  # columns: query, positive
    """

    config_keys = ["temperature", "cos_weight", "gather_across_devices"]

    def __init__(self, model, temperature: float = 0.07, cos_weight: float = 1.0, gather_across_devices: bool = False):
        super().__init__(model)
        check_positive("temperature", temperature)
        check_non_negative("cos_weight", cos_weight)
        self.temperature, self.cos_weight, self.gather_across_devices = temperature, cos_weight, gather_across_devices

    def set_temperature(self, temperature: float) -> None:
        """:math:`\\tau` of the InfoNCE term (a cooling schedule)."""
        check_positive("temperature", temperature)
        self.temperature = temperature

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        check_batch(type(self).__name__, embeddings, min_columns=2)
        a, b = embeddings[0], embeddings[1]
        out = {"nce": symmetric_info_nce(a, b, self.temperature, gather_across_devices=self.gather_across_devices)}
        if self.cos_weight:
            out["cos"] = self.cos_weight * (1 - (a * b).sum(-1)).mean()
        return out

    @property
    def citation(self) -> str:
        return cite(VIPOLYQWEN)
