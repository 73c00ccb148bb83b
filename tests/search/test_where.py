"""--where KEY=VALUE: the typing rule (number, boolean, quoted string) and the refusal of a key no item has."""

from __future__ import annotations

import json

import pytest
from qdrant_client import models

from st_unirep.search import SearchIndex, where_filter
from st_unirep.search.where import filter_keys, where_condition

ROWS = [
    {"id": "int3", "text": "page three as a number", "page": 3, "flag": True},
    {"id": "str3", "text": "page three as a string", "page": "3", "flag": "true"},
    {"id": "float3", "text": "page three as a float", "page": 3.0, "flag": False},
    {"id": "int4", "text": "page four", "page": 4, "total": 2.5, "shop": {"name": "ABC"}},
    {"id": "quoted", "text": "a quoted page", "page": '"3"'},
]


def _match(key: str, value) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _equal(key: str, number: float) -> models.FieldCondition:
    return models.FieldCondition(key=key, range=models.Range(gte=number, lte=number))


def test_values_are_typed_by_the_documented_rule():
    key = "metadata.page"
    assert where_condition("metadata.page=3") == models.Filter(
        should=[_match(key, 3), _equal(key, 3.0), _match(key, "3")]
    )
    assert where_condition("metadata.page=TRUE") == models.Filter(should=[_match(key, True), _match(key, "TRUE")])
    assert where_condition("metadata.page=2.5") == models.Filter(should=[_equal(key, 2.5), _match(key, "2.5")])
    assert where_condition('metadata.page="3"') == _match(key, "3")
    assert where_condition("metadata.page='true'") == _match(key, "true")
    assert where_condition("metadata.company=BOOK TA .K") == _match("metadata.company", "BOOK TA .K")
    assert where_condition("metadata.page=") == _match(key, "")
    assert where_condition("metadata.page=nan") == _match(key, "nan")
    for bad in ("nonsense", "=3", " =3"):
        with pytest.raises(ValueError, match=r"--where expects KEY=VALUE \(e.g. metadata.company=ABC\), got"):
            where_condition(bad)
    assert where_filter([]) is None
    both = where_filter(["metadata.page=3", "id=int3"])
    assert filter_keys(both) == ["metadata.page", "id"]


@pytest.fixture
def index(tmp_path, search_model):
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in ROWS) + "\n", encoding="utf-8")
    with SearchIndex(":memory:", search_model, create=True) as opened:
        assert opened.add(tmp_path / "rows.jsonl", progress=False).added == len(ROWS)
        yield opened


def _ids(index: SearchIndex, *conditions: str) -> list[str]:
    return sorted(h.id for h in index.query(text="page", limit=10, query_filter=where_filter(conditions)))


def test_typed_matching_finds_numbers_booleans_and_strings(index):
    assert _ids(index, "metadata.page=3") == ["float3", "int3", "str3"]  # was [] for the int: "no results"
    assert _ids(index, 'metadata.page="3"') == ["str3"]
    assert _ids(index, "metadata.page='\"3\"'") == ["quoted"]
    assert _ids(index, "metadata.flag=true") == ["int3", "str3"]
    assert _ids(index, "metadata.flag=false") == ["float3"]
    assert _ids(index, "metadata.flag='true'") == ["str3"]
    assert _ids(index, "metadata.total=2.5") == ["int4"]
    assert _ids(index, "metadata.shop.name=ABC") == ["int4"]
    assert _ids(index, "metadata.page=3", "metadata.flag=true") == ["int3", "str3"]
    assert _ids(index, "metadata.page=5") == []  # a known key, no value: "no results", not an error


def test_a_key_no_item_has_is_an_error_listing_the_known_keys(index):
    with pytest.raises(ValueError) as caught:
        _ids(index, "metadata.pgae=3")
    assert str(caught.value) == (
        "No item in the index has a value for the filter key 'metadata.pgae'; the keys it has: id, corpus, text, "
        "image, source, digest, metadata.flag, metadata.page, metadata.shop.name, metadata.total"
    )
    with pytest.raises(ValueError, match="filter key 'page'"):
        _ids(index, "metadata.page=3", "page=3")
    assert index.payload_keys()[:6] == ["id", "corpus", "text", "image", "source", "digest"]
