"""An st_unirep search collection on a Qdrant server or cluster, through ``qdrant-client`` (same layout as Edge)."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ApiException

from st_unirep.search.index_params import IndexParams

logger = logging.getLogger(__name__)


def connect_server(url: str) -> QdrantClient:
    """A client of the server at ``url``, contacted once: ``ConnectionError`` naming the URL if that fails.

    The API key comes from ``QDRANT_API_KEY``. qdrant-client's own version check runs in a thread and only warns
    "Failed to obtain server version" for an unreachable server; this one runs here, so the user gets one error line.
    """
    client = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"), check_compatibility=False)
    try:
        server = client.info().version
        client.get_collections()  # the API key, if the server wants one
    except (ApiException, OSError) as error:
        client.close()
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ConnectionError(
            f"Cannot reach the Qdrant server at {url!r} ({reason}); is it running, and are the URL and "
            "QDRANT_API_KEY right?"
        ) from None
    try:
        ours, theirs = Version(importlib.metadata.version("qdrant-client")), Version(server)
    except (InvalidVersion, TypeError, importlib.metadata.PackageNotFoundError):
        return client
    if ours.major != theirs.major or abs(ours.minor - theirs.minor) > 1:  # qdrant-client's own rule
        logger.warning("qdrant-client %s may not work with the Qdrant server %s at %s", ours, theirs, url)
    return client


class ServerStore:
    """One collection in a Qdrant server/cluster (or any ``QdrantClient``, e.g. qdrant-client's local mode).

    The same two named vectors as :class:`~st_unirep.search.edge_store.EdgeStore` (``"prefix"`` with the HNSW
    graph, ``"full"`` on disk without one), the st_unirep metadata in the collection's own metadata, a keyword
    payload index on ``"corpus"``.

    Args:
        client: The client (closed by :meth:`close` when ``owns_client``).
        collection: The collection name.
        where: How to name the location in messages.
    """

    def __init__(self, client: QdrantClient, collection: str, *, where: str, owns_client: bool = True) -> None:
        self.client = client
        self.collection = collection
        self._where = where
        self._owns_client = owns_client

    def where(self) -> str:
        return self._where

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def create(self, metadata: dict[str, Any], params: IndexParams) -> None:
        quantization = None
        if params.quantization == "int8":
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
        self.client.create_collection(
            self.collection,
            vectors_config={
                "prefix": models.VectorParams(
                    size=int(metadata["prefix_dim"]),
                    distance=models.Distance.COSINE,
                    hnsw_config=models.HnswConfigDiff(m=params.m, ef_construct=params.ef_construct),
                    quantization_config=quantization,
                    on_disk=quantization is not None,  # the int8 copies stay in RAM; the floats are never read
                ),
                # The full vector only rescores k' candidates: no graph, and it may live on disk.
                "full": models.VectorParams(
                    size=int(metadata["dim"]),
                    distance=models.Distance.COSINE,
                    on_disk=params.full_on_disk,
                    hnsw_config=models.HnswConfigDiff(m=0),
                ),
            },
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=params.indexing_threshold_kb),
            metadata={**metadata, "params": params.to_dict()},
        )
        with warnings.catch_warnings():  # local mode: "Payload indexes have no effect in the local Qdrant"
            warnings.filterwarnings("ignore", message="Payload indexes have no effect", category=UserWarning)
            self.client.create_payload_index(self.collection, "corpus", models.PayloadSchemaType.KEYWORD)

    def metadata(self) -> dict[str, Any]:
        return dict(self.client.get_collection(self.collection).config.metadata or {})

    def params(self) -> IndexParams:
        return IndexParams.from_dict(self.metadata().get("params"))

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def optimize(self) -> bool:
        """A server builds its graphs in the background: nothing to wait for here."""
        return False

    def count(self, query_filter: models.Filter | None = None) -> int:
        return self.client.count(self.collection, count_filter=query_filter, exact=True).count

    def retrieve(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        records = self.client.retrieve(self.collection, list(ids), with_payload=list(fields), with_vectors=False)
        return {str(record.id): dict(record.payload or {}) for record in records}

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.client.overwrite_payload(self.collection, payload, points=[point_id], wait=True)

    def upsert(self, ids: Sequence[str], full: np.ndarray, prefix: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [
            models.PointStruct(id=point_id, vector={"full": f.tolist(), "prefix": p.tolist()}, payload=payload)
            for point_id, f, p, payload in zip(ids, full, prefix, payloads, strict=True)
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        self.client.delete(self.collection, models.PointIdsList(points=list(ids)), wait=True)

    def scroll(
        self, query_filter: models.Filter | None = None, *, fields: Sequence[str] | bool = False, vectors: bool = False
    ) -> Iterator[tuple[str, dict[str, Any], dict[str, list[float]] | None]]:
        """Every matching point as (id, payload, vectors or None), in pages of 1,000."""
        with_payload = models.PayloadSelectorInclude(include=list(fields)) if isinstance(fields, list) else fields
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, query_filter, limit=1000, offset=offset, with_payload=with_payload,
                with_vectors=vectors,
            )  # fmt: skip
            for record in records:
                yield str(record.id), dict(record.payload or {}), (record.vector if vectors else None)
            if offset is None:
                return

    def _request(self, full, prefix, *, limit, candidates, query_filter, score_threshold, hnsw_ef, with_payload=True):
        prefetch = None
        if prefix is not None:
            stage = models.SearchParams(
                hnsw_ef=hnsw_ef,
                quantization=models.QuantizationSearchParams(rescore=False),  # the full vectors rescore
            )
            prefetch = models.Prefetch(
                query=np.asarray(prefix).tolist(), using="prefix", limit=candidates, params=stage, filter=query_filter
            )
        return models.QueryRequest(
            query=np.asarray(full).tolist(),
            using="full",
            prefetch=prefetch,
            filter=query_filter,
            limit=limit,
            score_threshold=score_threshold,
            params=models.SearchParams(exact=True) if prefix is None else None,
            with_payload=with_payload,
        )

    def search_batch(self, full, prefix, **kwargs: Any) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """Top ``limit`` by the full vector among the top ``candidates`` by the prefix (all points when ``prefix`` is
        None), for several queries in one request."""
        requests = [
            self._request(vector, None if prefix is None else prefix[number], **kwargs)
            for number, vector in enumerate(full)
        ]
        responses = self.client.query_batch_points(self.collection, requests)
        return [[(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]
