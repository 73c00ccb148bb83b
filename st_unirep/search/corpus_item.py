"""One item of a search corpus: a text, an image or both, with its corpus, id, source and metadata."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

POINT_NAMESPACE = uuid.UUID("5b0f4c8e-8a8e-4a51-9d57-3f0c1c2f6a10")
"""uuid5 namespace of point ids: the same (corpus, id) always gives the same point (re-indexing updates, never adds)."""


@dataclass(frozen=True)
class CorpusItem:
    """A text, an image or a text + image pair to index.

    Args:
        id: The item's id, unique within its corpus (a folder corpus uses the path relative to the folder).
        text: The text to embed, or ``None``.
        image: Absolute path of the image to embed, or ``None``.
        source: Where the item came from: a file path, or ``file.jsonl:line`` for a JSON Lines row.
        metadata: Any other JSON-serialisable fields (JSON Lines rows keep their extra keys here).
        digest: SHA-256 of the content (text, image bytes, metadata); re-indexing skips items whose stored digest
            is the same. :class:`~st_unirep.search.corpus.Corpus` computes it while reading.
        corpus: The corpus (namespace) the item belongs to: by default a folder's or ``.jsonl`` file's absolute
            path, so two folders with the same relative names are different items; ``""`` for loose items.
    """

    id: str
    text: str | None = None
    image: str | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    corpus: str = ""

    @property
    def point_id(self) -> str:
        """The deterministic Qdrant point id of this item: ``uuid5(POINT_NAMESPACE, json.dumps([corpus, id]))``."""
        return point_id(self.corpus, self.id)

    def to_input(self) -> dict[str, str]:
        """The model input: ``{"text"}``, ``{"image"}`` or both (a dict, so a text is never read as a file name)."""
        model_input = {}
        if self.text is not None:
            model_input["text"] = self.text
        if self.image is not None:
            model_input["image"] = self.image
        return model_input

    def payload(self) -> dict[str, Any]:
        """What the index stores beside the vectors (and returns with every hit)."""
        return {
            "id": self.id,
            "corpus": self.corpus,
            "text": self.text,
            "image": self.image,
            "source": self.source,
            "metadata": self.metadata,
            "digest": self.digest,
        }

    @staticmethod
    def compute_digest(text: str | None, image_bytes: bytes | None, metadata: dict[str, Any]) -> str:
        """SHA-256 over the text, the image bytes and the metadata (canonical JSON)."""
        sha = hashlib.sha256()
        for part in (
            (text or "").encode("utf-8"),
            image_bytes or b"",
            json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        ):
            sha.update(len(part).to_bytes(8, "little"))
            sha.update(part)
        return sha.hexdigest()


def point_id(corpus: str, item_id: str) -> str:
    """The Qdrant point id of item ``item_id`` of corpus ``corpus`` (JSON keeps the pair unambiguous)."""
    return str(uuid.uuid5(POINT_NAMESPACE, json.dumps([corpus, item_id], ensure_ascii=False)))
