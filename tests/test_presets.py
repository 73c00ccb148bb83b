from __future__ import annotations

from pathlib import Path

import pytest

from st_unirep import build_model
from st_unirep.modules.attention_pooling import AttentionPooling
from st_unirep.modules.backbone import Backbone
from st_unirep.modules.stable_projection import StableProjection
from st_unirep.presets import PRESETS, get_preset
from st_unirep.tasks import TASK_PREFIX_TOKENS


def build_tiny_bert(path: Path) -> str:
    """A tiny random BERT with a word-level vocabulary, offline."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "cat", "dog", "a"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return str(path)


EXPECTED = {
    "vipolyqwen": ("context", "linear_layernorm", 1024, (), True, False),
    "unirep": ("multihead", "mlp", 1024, (), True, False),
    "unirep-m": ("multihead", "mlp", 2048, (512, 768, 1024, 2048), True, True),
    "viuniembed": ("multihead", "mlp", 2048, (512, 768, 1024, 2048), False, False),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_match_the_seeds(name):
    preset = get_preset(name)
    pooling, projection, dim, dims, has_prefix, frozen = EXPECTED[name]
    assert (preset.pooling_mode, preset.projection_mode, preset.output_dim) == (pooling, projection, dim)
    assert preset.matryoshka_dims == dims
    assert preset.prefix_tokens == (TASK_PREFIX_TOKENS if has_prefix else ())
    assert preset.freeze_vision is frozen


def test_built_modules_follow_the_preset(preset_model):
    name, model = preset_model
    backbone, pooling, projection = model[0], model[1], model[2]
    pooling_mode, projection_mode, _, _, has_prefix, frozen = EXPECTED[name]
    assert isinstance(backbone, Backbone) and isinstance(pooling, AttentionPooling)
    assert isinstance(projection, StableProjection)
    assert (pooling.mode, projection.mode, projection.out_features) == (pooling_mode, projection_mode, 64)
    assert bool(backbone.prefix_tokens) is has_prefix
    assert backbone.freeze_vision is frozen
    assert model.get_embedding_dimension() == 64


def test_output_dim_override_scales_matryoshka_dims():
    assert get_preset("unirep-m").with_overrides(output_dim=64).matryoshka_dims == (16, 24, 32, 64)


def test_unknown_preset_and_options(tiny_qwen2_vl_path):
    with pytest.raises(ValueError, match=r"Unknown preset 'unirep-x'; expected one of \['unirep'"):
        build_model(tiny_qwen2_vl_path, "unirep-x")
    with pytest.raises(ValueError, match=r"Unknown build_model option\(s\) \['pooling'\]"):
        build_model(tiny_qwen2_vl_path, "unirep", pooling="mean")
    with pytest.raises(ValueError, match="Unknown pooling mode 'max'"):
        build_model(tiny_qwen2_vl_path, "unirep", pooling_mode="max", output_dim=8)
    with pytest.raises(ValueError, match="matryoshka_dims must be ints in"):
        build_model(tiny_qwen2_vl_path, "unirep-m", output_dim=8, matryoshka_dims=[4, 16])


def test_vipolyqwen_carries_only_its_seeds_terms():
    """Regression (issue 14): the vipolyqwen preset carried a uniformity term that viPolyQwen does not have."""
    losses = get_preset("vipolyqwen").losses
    assert (losses.uniformity, losses.anti_collapse, losses.orthogonality) == (0.0, 0.0, 0.0)
