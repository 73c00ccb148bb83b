"""Session fixtures: tiny offline models built once and deep-copied per test (as in ST's own conftest)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from checkout import shared_root
from st_unirep import build_model
from st_unirep.presets import PRESETS
from st_unirep.testing import QWEN2_VL_PROCESSOR_FILES, build_tiny_qwen2_vl

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_root()
REAL_CONFIG = SHARED / "models" / "qwen2-vl-2b-config"
TINY_OUTPUT_DIM = 64


@pytest.fixture(scope="session")
def tiny_qwen2_vl_path(tmp_path_factory) -> str:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny") / "qwen2-vl")


@pytest.fixture(scope="session")
def _tiny_models(tiny_qwen2_vl_path) -> dict:
    return {name: build_model(tiny_qwen2_vl_path, name, output_dim=TINY_OUTPUT_DIM) for name in PRESETS}


@pytest.fixture(params=sorted(PRESETS))
def preset_model(request, _tiny_models):
    """(preset name, a fresh deep copy of the tiny model built with that preset)."""
    return request.param, copy.deepcopy(_tiny_models[request.param])


@pytest.fixture
def tiny_model(_tiny_models):
    """The tiny model with the default preset (unirep), deep-copied."""
    return copy.deepcopy(_tiny_models["unirep"])


@pytest.fixture(scope="session")
def real_layout_path(tmp_path_factory) -> str:
    """A folder shaped exactly like the real Qwen2-VL-2B-Instruct checkpoint: the real tokenizer, chat template and
    preprocessor_config.json (naming ``Qwen2VLProcessor``) from ../shared, with a tiny random model whose
    vocabulary covers the real token ids."""
    if not REAL_CONFIG.is_dir():
        pytest.skip(f"{REAL_CONFIG} not present")
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    path = tmp_path_factory.mktemp("real-layout") / "Qwen2-VL-2B-Instruct"
    path.mkdir()
    real = json.loads((REAL_CONFIG / "config.json").read_text())
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": real["vocab_size"],
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 1e6},
        },
        vision_config={"depth": 1, "embed_dim": 32, "num_heads": 4, "mlp_ratio": 2, "hidden_size": 32},
        image_token_id=real["image_token_id"],
        video_token_id=real["video_token_id"],
        vision_start_token_id=real["vision_start_token_id"],
        vision_end_token_id=real["vision_end_token_id"],
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(path)
    for name in QWEN2_VL_PROCESSOR_FILES:
        shutil.copy(REAL_CONFIG / name, path / name)
    return str(path)


def make_image(size=(96, 64), colour="red", shape="ellipse", mode="RGB") -> Image.Image:
    """A deterministic synthetic image: a coloured shape on white."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=colour)
    return image.convert(mode) if mode != "RGB" else image
