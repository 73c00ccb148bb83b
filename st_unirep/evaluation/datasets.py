"""Readers for the evaluation data layouts: any folder of dataset folders laid out as below, any split.

Recognised per dataset folder ``<root>/<name>``:

- ``<split>.jsonl`` with ``{"sentence1", "sentence2", "score"}`` rows: graded pairs (score range by name, see
  ``SCORE_RANGES``, else the data's own min/max);
- ``<split>.jsonl`` with ``{"sentence1", "sentence2", "label": 0|1}`` rows: binary pairs;
- ``<split>/queries.jsonl`` + ``corpus.jsonl`` + ``qrels.jsonl``: text retrieval;
- ``<split>/captions.jsonl`` (``{"image", "caption"}``): caption ↔ image retrieval;
- ``<split>/manifest.jsonl`` (``{"image", "full_text", ...}``): receipt text ↔ image retrieval.

A malformed file raises ``DataError`` naming file, line and field.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from st_unirep.errors import DataError, iter_jsonl

logger = logging.getLogger(__name__)

SCORE_RANGES = {"stsb_en": (0.0, 5.0), "stsb_zh": (0.0, 5.0), "sick_en": (1.0, 5.0)}


@dataclass
class PairData:
    """Sentence pairs with a graded score (``kind="graded"``) or a 0/1 label (``kind="binary"``)."""

    name: str
    kind: str
    sentences1: list[str]
    sentences2: list[str]
    gold: list[float]
    score_range: tuple[float, float] = (0.0, 1.0)


@dataclass
class RetrievalData:
    """Queries against a corpus; ``relevant[i]`` holds the corpus indices relevant to query i. ``image_corpus``:
    the corpus items are image paths (and the reverse direction, image → text, is evaluated too)."""

    name: str
    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]
    image_corpus: bool = False
    kind: str = field(default="retrieval")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in iter_jsonl(path):
        if isinstance(row, DataError):
            raise row
        yield number, row


def _text(row: dict, key: str, where: tuple[Path, int]) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(*where, key, f"expected a non-empty string, got {value!r}"[:200])
    return value


def _number(row: dict, key: str, where: tuple[Path, int]) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise DataError(*where, key, f"expected a number, got {value!r}")
    return float(value)


def read_pairs(path: Path, name: str, score_range: tuple[float, float] | None = None) -> PairData:
    """Graded or binary pairs; a graded set's range is ``score_range``, else ``SCORE_RANGES[name]``, else its own."""
    s1, s2, gold, kind = [], [], [], None
    for number, row in _rows(path):
        where = (path, number)
        row_kind = "graded" if "score" in row else "binary" if "label" in row else None
        if row_kind is None:
            raise DataError(*where, "score", "expected a 'score' (graded pairs) or a 'label' (binary pairs)")
        if kind is not None and row_kind != kind:
            raise DataError(*where, "score" if row_kind == "graded" else "label", f"mixes {row_kind} and {kind} rows")
        kind = row_kind
        s1.append(_text(row, "sentence1", where))
        s2.append(_text(row, "sentence2", where))
        value = _number(row, "score" if kind == "graded" else "label", where)
        if kind == "binary" and value not in (0.0, 1.0):
            raise DataError(*where, "label", f"expected 0 or 1, got {value}")
        gold.append(value)
    if not gold:
        raise DataError(path, 0, "<file>", "no rows")
    if kind == "graded":
        known = score_range is not None or name in SCORE_RANGES
        score_range = score_range or SCORE_RANGES.get(name, (min(gold), max(gold)))
        lo, hi = score_range
        bad = next((i for i, g in enumerate(gold) if not lo <= g <= hi), None)
        if bad is not None:
            raise DataError(path, bad + 1, "score", f"expected a number in [{lo}, {hi}], got {gold[bad]}")
        if not known:
            logger.warning("%s: unknown score range, using the data's own [%s, %s]", name, lo, hi)
    else:
        score_range = (0.0, 1.0)
    return PairData(name, kind, s1, s2, gold, score_range)


def read_text_retrieval(folder: Path, name: str) -> RetrievalData:
    queries = {
        _text(r, "id", (folder / "queries.jsonl", n)): _text(r, "text", (folder / "queries.jsonl", n))
        for n, r in _rows(folder / "queries.jsonl")
    }
    corpus = {
        _text(r, "id", (folder / "corpus.jsonl", n)): _text(r, "text", (folder / "corpus.jsonl", n))
        for n, r in _rows(folder / "corpus.jsonl")
    }
    doc_index = {doc_id: i for i, doc_id in enumerate(corpus)}
    relevant: dict[str, set[int]] = {}
    qrels = folder / "qrels.jsonl"
    for number, row in _rows(qrels):
        where = (qrels, number)
        query_id, doc_id = _text(row, "query_id", where), _text(row, "doc_id", where)
        if query_id not in queries:
            raise DataError(*where, "query_id", f"{query_id!r} is not in queries.jsonl")
        if doc_id not in doc_index:
            raise DataError(*where, "doc_id", f"{doc_id!r} is not in corpus.jsonl")
        if row.get("score", 1) > 0:
            relevant.setdefault(query_id, set()).add(doc_index[doc_id])
    judged = [q for q in queries if q in relevant]
    return RetrievalData(name, [queries[q] for q in judged], list(corpus.values()), [relevant[q] for q in judged])


def read_image_retrieval(path: Path, name: str, text_key: str) -> RetrievalData:
    images: dict[str, int] = {}
    texts, relevant = [], []
    for number, row in _rows(path):
        where = (path, number)
        image = (path.parent / _text(row, "image", where)).resolve()
        if not image.is_file():
            raise DataError(*where, "image", f"image file {str(image)!r} does not exist")
        index = images.setdefault(str(image), len(images))
        texts.append(_text(row, text_key, where))
        relevant.append({index})
    return RetrievalData(name, texts, list(images), relevant, image_corpus=True)


def dataset_reader(folder: Path, split: str = "dev") -> Callable[[], PairData | RetrievalData] | None:
    """The reader of one dataset folder for ``split`` by the layout rules (pairs file, text retrieval folder,
    captions, manifest), or None when the folder has no such split. Reading is deferred, so a caller can read each
    dataset on its own (and keep the others' results when one fails)."""
    name, split_dir = folder.name, folder / split
    if (folder / f"{split}.jsonl").is_file():
        return functools.partial(read_pairs, folder / f"{split}.jsonl", name)
    if (split_dir / "queries.jsonl").is_file():
        return functools.partial(read_text_retrieval, split_dir, name)
    if (split_dir / "captions.jsonl").is_file():
        return functools.partial(read_image_retrieval, split_dir / "captions.jsonl", name, "caption")
    if (split_dir / "manifest.jsonl").is_file():
        return functools.partial(read_image_retrieval, split_dir / "manifest.jsonl", name, "full_text")
    return None


def discover(root: str | Path, split: str = "dev") -> list[PairData | RetrievalData]:
    """Every dataset under ``root`` that has the ``split``, in folder-name order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Evaluation data folder {str(root)!r} does not exist")
    readers = [dataset_reader(folder, split) for folder in sorted(p for p in root.iterdir() if p.is_dir())]
    found = [reader() for reader in readers if reader is not None]
    if not found:
        raise ValueError(f"No dataset with a {split!r} split under {str(root)!r} (see st_unirep.evaluation.datasets)")
    return found
