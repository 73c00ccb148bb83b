from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers.base.modules.transformer import TRANSFORMER_TASK_TO_AUTO_MODEL
from transformers import AutoConfig

from st_unirep.modules import processor as processor_module
from st_unirep.modules.backbone import Backbone
from st_unirep.tasks import TASK_PREFIX_TOKENS
from tests.conftest import REAL_CONFIG, make_image


@pytest.fixture(scope="module")
def backbone(tiny_qwen2_vl_path):
    return Backbone(tiny_qwen2_vl_path, prefix_tokens=TASK_PREFIX_TOKENS, max_pixels=112 * 112)


def test_prefix_tokens_are_single_ids_before_and_after_reload(backbone, tmp_path):
    ids = backbone.prefix_token_ids()
    assert len(set(ids.values())) == 5
    for token, token_id in ids.items():
        assert backbone.tokenizer(f"a {token} b", add_special_tokens=False)["input_ids"].count(token_id) == 1
        assert backbone.model.get_input_embeddings().num_embeddings > token_id
    backbone.save(str(tmp_path))
    reloaded = Backbone.load(str(tmp_path))
    assert reloaded.prefix_token_ids() == ids
    assert reloaded.model.get_input_embeddings().num_embeddings == backbone.model.get_input_embeddings().num_embeddings


def test_embedding_matrix_not_shrunk_when_ids_fit(real_layout_path):
    """Qwen2-VL has 151,936 rows for 151,657 tokens: the prefix ids fit, nothing is resized."""
    backbone = Backbone(real_layout_path, prefix_tokens=TASK_PREFIX_TOKENS)
    assert backbone.model.get_input_embeddings().num_embeddings == 151936
    assert list(backbone.prefix_token_ids().values()) == list(range(151657, 151662))


def test_freeze_vision_freezes_only_the_vision_tower(tiny_qwen2_vl_path):
    backbone = Backbone(tiny_qwen2_vl_path, freeze_vision=True)
    assert not any(p.requires_grad for p in backbone.model.visual.parameters())
    assert all(p.requires_grad for p in backbone.model.language_model.parameters())


def test_options_are_applied_and_saved(tiny_qwen2_vl_path, tmp_path):
    backbone = Backbone(tiny_qwen2_vl_path, gradient_checkpointing=True, attn_implementation="eager", max_pixels=3136)
    assert backbone.model.is_gradient_checkpointing
    assert backbone.model.config._attn_implementation == "eager"
    assert backbone.processor.image_processor.size["longest_edge"] == 3136
    backbone.save(str(tmp_path))
    config = json.loads((tmp_path / "sentence_bert_config.json").read_text())
    assert config["max_pixels"] == 3136 and config["gradient_checkpointing"] is True
    assert Backbone.load(str(tmp_path)).processor.image_processor.size["longest_edge"] == 3136


def test_pixel_budget_bounds_visual_tokens(backbone):
    features = backbone.preprocess([Image.new("RGB", (1000, 800))])
    grid = features["image_grid_thw"][0]
    assert int(grid.prod()) * 14 * 14 <= 112 * 112
    assert backbone.visual_tokens_per_image(1000, 800) == int(grid.prod()) // 4


def test_processor_without_pixels_is_refused(tiny_qwen2_vl_path, monkeypatch):
    """The silent failure: a bare tokenizer as the processor turns every image into one placeholder token."""
    from transformers import AutoTokenizer

    monkeypatch.setattr(
        processor_module.Qwen2VLImageTextProcessor,
        "from_checkpoint",
        classmethod(lambda cls, path, **kwargs: AutoTokenizer.from_pretrained(path)),
    )
    with pytest.raises(ValueError, match="has no image processor"):
        Backbone(tiny_qwen2_vl_path)


def test_full_2b_architecture_on_meta_device():
    """The real Qwen2-VL-2B config builds through the class ST's Transformer picks (AutoModel) on meta."""
    if not REAL_CONFIG.is_dir():
        pytest.skip("../shared/models/qwen2-vl-2b-config not present")
    config = AutoConfig.from_pretrained(REAL_CONFIG)
    with torch.device("meta"):
        model = TRANSFORMER_TASK_TO_AUTO_MODEL["feature-extraction"].from_config(config)
    assert type(model).__name__ == "Qwen2VLModel"
    assert sum(p.numel() for p in model.parameters()) == 2_208_985_600


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "NoneType is not supported"),
        (3, "int is not supported"),
        ("", "empty string"),
        ("   ", "empty string"),
        ({"text": ""}, "'text' must be a non-empty string"),
        ({"caption": "x"}, r"unknown key\(s\) \['caption'\]"),
        ({"image": []}, "'image' is an empty list"),
        ({"image": 5}, "expected a PIL image or an image path, got int"),
        ("missing_photo.jpg", "image file 'missing_photo.jpg' does not exist"),
        (Image.new("RGB", (0, 10)), r"zero size \(0x10\)"),
        (Image.new("RGB", (1000, 2)), "aspect ratio 1000x2 exceeds 200:1"),
    ],
)
def test_bad_inputs_raise_clear_errors(backbone, bad, message):
    with pytest.raises(ValueError, match=message):
        backbone.preprocess(["fine text", bad])


def test_corrupt_and_missing_image_files(backbone, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=r"cannot read image file '.*corrupt.png'"):
        backbone.preprocess([str(corrupt)])
    with pytest.raises(ValueError, match="does not exist"):
        backbone.preprocess([{"image": tmp_path / "nope.png", "text": "x"}])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1"])
def test_non_rgb_images_become_rgb(backbone, mode):
    image = (
        make_image(mode=mode)
        if mode != "I;16"
        else Image.fromarray((np.arange(64 * 96).reshape(64, 96) * 10).astype(np.uint16))
    )
    features = backbone.preprocess([image])
    assert features["pixel_values"].shape[-1] == 3 * 2 * 14 * 14
    assert torch.isfinite(features["pixel_values"]).all()


def test_transparent_pixels_are_composited_on_white(backbone):
    transparent = Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    white = Image.new("RGB", (56, 56), "white")
    a = backbone.preprocess([transparent])["pixel_values"]
    b = backbone.preprocess([white])["pixel_values"]
    assert torch.equal(a, b)


def test_image_paths_and_path_objects_load(backbone, tmp_path):
    path = tmp_path / "red.png"
    make_image().save(path)
    by_str = backbone.preprocess([str(path)])["pixel_values"]
    by_path = backbone.preprocess([path])["pixel_values"]
    by_pil = backbone.preprocess([make_image()])["pixel_values"]
    assert torch.equal(by_str, by_pil) and torch.equal(by_path, by_pil)


def test_text_that_looks_like_a_filename_can_be_wrapped(backbone):
    features = backbone.preprocess([{"text": "holiday.jpg"}])
    assert "pixel_values" not in features


def test_input_length_counts_visual_tokens_not_path_characters(backbone, tmp_path):
    small, big = tmp_path / "a.png", tmp_path / "b.png"  # names of equal length: ST's own key ties them
    make_image((56, 56)).save(small)
    make_image((300, 200)).save(big)
    small_tokens, big_tokens = backbone.visual_tokens_per_image(56, 56), backbone.visual_tokens_per_image(300, 200)
    assert small_tokens < big_tokens
    assert backbone.input_length(str(small)) == 4 * small_tokens
    assert backbone.input_length(big) == 4 * big_tokens  # pathlib.Path
    assert backbone.input_length(make_image((300, 200))) == 4 * big_tokens  # PIL image
    both = {"text": "abc", "image": [str(small), str(big)]}
    assert backbone.input_length(both) == 3 + 4 * (small_tokens + big_tokens)
    conversation = [
        {"role": "user", "content": [{"type": "image", "image": str(big)}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "hello"},
    ]
    assert backbone.input_length(conversation) == 4 * big_tokens + 2 + 5
    assert backbone.input_length("plain text") == 10
    assert backbone.input_length(str(tmp_path / "missing.png")) == 0  # the error comes when the batch is built


@pytest.mark.parametrize("size", [(600, 400), (90, 700), (1000, 1000)])
def test_images_shrink_to_the_budget_on_load_with_identical_pixels(backbone, monkeypatch, size):
    image = make_image(size, "purple")
    width, height = backbone._check_input(image).size
    assert width * height <= 112 * 112 < size[0] * size[1]  # the batch holds budget-sized images, not originals
    assert width * height == backbone.visual_tokens_per_image(*size) * 28 * 28
    fast = backbone.preprocess([image, {"text": "two", "image": [image, make_image((40, 30))]}])
    monkeypatch.setattr(Backbone, "_fit_to_budget", lambda self, img: img)  # the processor resizes the originals
    reference = backbone.preprocess([image, {"text": "two", "image": [image, make_image((40, 30))]}])
    for key, value in reference.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(fast[key], value), key


def test_images_within_the_budget_are_left_alone(backbone):
    small = make_image((40, 30))  # below min_pixels: the processor upscales it, nothing to save here
    assert backbone._fit_to_budget(small) is small
