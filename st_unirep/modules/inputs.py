"""The backbone's inputs as pure functions: what kind an input is, its checks, its image loading and its length.

One dispatch over the input kinds, :func:`parse_input`, checks an input's structure and splits it into its texts and
its image references (in order), with a way to put loaded images back. The backbone builds everything on it:

- validation and loading: ``parsed.rebuild([load(image) for image in parsed.images])``
  (:func:`load_image` opens a path or checks a PIL image and returns it as RGB);
- the batching sort key: :func:`estimate_length`, text characters + 4 × visual tokens per image;
- the pixel budget: :func:`budget_size` / :func:`visual_tokens` (Qwen2-VL's ``smart_resize``), used both to count
  visual tokens and to shrink a large image on load (:func:`fit_to_budget`).

Input kinds (:data:`InputKind`): ``"text"`` (a ``str`` with something visible in it); ``"image"`` (a PIL image, a
``pathlib.Path``, or, for a vision backbone, an image reference string: one line ending in an image extension, spaces
allowed, or a ``data:image/...;base64,`` URI); ``"conversation"`` (chat messages: a list of ``{"role", "content"}``
dicts with roles ``system`` / ``user`` / ``assistant`` and at least one ``user`` turn, or one such dict);
``"multimodal"`` (a dict with ``"text"`` and/or ``"image"``, the latter one image or a non-empty list of them).

Text is empty when nothing is left after removing whitespace and invisible format characters (Unicode category
``Cf``: zero-width spaces, BOMs, direction marks). Nothing here reads the network: an image URL
(``http(s)://.../x.png``) is refused with the way to pass the image instead (load it yourself, or give a local path),
any other string is text, and text goes to sentence-transformers as ``{"text": ...}`` so that its own input
detection can never read it as a URL, a data URI or a file to open. ``data:`` image URIs are decoded here and get the
same checks as files (size, the decompression-bomb limit, aspect ratio).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from st_unirep._compat import smart_resize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tiff", ".tif", ".webp")
MAX_ASPECT_RATIO = 200  # Qwen2-VL's smart_resize rejects anything wider than this
CHARS_PER_VISUAL_TOKEN = 4  # the sort key's exchange rate: one visual token weighs about 4 characters of text
ROLES = ("system", "user", "assistant")  # the roles of a conversation's messages (Qwen2-VL's chat template)
URL_SCHEMES = ("http://", "https://")
DATA_IMAGE_PREFIX = "data:image/"
_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,(?P<payload>.*)", re.DOTALL)

InputKind = Literal["text", "image", "conversation", "multimodal"]


class InputError(ValueError):
    """A bad input of ``encode``: the message names it; ``item`` is the input object itself, so that the encode
    guard (:mod:`st_unirep.modules.encode_guard`) can add its position in the inputs (:meth:`at`)."""

    def __init__(self, item: Any, message: str) -> None:
        super().__init__(message)
        self.item = item

    def at(self, index: int) -> InputError:
        """The same error, its message prefixed with the input's position, ``inputs[index]: ...``."""
        return InputError(self.item, f"inputs[{index}]: {self}")


def describe(value: Any) -> str:
    """``repr(value)``, cut to 80 characters: how error messages name an input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_blank(text: str) -> bool:
    """Whether ``text`` has nothing visible: only whitespace and format characters (Unicode ``Cf``, e.g. U+200B)."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)


def is_image_url(text: str) -> bool:
    """Whether a string is an ``http(s)`` URL (no whitespace) whose path ends in an image extension."""
    if not text.lower().startswith(URL_SCHEMES) or any(ch.isspace() for ch in text):
        return False
    try:
        return urlparse(text).path.lower().endswith(IMAGE_EXTENSIONS)
    except ValueError:  # a malformed URL (e.g. "http://[x") is text
        return False


def is_messages(item: Any) -> bool:
    """Whether ``item`` is a conversation: a non-empty list of dicts that all have a ``"role"``."""
    return isinstance(item, list) and bool(item) and all(isinstance(m, dict) and "role" in m for m in item)


def is_image_part(part: Any) -> bool:
    """Whether a part of a message's content is an image (``{"type": "image", ...}`` or an untyped ``{"image"}``)."""
    return isinstance(part, dict) and (part.get("type") == "image" or ("type" not in part and "image" in part))


def looks_like_image_path(text: str) -> bool:
    """Whether a string reads as an image path: one line ending in an image extension (spaces allowed:
    ``"my photo.jpg"``). Text that ends so is embedded as text when wrapped, ``{"text": "see photo.jpg"}``."""
    return "\n" not in text and "\r" not in text and text.lower().endswith(IMAGE_EXTENSIONS)


def is_image_reference(text: str) -> bool:
    """Whether a string names an image: an image path, an image URL (refused on load) or a ``data:image/`` URI."""
    return looks_like_image_path(text) or is_image_url(text) or text.startswith(DATA_IMAGE_PREFIX)


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
    """Name the kind of ``item`` and check its structure; raise a ValueError naming the input and field if it is bad.

    Args:
        item: One input of ``encode``.
        vision: Whether the backbone takes images; if not, image paths are text and images are an error.
    """
    if isinstance(item, str) and not (vision and is_image_reference(item)):
        if is_blank(item):
            what = "an empty string" if not item.strip() else "empty after removing invisible format characters"
            raise ValueError(
                f"Input {describe(item)} is {what} (whitespace and Unicode category Cf, e.g. zero-width spaces, do not "
                "count); expected non-empty text"
            )
        # Handed on as {"text": ...}: sentence-transformers would read a URL or data URI string as media to fetch.
        return ParsedInput("text", item, (item,), (), lambda loaded: {"text": item})
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


def _check_text(value: Any, where: str, field: str) -> str:
    """``value`` if it is a str with something visible in it, else a ValueError naming ``where`` and ``field``."""
    if not isinstance(value, str) or is_blank(value):
        raise ValueError(
            f"{where}: {field!r} must be a non-empty string (whitespace and invisible format characters such as "
            f"zero-width spaces do not count), got {describe(value)}"
        )
    return value


def _check_roles(messages: list[dict[str, Any]], original: Any) -> None:
    for index, message in enumerate(messages):
        if message.get("role") not in ROLES:
            raise ValueError(
                f"Message {index} of input {describe(original)}: field 'role' is {message.get('role')!r}; expected "
                f"one of {list(ROLES)}"
            )
    if not any(message["role"] == "user" for message in messages):
        roles = [message["role"] for message in messages]
        raise ValueError(
            f"Input {describe(original)}: the conversation has no 'user' turn (roles {roles}); expected at least "
            "one message with role 'user'"
        )


def _parse_parts(content: list[Any], where: str, *, vision: bool) -> tuple[list[Any], list[str], list[Any]]:
    """The parts of a message's list content (without None values), its texts and its image references."""
    if not content:
        raise ValueError(f"{where}: 'content' is an empty list; expected text and/or image parts")
    parts = [_without_none(part) if isinstance(part, dict) else part for part in content]
    texts: list[str] = []
    images: list[Any] = []
    for number, part in enumerate(parts):
        if is_image_part(part):
            if not vision:
                raise ValueError(f"{where} has an image but the backbone is text-only")
            if "image" not in part:
                raise ValueError(
                    f"{where}, part {number}: field 'image' is missing in {describe(part)}; expected a PIL image or "
                    "a local image path (st_unirep never downloads images: no 'url' parts)"
                )
            images.append(part["image"])
        elif isinstance(part, dict) and part.get("type", "text") == "text":
            texts.append(_check_text(part.get("text"), f"{where}, part {number}", "text"))
        else:
            raise ValueError(
                f"{where}, part {number}: {describe(part)} is not a text or image part; expected "
                "{'type': 'text', 'text': str} or {'type': 'image', 'image': a PIL image or a local path}"
            )
    return parts, texts, images


def _parse_conversation(messages: list[dict[str, Any]], original: Any, *, vision: bool, single: bool) -> ParsedInput:
    _check_roles(messages, original)
    texts: list[str] = []
    images: list[Any] = []
    checked: list[dict[str, Any]] = []  # messages with list content get their parts without None values
    for index, message in enumerate(messages):
        where = f"Message {index} of input {describe(original)}"
        content = message.get("content")
        if isinstance(content, str):
            texts.append(_check_text(content, where, "content"))
            checked.append(message)
            continue
        if not isinstance(content, list):
            raise ValueError(f"{where}: 'content' must be a str or a list of parts, got {type(content).__name__}")
        parts, part_texts, part_images = _parse_parts(content, where, vision=vision)
        texts += part_texts
        images += part_images
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
        texts = (_check_text(item["text"], f"Input {describe(item)}", "text"),)
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
    """Open a path or a ``data:image/`` URI, or check a PIL image; return an RGB image or raise a ValueError naming
    the input ``original`` and what was expected.

    Grayscale, palette, CMYK and 16-bit images become RGB; transparent ones are composited on white. Files and data
    URIs over ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (PIL's decompression-bomb limit) are refused before decoding;
    image URLs are refused (nothing is downloaded).
    """
    where = f"Input {describe(original)}"
    if isinstance(image, (str, os.PathLike)):
        image = _decode(image, where)
    elif not isinstance(image, Image.Image):
        raise ValueError(f"{where}: expected a PIL image or an image path, got {type(image).__name__}")
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"{where}: image has zero size ({width}x{height}); expected at least 1x1 pixels")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"{where}: image aspect ratio {width}x{height} exceeds {MAX_ASPECT_RATIO}:1, which Qwen2-VL rejects"
        )
    return to_rgb(image)


def _image_source(image: str | os.PathLike, where: str) -> tuple[str | io.BytesIO, str]:
    """What ``Image.open`` reads for an image reference (a path, or the bytes of a data URI) and how to name it."""
    text = os.fspath(image)
    if isinstance(image, str) and is_image_url(text):
        raise ValueError(
            f"{where}: {text!r} is an image URL; st_unirep never downloads (encode makes no network requests). "
            "Download the image and pass it as a PIL image (PIL.Image.open) or a local file path; to embed the URL "
            "itself as text, pass {'text': url}"
        )
    if isinstance(image, str) and text.startswith("data:"):
        match = _DATA_URI.fullmatch(text)
        try:
            payload = base64.b64decode(match["payload"], validate=True) if match else None
        except (binascii.Error, ValueError):
            payload = None
        if payload is None:
            raise ValueError(f"{where}: malformed data URI; expected 'data:image/<type>;base64,<base64 data>'")
        return io.BytesIO(payload), "data URI"
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{where}: image file {str(path)!r} does not exist")
    return str(path), f"image file {str(path)!r}"


def _decode(image: str | os.PathLike, where: str) -> Image.Image:
    """Decode an image path or data URI, refusing images over PIL's decompression-bomb limit before decoding."""
    source, name = _image_source(image, where)
    unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
    try:
        opened = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as error:  # PIL's own check, at twice the limit: it names the size
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_many_pixels(int(found[1]) if found else None, where, name) from None
    except unreadable as error:
        raise ValueError(f"{where}: cannot read {name} ({error})") from error
    with opened:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and opened.width * opened.height > limit:
            raise _too_many_pixels(opened.width * opened.height, where, name)
        try:
            opened.load()
        except unreadable as error:
            raise ValueError(f"{where}: cannot read {name} ({error})") from error
        return opened.copy()


def _too_many_pixels(pixels: int | None, where: str, name: str) -> ValueError:
    size = f"{pixels:,} pixels" if pixels is not None else "more pixels than twice the limit"
    return ValueError(
        f"{where}: {name} has {size}, above the limit {Image.MAX_IMAGE_PIXELS:,} (PIL decompression-bomb guard, "
        "PIL.Image.MAX_IMAGE_PIXELS); resize it first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )


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
    """``(width, height)`` of a PIL image, or of an image file or data URI from its header (nothing is decoded).

    Raises ValueError for what :func:`load_image` refuses before opening (URLs, missing files, bad data URIs)."""
    if isinstance(image, Image.Image):
        return image.size
    source, _ = _image_source(image, "image") if isinstance(image, (str, os.PathLike)) else (image, "")
    with Image.open(source) as opened:
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
