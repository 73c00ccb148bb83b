"""Row parsers of the training tasks: one decoded JSON row (a dict) → the task's dataset columns.

Each parser validates every field and raises a :class:`~st_unirep.errors.DataError` naming file, line, field and
what was expected. Image paths are resolved against the data file's folder and checked to exist and to be readable
images (without decoding them). The registry (:mod:`st_unirep.tasks`) names the parser of each task.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

from st_unirep.errors import DataError, did_you_mean

Where = tuple[Path, int]  # (data file, line number)


def _text(row: dict, name: str, where: Where, required: bool = True) -> str | None:
    value = row.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        found = "missing" if name not in row else f"{type(value).__name__} {value!r}"[:80]
        raise DataError(*where, name, f"expected a non-empty string, got {found}")
    return value


def _images(row: dict, where: Where) -> list[str]:
    value = row.get("images")
    if not isinstance(value, list) or not value:
        raise DataError(*where, "images", f"expected a non-empty list of image paths, got {value!r}"[:160])
    paths = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise DataError(*where, f"images[{index}]", f"expected an image path string, got {item!r}")
        path = (where[0].parent / item).resolve()
        if not path.is_file():
            raise DataError(*where, f"images[{index}]", f"image file {str(path)!r} does not exist")
        _verify_image(path, where, f"images[{index}]")
        paths.append(str(path))
    return paths


def _verify_image(path: Path, where: Where, name: str) -> None:
    """A corrupt image fails when the data is loaded, not mid-training (see :func:`_image_problem`)."""
    stat = path.stat()
    problem = _image_problem(str(path), stat.st_size, stat.st_mtime_ns)
    if problem is not None:
        raise DataError(*where, name, f"image file {str(path)!r} is not a readable image ({problem})")


@functools.lru_cache(maxsize=65536)  # rows often share images: each file (as of its size and time) checked once
def _image_problem(path: str, size: int, mtime_ns: int) -> str | None:
    """What is wrong with the image file at ``path``, or None. PIL reads the header and checks the file's structure
    without decoding it (``verify``: a PNG's chunks and checksums); a JPEG, which ``verify`` does not check, must end
    in its end-of-image marker (a truncated download does not) or else decode at 1/8 size (data after the marker,
    as in phones' motion photos)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            kind = image.format
            image.verify()
        if kind == "JPEG" and not _jpeg_has_end(path):
            with Image.open(path) as image:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for bad files
        return str(error) or type(error).__name__
    return None


def _jpeg_has_end(path: str, tail: int = 4096) -> bool:
    """The JPEG end-of-image marker (FF D9) is in the last ``tail`` bytes of the file."""
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - tail))
        return b"\xff\xd9" in handle.read()


def check_keys(row: dict, allowed: tuple[str, ...], where: Where) -> None:
    """Refuse a key the task does not know (a misspelt ``"negatives"`` would otherwise be ignored)."""
    unknown = sorted(set(row) - set(allowed))
    if unknown:
        also = f"; also unknown: {unknown[1:]}" if len(unknown) > 1 else ""
        raise DataError(
            *where,
            unknown[0],
            f"unknown key{did_you_mean(unknown[0], allowed)}; a row of this task has keys {list(allowed)}{also}",
        )


def _conversation(row: dict, images: list[str], where: Where) -> list[dict[str, Any]]:
    turns = row.get("conversation")
    if not isinstance(turns, list) or not turns:
        raise DataError(
            *where, "conversation", f"expected a non-empty list of {{role, content}} turns, got {turns!r}"[:160]
        )
    messages = []
    for index, turn in enumerate(turns):
        name = f"conversation[{index}]"
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system"):
            raise DataError(*where, f"{name}.role", f"expected 'user', 'assistant' or 'system', got {turn!r}"[:160])
        content = turn.get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataError(*where, f"{name}.content", f"expected a non-empty string, got {content!r}"[:160])
        parts = [{"type": "text", "text": content, "image": None}]
        messages.append({"role": turn["role"], "content": parts})
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if first_user is None:
        raise DataError(*where, "conversation", "expected at least one 'user' turn")
    first_user["content"] = [{"type": "image", "text": None, "image": path} for path in images] + first_user["content"]
    return messages


def _with_negative(columns: dict[str, Any], row: dict, where: Where) -> dict[str, Any]:
    if "negative" in row:
        columns["negative"] = _text(row, "negative", where)
    return columns


def graded_pair(row: dict, where: Where, score_range: tuple[float, float]) -> dict[str, Any]:
    """``{"sentence1", "sentence2", "score"}`` with the score a number in ``score_range``."""
    score = row.get("score")
    lo, hi = score_range
    if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
        raise DataError(*where, "score", f"expected a number in [{lo}, {hi}], got {score!r}")
    if not lo <= score <= hi:
        raise DataError(*where, "score", f"expected a number in [{lo}, {hi}], got {score}")
    return {
        "sentence1": _text(row, "sentence1", where),
        "sentence2": _text(row, "sentence2", where),
        "score": float(score),
    }


def instruction(row: dict, where: Where, score_range: tuple[float, float]) -> dict[str, Any]:
    """``{"query", "positive"}``."""
    return {"query": _text(row, "query", where), "positive": _text(row, "positive", where)}


def ocr(row: dict, where: Where, score_range: tuple[float, float]) -> dict[str, Any]:
    """``{"images", "query"?, "positive", "negative"?}``: the anchor is the image(s) with the optional query."""
    images = _images(row, where)
    anchor = {"text": _text(row, "query", where, required=False), "image": images}
    return _with_negative({"anchor": anchor, "positive": _text(row, "positive", where)}, row, where)


def vqa_single(row: dict, where: Where, score_range: tuple[float, float]) -> dict[str, Any]:
    """``{"images", "question", "answer", "negative"?}``: the anchor is the image(s) with the question."""
    images = _images(row, where)
    anchor = {"text": _text(row, "question", where), "image": images}
    return _with_negative({"anchor": anchor, "positive": _text(row, "answer", where)}, row, where)


def vqa_multi(row: dict, where: Where, score_range: tuple[float, float]) -> dict[str, Any]:
    """``{"images", "conversation", "answer", "negative"?}``: the anchor is the chat, images in its first user turn."""
    images = _images(row, where)
    anchor = _conversation(row, images, where)
    return _with_negative({"anchor": anchor, "positive": _text(row, "answer", where)}, row, where)
