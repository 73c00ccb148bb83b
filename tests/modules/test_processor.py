from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor

from st_unirep.modules.processor import Qwen2VLImageTextProcessor
from tests.conftest import REAL_CONFIG


def test_no_video_processor_needed(tiny_qwen2_vl_path):
    processor = Qwen2VLImageTextProcessor.from_checkpoint(tiny_qwen2_vl_path)
    assert "video_processor" not in processor.get_attributes()
    with pytest.raises(ValueError, match="text and images only"):
        processor(text=["x"], videos=[np.zeros((2, 28, 28, 3), dtype=np.uint8)])


def test_saved_processor_reloads_through_autoprocessor(tiny_qwen2_vl_path, tmp_path):
    Qwen2VLImageTextProcessor.from_checkpoint(tiny_qwen2_vl_path, max_pixels=56 * 56).save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, Qwen2VLImageTextProcessor)
    assert loaded.image_processor.size["longest_edge"] == 56 * 56


@pytest.mark.skipif(not REAL_CONFIG.is_dir(), reason="../shared/models/qwen2-vl-2b-config not present")
def test_real_checkpoint_processor_matches_published_ids():
    processor = Qwen2VLImageTextProcessor.from_checkpoint(REAL_CONFIG)
    assert len(processor.tokenizer) == 151657
    assert processor.tokenizer("What is 2 plus 2?")["input_ids"] == [3838, 374, 220, 17, 5519, 220, 17, 30]
    messages = [[{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (640, 480))}]}]]
    out = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    # PROVENANCE.md: a 480x640 image -> grid [1, 34, 46], pixel_values (1564, 1176), 391 image pads
    assert out["image_grid_thw"].tolist() == [[1, 34, 46]]
    assert tuple(out["pixel_values"].shape) == (1564, 1176)
    assert int((out["input_ids"] == 151655).sum()) == 391
