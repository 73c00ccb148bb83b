"""The four seed presets as data: which pooling, projection, width, Matryoshka dims and prefix tokens."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from st_unirep.tasks import TASK_PREFIX_TOKENS

DEFAULT_BACKBONE = "Qwen/Qwen2-VL-2B-Instruct"


@dataclass(frozen=True)
class Preset:
    """One seed's architecture. Every field can be overridden in ``build_model(..., **overrides)``."""

    pooling_mode: str  # "context" (viPolyQwen) or "multihead" (UniRep) attention pooling; "mean" for ablations
    projection_mode: str  # StableProjection mode: "linear_layernorm" (viPolyQwen) or "mlp" (UniRep, spectral norm)
    output_dim: int  # embedding width after the projection
    matryoshka_dims: tuple[int, ...] = ()  # prefix widths trained by the Matryoshka loss (largest = output_dim)
    prefix_tokens: tuple[str, ...] = TASK_PREFIX_TOKENS  # task prefix tokens added to the tokenizer
    freeze_vision: bool = False  # freeze the vision tower (UniRep-M)
    num_heads: int = 8  # heads of multihead pooling
    projection_hidden_dim: int | None = None  # MLP hidden width; None = backbone hidden size
    min_pixels: int | None = 4 * 28 * 28  # image pixel budget, lower bound (4 visual tokens)
    max_pixels: int | None = 1024 * 28 * 28  # image pixel budget, upper bound (1,024 visual tokens)
    attn_implementation: str | None = None  # None = flash_attention_2 if installed on CUDA, else sdpa
    gradient_checkpointing: bool = False  # non-reentrant checkpointing in the backbone
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs for ST's Transformer
    # --- losses (st_unirep.losses.build_loss reads these) ---
    text_pair_weights: dict[str, float] = field(  # CalibratedTextPairLoss weights: UniRep KL + 10 MSE + 5 rank
        default_factory=lambda: {"kl_weight": 1.0, "mse_weight": 10.0, "rank_weight": 5.0, "nce_weight": 0.0}
    )
    instruction_cos_weight: float = 1.0  # λ_cos of InstructionLoss (viPolyQwen's direct pull; 0 = InfoNCE only)
    triplet_margins: str = "unirep-m"  # key of losses.MARGINS: per-task (margin, triplet weight)
    uniformity: float = 0.1  # gamma of the uniformity regulariser (UniRep-M)
    anti_collapse: float = 1.0  # lambda_ac (0 disables)
    anti_collapse_variant: str = "max"  # "max" (UniRep-M Defense 4) or "mean" (ViUniEmbed)
    orthogonality: float = 1e-4  # weight of ||W W^T - I||_F^2 (seeds give none; ~0.1 of the loss at init for 2B)
    attention_entropy: float = 0.0  # weight of the pooling-entropy bonus (UniRep §5.1; seeds give none)
    matryoshka_weighting: str = "quadratic"  # "quadratic" (UniRep-M) or "uniform" (ST's default)
    # "random": the seeds' fresh head; "identity": pooling starts as mean pooling and the projection as the identity
    # (needs output_dim == the backbone width), for fine-tuning pretrained encoders (see README, Real quality).
    head_init: str = "random"

    def with_overrides(self, **overrides: Any) -> Preset:
        """A copy with ``overrides`` applied; unknown names raise a ValueError listing the valid ones."""
        valid = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"Unknown build_model option(s) {unknown}; valid options: {sorted(valid)}")
        if "matryoshka_dims" in overrides:
            overrides["matryoshka_dims"] = tuple(overrides["matryoshka_dims"] or ())
        if "prefix_tokens" in overrides:
            overrides["prefix_tokens"] = tuple(overrides["prefix_tokens"] or ())
        preset = replace(self, **overrides)
        if "output_dim" in overrides and "matryoshka_dims" not in overrides and self.matryoshka_dims:
            # Scale the seed's dims to the new width (e.g. output_dim=64 for a tiny model: 16/24/32/64).
            preset = replace(
                preset,
                matryoshka_dims=tuple(max(1, d * preset.output_dim // self.output_dim) for d in self.matryoshka_dims),
            )
        preset.validate()
        return preset

    def validate(self) -> None:
        if self.head_init not in ("random", "identity"):
            raise ValueError(f"head_init must be 'random' or 'identity', got {self.head_init!r}")
        if not isinstance(self.output_dim, int) or self.output_dim <= 0:
            raise ValueError(f"output_dim must be a positive int, got {self.output_dim!r}")
        for dim in self.matryoshka_dims:
            if not isinstance(dim, int) or not 0 < dim <= self.output_dim:
                raise ValueError(f"matryoshka_dims must be ints in [1, output_dim={self.output_dim}], got {dim!r}")


PRESETS: dict[str, Preset] = {
    # viPolyQwen: single-context attention pooling, Linear(no bias) -> LayerNorm, 1024-d, prefix tokens.
    # Losses: text pairs NCE + MSE, margins 0.2 (0.3 and 1.5 for multi-turn), no anti-collapse or orthogonality.
    "vipolyqwen": Preset(
        pooling_mode="context",
        projection_mode="linear_layernorm",
        output_dim=1024,
        text_pair_weights={"kl_weight": 0.0, "mse_weight": 1.0, "rank_weight": 0.0, "nce_weight": 1.0},
        triplet_margins="vipolyqwen",
        anti_collapse=0.0,
        orthogonality=0.0,
    ),
    # UniRep: multi-head attention pooling, spectrally-normalised MLP, 1024-d, prefix tokens, entropy regulariser.
    "unirep": Preset(pooling_mode="multihead", projection_mode="mlp", output_dim=1024, attention_entropy=0.01),
    # UniRep-M: UniRep at 2048-d with Matryoshka prefixes and the vision tower frozen.
    "unirep-m": Preset(
        pooling_mode="multihead",
        projection_mode="mlp",
        output_dim=2048,
        matryoshka_dims=(512, 768, 1024, 2048),
        freeze_vision=True,
    ),
    # ViUniEmbed: UniRep-M without prefix tokens, vision tower trainable.
    "viuniembed": Preset(
        pooling_mode="multihead",
        projection_mode="mlp",
        output_dim=2048,
        matryoshka_dims=(512, 768, 1024, 2048),
        prefix_tokens=(),
        anti_collapse_variant="mean",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
