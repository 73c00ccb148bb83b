"""Copy a search index between engines without re-encoding: embedded → Qdrant server/cluster, server → embedded,
and an index of qdrant-client's local mode (st_unirep < 0.6) → the embedded HNSW engine.

    python -m st_unirep.search copy --index search-index --to http://qdrant:6333
"""

from __future__ import annotations

import logging
import os
from itertools import islice

import numpy as np
from qdrant_client import QdrantClient
from tqdm.auto import tqdm

from st_unirep.search.index import DEFAULT_COLLECTION, open_store
from st_unirep.search.index_params import IndexParams

logger = logging.getLogger(__name__)


def copy_index(
    source: str | os.PathLike | QdrantClient,
    target: str | os.PathLike | QdrantClient,
    *,
    collection: str = DEFAULT_COLLECTION,
    target_collection: str | None = None,
    params: IndexParams | None = None,
    batch_size: int = 1000,
    progress: bool = True,
) -> int:
    """Copy every point (both vectors and the payload) and the index's metadata from ``source`` to ``target``.

    The target collection is created with the source's :class:`IndexParams` (or ``params``) and must not exist
    yet, or be empty: a copy never merges into, or overwrites, another index. The model fingerprint travels with the
    metadata, so the copy refuses a different model exactly as the original does. Returns the number of points
    copied, checked against the target's count.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source_store = open_store(source, collection)
    try:
        target_store = open_store(target, target_collection or collection, create=True)
    except BaseException:
        source_store.close()
        raise
    try:
        if target_store.exists() and target_store.count() > 0:
            raise ValueError(
                f"The target {target_store.where()} already holds {target_store.count()} point(s) in collection "
                f"{target_collection or collection!r}; copy into a new folder or collection"
            )
        metadata = source_store.metadata()
        if not target_store.exists():
            stored = {key: value for key, value in metadata.items() if key != "params"}
            target_store.create(stored, params or IndexParams.from_dict(metadata.get("params")))
        total = source_store.count()
        points = source_store.scroll(fields=True, vectors=True)
        with tqdm(total=total, unit="point", desc="copying", disable=not progress) as bar:
            while batch := list(islice(points, batch_size)):
                target_store.upsert(
                    [point_id for point_id, _, _ in batch],
                    np.asarray([vectors["full"] for _, _, vectors in batch], dtype=np.float32),
                    np.asarray([vectors["prefix"] for _, _, vectors in batch], dtype=np.float32),
                    [payload for _, payload, _ in batch],
                )
                bar.update(len(batch))
        target_store.optimize()
        copied = target_store.count()
        if copied != total:
            raise RuntimeError(f"Copied {copied} of {total} points to {target_store.where()}; the copy is incomplete")
        logger.info("Copied %d points from %s to %s", copied, source_store.where(), target_store.where())
        return copied
    finally:
        target_store.close()
        source_store.close()
