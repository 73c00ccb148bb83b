"""A search corpus read lazily from a folder of images and text files, or from a JSON Lines file."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from st_unirep.errors import iter_jsonl
from st_unirep.search.corpus_item import CorpusItem

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".md")


class Corpus:
    """The items of a corpus, read one at a time (nothing is held in memory but the current item).

    Two layouts:

    * **a folder**: every ``.jpg/.jpeg/.png/.webp/.gif/.bmp/.tif/.tiff`` file is an image item and every
      ``.txt``/``.md`` file a text item (UTF-8), searched recursively in path order; hidden files and folders
      and other suffixes are ignored. The item id is the path relative to the folder (``receipts/001.jpg``).
    * **a JSON Lines file**: one ``{"id", "text"?, "image"?, ...}`` object per line, at least one of ``text`` and
      ``image``; ``image`` is relative to the file's folder (or absolute); every other key is kept as metadata.

    An entry that cannot become an item (unreadable file, empty or non-UTF-8 text, invalid JSON, missing id,
    missing image file, duplicate id) is not yielded; it is appended to :attr:`skipped` as ``(where, reason)``.
    Images are only read for their digest here; a file that is not a decodable image is caught by the encoder.

    Args:
        path: The folder or the ``.jsonl`` file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "folder"
        elif self.path.is_file() and self.path.suffix.lower() in (".jsonl", ".json"):
            self.kind = "jsonl"
        elif self.path.exists():
            raise ValueError(
                f"Corpus {str(self.path)!r} is neither a folder nor a JSON Lines (.jsonl) file of "
                '{"id", "text"?, "image"?} rows'
            )
        else:
            raise FileNotFoundError(f"Corpus {str(self.path)!r} does not exist")
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        """The number of entries (files with a known suffix, or non-empty lines): the progress bar's total."""
        if self.kind == "folder":
            return sum(1 for _ in self._files())
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if line.strip())

    def __iter__(self) -> Iterator[CorpusItem]:
        self.skipped = []
        yield from self._iter_folder() if self.kind == "folder" else self._iter_jsonl()

    # ------------------------------------------------------------------ folder
    def _files(self) -> Iterator[Path]:
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES + TEXT_SUFFIXES):
                    yield Path(root) / name

    def _iter_folder(self) -> Iterator[CorpusItem]:
        for file in self._files():
            item_id = file.relative_to(self.path).as_posix()
            source = os.path.abspath(file)  # absolute, ".." removed, symlinks kept (a dangling one is reported as such)
            try:
                data = file.read_bytes()
            except OSError as error:
                self._skip(source, f"unreadable file ({error.strerror or error})")
                continue
            if file.suffix.lower() in IMAGE_SUFFIXES:
                if not data:
                    self._skip(source, "empty image file")
                    continue
                digest = CorpusItem.compute_digest(None, data, {})
                yield CorpusItem(item_id, image=source, source=source, digest=digest)
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._skip(source, "text file is not UTF-8")
                continue
            if not text.strip():
                self._skip(source, "empty text file")
                continue
            yield CorpusItem(item_id, text=text, source=source, digest=CorpusItem.compute_digest(text, None, {}))

    # ------------------------------------------------------------------ JSON Lines
    def _iter_jsonl(self) -> Iterator[CorpusItem]:
        seen: set[str] = set()
        for number, row in iter_jsonl(self.path):
            where = f"{self.path.resolve()}:{number}"
            if isinstance(row, ValueError):
                self._skip(where, str(row).split(": ", 1)[-1])
                continue
            item = self._row_to_item(row, where, seen)
            if item is not None:
                yield item

    def _row_to_item(self, row: dict[str, Any], where: str, seen: set[str]) -> CorpusItem | None:
        item_id = row.get("id")
        if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or not str(item_id).strip():
            return self._skip(where, f"field 'id': expected a non-empty string or an int, got {item_id!r}")
        item_id = str(item_id)
        if item_id in seen:
            return self._skip(where, f"duplicate id {item_id!r} (the first row with it is indexed)")
        text, image = row.get("text"), row.get("image")
        if text is None and image is None:
            return self._skip(where, "row has neither 'text' nor 'image'")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            return self._skip(where, f"field 'text': expected a non-empty string, got {text!r}"[:200])
        image_bytes = None
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                return self._skip(where, f"field 'image': expected a path string, got {image!r}"[:200])
            image_path = (self.path.parent / image).resolve()
            try:
                image_bytes = image_path.read_bytes()
            except OSError as error:
                return self._skip(where, f"field 'image': unreadable file {str(image_path)!r} ({error.strerror})")
            if not image_bytes:
                return self._skip(where, f"field 'image': empty image file {str(image_path)!r}")
            image = str(image_path)
        metadata = {key: value for key, value in row.items() if key not in ("id", "text", "image")}
        seen.add(item_id)
        digest = CorpusItem.compute_digest(text, image_bytes, metadata)
        return CorpusItem(item_id, text=text, image=image, source=where, metadata=metadata, digest=digest)

    def _skip(self, where: str, reason: str) -> None:
        logger.info("Skipping %s: %s", where, reason)
        self.skipped.append((where, reason))
        return None
