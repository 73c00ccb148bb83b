"""One result of a search: the item's id, its calibrated score and what the index stored about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchHit:
    """A ranked result of :meth:`SearchIndex.query <st_unirep.search.index.SearchIndex.query>`.

    Args:
        id: The corpus item's id.
        score: The calibrated score :math:`(\\cos + 1) / 2 \\in [0, 1]` of the full-width vectors.
        cosine: The cosine itself.
        source: Where the item came from (file path or ``file.jsonl:line``).
        text: The item's text, if it has one.
        image: The item's image path, if it has one.
        metadata: The extra fields of the item's JSON Lines row (empty for folder corpora).
        corpus: The corpus (namespace) the item belongs to (by default the folder's or ``.jsonl``'s absolute path).
    """

    id: str
    score: float
    cosine: float
    source: str = ""
    text: str | None = None
    image: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    corpus: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "cosine": self.cosine,
            "source": self.source,
            "text": self.text,
            "image": self.image,
            "metadata": self.metadata,
            "corpus": self.corpus,
        }
