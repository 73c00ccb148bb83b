"""Index a corpus of texts, images and documents in Qdrant and query it with Matryoshka funnel retrieval."""

from __future__ import annotations

from st_unirep.search.copy import copy_index
from st_unirep.search.corpus import Corpus
from st_unirep.search.corpus_item import CorpusItem
from st_unirep.search.edge_store import IndexBusyError
from st_unirep.search.index import SearchIndex
from st_unirep.search.index_params import IndexParams
from st_unirep.search.index_report import IndexReport
from st_unirep.search.search_hit import SearchHit
from st_unirep.search.where import where_filter

__all__ = [
    "Corpus",
    "CorpusItem",
    "IndexBusyError",
    "IndexParams",
    "IndexReport",
    "SearchHit",
    "SearchIndex",
    "copy_index",
    "where_filter",
]
