"""Graded text pairs: make (cos + 1) / 2 a calibrated relevance score (viPolyQwen, UniRep, UniRep-M)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_non_negative, check_positive, check_scales
from st_unirep.losses._citations import UNIREP, UNIREP_M, VIPOLYQWEN, cite
from st_unirep.losses._functional import masked_symmetric_info_nce, symmetric_info_nce


class CalibratedTextPairLoss(EmbeddingLoss):
    r"""Task ``text_pair``: regress, distribution-match and rank the calibrated score against graded labels.

    With :math:`p_i = (\cos(a_i, b_i) + 1)/2` and the label mapped to :math:`s_i = (y_i - lo)/(hi - lo) \in [0, 1]`:

    .. math::
        \mathcal{L} = w_{mse}\,\tfrac1B\textstyle\sum_i (p_i - s_i)^2
            + w_{kl}\,\mathrm{KL}\big(\mathrm{softmax}(s/\tau_{kl}) \,\Vert\, \mathrm{softmax}(p/\tau_{kl})\big)
            + w_{rank}\,\tfrac{1}{|P|}\textstyle\sum_{(i,j) \in P} \max(0, m - (p_i - p_j))
            + w_{nce}\,\mathrm{InfoNCE}_{sym}(a, b; \tau)
            + w_{cosent}\,\log\big(1 + \textstyle\sum_{(i,j) \in P} e^{\lambda(\cos_j - \cos_i)}\big)
            + w_{logistic}\,\tfrac1B\textstyle\sum_i \mathrm{BCE}\big(\sigma(\alpha_d \cos_i + \beta_d),\, s_i\big)

    where :math:`P = \{(i, j): s_i > s_j\}` and :math:`\cos_i = \cos(a_i, b_i)`.

    - ``mse``: viPolyQwen :math:`\mathcal{L}_{MSE}`, UniRep :math:`\mathcal{L}_{score}`.
    - ``kl``: UniRep-M §5.1 "soft distributions from similarity scores". Our reading: over the B pairs of the
      batch, the target distribution is the softmax of the gold scores and the predicted one the softmax of the
      calibrated scores, both at temperature :math:`\tau_{kl}` (the seed gives none; 0.1 by default).
    - ``rank``: UniRep-M §5.1 with m = 0.15. The seed sums over pairs; we average over the ordered pairs
      :math:`P` so that :math:`w_{rank}` means the same at every batch size (sum = mean × |P|).
    - ``nce``: viPolyQwen's symmetric in-batch InfoNCE over the pairs, τ = 0.07. With ``nce_min_score`` > 0 only
      the pairs rated at least that (mapped score) are positives; every pair's partner stays a negative for the
      others (retrieval-style training on the similar pairs of a graded set; our addition, not the seeds').
    - ``cosent``: CoSENT (Su 2022; sentence-transformers' ``CoSENTLoss``), scale :math:`\lambda` = 20: a pure
      ranking term on the cosine. It leaves the cosine's scale free, so with ``cosent`` alone (cosent=1, the rest
      0) the embedding is trained for ranking and the calibrated score comes from the model's score calibration
      profiles (``st_unirep.calibration``), not from (cos + 1)/2. The text configs use it (README, Real quality).
    - ``logistic``: a *learned* calibration, SigLIP-style: a scale :math:`\alpha_d = e^{\log\alpha_d}` and bias
      :math:`\beta_d` per embedding width d (``logistic_widths``; the Matryoshka prefixes have their own), trained
      with binary cross-entropy against the graded target (a proper scoring rule: its minimiser is the expected
      relevance) instead of MSE on (cos + 1)/2. :meth:`learned_profile` turns them into a calibration profile.
      Initialised at :math:`\sigma(10\cos - 5)`.

    Presets: viPolyQwen ``nce=1, mse=1``; UniRep / UniRep-M / ViUniEmbed ``kl=1, mse=10, rank=5``.

    Args:
        model: The SentenceTransformer.
        score_range: ``(lo, hi)`` of the labels, e.g. ``(0, 5)`` for STS-B. Labels outside raise a ValueError.
        mse_weight, kl_weight, rank_weight, nce_weight, cosent_weight: Component weights; 0 disables one.
        kl_temperature: :math:`\tau_{kl}`.
        rank_margin: :math:`m`.
        nce_temperature: :math:`\tau` of the InfoNCE term.
        nce_min_score: Pairs whose mapped score is below this are not positives of the InfoNCE term (0: all are).
        cosent_scale: :math:`\lambda` of the CoSENT term (ST's default 20).
        logistic_weight: Weight of the learned-logistic calibration term (its parameters live in this loss).
        logistic_widths: The embedding widths the logistic term sees (the model's width and Matryoshka dims).
        gather_across_devices: Under DDP, the InfoNCE term sees the pairs of every rank. ``mse`` is per pair and
            ``kl`` / ``rank`` compare the pairs of the local batch.

    References:
        - viPolyQwen ("viPolyQwen: Synergizing Prefix-Guided Dynamic Loss Optimization and Attention Pooling for
          Unified Multimodal Embeddings") §4.2.
        - UniRep ("UniRep: A Unified Representation Architecture for Provably Stable Multimodal Learning").
        - UniRep-M ("UniRep and UniRep-M: A Single Architecture for Unified Embedding and Reranking with
          Hierarchical Matryoshka Learning") §5.1.

    Requirements:
        Pairs with graded scores; batch size >= 2 when kl, rank or nce is on.

    Inputs:
        +---------------------------+--------------------------+
        | Texts                     | Labels                   |
        +===========================+==========================+
        | (sentence1, sentence2)    | score in ``score_range`` |
        +---------------------------+--------------------------+

    Relations:
        - ``CoSENTLoss`` / ``AnglELoss`` rank pairs by cosine but leave its scale free; this loss also pins the
          scale (``mse``) so that (cos + 1)/2 reads as a relevance probability.
        - ``CosineSimilarityLoss`` is the ``mse`` term on the raw cosine with labels in [-1, 1]... here in [0, 1].

    Example:
        ::

            loss = CalibratedTextPairLoss(model, score_range=(0, 5), kl_weight=1, mse_weight=10, rank_weight=5)
            # dataset columns: sentence1, sentence2, score
    """

    config_keys = [
        "score_range",
        "mse_weight",
        "kl_weight",
        "rank_weight",
        "nce_weight",
        "kl_temperature",
        "rank_margin",
        "nce_temperature",
        "nce_min_score",
        "cosent_weight",
        "cosent_scale",
        "logistic_weight",
        "gather_across_devices",
    ]

    def __init__(
        self,
        model,
        score_range: tuple[float, float] = (0.0, 1.0),
        mse_weight: float = 10.0,
        kl_weight: float = 1.0,
        rank_weight: float = 5.0,
        nce_weight: float = 0.0,
        kl_temperature: float = 0.1,
        rank_margin: float = 0.15,
        nce_temperature: float = 0.07,
        nce_min_score: float = 0.0,
        cosent_weight: float = 0.0,
        cosent_scale: float = 20.0,
        logistic_weight: float = 0.0,
        logistic_widths: tuple[int, ...] = (),
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(model)
        if len(score_range) != 2 or not float(score_range[0]) < float(score_range[1]):
            raise ValueError(f"score_range must be (lo, hi) with lo < hi, got {score_range!r}")
        for name, value in (
            ("mse_weight", mse_weight),
            ("kl_weight", kl_weight),
            ("rank_weight", rank_weight),
            ("nce_weight", nce_weight),
            ("cosent_weight", cosent_weight),
            ("logistic_weight", logistic_weight),
            ("rank_margin", rank_margin),
        ):
            check_non_negative(name, value)
        if mse_weight + kl_weight + rank_weight + nce_weight + cosent_weight + logistic_weight == 0:
            raise ValueError(
                "At least one of mse_weight, kl_weight, rank_weight, nce_weight, cosent_weight, logistic_weight "
                "must be > 0"
            )
        if logistic_weight and not logistic_widths:
            raise ValueError("logistic_weight > 0 needs logistic_widths: the embedding widths it will see")
        check_positive("kl_temperature", kl_temperature)
        check_positive("nce_temperature", nce_temperature)
        check_positive("cosent_scale", cosent_scale)
        if not isinstance(nce_min_score, (int, float)) or not 0.0 <= nce_min_score <= 1.0:
            raise ValueError(f"nce_min_score is a mapped score in [0, 1], got {nce_min_score!r}")
        self.nce_min_score = float(nce_min_score)
        self.score_range = (float(score_range[0]), float(score_range[1]))
        self.mse_weight, self.kl_weight, self.rank_weight, self.nce_weight = (
            mse_weight,
            kl_weight,
            rank_weight,
            nce_weight,
        )
        self.kl_temperature, self.rank_margin, self.nce_temperature = kl_temperature, rank_margin, nce_temperature
        self.cosent_weight, self.cosent_scale = cosent_weight, cosent_scale
        self.logistic_weight = logistic_weight
        # Per width: (log α_d, β_d). A ParameterDict of the loss: the trainer's optimizer includes loss parameters.
        self.logistic = nn.ParameterDict(
            {str(int(w)): nn.Parameter(torch.tensor([math.log(10.0), -5.0])) for w in logistic_widths}
        )
        self.gather_across_devices = gather_across_devices
        self._configured_weights = {"mse": mse_weight, "rank": rank_weight}  # what a warm-up scales

    def set_temperature(self, temperature: float) -> None:
        """:math:`\\tau` of the InfoNCE term (a cooling schedule); :math:`\\tau_{kl}` stays."""
        check_positive("nce_temperature", temperature)
        self.nce_temperature = temperature

    def scheduled_weights(self) -> dict[str, float]:
        """α and β, the MSE and rank weights, warm up (ViUniEmbed Defense 2)."""
        return dict(self._configured_weights)

    def set_weight_scale(self, scales: Mapping[str, float]) -> None:
        check_scales(type(self).__name__, scales, self._configured_weights)
        if "mse" in scales:
            self.mse_weight = self._configured_weights["mse"] * scales["mse"]
        if "rank" in scales:
            self.rank_weight = self._configured_weights["rank"] * scales["rank"]

    def target_scores(self, labels: Tensor | None) -> Tensor:
        """Labels mapped to [0, 1]; None, NaN or out-of-range labels raise (one host sync for all checks)."""
        if labels is None:
            raise ValueError("CalibratedTextPairLoss needs a score label per pair (a 'score'/'label' column), got none")
        lo, hi = self.score_range
        labels = labels.float()
        bad = torch.isnan(labels) | (labels < lo) | (labels > hi)
        if bool(bad.any()):
            values = labels[bad][:5].tolist()
            raise ValueError(f"Labels must be numbers in score_range=[{lo}, {hi}]; got {values} (NaN or out of range)")
        return (labels - lo) / (hi - lo)

    def components(self, embeddings: list[Tensor], labels: Tensor | None) -> dict[str, Tensor]:
        """Each weighted component separately (for logging); their sum is the loss."""
        in_batch = self.kl_weight > 0 or self.rank_weight > 0 or self.nce_weight > 0 or self.cosent_weight > 0
        check_batch(type(self).__name__, embeddings, min_columns=2, min_batch=2 if in_batch else 1)
        a, b = embeddings[0], embeddings[1]
        target = self.target_scores(labels).to(a.device)  # s, (B,)
        cosines = (a * b).sum(-1)  # cos_i, (B,)
        predicted = (cosines + 1) / 2  # p, (B,)
        out: dict[str, Tensor] = {}
        if self.mse_weight:
            out["mse"] = self.mse_weight * F.mse_loss(predicted, target)
        if self.kl_weight:
            log_q = F.log_softmax(predicted / self.kl_temperature, dim=0)  # predicted distribution, (B,)
            log_t = F.log_softmax(target / self.kl_temperature, dim=0)  # target distribution, (B,)
            out["kl"] = self.kl_weight * F.kl_div(log_q, log_t, reduction="sum", log_target=True)
        if self.rank_weight:
            ordered = target[:, None] > target[None, :]  # (B, B): s_i > s_j
            hinge = F.relu(self.rank_margin - (predicted[:, None] - predicted[None, :]))  # (B, B)
            out["rank"] = self.rank_weight * (hinge * ordered).sum() / ordered.sum().clamp_min(1)
        if self.nce_weight and self.nce_min_score > 0:
            out["nce"] = self.nce_weight * masked_symmetric_info_nce(
                a, b, self.nce_temperature, target >= self.nce_min_score, self.gather_across_devices
            )
        elif self.nce_weight:
            out["nce"] = self.nce_weight * symmetric_info_nce(
                a, b, self.nce_temperature, gather_across_devices=self.gather_across_devices
            )
        if self.cosent_weight:
            ordered = target[:, None] > target[None, :]  # (B, B): s_i > s_j
            differences = self.cosent_scale * (cosines[None, :] - cosines[:, None])  # (B, B): λ(cos_j - cos_i)
            differences = differences.masked_fill(~ordered, float("-inf"))
            zero = differences.new_zeros(1)  # the "1 +" inside the log
            out["cosent"] = self.cosent_weight * torch.logsumexp(torch.cat([zero, differences.flatten()]), dim=0)
        if self.logistic_weight:
            key = str(a.shape[-1])
            if key not in self.logistic:
                raise ValueError(f"logistic term: no parameters for width {key}; logistic_widths={list(self.logistic)}")
            log_scale, bias = self.logistic[key].float()
            logits = log_scale.exp() * cosines + bias  # α_d cos_i + β_d, (B,)
            out["logistic"] = self.logistic_weight * F.binary_cross_entropy_with_logits(logits, target)
        return out

    def learned_profile(self, name: str = "learned", points: int = 401):
        """The logistic term's map σ(α_d cos + β_d) per width as a calibration profile (knots on a cosine grid)."""
        from st_unirep.calibration import CalibrationProfile

        if not self.logistic:
            raise ValueError("This loss has no logistic term (logistic_weight=0): nothing was learned")
        grid = torch.linspace(-1, 1, points, dtype=torch.float64)
        maps = {}
        for key, parameters in self.logistic.items():
            log_scale, bias = parameters.detach().double().cpu()
            values = torch.sigmoid(log_scale.exp() * grid + bias)
            maps[int(key)] = (tuple(grid.tolist()), tuple(values.clamp(0, 1).tolist()))
        return CalibrationProfile(
            name,
            "graded",
            maps,
            ("learned in training: logistic term",),
            extra={
                "scale_bias": {k: [float(v[0].detach().exp()), float(v[1].detach())] for k, v in self.logistic.items()}
            },
        )

    @property
    def citation(self) -> str:
        return cite(VIPOLYQWEN, UNIREP, UNIREP_M)

    def get_config_dict(self) -> dict[str, Any]:
        return super().get_config_dict()
