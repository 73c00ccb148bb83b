"""The real text corpus of the search benchmark: every distinct text of ``../shared/data`` (train + dev).

Texts: both sentences of every pair set (stsb_en, stsb_zh, sick_en, vnpara_vi), the queries and passages of the
retrieval sets (viquad_vi, viqa_regwiki_vi), the captions of vicaption_vi and the transcribed text of the
sroie_receipts receipts; each distinct string once, in the order met. Queries with a gold item: retrieval questions
(gold: their judged passage), paraphrase pairs (vnpara_vi label 1: sentence2 for sentence1) and near-identical
graded pairs (stsb ≥ 4.5 of 5, sick ≥ 4.5 of 5); a query's own text is in the corpus too, as in "find similar".
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAIR_SETS = {"stsb_en": ("score", 4.5), "stsb_zh": ("score", 4.5), "sick_en": ("score", 4.5), "vnpara_vi": ("label", 1)}
RETRIEVAL_SETS = ("viquad_vi", "viqa_regwiki_vi")


@dataclass
class RealCorpus:
    texts: list[str]  # every distinct text; its position is its item id
    queries: list[int]  # item ids used as queries
    gold: list[int]  # the relevant item id per query


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def collect(data: Path, max_queries: int = 1000, seed: int = 0) -> RealCorpus:
    """The corpus and a seeded sample of at most ``max_queries`` gold queries."""
    position: dict[str, int] = {}

    def add(text: str) -> int:
        text = text.strip()
        return position.setdefault(text, len(position)) if text else -1

    pairs: list[tuple[int, int]] = []
    for name, (field, threshold) in PAIR_SETS.items():
        for split in ("train", "dev"):
            for row in _rows(data / name / f"{split}.jsonl"):
                a, b = add(row["sentence1"]), add(row["sentence2"])
                if float(row.get(field, 0)) >= threshold and a != b and min(a, b) >= 0:
                    pairs.append((a, b))
    for name in RETRIEVAL_SETS:
        for split in ("train", "dev"):
            folder = data / name / split
            passages = {row["id"]: add(row["text"]) for row in _rows(folder / "corpus.jsonl")}
            questions = {row["id"]: add(row["text"]) for row in _rows(folder / "queries.jsonl")}
            for row in _rows(folder / "qrels.jsonl"):
                if row["query_id"] in questions and row["doc_id"] in passages:
                    pairs.append((questions[row["query_id"]], passages[row["doc_id"]]))
    for row in _rows(data / "vicaption_vi" / "dev" / "captions.jsonl"):
        add(row["caption"])
    for row in _rows(data / "sroie_receipts" / "dev" / "manifest.jsonl"):
        add(row["full_text"])
    pairs = list(dict.fromkeys(pairs))
    random.Random(seed).shuffle(pairs)
    chosen = pairs[:max_queries]
    return RealCorpus(list(position), [q for q, _ in chosen], [g for _, g in chosen])


def embed(model, texts: list[str], cache_dir: Path, model_name: str, batch_size: int = 64) -> np.ndarray:
    """Unit-norm ``(n, d)`` float32 embeddings of ``texts`` (cached in ``cache_dir`` by model name and texts)."""
    key = hashlib.sha256((model_name + "\0" + "\0".join(texts)).encode()).hexdigest()[:16]
    path = cache_dir / f"embeddings-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=True
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return np.load(path)
