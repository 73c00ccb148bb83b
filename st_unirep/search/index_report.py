"""What one indexing run did: items added, updated, unchanged, removed and skipped (with where and why)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IndexReport:
    """The summary of :meth:`SearchIndex.add <st_unirep.search.index.SearchIndex.add>`.

    Args:
        added: Items that were not in the index and now are.
        updated: Items whose id was in the index with other content (or ``force``); their point was overwritten.
        unchanged: Items already in the index with the same content digest; not encoded again.
        removed: Items of the same corpus (namespace) that were in the index but are no longer in the corpus, or
            could not be indexed this time; their points were deleted. Only a complete corpus (a folder or a
            ``.jsonl``) removes anything, and only after a full pass.
        skipped: ``(where, reason)`` for every corpus entry that could not be indexed (unreadable path, empty text,
            corrupt or oversized image, invalid row); every other item was still indexed.
        total: Points in the collection after the run.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0

    @property
    def indexed(self) -> int:
        """Items encoded and written by this run."""
        return self.added + self.updated

    def __str__(self) -> str:
        lines = [
            f"indexed {self.indexed} item(s) ({self.added} new, {self.updated} updated), {self.unchanged} unchanged, "
            f"{self.removed} removed, {len(self.skipped)} skipped; {self.total} in the index"
        ]
        lines += [f"  skipped {where}: {reason}" for where, reason in self.skipped]
        return "\n".join(lines)
