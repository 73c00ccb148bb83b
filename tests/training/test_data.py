from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from st_unirep.training.data import DataError, load_task_data


def _write(root: Path, task: str, rows: list) -> Path:
    path = root / f"{task}.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


@pytest.fixture
def root(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), "red").save(tmp_path / "img" / name)
    return tmp_path


def test_all_tasks_load_with_the_loss_columns(root):
    _write(root, "text_pair", [{"sentence1": "a", "sentence2": "b", "score": 4.5}] * 2)
    _write(root, "instr", [{"query": "q", "positive": "p"}] * 2)
    _write(
        root,
        "ocr",
        [
            {"images": ["img/a.png"], "positive": "RED"},
            {"images": ["img/a.png", "img/b.png"], "query": "text?", "positive": "RED"},
        ],
    )
    _write(root, "vqa_single", [{"images": ["img/a.png"], "question": "colour?", "answer": "red"}] * 2)
    _write(
        root,
        "vqa_multi",
        [
            {
                "images": ["img/b.png"],
                "conversation": [
                    {"role": "user", "content": "colour?"},
                    {"role": "assistant", "content": "red"},
                    {"role": "user", "content": "shape?"},
                ],
                "answer": "square",
            }
        ]
        * 2,
    )
    data, report = load_task_data(root)
    assert list(data) == ["text_pair", "instr", "ocr", "vqa_single", "vqa_multi"]
    assert data["text_pair"].column_names == ["sentence1", "sentence2", "score"]
    assert data["ocr"].column_names == ["anchor", "positive"]
    anchor = data["ocr"][1]["anchor"]
    assert anchor["text"] == "text?" and anchor["image"] == [str(root / "img/a.png"), str(root / "img/b.png")]
    assert isinstance(anchor["image"][0], str)  # paths, decoded at batch time: no image corpus in RAM
    first_turn = data["vqa_multi"][0]["anchor"][0]
    assert first_turn["role"] == "user" and first_turn["content"][0]["image"] == str(root / "img/b.png")
    assert report.rows["vqa_multi"] == 2 and not report.skipped


def test_task_folders_of_jsonl_files(root):
    (root / "instr").mkdir()
    (root / "instr" / "part1.jsonl").write_text(json.dumps({"query": "q1", "positive": "p1"}) + "\n")
    (root / "instr" / "part2.jsonl").write_text(json.dumps({"query": "q2", "positive": "p2"}) + "\n")
    data, _ = load_task_data(root)
    assert data["instr"]["query"] == ["q1", "q2"]


@pytest.mark.parametrize(
    ("task", "row", "field", "expected"),
    [
        (
            "text_pair",
            {"sentence1": "a", "sentence2": "b", "score": 7},
            "score",
            r"expected a number in \[0.0, 5.0\], got 7",
        ),
        ("text_pair", {"sentence1": "a", "sentence2": "b", "score": "high"}, "score", "got 'high'"),
        ("text_pair", '{"sentence1": "a", "sentence2": "b", "score": NaN}', "score", "got nan"),
        ("text_pair", {"sentence1": "", "sentence2": "b", "score": 1}, "sentence1", "expected a non-empty string"),
        ("instr", {"query": "q"}, "positive", "expected a non-empty string, got missing"),
        ("instr", '{"query": "q", "positive": ', "<row>", "invalid JSON"),
        ("instr", "[1, 2]", "<row>", "expected a JSON object, got list"),
        ("ocr", {"images": [], "positive": "x"}, "images", "expected a non-empty list of image paths"),
        ("ocr", {"images": ["img/missing.png"], "positive": "x"}, "images[0]", "missing.png' does not exist"),
        ("ocr", {"images": [3], "positive": "x"}, "images[0]", "expected an image path string, got 3"),
        ("vqa_single", {"images": ["img/a.png"], "answer": "red"}, "question", "got missing"),
        (
            "vqa_multi",
            {"images": ["img/a.png"], "conversation": [{"role": "bot", "content": "hi"}], "answer": "x"},
            "conversation[0].role",
            "expected 'user', 'assistant' or 'system'",
        ),
        (
            "vqa_multi",
            {"images": ["img/a.png"], "conversation": [{"role": "assistant", "content": "hi"}], "answer": "x"},
            "conversation",
            "at least one 'user' turn",
        ),
    ],
)
def test_bad_rows_name_file_line_and_field(root, task, row, field, expected):
    good = {
        "text_pair": {"sentence1": "a", "sentence2": "b", "score": 1},
        "instr": {"query": "q", "positive": "p"},
        "ocr": {"images": ["img/a.png"], "positive": "x"},
        "vqa_single": {"images": ["img/a.png"], "question": "q", "answer": "a"},
        "vqa_multi": {"images": ["img/a.png"], "conversation": [{"role": "user", "content": "q"}], "answer": "a"},
    }[task]
    path = _write(root, task, [good, good, row])
    with pytest.raises(DataError, match=expected) as info:
        load_task_data(root)
    assert info.value.path == str(path) and info.value.line == 3 and info.value.field == field
    assert str(info.value).startswith(f"{path}:3: field {field!r}")
    data, report = load_task_data(root, skip_invalid=True)
    assert len(data[task]) == 2 and report.skipped == {task: 1} and expected.split("'")[0][:10] in report.errors[0]


def test_negative_must_be_all_or_nothing(root):
    _write(
        root,
        "ocr",
        [{"images": ["img/a.png"], "positive": "x", "negative": "y"}, {"images": ["img/a.png"], "positive": "x"}],
    )
    with pytest.raises(DataError, match=r"ocr.jsonl:2: field 'negative': 1 of 2 ocr rows have a negative"):
        load_task_data(root)


def test_no_data(tmp_path):
    with pytest.raises(ValueError, match="No task data under"):
        load_task_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task_data(tmp_path / "nope")


def test_generated_default_data_is_deterministic_and_loads(tmp_path):
    from st_unirep.training.synthetic import generate_default_data

    a = generate_default_data(tmp_path / "a", ocr_per_phrase=1, vqa_single=4, vqa_multi=2, text_pairs=4)
    b = generate_default_data(tmp_path / "b", ocr_per_phrase=1, vqa_single=4, vqa_multi=2, text_pairs=4)
    for name in ("ocr.jsonl", "vqa_single.jsonl", "vqa_multi.jsonl", "text_pair.jsonl", "instr.jsonl"):
        assert (a / name).read_text() == (b / name).read_text(), name
    assert (a / "images" / "ocr_0_0.png").read_bytes() == (b / "images" / "ocr_0_0.png").read_bytes()
    data, _ = load_task_data(a)
    assert set(data) == {"text_pair", "instr", "ocr", "vqa_single", "vqa_multi"}
    assert any("ư" in p or "ơ" in p or "ố" in p for p in data["ocr"]["positive"])  # Vietnamese diacritics
    heldout, _ = load_task_data(a / "heldout")
    assert len(heldout["ocr"]) == len(set(data["ocr"]["positive"]))


def _instr(root: Path) -> None:
    _write(root, "instr", [{"query": "q", "positive": "p"}] * 2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda root: _write(root, "text-pair", [{"sentence1": "a", "sentence2": "b", "score": 1}]),
            "text-pair.jsonl: 'text-pair.jsonl' is not a task file; expected <task>.jsonl with a task of "
            "['text_pair', 'instr', 'ocr', 'vqa_single', 'vqa_multi'] (did you mean 'text_pair.jsonl'?)",
        ),
        (
            lambda root: (root / "instr.json").write_text("[]"),
            "instr.json: 'instr.json' is named after task 'instr' but only instr.jsonl (JSON Lines, UTF-8) is read",
        ),
        (
            lambda root: (root / "ocr.jsonl.gz").write_bytes(b"\x1f\x8b"),
            "ocr.jsonl.gz: 'ocr.jsonl.gz' is named after task 'ocr' but only ocr.jsonl (JSON Lines, UTF-8) is read",
        ),
        (
            lambda root: ((root / "vqa-single").mkdir(), _write(root / "vqa-single", "part1", [{"x": 1}])),
            "vqa-single: folder 'vqa-single' of .jsonl files is not a task folder (did you mean 'vqa_single'?); "
            "task folders are named ['text_pair', 'instr', 'ocr', 'vqa_single', 'vqa_multi']",
        ),
        (
            lambda root: ((root / "ocr").mkdir(), (root / "ocr" / "rows.json").write_text("[]")),
            "ocr: task folder 'ocr' holds no *.jsonl file (only <task>/*.jsonl directly inside are read)",
        ),
        (
            lambda root: ((root / "text_pair").mkdir(), (root / "text_pair" / "part2.jsonl").write_text("\n\n")),
            "part2.jsonl: task 'text_pair' has no rows in this file (it is empty)",
        ),
    ],
    ids=["misspelt-file", "task-json", "task-gz", "misspelt-folder", "task-folder-without-jsonl", "empty-in-folder"],
)
def test_data_that_would_be_ignored_is_an_error_naming_it(root, make, message):
    """Regression: these were skipped without a word, so a task silently trained on nothing."""
    _instr(root)
    make(root)
    with pytest.raises(DataError) as info:
        load_task_data(root)
    assert str(info.value).endswith(message)
    data, report = load_task_data(root, skip_invalid=True)  # a warning, listed in the report; the rest loads
    assert len(data["instr"]) == 2 and len(report.errors) == 1 and report.errors[0].endswith(message)


def test_what_is_not_data_is_not_flagged(root):
    """Images, notes, hidden files, a folder beside its task file and non-task folders (heldout/) are fine."""
    _instr(root)
    (root / "README.md").write_text("about")
    (root / ".instr.jsonl.swp").write_bytes(b"\0")
    (root / "instr").mkdir()  # beside instr.jsonl: may hold that file's images
    Image.new("RGB", (8, 8)).save(root / "instr" / "x.png")
    (root / "heldout").mkdir()
    _write(root / "heldout", "ocr", [{"x": 1}])
    data, report = load_task_data(root)
    assert report.rows == {"instr": 2} and not report.errors


def test_a_misspelt_key_says_which_key_was_meant(root):
    _write(root, "ocr", [{"images": ["img/a.png"], "positive": "p", "negatives": "n", "captoin": "c"}])
    with pytest.raises(DataError) as info:
        load_task_data(root)
    assert str(info.value).endswith(
        "ocr.jsonl:1: field 'captoin': unknown key; a row of this task has keys "
        "['images', 'query', 'positive', 'negative']; also unknown: ['negatives']"
    )
    _write(root, "ocr", [{"images": ["img/a.png"], "positive": "p", "negatives": "n"}])
    with pytest.raises(DataError, match=r"field 'negatives': unknown key \(did you mean 'negative'\?\); a row of"):
        load_task_data(root)


def test_utf8_with_a_byte_order_mark_loads_and_utf16_is_named(root):
    """Windows editors write a UTF-8 byte-order mark (valid UTF-8: it loads); PowerShell's ``>`` writes UTF-16."""
    text = '{"query": "café", "positive": "p"}\n{"query": "q", "positive": "p"}\n'
    (root / "instr.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    data, _ = load_task_data(root)
    assert data["instr"]["query"] == ["café", "q"]
    (root / "instr.jsonl").write_bytes(text.encode("utf-16"))
    with pytest.raises(DataError) as info:
        load_task_data(root)
    assert str(info.value) == (
        f"{root / 'instr.jsonl'}:1: field '<row>': UTF-16 text (byte-order mark); save the file as UTF-8"
    )
    (root / "instr.jsonl").write_bytes(text.encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(DataError, match=r"instr.jsonl:1: field '<row>': has NUL bytes: UTF-16 text\? save the file"):
        load_task_data(root)


def _jpeg(path: Path, trailer: bytes = b"") -> bytes:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    path.write_bytes(path.read_bytes() + trailer)
    return path.read_bytes()


def test_a_truncated_jpeg_is_found_when_the_data_is_loaded(root):
    """Regression: PIL's verify() does not check a JPEG's data, so a cut-off download passed the load-time check
    and failed mid-training. A JPEG with data after its end (a phone's motion photo) still loads."""
    data = _jpeg(root / "img" / "cut.jpg")
    (root / "img" / "cut.jpg").write_bytes(data[: len(data) // 2])
    _jpeg(root / "img" / "motion.jpg", trailer=b"\0" * 10_000)
    _write(root, "ocr", [{"images": ["img/motion.jpg"], "positive": "p"}, {"images": ["img/cut.jpg"], "positive": "p"}])
    with pytest.raises(DataError) as info:
        load_task_data(root)
    assert str(info.value).startswith(
        f"{root / 'ocr.jsonl'}:2: field 'images[0]': image file '{root / 'img' / 'cut.jpg'}' is not a readable image "
        "(image file is truncated"
    )
    loaded, report = load_task_data(root, skip_invalid=True)
    assert len(loaded["ocr"]) == 1 and report.skipped == {"ocr": 1}


def test_each_image_file_is_checked_once(root, monkeypatch):
    """Rows sharing an image do not pay for its check again (the check reads the file)."""
    import PIL.Image

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    _write(root, "ocr", [{"images": ["img/a.png", "img/b.png"], "positive": f"p{i}"} for i in range(50)])
    data, _ = load_task_data(root)
    assert len(data["ocr"]) == 50 and sorted(Path(p).name for p in opened) == ["a.png", "b.png"]
