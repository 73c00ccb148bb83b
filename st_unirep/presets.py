"""The four seed presets as data: which pooling, projection, width, Matryoshka dims and prefix tokens."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from st_unirep.loss_recipe import LossRecipe
from st_unirep.tasks import OCR, TASK_PREFIX_TOKENS, VQA_MULTI, VQA_SINGLE

DEFAULT_BACKBONE = "Qwen/Qwen2-VL-2B-Instruct"

# Per image task: (margin m, triplet weight λ_trip) of ContrastiveTripletLoss (units: LossRecipe.triplet_margin_units).
UNIREP_M_MARGINS = {OCR.name: (0.3, 1.0), VQA_SINGLE.name: (0.25, 1.0), VQA_MULTI.name: (0.3, 1.0)}  # UniRep-M §5.2
VIPOLYQWEN_MARGINS = {OCR.name: (0.2, 1.0), VQA_SINGLE.name: (0.2, 1.0), VQA_MULTI.name: (0.3, 1.5)}  # viPolyQwen


@dataclass(frozen=True)
class Preset:
    """One seed's recipe: the architecture (``build_model`` reads it) and, apart, its losses (:class:`LossRecipe`).

    Every field of both can be overridden by name in ``build_model(..., **overrides)`` / ``build_loss``.
    """

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
    # "random": the seeds' fresh head; "identity": pooling starts as mean pooling and the projection as the identity
    # (needs output_dim == the backbone width), for fine-tuning pretrained encoders (see README, Real quality).
    head_init: str = "random"
    losses: LossRecipe = field(default_factory=lambda: LossRecipe(triplet_margins=UNIREP_M_MARGINS))  # the losses

    def with_overrides(self, **overrides: Any) -> Preset:
        """A copy with ``overrides`` applied (architecture and loss fields alike, by name); unknown names raise a
        ValueError listing the valid ones."""
        loss_names = {f.name for f in fields(LossRecipe)}
        valid = ({f.name for f in fields(self)} - {"losses"}) | loss_names
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"Unknown build_model option(s) {unknown}; valid options: {sorted(valid)}")
        loss_overrides = {name: overrides.pop(name) for name in list(overrides) if name in loss_names}
        if loss_overrides:
            overrides["losses"] = replace(self.losses, **loss_overrides)
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
        """Raise a ValueError naming the first field that is out of range."""
        self.losses.validate()
        if self.head_init not in ("random", "identity"):
            raise ValueError(f"head_init must be 'random' or 'identity', got {self.head_init!r}")
        if not isinstance(self.output_dim, int) or self.output_dim <= 0:
            raise ValueError(f"output_dim must be a positive int, got {self.output_dim!r}")
        for dim in self.matryoshka_dims:
            if not isinstance(dim, int) or not 0 < dim <= self.output_dim:
                raise ValueError(f"matryoshka_dims must be ints in [1, output_dim={self.output_dim}], got {dim!r}")


PRESETS: dict[str, Preset] = {
    # viPolyQwen: single-context attention pooling, Linear(no bias) -> LayerNorm, 1024-d, prefix tokens.
    # Losses: text pairs NCE + MSE, margins 0.2 (0.3 and 1.5 for multi-turn); no uniformity, anti-collapse or
    # orthogonality term (the seed has none).
    "vipolyqwen": Preset(
        pooling_mode="context",
        projection_mode="linear_layernorm",
        output_dim=1024,
        losses=LossRecipe(
            text_pair_weights={"kl_weight": 0.0, "mse_weight": 1.0, "rank_weight": 0.0, "nce_weight": 1.0},
            triplet_margins=VIPOLYQWEN_MARGINS,
            triplet_margin_units="scaled",  # viPolyQwen §4.2 writes its triplet on the scaled similarities
            uniformity=0.0,  # viPolyQwen has no uniformity term (UniRep-M introduced it)
            anti_collapse=0.0,
            orthogonality=0.0,
        ),
    ),
    # UniRep: multi-head attention pooling, spectrally-normalised MLP, 1024-d, prefix tokens, entropy regulariser.
    "unirep": Preset(
        pooling_mode="multihead",
        projection_mode="mlp",
        output_dim=1024,
        losses=LossRecipe(triplet_margins=UNIREP_M_MARGINS, attention_entropy=0.01),
    ),
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
        losses=LossRecipe(triplet_margins=UNIREP_M_MARGINS, anti_collapse_variant="mean"),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
