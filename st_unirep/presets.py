"""The four seed presets as data: which pooling, projection, width, Matryoshka dims and prefix tokens."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from st_unirep.modules.backbone import TASK_PREFIX_TOKENS

DEFAULT_BACKBONE = "Qwen/Qwen2-VL-2B-Instruct"


@dataclass(frozen=True)
class Preset:
    """One seed's architecture. Every field can be overridden in ``build_model(..., **overrides)``."""

    pooling_mode: str  # AttentionPooling mode: "context" (viPolyQwen) or "multihead" (UniRep)
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
        if not isinstance(self.output_dim, int) or self.output_dim <= 0:
            raise ValueError(f"output_dim must be a positive int, got {self.output_dim!r}")
        for dim in self.matryoshka_dims:
            if not isinstance(dim, int) or not 0 < dim <= self.output_dim:
                raise ValueError(f"matryoshka_dims must be ints in [1, output_dim={self.output_dim}], got {dim!r}")


PRESETS: dict[str, Preset] = {
    # viPolyQwen: single-context attention pooling, Linear(no bias) -> LayerNorm, 1024-d, prefix tokens.
    "vipolyqwen": Preset(pooling_mode="context", projection_mode="linear_layernorm", output_dim=1024),
    # UniRep: multi-head attention pooling, spectrally-normalised MLP, 1024-d, prefix tokens.
    "unirep": Preset(pooling_mode="multihead", projection_mode="mlp", output_dim=1024),
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
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
