from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from st_unirep.testing import QWEN2_VL_SPECIAL_TOKENS


def test_tiny_checkpoint_has_the_real_layout(tiny_qwen2_vl_path):
    path = Path(tiny_qwen2_vl_path)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "chat_template.json",
    ):
        assert (path / name).is_file(), name
    assert json.loads((path / "preprocessor_config.json").read_text())["processor_class"] == "Qwen2VLProcessor"
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "qwen2_vl"
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_tiny_tokenizer_has_single_id_special_tokens_and_vietnamese(tiny_qwen2_vl_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl_path)
    for token in QWEN2_VL_SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    text = "Tiếng Việt có dấu 你好"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
