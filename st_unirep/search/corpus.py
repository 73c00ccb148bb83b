"""A search corpus read lazily from a folder of images and text files, a JSON Lines file, or loose Python values."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

from st_unirep.errors import iter_jsonl
from st_unirep.search.corpus_item import CorpusItem

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".md")
LOOSE_ID_LENGTH = 16  # hex digits of the content digest that name a loose item without an id (64 bits)


class Corpus:
    """The items of a corpus, read one at a time (nothing is held in memory but the current item).

    Three layouts:

    * **a folder**: every ``.jpg/.jpeg/.png/.webp/.gif/.bmp/.tif/.tiff`` file is an image item and every
      ``.txt``/``.md`` file a text item (UTF-8), searched recursively in path order; hidden files and folders
      and other suffixes are ignored. The item id is the path relative to the folder (``receipts/001.jpg``).
    * **a JSON Lines file**: one ``{"id", "text"?, "image"?, ...}`` object per line, at least one of ``text`` and
      ``image``; ``image`` is relative to the file's folder (or absolute); every other key is kept as metadata.
    * **loose values** (:meth:`from_items`): ``str`` (a text, never a file name), ``dict`` (a JSON Lines row whose
      ``id`` may be left out), ``pathlib.Path`` (an image or text file) or :class:`CorpusItem`.

    Every item belongs to the corpus's :attr:`namespace` (its point id is that of ``(namespace, id)``): by default
    the absolute path of the folder or ``.jsonl`` file, so two folders with the same relative names never overwrite
    each other, and re-indexing one removes the items that left it and nothing else. Name the namespace yourself
    (``namespace="receipts"``) to keep the ids when the folder moves.

    An entry that cannot become an item (unreadable file, empty or non-UTF-8 text, invalid JSON, missing id,
    missing image file, duplicate id) is not yielded; it is appended to :attr:`skipped` as ``(where, reason)``.
    Images are only read for their digest here; a file that is not a decodable image is caught by the encoder.

    Args:
        path: The folder or the ``.jsonl`` file.
        namespace: The corpus's name in the index (default: the resolved absolute path of ``path``).
    """

    def __init__(self, path: str | os.PathLike, namespace: str | None = None) -> None:
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
            raise FileNotFoundError(
                f"Corpus {str(self.path)!r} does not exist (expected a folder or a .jsonl file; to index loose "
                "texts, pass a list of them to SearchIndex.add)"
            )
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        self.namespace = self.path.resolve().as_posix() if namespace is None else namespace
        self.values: Iterable[Any] | None = None
        self.skipped: list[tuple[str, str]] = []

    @classmethod
    def from_items(cls, values: Iterable[Any], namespace: str = "") -> Corpus:
        """A corpus of loose values: ``str`` texts, ``dict`` rows, ``pathlib.Path`` files or ``CorpusItem``.

        A text or a row without ``"id"`` is named by its content (the first 16 hex digits of its digest), so adding
        it again finds it unchanged; a ``Path`` by its absolute path. A value of any other type raises ``TypeError``.
        Such a corpus is not a complete listing of its namespace: indexing it never removes other items.
        """
        if isinstance(values, (str, bytes, os.PathLike, dict)):
            raise TypeError(
                f"Corpus.from_items expects an iterable of items, got a single {type(values).__name__}; "
                "wrap it in a list (a str is a text, never a corpus path here)"
            )
        corpus = cls.__new__(cls)
        corpus.path, corpus.kind, corpus.namespace = Path.cwd(), "items", namespace
        corpus.values, corpus.skipped = values, []
        return corpus

    @property
    def complete(self) -> bool:
        """Whether iterating lists every item of the namespace (a folder or a ``.jsonl``, not loose values)."""
        return self.kind != "items"

    def total(self) -> int | None:
        """The number of entries if known without reading them (the progress bar's total), else ``None``."""
        if self.kind == "items":
            return len(self.values) if isinstance(self.values, Sized) else None
        return len(self)

    def __len__(self) -> int:
        """The number of entries (files with a known suffix, non-empty lines, or values of a sized iterable)."""
        if self.kind == "folder":
            return sum(1 for _ in self._files())
        if self.kind == "items":
            if not isinstance(self.values, Sized):
                raise TypeError("This corpus of loose values has no length (its iterable has none)")
            return len(self.values)
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if line.strip())

    def __iter__(self) -> Iterator[CorpusItem]:
        self.skipped = []
        iterators = {"folder": self._iter_folder, "jsonl": self._iter_jsonl, "items": self._iter_values}
        yield from iterators[self.kind]()

    # ------------------------------------------------------------------ folder
    def _files(self) -> Iterator[Path]:
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES + TEXT_SUFFIXES):
                    yield Path(root) / name

    def _iter_folder(self) -> Iterator[CorpusItem]:
        for file in self._files():
            item = self._file_item(file, file.relative_to(self.path).as_posix())
            if item is not None:
                yield item

    def _file_item(self, file: Path, item_id: str) -> CorpusItem | None:
        """The item of one image or text file, or None (and a :attr:`skipped` entry) if it cannot be one."""
        source = os.path.abspath(file)  # absolute, ".." removed, symlinks kept (a dangling one is reported as such)
        try:
            data = file.read_bytes()
        except OSError as error:
            return self._skip(source, f"unreadable file ({error.strerror or error})")
        if file.suffix.lower() in IMAGE_SUFFIXES:
            if not data:
                return self._skip(source, "empty image file")
            digest = CorpusItem.compute_digest(None, data, {})
            return CorpusItem(item_id, image=source, source=source, digest=digest, corpus=self.namespace)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._skip(source, "text file is not UTF-8")
        if not text.strip():
            return self._skip(source, "empty text file")
        digest = CorpusItem.compute_digest(text, None, {})
        return CorpusItem(item_id, text=text, source=source, digest=digest, corpus=self.namespace)

    # ------------------------------------------------------------------ JSON Lines
    def _iter_jsonl(self) -> Iterator[CorpusItem]:
        seen: set[str] = set()
        for number, row in iter_jsonl(self.path):
            where = f"{self.path.resolve()}:{number}"
            if isinstance(row, ValueError):
                self._skip(where, str(row).split(": ", 1)[-1])
                continue
            item = self._row_to_item(row, where, seen, self.path.parent, id_required=True)
            if item is not None:
                yield item

    def _row_to_item(
        self, row: dict[str, Any], where: str, seen: set[str], base: Path, *, id_required: bool
    ) -> CorpusItem | None:
        item_id = row.get("id")
        if (id_required or item_id is not None) and (
            isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or not str(item_id).strip()
        ):
            return self._skip(where, f"field 'id': expected a non-empty string or an int, got {item_id!r}")
        text, image = row.get("text"), row.get("image")
        if text is None and image is None:
            return self._skip(where, "row has neither 'text' nor 'image'")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            return self._skip(where, f"field 'text': expected a non-empty string, got {text!r}"[:200])
        image_bytes = None
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                return self._skip(where, f"field 'image': expected a path string, got {image!r}"[:200])
            image_path = (base / image).resolve()
            try:
                image_bytes = image_path.read_bytes()
            except OSError as error:
                return self._skip(where, f"field 'image': unreadable file {str(image_path)!r} ({error.strerror})")
            if not image_bytes:
                return self._skip(where, f"field 'image': empty image file {str(image_path)!r}")
            image = str(image_path)
        metadata = {key: value for key, value in row.items() if key not in ("id", "text", "image")}
        digest = CorpusItem.compute_digest(text, image_bytes, metadata)
        item_id = digest[:LOOSE_ID_LENGTH] if item_id is None else str(item_id)
        if item_id in seen:
            return self._skip(where, f"duplicate id {item_id!r} (the first item with it is indexed)")
        seen.add(item_id)
        return CorpusItem(
            item_id, text=text, image=image, source=where, metadata=metadata, digest=digest, corpus=self.namespace
        )

    # ------------------------------------------------------------------ loose values
    def _iter_values(self) -> Iterator[CorpusItem]:
        seen: set[str] = set()
        for number, value in enumerate(self.values):
            where = f"items[{number}]"
            if isinstance(value, CorpusItem):
                item = value
            elif isinstance(value, str):
                item = self._row_to_item({"text": value}, where, seen, self.path, id_required=False)
            elif isinstance(value, dict):
                item = self._row_to_item(value, where, seen, self.path, id_required=False)
            elif isinstance(value, os.PathLike):
                path = Path(value)
                item = self._file_item(path, path.resolve().as_posix())
                if item is not None and item.id in seen:
                    item = self._skip(item.source, f"duplicate id {item.id!r} (the first item with it is indexed)")
                if item is not None:
                    seen.add(item.id)
            else:
                raise TypeError(
                    f"{where} is a {type(value).__name__}; SearchIndex.add takes a str (a text), a dict "
                    "({'id'?, 'text'?, 'image'?, ...metadata}), a pathlib.Path (an image or text file) or a CorpusItem"
                )
            if item is not None:
                yield item

    def _skip(self, where: str, reason: str) -> None:
        logger.info("Skipping %s: %s", where, reason)
        self.skipped.append((where, reason))
        return None
