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
    conversation = [
        {"role": "user", "content": [{"image": "a.png"}, {"text": "hi"}]},
        {"role": "assistant", "content": "yo"},
    ]
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


# ---------------------------------------------------------------------------------------------- bad input
def png_header(width: int, height: int) -> bytes:
    """A PNG of ``width`` × ``height`` pixels as far as its header goes (IHDR, no pixel data): what a
    decompression bomb looks like before it is decoded, in 45 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("text", ["\u200b\u200b", "\ufeff", " \u200b\t\u200d "])
def test_text_of_only_invisible_format_characters_is_empty(text):
    with pytest.raises(ValueError, match=r"is empty after removing invisible format characters.*expected non-empty"):
        parse_input(text, vision=True)
    with pytest.raises(ValueError, match=r"'text' must be a non-empty string \(whitespace and invisible format"):
        parse_input({"text": text}, vision=True)
    with pytest.raises(ValueError, match=r"Message 0 of input .*'content' must be a non-empty string"):
        parse_input([{"role": "user", "content": text}], vision=True)
    with pytest.raises(ValueError, match=r"part 0: 'text' must be a non-empty string"):
        parse_input([{"role": "user", "content": [{"type": "text", "text": text}]}], vision=True)
    with pytest.raises(ValueError, match=r"is an empty string"):
        parse_input("", vision=True)
    assert parse_input("a\u200bb", vision=True).texts == ("a\u200bb",)  # visible text around it is kept as is


def test_conversation_roles_and_turns_are_checked():
    with pytest.raises(
        ValueError, match=r"Message 1 of input .*field 'role' is 'robot'; expected one of \['system', 'u"
    ):
        parse_input([{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}], vision=True)
    with pytest.raises(ValueError, match=r"no 'user' turn \(roles \['assistant'\]\); expected at least one message"):
        parse_input([{"role": "assistant", "content": "hello"}], vision=True)
    with pytest.raises(ValueError, match=r"no 'user' turn \(roles \['system'\]\)"):
        parse_input({"role": "system", "content": "be brief"}, vision=True)
    with pytest.raises(ValueError, match=r"part 0: .*'image_url'.* is not a text or image part; expected"):
        parse_input([{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/a.png"}]}], vision=True)
    with pytest.raises(ValueError, match=r"part 0: field 'image' is missing .*never downloads images"):
        parse_input([{"role": "user", "content": [{"type": "image", "url": "http://x/a.png"}]}], vision=True)
    with pytest.raises(ValueError, match=r"'content' is an empty list"):
        parse_input([{"role": "user", "content": []}], vision=True)
    fine = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert parse_input(fine, vision=True).texts == ("s", "q", "a")


def test_image_references_paths_with_spaces_urls_and_data_uris():
    assert parse_input("my photo.jpg", vision=True).kind == "image"  # spaces no longer make it text
    assert parse_input("C:/My Pictures/cat.PNG", vision=True).kind == "image"
    assert parse_input("a caption\nthat ends in photo.jpg", vision=True).kind == "text"  # several lines: text
    assert parse_input("http://host/x.png?size=2", vision=True).kind == "image"  # refused on load, not fetched
    assert parse_input("data:image/png;base64,AAAA", vision=True).kind == "image"
    for text in ("https://example.com/about", "https://www.youtube.com/watch?v=x", "see http://host/x.png now"):
        parsed = parse_input(text, vision=True)
        # Handed on as {"text": ...}: sentence-transformers' own detection would fetch URLs given as bare strings.
        assert (parsed.kind, parsed.rebuild([])) == ("text", {"text": text})
    assert parse_input("my photo.jpg", vision=False).rebuild([]) == {"text": "my photo.jpg"}


def test_load_image_refuses_urls_and_decodes_data_uris(tmp_path):
    import base64
    import io

    for url in ("http://example.com/x.png", "https://example.com/x.jpg?w=2"):
        with pytest.raises(ValueError, match=r"is an image URL; st_unirep never downloads.*local file path"):
            load_image(url, url)
    buffer = io.BytesIO()
    Image.new("RGBA", (6, 4), (255, 0, 0, 255)).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    decoded = load_image(uri, "uri")
    assert (decoded.mode, decoded.size, decoded.getpixel((0, 0))) == ("RGB", (6, 4), (255, 0, 0))
    with pytest.raises(ValueError, match=r"malformed data URI; expected 'data:image/<type>;base64,"):
        load_image("data:image/png;base64,@@not base64@@", "uri")
    bomb = "data:image/png;base64," + base64.b64encode(png_header(20000, 20000)).decode()
    with pytest.raises(ValueError, match=r"data URI has 400,000,000 pixels, above the limit"):
        load_image(bomb, "uri")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_zero_size_and_decompression_bombs_are_refused_with_the_limit(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"image has zero size \(0x0\); expected at least 1x1 pixels"):
        load_image(Image.new("RGB", (0, 0)), "empty")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))
    limit = f"{Image.MAX_IMAGE_PIXELS:,}"
    with pytest.raises(ValueError) as raised:
        load_image(str(bomb), str(bomb))
    assert str(raised.value) == (
        f"Input {str(bomb)!r}: image file {str(bomb)!r} has 400,000,000 pixels, above the limit {limit} (PIL "
        "decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS); resize it first, or raise PIL.Image.MAX_IMAGE_PIXELS "
        "if you trust the file"
    )
    small = tmp_path / "small photo.png"  # under PIL's own error threshold (twice the limit): refused all the same
    Image.new("RGB", (40, 40)).save(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"has 1,600 pixels, above the limit 1,000 \(PIL decompression-bomb guard"):
        load_image(small, "small")
