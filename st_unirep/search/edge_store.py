"""An st_unirep search collection in Qdrant Edge: Qdrant's own engine (HNSW, quantization, WAL) in this process."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge
from qdrant_client import models

from st_unirep.search.edge_filter import to_edge_filter
from st_unirep.search.index_params import IndexParams

META_FILE = "index.json"  # the collection's metadata (Qdrant Edge shards have none of their own)
SHARD_DIR = "shard"


class IndexBusyError(RuntimeError):
    """The index folder is open in another process (Qdrant Edge allows one process per index)."""


class EdgeStore:
    """One collection of an embedded index: ``FOLDER/COLLECTION/index.json`` and the shard in ``.../shard/``.

    Two named cosine vectors per point: ``"prefix"`` (HNSW graph, optionally int8-quantised) and ``"full"`` (no
    graph, memory-mapped from disk when ``full_on_disk``), plus a keyword payload index on ``"corpus"``.

    Concurrency: one process opens an index at a time (the engine locks its write-ahead log); within that process
    one :class:`~st_unirep.search.SearchIndex` serves a writer thread and any number of query threads at once.
    Another process gets :class:`IndexBusyError`.

    Args:
        folder: The index folder (``None``: a temporary folder removed by :meth:`close`, for ``":memory:"``).
        collection: The collection's subfolder name.
    """

    def __init__(self, folder: str | os.PathLike | None, collection: str) -> None:
        self._temporary = folder is None
        root = Path(tempfile.mkdtemp(prefix="st_unirep-index-")) if folder is None else Path(folder)
        self.root = root
        self.path = root / collection
        self.collection = collection
        self.shard: edge.EdgeShard | None = None
        self._meta: dict[str, Any] | None = None
        if self.exists():
            self.shard = self._load()

    def where(self) -> str:
        return "a temporary in-memory index" if self._temporary else repr(str(self.root))

    def exists(self) -> bool:
        return (self.path / META_FILE).is_file() and (self.path / SHARD_DIR).is_dir()

    def _load(self) -> edge.EdgeShard:
        try:
            return edge.EdgeShard.load(str(self.path / SHARD_DIR))
        except Exception as error:  # the binding raises a bare Exception with the engine's message
            if "WouldBlock" in str(error):
                raise IndexBusyError(
                    f"The search index {str(self.root)!r} is open in another process; the embedded engine (Qdrant "
                    "Edge) lets one process open an index at a time. Query it from that process (one SearchIndex "
                    "serves a writer and many reader threads), wait for it to finish, or serve the index from a "
                    "Qdrant server (--url; `python -m st_unirep.search copy` moves it there)."
                ) from None
            raise RuntimeError(f"Cannot open the search index at {str(self.path)!r}: {error}") from None

    # ------------------------------------------------------------------ collection
    def create(self, metadata: dict[str, Any], params: IndexParams) -> None:
        """Create the shard for ``metadata["dim"]``-d full and ``metadata["prefix_dim"]``-d prefix vectors."""
        cold = edge.Memory.Cold if params.full_on_disk else edge.Memory.Cached
        quantization = None
        if params.quantization == "int8":
            quantization = edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=0.99)
        config = edge.EdgeConfig(
            vectors={
                "prefix": edge.EdgeVectorParams(
                    size=int(metadata["prefix_dim"]),
                    distance=edge.Distance.Cosine,
                    quantization_config=quantization,
                    # Quantized, the graph is searched on the int8 copies (in RAM) and never rescored with the float
                    # prefixes (the full vectors rescore): those may stay on disk.
                    memory=edge.Memory.Cold if quantization is not None else edge.Memory.Cached,
                ),
                "full": edge.EdgeVectorParams(
                    size=int(metadata["dim"]),
                    distance=edge.Distance.Cosine,
                    memory=cold,
                    # m = 0: no graph on the full vectors, which only rescore the k' candidates.
                    hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=params.ef_construct, full_scan_threshold=10),
                ),
            },
            hnsw_config=edge.HnswIndexConfig(
                m=params.m, ef_construct=params.ef_construct, full_scan_threshold=params.indexing_threshold_kb
            ),
            optimizers=edge.EdgeOptimizersConfig(indexing_threshold=params.indexing_threshold_kb),
        )
        self.path.mkdir(parents=True, exist_ok=True)
        self.shard = edge.EdgeShard.create(str(self.path / SHARD_DIR), config)
        self.shard.update(edge.UpdateOperation.create_field_index("corpus", edge.PayloadSchemaType.Keyword))
        self.write_metadata({**metadata, "params": params.to_dict()})

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = json.loads((self.path / META_FILE).read_text(encoding="utf-8"))
        return dict(self._meta)

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata file atomically (a crash leaves the old or the new one, never half of it)."""
        temporary = self.path / (META_FILE + ".tmp")
        temporary.write_text(json.dumps(metadata, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, self.path / META_FILE)
        self._meta = dict(metadata)

    def params(self) -> IndexParams:
        return IndexParams.from_dict(self.metadata().get("params"))

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    def optimize(self) -> bool:
        """Build the HNSW graph (and quantized copies) of what was added; blocks until done."""
        return bool(self.shard.optimize())

    # ------------------------------------------------------------------ points
    def count(self, query_filter: models.Filter | None = None) -> int:
        return int(self.shard.count(edge.CountRequest(exact=True, filter=to_edge_filter(query_filter))))

    def retrieve(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        records = self.shard.retrieve(
            list(ids), with_payload=edge.PayloadSelector.Include(list(fields)), with_vector=False
        )
        return {str(record.id): dict(record.payload or {}) for record in records}

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.shard.update(edge.UpdateOperation.overwrite_payload([point_id], payload))

    def upsert(self, ids: Sequence[str], full: np.ndarray, prefix: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [
            edge.Point(point_id, {"full": f, "prefix": p}, payload)
            for point_id, f, p, payload in zip(ids, full, prefix, payloads, strict=True)
        ]
        self.shard.update(edge.UpdateOperation.upsert_points(points))

    def delete(self, ids: Sequence[str]) -> None:
        self.shard.update(edge.UpdateOperation.delete_points(list(ids)))

    def scroll(
        self, query_filter: models.Filter | None = None, *, fields: Sequence[str] | bool = False, vectors: bool = False
    ) -> Iterator[tuple[str, dict[str, Any], dict[str, list[float]] | None]]:
        """Every matching point as (id, payload, vectors or None), in pages of 1,000."""
        with_payload = edge.PayloadSelector.Include(list(fields)) if isinstance(fields, list) else fields
        offset = None
        while True:
            records, offset = self.shard.scroll(
                edge.ScrollRequest(
                    offset=offset,
                    limit=1000,
                    filter=to_edge_filter(query_filter),
                    with_payload=with_payload,
                    with_vector=vectors,
                )
            )
            for record in records:
                yield str(record.id), dict(record.payload or {}), (record.vector if vectors else None)
            if offset is None:
                return

    # ------------------------------------------------------------------ search
    def search_batch(
        self,
        full: Sequence[np.ndarray],
        prefix: Sequence[np.ndarray] | None,
        *,
        limit: int,
        candidates: int,
        query_filter: models.Filter | None,
        score_threshold: float | None,
        hnsw_ef: int | None,
        with_payload: bool = True,
    ) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """Top ``limit`` by the full vector among the top ``candidates`` by the prefix (all points when ``prefix`` is
        None), per query, planned together by the engine (``hnsw_ef``: the prefix stage's)."""
        where = to_edge_filter(query_filter)
        requests = []
        for number, vector in enumerate(full):
            prefetches, search_params = None, None
            if prefix is None:
                search_params = edge.SearchParams(exact=True)
            else:
                stage = edge.SearchParams(
                    hnsw_ef=hnsw_ef,
                    # The full vectors rescore the candidates: rescoring int8 prefixes with float ones is wasted work.
                    quantization=edge.QuantizationSearchParams(rescore=False),
                )
                query = edge.Query.Nearest(np.asarray(prefix[number], dtype=np.float32), using="prefix")
                prefetches = [edge.Prefetch(limit=candidates, query=query, params=stage, filter=where)]
            requests.append(
                edge.QueryRequest(
                    limit=limit,
                    query=edge.Query.Nearest(np.asarray(vector, dtype=np.float32), using="full"),
                    prefetches=prefetches,
                    filter=where,
                    score_threshold=score_threshold,
                    params=search_params,
                    with_payload=with_payload,
                )
            )
        results = self.shard.query_batch(edge.QueryBatchRequest(requests))
        return [[(str(p.id), float(p.score), dict(p.payload or {})) for p in points] for points in results]
