"""The error for a bad row in a data file."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A bad row in a data file: ``file:line: field 'name': what was expected, what was found``."""

    def __init__(self, path: str | os.PathLike, line: int, field_name: str, message: str) -> None:
        self.path, self.line, self.field = str(path), line, field_name
        super().__init__(f"{path}:{line}: field {field_name!r}: {message}")
