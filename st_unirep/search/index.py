"""A Qdrant collection of full vectors and Matryoshka prefixes, filled from a corpus and queried through a funnel."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

try:
    from qdrant_client import QdrantClient, models

    from st_unirep.search.edge_store import EdgeStore
except ImportError as error:  # optional dependencies: the rest of st_unirep works without them
    raise ImportError(
        f"st_unirep.search needs qdrant-client and qdrant-edge-py ({error}): pip install 'st-unirep[search]'"
    ) from error
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from st_unirep.model import load_model as load_st_unirep_model
from st_unirep.search.corpus import Corpus
from st_unirep.search.corpus_item import CorpusItem
from st_unirep.search.index_params import IndexParams
from st_unirep.search.index_report import IndexReport
from st_unirep.search.search_hit import SearchHit
from st_unirep.search.server_store import ServerStore, connect_server
from st_unirep.search.where import filter_keys

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: points keyed by (corpus, id) and a "corpus" payload field; 1: keyed by id alone
READ_ONLY_FORMATS = (1,)  # older formats that can still be queried, but not added to
ENCODE_ERRORS = (ValueError, OSError, Image.DecompressionBombError)  # what one bad input raises: skip it, go on
PAYLOAD_FIELDS = ("id", "corpus", "text", "image", "source", "metadata", "digest")
KEY_SAMPLE = 10_000  # items read to list the metadata keys an index knows (only when a filter key matches nothing)
PROBE_TEXT = "st_unirep search index: the model fingerprint probe. Hóa đơn tháng 3, tổng tiền 9.00 RM."
PROBE_MIN_COSINE = 0.999  # same weights up to device/dtype noise; any retrained or other model falls far below
DEFAULT_COLLECTION = "st_unirep"


def default_prefix_dim(dim: int) -> int:
    """The prefix width used for the first, approximate stage: half the full width.

    Measured (``bench/search_funnel.py``, BENCHMARKS.md "Search funnel"): on the trained e5-small st_unirep model
    (Matryoshka 96/192/384) over 36,476 real texts, recall@10 of the funnel against exhaustive search at the default
    k′ = 100 is 0.953 with a quarter-width prefix (96) and 0.996 with half (192); the quarter needs k′ = 800 for 0.99.
    Half is 1024 of 2048 for the 2B presets and 32 of 64 for the tiny default model. Pass ``prefix_dim`` for a
    narrower, cheaper first stage.
    """
    return max(1, dim // 2)


def default_candidates(limit: int) -> int:
    """k′, the number of prefix candidates rescored with the full vectors: ``max(100, 10 × limit)``."""
    return max(100, 10 * limit)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _batched(items: Iterable[CorpusItem], size: int) -> Iterator[list[CorpusItem]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _encode_failure(error: BaseException) -> str:
    """Why an item could not be encoded, as the index report says it."""
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large to decode safely ({error}); PIL.Image.MAX_IMAGE_PIXELS sets the limit"
    return " ".join(str(error).split()) or type(error).__name__


def load_model(path: str | os.PathLike, *, trust_remote_code: bool = False) -> SentenceTransformer:
    """:func:`st_unirep.model.load_model` (st_unirep's own modules need no opt-in), with an error that says how to
    opt in for a folder whose ``modules.json`` names foreign classes.

    st_unirep never passes ``trust_remote_code=True`` on a user's behalf: foreign code loads only if the caller
    asks for it.
    """
    try:
        return load_st_unirep_model(str(path), trust_remote_code=trust_remote_code)
    except ValueError as error:
        if trust_remote_code or "trust_remote_code" not in str(error):
            raise
        first_line = str(error).splitlines()[0]
        raise ValueError(
            f"Model {str(path)!r} needs trust_remote_code to load, and st_unirep does not turn it on for you "
            f"({first_line}). If you trust that folder, pass --trust_remote_code "
            "(in Python: SearchIndex(..., trust_remote_code=True))."
        ) from error


Store = EdgeStore | ServerStore


def open_store(
    location: str | os.PathLike | QdrantClient, collection: str = DEFAULT_COLLECTION, *, create: bool = False
) -> Store:
    """The collection ``collection`` at ``location`` (see :class:`SearchIndex`); a missing one is an error unless
    ``create``.

    A folder is an embedded Qdrant Edge index, except a folder that qdrant-client's local mode wrote (it holds
    ``meta.json`` and no Edge index: an index from st_unirep < 0.6), which opens through qdrant-client as before and
    says how to move it to the faster engine.
    """
    if isinstance(location, QdrantClient):
        return ServerStore(location, collection, where=type(location).__name__, owns_client=False)
    location = str(location)
    if location.startswith(("http://", "https://")):
        return ServerStore(connect_server(location), collection, where=repr(location))
    if location == ":memory:":
        return EdgeStore(None, collection)
    folder = Path(location)
    if (folder / "meta.json").is_file() and not (folder / collection / "index.json").is_file():
        logger.warning(
            "%s is an index of qdrant-client's local mode (exact scans, meant for ~20k items); it still works. "
            "`python -m st_unirep.search copy --index %s --to NEW_FOLDER` moves it to the embedded HNSW engine "
            "without re-encoding.",
            location,
            location,
        )
        return ServerStore(QdrantClient(path=location), collection, where=repr(location))
    store = EdgeStore(folder, collection)
    if not create and not store.exists():
        store.close()
        raise FileNotFoundError(
            f"No search index at {location!r} (collection {collection!r}); build one with "
            f"`python -m st_unirep.search index --model MODEL --corpus CORPUS --index {location}`"
        )
    return store


class SearchIndex:
    r"""A corpus of texts, images and text + image items in Qdrant, searched with Matryoshka funnel retrieval.

    Every item is stored as one point (id ``uuid5`` of its corpus and item id, so re-indexing overwrites instead of
    adding, and two corpora with the same relative names do not collide) with two named cosine vectors, ``"full"``
    (the model's unit-norm :math:`e`, width :math:`d`, kept on disk and read only to rescore) and ``"prefix"``
    (:math:`e_{1:p} / \lVert e_{1:p} \rVert`, :math:`p` = ``prefix_dim``, with an HNSW graph), and a payload of
    id, corpus, text, image path, source, metadata and content digest. A query is one Qdrant Query API call: a
    ``prefetch`` of the top :math:`k'` points by the prefix vector (HNSW), then those :math:`k'` rescored exactly
    with the full vector; the score returned is the model's calibrated relevance of the full vectors.

    The engine: a folder is an embedded **Qdrant Edge** shard (Qdrant's own engine in this process: HNSW,
    quantization, write-ahead log, payload indexes); an ``http(s)://`` URL is a Qdrant server or cluster with the
    same collection layout (``python -m st_unirep.search copy`` moves an index between the two without re-encoding).
    One process opens an embedded index at a time; within it, one ``SearchIndex`` serves a writer thread and any
    number of query threads.

    The index records the model (name, width, prefix width and a fingerprint: the embedding of a fixed probe text).
    Opening an index with a model of another width, or whose probe embedding differs (cosine below 0.999), raises
    ``ValueError``: vectors of two models are not comparable.

    Args:
        location: A folder for the embedded index (created when ``create``), ``":memory:"`` (a temporary embedded
            index), an ``http(s)://`` URL of a Qdrant server or cluster (API key from the ``QDRANT_API_KEY``
            environment variable), or a ready ``QdrantClient``. An unreachable server raises ``ConnectionError``
            naming the URL; an embedded index open in another process raises ``IndexBusyError``.
        model: A ``SentenceTransformer`` or the path of one (loaded with ``trust_remote_code`` as given below).
        collection: The collection name.
        prefix_dim: Width of the prefix vectors when creating the index (default :func:`default_prefix_dim`);
            when opening an existing index it must be ``None`` or equal to the stored width.
        model_name: The name recorded in the index (default: the path given, or the model's own name).
        create: Create the collection if it does not exist (indexing); otherwise a missing index is an error.
        params: :class:`IndexParams` (HNSW ``m`` / ``ef_construct``, query-time ``hnsw_ef``, quantization, full
            vectors on disk) when creating; an existing index keeps the ones it was built with, except ``hnsw_ef``.
        trust_remote_code: Passed to ``SentenceTransformer`` when ``model`` is a path: whether to import module
            classes that the model folder names outside sentence-transformers. Off unless you opt in; st_unirep
            never opts in for you.
    """

    def __init__(
        self,
        location: str | os.PathLike | QdrantClient,
        model: SentenceTransformer | str | os.PathLike,
        *,
        collection: str = DEFAULT_COLLECTION,
        prefix_dim: int | None = None,
        model_name: str | None = None,
        create: bool = False,
        params: IndexParams | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if prefix_dim is not None and (not isinstance(prefix_dim, int) or prefix_dim < 1):
            raise ValueError(f"prefix_dim must be a positive int or None, got {prefix_dim!r}")
        if params is not None and not isinstance(params, IndexParams):
            raise ValueError(f"params must be an IndexParams, got {type(params).__name__}")
        self.collection = collection
        self.store = open_store(location, collection, create=create)
        try:
            if isinstance(model, (str, os.PathLike)):
                model_name = model_name or str(model)
                model = load_model(model, trust_remote_code=trust_remote_code)
            self.model = model
            card = getattr(model, "model_card_data", None)
            self.model_name = model_name or getattr(card, "model_name", None) or "unnamed model"
            self.modalities = set(getattr(model, "modalities", None) or ["text"])
            probe = self._encode([{"text": PROBE_TEXT}])[0]  # (d,)
            self.dim = int(probe.shape[0])
            self.format_version = FORMAT_VERSION
            if self.store.exists():
                self.prefix_dim = self._check_compatible(probe, prefix_dim)
                self.params = self.store.params()
                if params is not None and params.hnsw_ef != self.params.hnsw_ef:
                    self.params = IndexParams(**{**self.params.to_dict(), "hnsw_ef": params.hnsw_ef})
            else:
                self.prefix_dim = prefix_dim or default_prefix_dim(self.dim)
                if self.prefix_dim > self.dim:
                    raise ValueError(f"prefix_dim {self.prefix_dim} exceeds the model's width {self.dim}")
                self.params = params or IndexParams()
                self._create(probe)
        except BaseException:
            self.store.close()
            raise

    # ------------------------------------------------------------------ setup
    @staticmethod
    def connect(location: str | os.PathLike | QdrantClient, create: bool = False) -> Store:
        """The storage of the default collection at ``location`` (see :func:`open_store`)."""
        return open_store(location, create=create)

    def _create(self, probe: np.ndarray) -> None:
        metadata = {
            "st_unirep_search": FORMAT_VERSION,
            "model_name": self.model_name,
            "dim": self.dim,
            "prefix_dim": self.prefix_dim,
            "modalities": sorted(self.modalities),
            "probe": [round(float(x), 6) for x in probe],
        }
        self.store.create(metadata, self.params)
        logger.info(
            "Created collection %r at %s: model %r, %d-d full vectors, %d-d prefixes, %s",
            self.collection,
            self.store.where(),
            self.model_name,
            self.dim,
            self.prefix_dim,
            self.params,
        )

    def _check_compatible(self, probe: np.ndarray, prefix_dim: int | None) -> int:
        """The stored prefix width, after checking that this model is the index's model."""
        meta = self.stored_metadata()
        self.format_version = meta.get("st_unirep_search")
        if self.format_version != FORMAT_VERSION and self.format_version not in READ_ONLY_FORMATS:
            raise ValueError(
                f"Collection {self.collection!r} was not made by st_unirep.search (format {FORMAT_VERSION}); "
                "use another --collection or --index"
            )
        stored_name, stored_dim = meta["model_name"], int(meta["dim"])
        if stored_dim != self.dim:
            raise ValueError(
                f"Model mismatch: the index holds {stored_dim}-d vectors of model {stored_name!r}, but model "
                f"{self.model_name!r} gives {self.dim}-d vectors. Query and re-index with the model that built the "
                "index, or index into a new --index folder."
            )
        cosine = float(np.dot(_unit_rows(np.asarray(meta["probe"], dtype=np.float32)), _unit_rows(probe)))
        if cosine < PROBE_MIN_COSINE:
            raise ValueError(
                f"Model mismatch: the index was built with model {stored_name!r}, and model {self.model_name!r} "
                f"embeds the fingerprint probe differently (cosine {cosine:.4f} < {PROBE_MIN_COSINE}), so its "
                "vectors are not comparable with the stored ones. Query and re-index with the model that built the "
                "index, or index into a new --index folder."
            )
        if stored_name != self.model_name:
            logger.info("Model %r has the fingerprint of the index's model %r", self.model_name, stored_name)
        stored_prefix = int(meta["prefix_dim"])
        if prefix_dim is not None and prefix_dim != stored_prefix:
            raise ValueError(
                f"The index stores {stored_prefix}-d prefixes; prefix_dim={prefix_dim} needs a new index folder"
            )
        return stored_prefix

    def stored_metadata(self) -> dict[str, Any]:
        """The collection's metadata: format, model name, widths, modalities, fingerprint probe, index params."""
        return self.store.metadata()

    def close(self) -> None:
        """Flush and release the index (the embedded engine holds a lock on the folder until then)."""
        self.store.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def count(self) -> int:
        """Points in the collection."""
        return self.store.count()

    def optimize(self) -> bool:
        """Build the HNSW graph of everything added so far (:meth:`add` does it after each run); True if it did."""
        return self.store.optimize()

    # ------------------------------------------------------------------ encoding
    def _encode(self, inputs: Sequence[dict[str, str]]) -> np.ndarray:
        embeddings = self.model.encode(
            list(inputs),
            batch_size=max(1, len(inputs)),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(embeddings, dtype=np.float32)  # (n, d)

    def _encode_items(self, items: list[CorpusItem]) -> tuple[list[CorpusItem], np.ndarray, list[tuple[str, str]]]:
        """(the items that encoded, their (n, d) vectors, (where, why) for those that did not)."""
        failed: list[tuple[str, str]] = []
        usable = []
        for item in items:
            if item.image is not None and "image" not in self.modalities:
                failed.append((item.source, f"the model ({self.model_name}) is text-only; cannot embed an image"))
                logger.info("Skipping %s: the model is text-only", item.source)
            else:
                usable.append(item)
        if not usable:
            return [], np.zeros((0, self.dim), dtype=np.float32), failed
        try:
            return usable, self._encode([item.to_input() for item in usable]), failed
        except ENCODE_ERRORS:
            pass  # one bad input (a corrupt image, a decompression bomb) fails its batch: find it, keep the others
        good, vectors = [], []
        for item in usable:
            try:
                vectors.append(self._encode([item.to_input()])[0])
                good.append(item)
            except ENCODE_ERRORS as error:
                failed.append((item.source, _encode_failure(error)))
                logger.info("Skipping %s: %s", item.source, failed[-1][1])
        stacked = np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)
        return good, stacked, failed

    def _prefix(self, full: np.ndarray) -> np.ndarray:
        return _unit_rows(full[..., : self.prefix_dim])  # (..., p)

    # ------------------------------------------------------------------ indexing
    def add(
        self,
        corpus: Corpus | str | os.PathLike | Iterable[CorpusItem | str | dict | os.PathLike],
        *,
        batch_size: int = 16,
        force: bool = False,
        progress: bool = True,
        remove_missing: bool = True,
    ) -> IndexReport:
        """Encode and store every item of ``corpus`` in streamed batches; safe to re-run and to interrupt.

        An item whose (corpus, id) is already stored with the same content digest is skipped without encoding, so
        a run that was killed continues where it stopped, and re-indexing an unchanged corpus encodes nothing. An
        item whose content changed overwrites its point (same id, new vectors): the count never grows from re-runs.
        Each batch is written before the next is encoded (the engine's write-ahead log keeps it). After a
        full pass over a folder or ``.jsonl`` corpus, the items of its namespace that are no longer in it (or could
        not be indexed this time) are deleted (``remove_missing``); other corpora in the index are left alone.

        Args:
            corpus: A :class:`Corpus`, a path to one (folder or ``.jsonl``), or an iterable of loose values:
                ``str`` texts, ``dict`` rows, ``pathlib.Path`` files or ``CorpusItem`` (see
                :meth:`Corpus.from_items`; such a corpus never removes anything).
            batch_size: Items encoded per forward pass.
            force: Re-encode and overwrite every item, unchanged or not.
            progress: Show a tqdm progress bar (its total is the corpus size when that is known).
            remove_missing: Delete the namespace's items that the corpus no longer has (folder or ``.jsonl`` only).

        Returns:
            An :class:`IndexReport`: added / updated / unchanged / removed counts and every skipped entry with its
            reason (unreadable files, corrupt or oversized images: each is named, skipped, and the run goes on).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"Collection {self.collection!r} was built by an earlier st_unirep.search (format "
                f"{self.format_version}, items keyed by id alone); it can be queried, but adding to it would store "
                "every item twice. Index into a new --index folder or --collection."
            )
        if isinstance(corpus, (str, os.PathLike)):
            corpus = Corpus(corpus)
        elif not isinstance(corpus, Corpus):
            corpus = Corpus.from_items(corpus)
        report = IndexReport()
        kept: set[str] = set()  # point ids of the namespace that this run found in the corpus and stored
        with tqdm(total=corpus.total(), unit="item", desc="indexing", disable=not progress) as bar:
            for number, batch in enumerate(_batched(corpus, batch_size), start=1):
                self._add_batch(batch, force, report, kept)
                logger.info(
                    "batch %d: %d new, %d updated, %d unchanged, %d skipped so far",
                    number,
                    report.added,
                    report.updated,
                    report.unchanged,
                    len(report.skipped),
                )
                bar.update(len(batch))
        report.skipped[:0] = corpus.skipped
        if corpus.complete and remove_missing:
            report.removed = self._remove_others(corpus.namespace, kept)
        if report.added or report.updated or report.removed:
            self.optimize()  # bulk load done: build the graph now, not on the first query
        report.total = self.count()
        logger.info("%s", report)
        if report.skipped:
            logger.warning("%d corpus item(s) skipped; IndexReport.skipped says where and why", len(report.skipped))
        return report

    def _add_batch(self, batch: list[CorpusItem], force: bool, report: IndexReport, kept: set[str]) -> None:
        """Encode and write the new or changed items of one batch; count them into ``report``."""
        stored = self.store.retrieve([item.point_id for item in batch], ["digest", "source"])
        unchanged = {
            item.point_id for item in batch if not force and stored.get(item.point_id, {}).get("digest") == item.digest
        }
        for item in batch:  # same content at a new path (a moved folder under its --namespace): new paths, no encoding
            if item.point_id in unchanged and stored[item.point_id].get("source") != item.source:
                self.store.overwrite_payload(item.point_id, item.payload())
        todo = [item for item in batch if item.point_id not in unchanged]
        report.unchanged += len(unchanged)
        kept.update(unchanged)
        good, full, failed = self._encode_items(todo)
        report.skipped.extend(failed)
        if good:
            self._write(good, full)
        kept.update(item.point_id for item in good)
        updated = sum(item.point_id in stored for item in good)
        report.updated += updated
        report.added += len(good) - updated

    def _write(self, items: Sequence[CorpusItem], full: np.ndarray) -> None:
        self.store.upsert([item.point_id for item in items], full, self._prefix(full), [i.payload() for i in items])

    def add_embeddings(
        self,
        items: Sequence[CorpusItem],
        embeddings: np.ndarray,
        *,
        batch_size: int = 1000,
        progress: bool = True,
        optimize: bool = True,
    ) -> int:
        """Store items with embeddings computed elsewhere (by this index's model), without encoding; return the count.

        For bulk loads (an offline GPU job wrote the vectors): ``embeddings`` is ``(len(items), d)``, rows are
        normalised here, and the graph is built once at the end (:meth:`optimize`; ``optimize=False`` leaves that to
        a later call, for a load in several parts). Nothing checks that the vectors come from the index's model:
        that is the caller's word.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(items), self.dim):
            raise ValueError(f"Expected ({len(items)}, {self.dim}) embeddings for {len(items)} items, got "
                             f"{embeddings.shape}")  # fmt: skip
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or inf")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"Collection {self.collection!r} is of an earlier format; it cannot be added to")
        with tqdm(total=len(items), unit="item", desc="storing", disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                self._write(items[start : start + batch_size], _unit_rows(embeddings[start : start + batch_size]))
                bar.update(min(batch_size, len(items) - start))
        if optimize:
            self.optimize()
        return len(items)

    def _remove_others(self, namespace: str, kept: set[str]) -> int:
        """Delete the points of corpus ``namespace`` whose ids are not in ``kept``; return how many."""
        in_corpus = models.Filter(must=[models.FieldCondition(key="corpus", match=models.MatchValue(value=namespace))])
        gone = [point_id for point_id, _, _ in self.store.scroll(in_corpus) if point_id not in kept]
        for start in range(0, len(gone), 1000):
            self.store.delete(gone[start : start + 1000])
        if gone:
            logger.info("Removed %d item(s) of corpus %r that are no longer in it", len(gone), namespace)
        return len(gone)

    # ------------------------------------------------------------------ querying
    def encode_query(self, text: str | None = None, image: str | os.PathLike | None = None) -> np.ndarray:
        """The unit-norm ``(d,)`` query vector of a text, an image path, or both."""
        if text is None and image is None:
            raise ValueError("A query needs a text, an image or both; got neither")
        query: dict[str, str] = {}
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"The query text must be a non-empty string, got {text!r}")
            query["text"] = text
        if image is not None:
            if "image" not in self.modalities:
                raise ValueError(f"The index's model ({self.model_name}) is text-only; it cannot embed a query image")
            if not Path(image).is_file():
                raise ValueError(f"Query image {str(image)!r} does not exist")
            query["image"] = str(Path(image).resolve())
        return self._encode([query])[0]

    def _profile(self, name: str | None):
        """The model's calibration profile ``name`` (None: its default), or None for a model without profiles."""
        from st_unirep.calibration import find_calibration

        calibration = find_calibration(self.model) if isinstance(self.model, SentenceTransformer) else None
        if calibration is None:
            if name is not None:
                raise ValueError(
                    f"profile={name!r}, but the model has no calibration profiles (scores are (cos + 1) / 2); fit "
                    "one with python -m st_unirep.calibrate"
                )
            return None
        return calibration.get(name)

    def query(
        self,
        text: str | None = None,
        image: str | os.PathLike | None = None,
        *,
        limit: int = 10,
        candidates: int | None = None,
        min_score: float | None = None,
        exhaustive: bool = False,
        query_filter: models.Filter | None = None,
        vector: np.ndarray | None = None,
        profile: str | None = None,
        hnsw_ef: int | None = None,
    ) -> list[SearchHit]:
        r"""The ``limit`` best items for a text, an image or both, best first.

        Funnel (default): Qdrant's Query API with a ``prefetch`` of the top ``candidates`` (:math:`k'`) points by
        the ``"prefix"`` vector, rescored by the ``"full"`` vector; exact over the whole collection when
        ``exhaustive``. Scores are the model's calibrated relevance of the full vectors: its calibration profile
        ``profile`` (``"default"`` when None) if the model has profiles, else the seeds' :math:`(\cos + 1) / 2`.
        The ranking is the cosine's either way (the profiles are strictly increasing).

        Args:
            text: The query text.
            image: The query image path.
            limit: Results to return.
            candidates: :math:`k'` (default :func:`default_candidates`); must be at least ``limit``.
            min_score: Drop results whose calibrated score is below this value in [0, 1] (applied inside Qdrant
                as the cosine threshold the score's map gives: ``2 · min_score − 1`` for (cos + 1)/2, the exact
                inverse of the profile otherwise).
            profile: The model's calibration profile (e.g. ``"qa"``); an error if the model has no profiles or
                not this one.
            exhaustive: Skip the prefix stage (the reference ranking).
            query_filter: A Qdrant payload filter (e.g. on ``metadata.company``; ``where_filter`` in
                :mod:`st_unirep.search.where` builds one from ``KEY=VALUE`` strings), applied at both stages. When
                nothing matches, a key of the filter that no item has raises ``ValueError`` listing the keys the
                index has (a typo is an error, not "no results").
            vector: A precomputed ``(d,)`` query vector from :meth:`encode_query` instead of ``text`` / ``image``.
            hnsw_ef: The HNSW search width of the prefix stage for this query (default: the index's
                ``IndexParams.hnsw_ef``; never below ``candidates``).

        Returns:
            A list of :class:`SearchHit`, at most ``limit`` long.
        """
        full = self.encode_query(text, image) if vector is None else np.asarray(vector, dtype=np.float32)
        if full.shape != (self.dim,):
            raise ValueError(f"Expected a ({self.dim},) query vector, got {full.shape}")
        return self.query_batch(
            full[None],
            limit=limit,
            candidates=candidates,
            min_score=min_score,
            exhaustive=exhaustive,
            query_filter=query_filter,
            profile=profile,
            hnsw_ef=hnsw_ef,
        )[0]

    def query_batch(
        self,
        vectors: np.ndarray,
        *,
        limit: int = 10,
        candidates: int | None = None,
        min_score: float | None = None,
        exhaustive: bool = False,
        query_filter: models.Filter | None = None,
        profile: str | None = None,
        hnsw_ef: int | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`query` for ``(n, d)`` precomputed query vectors at once (one engine call: higher throughput).

        Returns one list of :class:`SearchHit` per row of ``vectors``, in order.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        candidates = default_candidates(limit) if candidates is None else candidates
        if candidates < limit:
            raise ValueError(f"candidates (k'={candidates}) must be at least limit ({limit})")
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score is a calibrated score in [0, 1], got {min_score}")
        if hnsw_ef is not None and (not isinstance(hnsw_ef, int) or hnsw_ef < 1):
            raise ValueError(f"hnsw_ef must be a positive int, got {hnsw_ef!r}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"Expected (n, {self.dim}) query vectors, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("query vectors contain NaN or inf")
        calibration = self._profile(profile)
        results = self.store.search_batch(
            list(vectors),
            None if exhaustive else list(self._prefix(vectors)),
            limit=limit,
            candidates=candidates,
            query_filter=query_filter,
            score_threshold=self._cosine_threshold(min_score, calibration),
            hnsw_ef=self.params.query_ef(candidates, hnsw_ef),
        )
        if query_filter is not None and not any(results):
            self.check_filter_keys(query_filter)
        return [[self._hit(point, calibration) for point in points] for points in results]

    def check_filter_keys(self, query_filter: models.Filter) -> None:
        """Raise ``ValueError`` naming a key of ``query_filter`` that no item has, with the keys the index knows.

        :meth:`query` calls it when a filtered query finds nothing, so a misspelt key is an error, not "no results".
        """
        for key in filter_keys(query_filter):
            present = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])
            if self.store.count(present) == 0:
                raise ValueError(
                    f"No item in the index has a value for the filter key {key!r}; the keys it has: "
                    f"{', '.join(self.payload_keys())}"
                )

    def payload_keys(self) -> list[str]:
        """The payload keys a filter can test: the fixed fields, then ``metadata.*`` of up to 10k items (sorted)."""
        found: set[str] = set()

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, child in value.items():
                    walk(f"{prefix}.{key}", child)
            else:
                found.add(prefix)

        for _, payload, _ in islice(self.store.scroll(fields=["metadata"]), KEY_SAMPLE):
            for key, value in (payload.get("metadata") or {}).items():
                walk(f"metadata.{key}", value)
        return [field for field in PAYLOAD_FIELDS if field != "metadata"] + sorted(found)

    def _cosine_threshold(self, min_score: float | None, calibration) -> float | None:
        """The cosine whose calibrated score is ``min_score`` (the map's exact inverse), for Qdrant's threshold."""
        if min_score is None:
            return None
        if calibration is None:
            return 2.0 * min_score - 1.0
        return calibration.cosine_threshold(min_score, self.dim)

    def _hit(self, point: tuple[str, float, dict[str, Any]], calibration) -> SearchHit:
        """A (point id, cosine, payload) as a :class:`SearchHit`, its score the calibrated relevance of its cosine."""
        point_id, cosine, payload = point
        if calibration is None:
            score = min(1.0, max(0.0, (cosine + 1.0) / 2.0))
        else:
            score = float(calibration(np.array(cosine), self.dim))
        return SearchHit(
            id=payload.get("id", point_id),
            score=score,
            cosine=cosine,
            source=payload.get("source", ""),
            text=payload.get("text"),
            image=payload.get("image"),
            metadata=payload.get("metadata") or {},
            corpus=payload.get("corpus", ""),
        )
