"""The backbone's inputs as pure functions: what kind an input is, its checks, its image loading and its length.

One dispatch over the input kinds, :func:`parse_input`, checks an input's structure and splits it into its texts and
its image references (in order), with a way to put loaded images back. The backbone builds everything on it:

- validation and loading: ``parsed.rebuild([load(image) for image in parsed.images])``
  (:func:`load_image` opens a path or checks a PIL image and returns it as RGB);
- the batching sort key: :func:`estimate_length`, text characters + 4 × visual tokens per image;
- the pixel budget: :func:`budget_size` / :func:`visual_tokens` (Qwen2-VL's ``smart_resize``), used both to count
  visual tokens and to shrink a large image on load (:func:`fit_to_budget`).

Input kinds (:data:`InputKind`): ``"text"`` (a non-empty ``str``); ``"image"`` (a PIL image, a ``pathlib.Path``, or,
for a vision backbone, a ``str`` with no whitespace ending in an image extension); ``"conversation"`` (chat messages:
a list of ``{"role", "content"}`` dicts, or one such dict); ``"multimodal"`` (a dict with ``"text"`` and/or
``"image"``, the latter one image or a non-empty list of them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from st_unirep._compat import smart_resize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tiff", ".tif", ".webp")
MAX_ASPECT_RATIO = 200  # Qwen2-VL's smart_resize rejects anything wider than this
CHARS_PER_VISUAL_TOKEN = 4  # the sort key's exchange rate: one visual token weighs about 4 characters of text

InputKind = Literal["text", "image", "conversation", "multimodal"]


def describe(value: Any) -> str:
    """``repr(value)``, cut to 80 characters: how error messages name an input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_messages(item: Any) -> bool:
    """Whether ``item`` is a conversation: a non-empty list of dicts that all have a ``"role"``."""
    return isinstance(item, list) and bool(item) and all(isinstance(m, dict) and "role" in m for m in item)


def is_image_part(part: Any) -> bool:
    """Whether a part of a message's content is an image (``{"type": "image", ...}`` or an untyped ``{"image"}``)."""
    return isinstance(part, dict) and (part.get("type") == "image" or ("type" not in part and "image" in part))


def looks_like_image_path(text: str) -> bool:
    """Whether a string reads as an image path: no whitespace and an image file extension."""
    return not any(ch.isspace() for ch in text) and text.lower().endswith(IMAGE_EXTENSIONS)


def _without_none(mapping: dict[str, Any]) -> dict[str, Any]:
    # None-valued keys are absent ones (rows that went through Arrow carry every key of the column).
    return {key: value for key, value in mapping.items() if value is not None}


@dataclass(frozen=True)
class ParsedInput:
    """One input, checked in structure and split into its texts and its (not yet loaded) image references."""

    kind: InputKind
    original: Any  # the input as error messages name it (a dict without its None values)
    texts: tuple[str, ...]  # every text of the input, in order
    images: tuple[Any, ...]  # every image reference (PIL image, path, or anything the loader will reject), in order
    _rebuild: Callable[[list[Any]], Any]

    def rebuild(self, loaded: Sequence[Any]) -> Any:
        """The input in the form the processor takes, with ``loaded[i]`` in place of ``images[i]``."""
        if len(loaded) != len(self.images):
            raise ValueError(f"Expected {len(self.images)} loaded image(s), got {len(loaded)}")
        return self._rebuild(list(loaded))


def parse_input(item: Any, *, vision: bool) -> ParsedInput:
    """Name the kind of ``item`` and check its structure; raise a ValueError naming the input if it is bad.

    Args:
        item: One input of ``encode``.
        vision: Whether the backbone takes images; if not, image paths are text and images are an error.
    """
    if isinstance(item, str) and not (vision and looks_like_image_path(item)):
        if not item.strip():
            raise ValueError(f"Input {item!r} is an empty string; expected non-empty text")
        return ParsedInput("text", item, (item,), (), lambda loaded: item)
    if isinstance(item, (str, Path, Image.Image)):
        if not vision:
            raise ValueError(f"Input {describe(item)} is an image but the backbone is text-only")
        return ParsedInput("image", item, (), (item,), lambda loaded: loaded[0])
    if isinstance(item, dict) and "role" in item and "content" in item:
        return _parse_conversation([item], item, vision=vision, single=True)
    if is_messages(item):
        return _parse_conversation(item, item, vision=vision, single=False)
    if isinstance(item, dict) and item:
        return _parse_multimodal(item, vision=vision)
    raise ValueError(
        f"Input {describe(item)} of type {type(item).__name__} is not supported; expected a non-empty str "
        "(text or an image path), a PIL image, a pathlib.Path to an image, a dict with 'text' and/or 'image' "
        "(a list of images for several), or a list of chat messages ({'role', 'content'} dicts)"
    )


def _parse_conversation(messages: list[dict[str, Any]], original: Any, *, vision: bool, single: bool) -> ParsedInput:
    texts: list[str] = []
    images: list[Any] = []
    checked: list[dict[str, Any]] = []  # messages with list content get their parts without None values
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            checked.append(message)
            continue
        if not isinstance(content, list):
            raise ValueError(
                f"Message {describe(message)} in input {describe(original)}: 'content' must be a str or a "
                f"list of parts, got {type(content).__name__}"
            )
        parts = [_without_none(part) if isinstance(part, dict) else part for part in content]
        for part in parts:
            if is_image_part(part):
                if not vision:
                    raise ValueError(f"Input {describe(original)} has an image but the backbone is text-only")
                images.append(part.get("image"))
            elif isinstance(part, dict):
                texts.append(str(part.get("text") or ""))
        checked.append({**message, "content": parts})

    def rebuild(loaded: list[Any]) -> Any:
        slots = iter(loaded)
        out = [
            message
            if isinstance(message["content"], str)
            else {
                **message,
                "content": [
                    {**part, "type": "image", "image": next(slots)} if is_image_part(part) else part
                    for part in message["content"]
                ],
            }
            for message in checked
        ]
        return out[0] if single else out

    return ParsedInput("conversation", original, tuple(texts), tuple(images), rebuild)


def _parse_multimodal(item: dict[str, Any], *, vision: bool) -> ParsedInput:
    item = _without_none(item)
    if not item:
        raise ValueError("Input is a dict whose values are all None; expected 'text' and/or 'image'")
    unknown = set(item) - {"text", "image"}
    if unknown:
        raise ValueError(f"Input {describe(item)} has unknown key(s) {sorted(unknown)}; expected 'text' and/or 'image'")
    texts: tuple[str, ...] = ()
    if "text" in item:
        text = item["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"Input {describe(item)}: 'text' must be a non-empty string, got {text!r}")
        texts = (text,)
    images: tuple[Any, ...] = ()
    several = False
    if "image" in item:
        if not vision:
            raise ValueError(f"Input {describe(item)} has an image but the backbone is text-only")
        value = item["image"]
        several = isinstance(value, (list, tuple))
        if several and not value:
            raise ValueError(f"Input {describe(item)}: 'image' is an empty list")
        images = tuple(value) if several else (value,)

    def rebuild(loaded: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"text": texts[0]} if texts else {}
        if images:
            out["image"] = loaded if several else loaded[0]
        return out

    return ParsedInput("multimodal", item, texts, images, rebuild)


def estimate_length(parsed: ParsedInput, image_tokens: Callable[[Any], int]) -> int:
    """The batching sort key of an input: its text characters + 4 × the visual tokens of each of its images."""
    return sum(len(text) for text in parsed.texts) + CHARS_PER_VISUAL_TOKEN * sum(map(image_tokens, parsed.images))


# ---------------------------------------------------------------------------------------------- images
def load_image(image: Any, original: Any) -> Image.Image:
    """Open a path or check a PIL image; return an RGB image or raise a ValueError naming the input ``original``.

    Grayscale, palette, CMYK and 16-bit images become RGB; transparent ones are composited on white.
    """
    where = f"Input {describe(original)}"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"{where}: image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{where}: cannot read image file {str(path)!r} ({error})") from error
    elif not isinstance(image, Image.Image):
        raise ValueError(f"{where}: expected a PIL image or an image path, got {type(image).__name__}")
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"{where}: image has zero size ({width}x{height})")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"{where}: image aspect ratio {width}x{height} exceeds {MAX_ASPECT_RATIO}:1, which Qwen2-VL rejects"
        )
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB: transparency composited on white, 16-bit/float grayscale scaled (not clipped) to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit/float grayscale: scale to 8 bits first; PIL's convert("RGB") would clip instead.
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = np.round((array - low) / (high - low if high > low else 1.0) * 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")  # uint8 (h, w): mode "L"
    return image.convert("RGB")


def image_size(image: Any) -> tuple[int, int]:
    """``(width, height)`` of a PIL image, or of an image file from its header (nothing is decoded)."""
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as opened:
        return opened.size


# ---------------------------------------------------------------------------------------------- pixel budget
def has_budget(image_processor: Any) -> bool:
    """Whether an image processor carries a Qwen2-VL pixel budget (``size`` with both edges, in pixels)."""
    size = getattr(image_processor, "size", None)
    return bool(size) and bool(size.get("shortest_edge")) and bool(size.get("longest_edge"))


def budget_size(width: int, height: int, image_processor: Any) -> tuple[int, int]:
    """``(width, height)`` the processor resizes an image to: Qwen2-VL's ``smart_resize`` under its pixel budget.

    Both sides become multiples of ``factor = patch_size × merge_size`` (28) with the area within
    ``[size["shortest_edge"], size["longest_edge"]]`` (transformers 5 keeps min/max pixels under those keys).
    """
    factor = image_processor.patch_size * image_processor.merge_size
    size = image_processor.size
    target_h, target_w = smart_resize(
        height, width, factor=factor, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"]
    )
    return target_w, target_h


def visual_tokens(width: int, height: int, image_processor: Any) -> int:
    """Visual tokens an image of this size costs under the processor's pixel budget: one per 28×28 block."""
    factor = image_processor.patch_size * image_processor.merge_size
    target_w, target_h = budget_size(width, height, image_processor)
    return math.prod((target_h // factor, target_w // factor))


def fit_to_budget(image: Image.Image, image_processor: Any) -> Image.Image:
    """``image`` resized to :func:`budget_size` exactly as the processor would (PIL, its own filter) if that is
    smaller; otherwise ``image`` itself (upscaling is left to the processor, there is nothing to save)."""
    if not has_budget(image_processor):
        return image
    width, height = image.size
    target_w, target_h = budget_size(width, height, image_processor)
    if target_h * target_w >= width * height:
        return image
    return image.resize((target_w, target_h), resample=image_processor.resample)


def prepend_to_user_turn(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """``messages`` with ``prompt`` as the first text of the first user turn."""
    out, done = [], False
    for message in messages:
        if not done and message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                content = prompt + content
            else:
                content = [{"type": "text", "text": prompt}, *content]
            message, done = {**message, "content": content}, True
        out.append(message)
    return out
