"""Corpus: folder and JSON Lines layouts, ids, digests, and what is skipped with which reason."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from st_unirep.search import Corpus, CorpusItem
from st_unirep.search.corpus_item import POINT_NAMESPACE, point_id

from .conftest import TEXTS, write_corpus


def test_folder_items_ids_and_kinds(tmp_path):
    ids = write_corpus(tmp_path / "c")
    (tmp_path / "c" / "notes.csv").write_text("ignored")
    (tmp_path / "c" / ".git").mkdir()
    (tmp_path / "c" / ".git" / "HEAD.txt").write_text("ignored")
    corpus = Corpus(tmp_path / "c")
    items = list(corpus)
    assert len(corpus) == len(items) == len(ids) == 18 and corpus.skipped == []
    assert sorted(item.id for item in items) == ids
    assert [item.id for item in items][:6] == [
        "man.txt",
        "misc.txt",
        "paris.txt",
        "shop.txt",
        "square.md",
        "images/00.png",
    ]
    by_id = {item.id: item for item in items}
    assert by_id["notes/invoice.md"].text.startswith("# Hóa đơn") and by_id["notes/invoice.md"].image is None
    assert by_id["images/01.jpg"].image == os.path.abspath(tmp_path / "c" / "images" / "01.jpg")
    assert by_id["images/01.jpg"].to_input() == {"image": by_id["images/01.jpg"].image}
    assert by_id["misc.txt"].to_input() == {"text": "x y z"}
    namespace = (tmp_path / "c").resolve().as_posix()
    assert corpus.namespace == namespace and {item.corpus for item in items} == {namespace}
    assert by_id["misc.txt"].point_id == point_id(namespace, "misc.txt")
    assert point_id(namespace, "misc.txt") == str(uuid.uuid5(POINT_NAMESPACE, json.dumps([namespace, "misc.txt"])))
    assert len({item.digest for item in items}) == len(items)
    assert [i.digest for i in Corpus(tmp_path / "c")] == [i.digest for i in items]  # deterministic


def test_jsonl_rows_metadata_and_skips(tmp_path):
    write_corpus(tmp_path)
    rows = [
        {"id": "a", "text": "hello", "lang": "en"},
        {"id": "b", "image": "images/00.png"},
        {"id": "c", "text": "both", "image": "images/01.jpg", "score": 3},
        {"id": "a", "text": "duplicate"},
        {"text": "no id"},
        {"id": "e"},
        {"id": "f", "text": "  "},
        {"id": "g", "image": "images/nope.png"},
        {"id": True, "text": "bool id"},
        [1, 2],
    ]
    lines = [json.dumps(row, ensure_ascii=False) for row in rows] + ["{broken"]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    corpus = Corpus(tmp_path / "c.jsonl")
    items = list(corpus)
    assert len(corpus) == 11
    assert [item.id for item in items] == ["a", "b", "c"]
    assert items[0].metadata == {"lang": "en"} and items[2].metadata == {"score": 3}
    assert items[1].image == str((tmp_path / "images" / "00.png").resolve())
    assert items[2].to_input() == {"text": "both", "image": items[2].image}
    assert items[0].source == f"{(tmp_path / 'c.jsonl').resolve()}:1"
    reasons = {int(where.rsplit(":", 1)[1]): reason for where, reason in corpus.skipped}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11]
    assert "duplicate id 'a'" in reasons[4]
    assert reasons[5].startswith("field 'id'") and reasons[9].startswith("field 'id'")
    assert reasons[6] == "row has neither 'text' nor 'image'"
    assert reasons[7].startswith("field 'text'")
    assert "unreadable file" in reasons[8] and "nope.png" in reasons[8]
    assert "expected a JSON object" in reasons[10] and "invalid JSON" in reasons[11]


def test_digest_covers_text_image_and_metadata():
    base = CorpusItem.compute_digest("t", b"img", {"k": 1})
    assert base == CorpusItem.compute_digest("t", b"img", {"k": 1})
    others = [
        CorpusItem.compute_digest("t2", b"img", {"k": 1}),
        CorpusItem.compute_digest("t", b"img2", {"k": 1}),
        CorpusItem.compute_digest("t", b"img", {"k": 2}),
        CorpusItem.compute_digest("timg", b"", {"k": 1}),  # no ambiguity between fields
    ]
    assert base not in others and len(set(others)) == len(others)


def test_not_a_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Corpus(tmp_path / "missing")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ValueError, match="neither a folder nor a JSON Lines"):
        Corpus(tmp_path / "data.csv")


def test_namespace_and_loose_values(tmp_path, monkeypatch):
    ids = write_corpus(tmp_path / "c")
    named = list(Corpus(tmp_path / "c", namespace="photos"))
    assert {item.corpus for item in named} == {"photos"} and sorted(item.id for item in named) == ids
    assert named[0].point_id == point_id("photos", named[0].id) != point_id("", named[0].id)
    assert point_id("a", "b/c") != point_id("a/b", "c")  # no ambiguity between corpus and id

    values = ["hello", {"id": 7, "text": "seven", "lang": "en"}, {"image": "c/images/00.png"}, tmp_path / "c/man.txt"]
    monkeypatch.chdir(tmp_path)  # a dict's image is relative to the working folder
    corpus = Corpus.from_items(values)
    items = list(corpus)
    assert (corpus.total(), len(corpus), corpus.complete, corpus.skipped) == (4, 4, False, [])
    assert [item.id for item in items[:2]] == [CorpusItem.compute_digest("hello", None, {})[:16], "7"]
    assert items[1].metadata == {"lang": "en"} and items[2].image == str((tmp_path / "c/images/00.png").resolve())
    assert (items[3].id, items[3].text) == ((tmp_path / "c/man.txt").resolve().as_posix(), TEXTS["man.txt"])
    assert Corpus.from_items(iter(values)).total() is None
    with pytest.raises(TypeError, match="got a single str; wrap it in a list"):
        Corpus.from_items("hello")
    with pytest.raises(TypeError, match=r"items\[0\] is a bytes"):
        list(Corpus.from_items([b"hello"]))
