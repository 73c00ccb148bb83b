"""A preset's losses as data: which task losses, with which weights, and which regularisers."""

from __future__ import annotations

from dataclasses import dataclass, field

MATRYOSHKA_WEIGHTINGS = ("quadratic", "uniform")
ANTI_COLLAPSE_VARIANTS = ("max", "mean")


@dataclass(frozen=True)
class LossRecipe:
    """The loss half of a :class:`~st_unirep.presets.Preset` (``losses.build_loss`` reads it; the model never does).

    Every field can be overridden by name in ``build_loss(..., **overrides)`` and ``Preset.with_overrides``.
    """

    # CalibratedTextPairLoss weights of the graded-pair task (default: UniRep's KL + 10 MSE + 5 rank)
    text_pair_weights: dict[str, float] = field(
        default_factory=lambda: {"kl_weight": 1.0, "mse_weight": 10.0, "rank_weight": 5.0, "nce_weight": 0.0}
    )
    instruction_cos_weight: float = 1.0  # λ_cos of InstructionLoss (viPolyQwen's direct pull; 0 = InfoNCE only)
    # Per image task: (margin m, triplet weight λ_trip) of ContrastiveTripletLoss, keyed by task name
    triplet_margins: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Units of those margins: "cosine" (UniRep-M: max(0, s⁻ − s⁺ + m)) or "scaled" (viPolyQwen: on s/τ)
    triplet_margin_units: str = "cosine"
    uniformity: float = 0.1  # gamma of the uniformity regulariser (UniRep-M)
    anti_collapse: float = 1.0  # lambda_ac (0 disables)
    anti_collapse_variant: str = "max"  # "max" (UniRep-M Defense 4) or "mean" (ViUniEmbed)
    orthogonality: float = 1e-4  # weight of ||W W^T - I||_F^2 (seeds give none; ~0.1 of the loss at init for 2B)
    attention_entropy: float = 0.0  # weight of the pooling-entropy bonus (UniRep §5.1; seeds give none)
    matryoshka_weighting: str = "quadratic"  # "quadratic" (UniRep-M) or "uniform" (ST's default)

    def validate(self) -> None:
        """Raise a ValueError naming the first field that is out of range."""
        if self.matryoshka_weighting not in MATRYOSHKA_WEIGHTINGS:
            raise ValueError(
                f"matryoshka_weighting must be one of {MATRYOSHKA_WEIGHTINGS}, got {self.matryoshka_weighting!r}"
            )
        if self.anti_collapse_variant not in ANTI_COLLAPSE_VARIANTS:
            raise ValueError(
                f"anti_collapse_variant must be one of {ANTI_COLLAPSE_VARIANTS}, got {self.anti_collapse_variant!r}"
            )
        if self.triplet_margin_units not in ("cosine", "scaled"):
            raise ValueError(f"triplet_margin_units must be 'cosine' or 'scaled', got {self.triplet_margin_units!r}")
        for task, value in self.triplet_margins.items():
            if not (isinstance(value, (tuple, list)) and len(value) == 2 and min(value) >= 0):
                raise ValueError(f"triplet_margins[{task!r}] must be (margin >= 0, weight >= 0), got {value!r}")
