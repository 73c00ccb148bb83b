"""The embedded engine (Qdrant Edge): HNSW on the prefix, params, filters, concurrency, and copies to a server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from st_unirep.search import SearchIndex
from st_unirep.search.cli import main
from st_unirep.search.copy import copy_index
from st_unirep.search.corpus_item import CorpusItem
from st_unirep.search.edge_filter import to_edge_filter
from st_unirep.search.edge_store import EdgeStore, IndexBusyError
from st_unirep.search.index import open_store
from st_unirep.search.index_params import IndexParams
from st_unirep.search.server_store import ServerStore
from st_unirep.search.where import where_filter


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_items(n: int, dim: int, seed: int = 0) -> tuple[list[CorpusItem], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.standard_normal((n, dim)).astype(np.float32))
    items = [CorpusItem(id=f"v{i}", text=f"item {i}", corpus="synthetic", metadata={"even": i % 2 == 0}) for i in
             range(n)]  # fmt: skip
    return items, vectors


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    return [f"v{i}" for i in np.argsort(-(vectors @ query), kind="stable")[:k]]


def test_the_funnel_on_a_built_hnsw_graph_matches_numpy(tmp_path, search_model):
    # A 1 KB indexing threshold makes the engine build the HNSW graph for 3,000 points; ef = k' = 300 of 3,000.
    items, vectors = _random_items(3000, 64)
    params = IndexParams(indexing_threshold_kb=1, hnsw_ef=300)
    with SearchIndex(tmp_path / "index", search_model, create=True, params=params, prefix_dim=16) as index:
        index.add_embeddings(items, vectors, progress=False)
        assert index.store.shard.info().indexed_vectors_count >= 3000  # the graph exists (not an exact scan)
        queries = _unit(np.random.default_rng(1).standard_normal((20, 64)).astype(np.float32))
        funnel = index.query_batch(queries, limit=10, candidates=300)
        exact = index.query_batch(queries, limit=10, exhaustive=True)
        for query, reference in zip(queries, exact, strict=True):
            assert [h.id for h in reference] == _exact_top(vectors, query, 10)
            np.testing.assert_allclose([h.cosine for h in reference], np.sort(vectors @ query)[::-1][:10], atol=1e-5)
        # The reference funnel in numpy: exact top k' by the 16-d prefix, then the top 10 of those by the full vector.
        prefixes = _unit(vectors[:, :16])
        reference_funnel = []
        for query in queries:
            shortlist = np.argsort(-(prefixes @ _unit(query[:16])), kind="stable")[:300]
            reference_funnel.append({f"v{i}" for i in shortlist[np.argsort(-(vectors[shortlist] @ query))[:10]]})
        overlap = np.mean([len({h.id for h in f} & r) / 10 for f, r in zip(funnel, reference_funnel, strict=True)])
        assert overlap >= 0.97  # HNSW (approximate) vs the exact prefix stage; random vectors are its hardest case
        one_by_one = [index.query(vector=q, limit=10, candidates=300) for q in queries]
        assert [[h.id for h in hits] for hits in one_by_one] == [[h.id for h in hits] for hits in funnel]


def test_params_are_recorded_validated_and_reopened(tmp_path, search_model):
    with pytest.raises(ValueError, match=r"IndexParams.m must be a positive int, got 0"):
        IndexParams(m=0)
    with pytest.raises(ValueError, match=r"quantization must be one of \('none', 'int8'\), got 'pq'"):
        IndexParams(quantization="pq")
    params = IndexParams(m=8, ef_construct=40, hnsw_ef=50, quantization="int8")
    with SearchIndex(tmp_path / "index", search_model, create=True, params=params) as index:
        index.add_embeddings(*_random_items(50, 64), progress=False)
    with SearchIndex(tmp_path / "index", search_model, params=IndexParams(hnsw_ef=99)) as index:
        assert index.params == IndexParams(m=8, ef_construct=40, hnsw_ef=99, quantization="int8")  # ef: per run
        assert index.stored_metadata()["params"]["m"] == 8
        assert len(index.query(vector=_random_items(1, 64, seed=5)[1][0], limit=5, hnsw_ef=7)) == 5
        with pytest.raises(ValueError, match="hnsw_ef must be a positive int"):
            index.query(vector=np.ones(64, dtype=np.float32), hnsw_ef=0)
        with pytest.raises(ValueError, match=r"Expected \(3, 64\) embeddings for 3 items, got \(3, 2\)"):
            index.add_embeddings(_random_items(3, 64)[0], np.ones((3, 2)))


def test_filters_translate_exactly_and_refuse_what_they_cannot(tmp_path, search_model):
    items, vectors = _random_items(40, 64)
    with SearchIndex(":memory:", search_model, create=True) as index:
        index.add_embeddings(items, vectors, progress=False)
        evens = index.query(vector=vectors[0], limit=40, query_filter=where_filter(["metadata.even=true"]))
        assert sorted(h.id for h in evens) == sorted(f"v{i}" for i in range(0, 40, 2))  # a JSON true, not the int 1
        odd = models.Filter(must_not=[models.FieldCondition(key="metadata.even", match=models.MatchValue(value=True))])
        assert len(index.query(vector=vectors[0], limit=40, query_filter=odd)) == 20
        some = models.Filter(must=[models.FieldCondition(key="id", match=models.MatchAny(any=["v1", "v2", "v30"]))])
        assert sorted(h.id for h in index.query(vector=vectors[0], limit=40, query_filter=some)) == ["v1", "v2", "v30"]
    circle = models.GeoRadius(center=models.GeoPoint(lon=0, lat=0), radius=1)
    geo = models.FieldCondition(key="where", geo_radius=circle)
    with pytest.raises(ValueError, match=r"does not support geo_radius conditions \(key 'where'\)"):
        to_edge_filter(models.Filter(must=[geo]))


def test_one_writer_and_several_reader_threads_share_an_index(tmp_path, search_model):
    items, vectors = _random_items(2000, 64)
    errors: list[BaseException] = []
    seen: list[int] = []
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add_embeddings(items[:100], vectors[:100], progress=False)
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                try:
                    hits = index.query(vector=vectors[0], limit=5)
                    assert hits[0].id == "v0"
                    seen.append(index.count())
                except BaseException as error:  # noqa: BLE001 (collected, asserted below)
                    errors.append(error)

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        for start in range(100, 2000, 100):
            index.add_embeddings(items[start : start + 100], vectors[start : start + 100], progress=False)
        done.set()
        for thread in readers:
            thread.join()
        assert errors == [] and len(seen) > 0
        assert index.count() == 2000 and max(seen) <= 2000


HOLDER = textwrap.dedent(
    """
    import sys, time
    from st_unirep.search.edge_store import EdgeStore
    store = EdgeStore(sys.argv[1], "st_unirep")
    print("open", flush=True)
    time.sleep(60)
    """
)


def test_a_second_process_gets_a_clear_error(tmp_path, search_model, capsys):
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add_embeddings(*_random_items(10, 64), progress=False)
    command = [sys.executable, "-c", HOLDER, str(tmp_path / "index")]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(IndexBusyError, match=r"is open in another process; the embedded engine \(Qdrant Edge\)"):
            SearchIndex(tmp_path / "index", search_model)
        assert main(["query", "--index", str(tmp_path / "index"), "--text", "x", "--model", "unused"]) == 2
        assert "is open in another process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    with SearchIndex(tmp_path / "index", search_model) as index:  # free again once the other process is gone
        assert index.count() == 10


def test_copy_to_a_server_collection_and_back_gives_the_same_answers(tmp_path, search_model):
    items, vectors = _random_items(300, 64)
    with SearchIndex(tmp_path / "edge", search_model, create=True) as index:
        index.add_embeddings(items, vectors, progress=False)
        expected = [[h.id for h in hits] for hits in index.query_batch(vectors[:10], limit=5)]
    # The server path is qdrant-client's: the same requests go to a server URL; ":memory:" runs them in process.
    server = QdrantClient(location=":memory:")
    assert copy_index(tmp_path / "edge", server, progress=False) == 300
    on_server = SearchIndex(server, search_model)
    assert isinstance(on_server.store, ServerStore)
    assert [[h.id for h in hits] for hits in on_server.query_batch(vectors[:10], limit=5)] == expected
    assert on_server.query(vector=vectors[3], limit=1)[0].metadata == {"even": False}
    with pytest.raises(ValueError, match=r"already holds 300 point\(s\) in collection 'st_unirep'"):
        copy_index(tmp_path / "edge", server, progress=False)
    assert copy_index(server, tmp_path / "back", progress=False) == 300
    with SearchIndex(tmp_path / "back", search_model) as back:
        assert isinstance(back.store, EdgeStore)
        assert [[h.id for h in hits] for hits in back.query_batch(vectors[:10], limit=5)] == expected
    server.close()


def test_an_index_of_the_old_local_mode_still_opens_and_copies_to_the_engine(tmp_path, search_model, caplog):
    items, vectors = _random_items(50, 64)
    old = ServerStore(QdrantClient(path=str(tmp_path / "old")), "st_unirep", where="old")
    with SearchIndex(old.client, search_model, create=True) as index:  # what st_unirep < 0.6 wrote
        index.add_embeddings(items, vectors, progress=False)
    old.close()
    with SearchIndex(tmp_path / "old", search_model) as index:
        assert isinstance(index.store, ServerStore) and index.query(vector=vectors[7], limit=1)[0].id == "v7"
    assert "index of qdrant-client's local mode" in caplog.text and "st_unirep.search copy" in caplog.text
    assert main(["copy", "--index", str(tmp_path / "old"), "--to", str(tmp_path / "new"), "--no-progress"]) == 0
    with SearchIndex(tmp_path / "new", search_model) as index:
        assert isinstance(index.store, EdgeStore) and index.count() == 50
        assert index.query(vector=vectors[7], limit=1)[0].id == "v7"


def test_memory_indexes_leave_nothing_behind():
    store = open_store(":memory:", create=True)
    root = store.root
    assert root.is_dir()
    store.close()
    assert not root.exists()
