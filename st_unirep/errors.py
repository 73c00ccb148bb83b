"""The error for a bad row in a data file, and the JSON Lines reader that raises it."""

from __future__ import annotations

import codecs
import difflib
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any


class DataError(ValueError):
    """A bad row in a data file: ``file:line: field 'name': what was expected, what was found``."""

    def __init__(self, path: str | os.PathLike, line: int, field_name: str, message: str) -> None:
        self.path, self.line, self.field = str(path), line, field_name
        super().__init__(f"{path}:{line}: field {field_name!r}: {message}")

    @classmethod
    def for_file(cls, message: str) -> DataError:
        """A problem of a whole file (not one row): ``message`` already names the file."""
        error = cls.__new__(cls)
        error.path, error.line, error.field = "", 0, ""
        ValueError.__init__(error, message)
        return error


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.75) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name`` (case, ``-`` and ``_`` aside), else ``""``."""
    normal = {k.lower().replace("-", "_"): k for k in known}
    close = difflib.get_close_matches(name.lower().replace("-", "_"), list(normal), n=1, cutoff=cutoff)
    return f" (did you mean {normal[close[0]]!r}?)" if close else ""


def _decode(raw: bytes, path: str | os.PathLike, number: int) -> str | DataError:
    """One line as text, or the DataError saying why it is not UTF-8 (a UTF-8 byte-order mark is allowed)."""
    if number == 1:
        raw = raw.removeprefix(codecs.BOM_UTF8)
    if b"\x00" in raw:  # UTF-16 text (Windows PowerShell's ">" writes it): NUL bytes between the characters
        return DataError(path, number, "<row>", "has NUL bytes: UTF-16 text? save the file as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 1].hex()
        return DataError(
            path, number, "<row>", f"not UTF-8 text (byte 0x{bad} at column {error.start + 1}); save as UTF-8"
        )


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """``(line number, row)`` for every non-empty line of a JSON Lines file; a line that is not a JSON object comes
    as its :class:`DataError` instead of a row, so a caller can raise it or skip it. Lines are UTF-8 (a byte-order
    mark at the start is allowed); a UTF-16 file is one error at its first line, as none of its lines can be read."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                yield number, DataError(path, 1, "<row>", "UTF-16 text (byte-order mark); save the file as UTF-8")
                return
            line = _decode(raw, path, number)
            if isinstance(line, DataError):
                yield number, line
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, DataError(path, number, "<row>", f"invalid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(row, dict):
                yield number, DataError(path, number, "<row>", f"expected a JSON object, got {type(row).__name__}")
                continue
            yield number, row
