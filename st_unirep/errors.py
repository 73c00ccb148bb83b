"""The error for a bad row in a data file, and the JSON Lines reader that raises it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """``(line number, row)`` for every non-empty line of a JSON Lines file; a line that is not a JSON object comes
    as its :class:`DataError` instead of a row, so a caller can raise it or skip it."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.start + 1].hex()
                yield (
                    number,
                    DataError(
                        path,
                        number,
                        "<row>",
                        f"not UTF-8 text (byte 0x{bad} at column {error.start + 1}); save as UTF-8",
                    ),
                )
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
