"""The engine knobs of a search index: the HNSW graph on the prefix vectors, quantization, where vectors live."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

QUANTIZATIONS = ("none", "int8")


@dataclass(frozen=True)
class IndexParams:
    """How the index stores and searches its vectors (defaults measured by ``bench/search_funnel.py``).

    The first stage of a query searches an HNSW graph built on the ``"prefix"`` vectors; the ``"full"`` vectors
    have no graph and are read only for the k′ candidates (rescoring), so they may stay on disk.

    Build-time fields (``m``, ``ef_construct``, ``quantization``, ``full_on_disk``, ``indexing_threshold_kb``) are
    recorded in the index and fixed when it is created; ``hnsw_ef`` is a query-time default that any query can
    override.
    """

    m: int = 16  # HNSW edges per node: more = better recall and a bigger graph, slower build
    ef_construct: int = 100  # candidate list while building the graph: more = better graph, slower build
    hnsw_ef: int = 128  # candidate list while searching (at least k′ is always used): more = better recall, slower
    quantization: str = "none"  # "int8": the prefix graph is searched on int8 copies (4× less RAM); k′ rescored
    full_on_disk: bool = True  # full vectors memory-mapped and read on demand (only the k′ candidates are read)
    indexing_threshold_kb: int = 10_000  # segments below this many KB of vectors are scanned exactly, not indexed

    def __post_init__(self) -> None:
        for name in ("m", "ef_construct", "hnsw_ef", "indexing_threshold_kb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"IndexParams.{name} must be a positive int, got {value!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"IndexParams.quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if not isinstance(self.full_on_disk, bool):
            raise ValueError(f"IndexParams.full_on_disk must be a bool, got {self.full_on_disk!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> IndexParams:
        """The params recorded in an index (fields an older index lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in (values or {}).items() if key in known})

    def query_ef(self, candidates: int, hnsw_ef: int | None = None) -> int:
        """The ef of one query: the given or default ef, never below the k′ it must return."""
        return max(candidates, self.hnsw_ef if hnsw_ef is None else hnsw_ef)
