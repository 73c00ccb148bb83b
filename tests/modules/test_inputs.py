from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from st_unirep.modules.inputs import (
    budget_size,
    describe,
    estimate_length,
    fit_to_budget,
    is_image_part,
    load_image,
    parse_input,
    prepend_to_user_turn,
    to_rgb,
    visual_tokens,
)

# Qwen2-VL's image processor as the budget functions read it: 14-pixel patches merged 2 x 2, 56² to 112² pixels.
PROCESSOR = SimpleNamespace(
    patch_size=14,
    merge_size=2,
    size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112},
    resample=Image.Resampling.BICUBIC,
)


def test_each_kind_splits_into_its_texts_and_images():
    image = Image.new("RGB", (8, 8))
    cases = [
        ("hello", "text", ("hello",), ()),
        ("photo.jpg", "image", (), ("photo.jpg",)),
        (Path("photo.jpg"), "image", (), (Path("photo.jpg"),)),
        (image, "image", (), (image,)),
        ({"text": "cap", "image": ["a.png", "b.png"], "extra": None}, "multimodal", ("cap",), ("a.png", "b.png")),
        ({"role": "user", "content": "hi there"}, "conversation", ("hi there",), ()),
        (
            [
                {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "hello"},
            ],
            "conversation",
            ("hi", "hello"),
            ("a.png",),
        ),
    ]
    for item, kind, texts, images in cases:
        parsed = parse_input(item, vision=True)
        assert (parsed.kind, parsed.texts, parsed.images) == (kind, texts, images), item


def test_a_text_backbone_reads_image_paths_as_text_and_refuses_images():
    assert parse_input("photo.jpg", vision=False).kind == "text"
    with pytest.raises(ValueError, match="is an image but the backbone is text-only"):
        parse_input(Image.new("RGB", (8, 8)), vision=False)
    with pytest.raises(ValueError, match="has an image but the backbone is text-only"):
        parse_input({"image": "a.png"}, vision=False)


def test_rebuild_puts_the_loaded_images_back_in_order():
    loaded = ["A", "B"]
    multimodal = parse_input({"text": "cap", "image": ("a.png", "b.png"), "extra": None}, vision=True)
    assert multimodal.rebuild(loaded) == {"text": "cap", "image": ["A", "B"]}
    assert parse_input({"image": "a.png"}, vision=True).rebuild(["A"]) == {"image": "A"}
    assert parse_input("a.png", vision=True).rebuild(["A"]) == "A"
    conversation = [
        {"role": "user", "content": [{"image": "a.png", "text": None}, {"type": "text", "text": "x"}]},
        {"role": "user", "content": [{"type": "image", "image": "b.png"}]},
    ]
    assert parse_input(conversation, vision=True).rebuild(loaded) == [
        {"role": "user", "content": [{"type": "image", "image": "A"}, {"type": "text", "text": "x"}]},
        {"role": "user", "content": [{"type": "image", "image": "B"}]},
    ]
    single = {"role": "user", "content": [{"type": "image", "image": "a.png"}]}
    assert parse_input(single, vision=True).rebuild(["A"]) == {
        "role": "user",
        "content": [{"type": "image", "image": "A"}],
    }
    with pytest.raises(ValueError, match="Expected 1 loaded image"):
        parse_input("a.png", vision=True).rebuild([])


def test_estimate_length_is_characters_plus_four_per_visual_token():
    tokens = {"a.png": 10, "b.png": 3}.get
    assert estimate_length(parse_input("plain text", vision=True), tokens) == 10
    assert estimate_length(parse_input({"text": "abc", "image": ["a.png", "b.png"]}, vision=True), tokens) == 55
    conversation = [{"role": "user", "content": [{"image": "a.png"}, {"text": "hi"}]}, {"role": "x", "content": "yo"}]
    assert estimate_length(parse_input(conversation, vision=True), tokens) == 40 + 2 + 2


def test_is_image_part():
    assert is_image_part({"type": "image", "image": "a.png"})
    assert is_image_part({"image": "a.png"})
    assert not is_image_part({"type": "text", "image": "a.png", "text": "x"})
    assert not is_image_part("image")


def test_budget_arithmetic():
    assert budget_size(300, 200, PROCESSOR) == (112, 84)  # 9,408 <= 12,544 pixels, sides multiples of 28
    assert visual_tokens(300, 200, PROCESSOR) == 4 * 3
    assert budget_size(30, 20, PROCESSOR) == (84, 56)  # below min_pixels: scaled up to at least 56² pixels
    assert visual_tokens(1000, 1000, PROCESSOR) == 16  # 112 x 112: the whole budget


def test_fit_to_budget_shrinks_only_images_over_the_budget():
    big = Image.new("RGB", (300, 200), "red")
    assert fit_to_budget(big, PROCESSOR).size == (112, 84)
    small = Image.new("RGB", (30, 20))
    assert fit_to_budget(small, PROCESSOR) is small
    assert fit_to_budget(big, SimpleNamespace(size={})) is big  # no pixel budget: nothing to do


def test_to_rgb_composites_on_white_and_scales_16_bit():
    transparent = to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0)))
    assert transparent.mode == "RGB" and transparent.getpixel((0, 0)) == (255, 255, 255)
    ramp = Image.fromarray(np.array([[1000, 2000, 3000]], dtype=np.uint16))
    assert [to_rgb(ramp).getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_load_image_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match=r"^Input 'x.png': image file '.*nope.png' does not exist"):
        load_image(tmp_path / "nope.png", "x.png")
    with pytest.raises(ValueError, match=r"aspect ratio 1000x2 exceeds 200:1"):
        load_image(Image.new("RGB", (1000, 2)), "wide")
    assert load_image(Image.new("L", (4, 4)), "gray").mode == "RGB"


def test_prepend_to_user_turn_touches_only_the_first_user_turn():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question"},
        {"role": "user", "content": [{"type": "text", "text": "more"}]},
    ]
    assert prepend_to_user_turn(messages, "<q> ") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "<q> question"},
        {"role": "user", "content": [{"type": "text", "text": "more"}]},
    ]
    listed = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    assert prepend_to_user_turn(listed, "<q> ")[0]["content"] == [
        {"type": "text", "text": "<q> "},
        {"type": "text", "text": "q"},
    ]


def test_describe_cuts_long_inputs():
    assert describe("short") == "'short'"
    assert describe("x" * 200) == "'" + "x" * 76 + "..."
