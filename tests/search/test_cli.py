"""``python -m st_unirep.search``: index then query, refusals, and a run killed midway that the next run completes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from st_unirep.search import Corpus, SearchIndex
from st_unirep.search.cli import _parser, main
from tests.conftest import REPO

from .conftest import write_corpus, write_png_bomb
from .test_index import _inputs, _stored

# Loading a saved st_unirep model folder may still need trust_remote_code (ST imports module classes outside its own
# package only then); st_unirep never opts in on the user's behalf, so the tests pass the flag.
TRUST = "--trust_remote_code"


def _query(capsys, *args: str) -> list[dict]:
    assert main(["query", *args, TRUST, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_index_then_query(tmp_path, corpus_dir, search_model_path, capsys):
    folder, ids = corpus_dir
    index = str(tmp_path / "index")
    assert (
        main(["index", "--model", search_model_path, "--corpus", str(folder), "--index", index, "--no-progress", TRUST])
        == 0
    )
    assert capsys.readouterr().out.startswith(
        "indexed 18 item(s) (18 new, 0 updated), 0 unchanged, 0 removed, 0 skipped; 18 in"
    )

    # No --model: the index's own (recorded by absolute path) is used.
    hits = _query(capsys, "--index", index, "--text", "a red ball on a white table", "--limit", "3")
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["id"] == "notes/ball.txt"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[0]["score"] > hits[1]["score"]
    image = str(folder / "images/04.jpg")
    hits = _query(capsys, "--index", index, "--image", image, "--limit", "1", "--candidates", "4")
    assert hits[0]["id"] == "images/04.jpg" and hits[0]["image"] == image
    exhaustive = _query(capsys, "--index", index, "--text", "tổng tiền", "--limit", "18", "--exhaustive")
    cut = _query(capsys, "--index", index, "--text", "tổng tiền", "--limit", "18", "--min-score", "0.55")
    assert [h["id"] for h in cut] == [h["id"] for h in exhaustive if h["score"] >= 0.55]
    assert 0 < len(cut) < 18

    only = _query(capsys, "--index", index, "--text", "tổng tiền", "--where", "id=misc.txt", "--where", "text=x y z")
    assert [h["id"] for h in only] == ["misc.txt"]

    assert main(["query", "--index", index, "--text", "tổng tiền", "--limit", "2", TRUST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  1. 0.") and "  2. 0." in lines[2]


def test_refusals(tmp_path, corpus_dir, search_model_path, capsys):
    folder, _ = corpus_dir
    index = str(tmp_path / "index")
    assert main(["query", "--index", index, "--text", "x"]) == 2
    assert "No search index at" in capsys.readouterr().err
    assert (
        main(["index", "--model", search_model_path, "--corpus", str(folder), "--index", index, "--no-progress", TRUST])
        == 0
    )
    capsys.readouterr()
    assert main(["query", "--index", index]) == 2
    assert capsys.readouterr().err.strip() == "error: A query needs --text, --image or both"
    assert main(["query", "--index", index, "--text", "x", "--min-score", "2", TRUST]) == 2
    assert "calibrated score in [0, 1]" in capsys.readouterr().err
    assert main(["query", "--index", index, "--text", "x", "--where", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


# Runs the CLI with each point written on its own; after KILL_AFTER points it hangs until the parent SIGKILLs it,
# so the kill always lands inside a batch (points 1-4 = batch 1, 5-6 of batch 2 written, 7-8 not).
CHILD = textwrap.dedent(
    """
    import sys, time
    from st_unirep.search.edge_store import EdgeStore
    upsert, written = EdgeStore.upsert, [0]
    def one_by_one(self, ids, full, prefix, payloads):
        for i in range(len(ids)):
            upsert(self, ids[i : i + 1], full[i : i + 1], prefix[i : i + 1], payloads[i : i + 1])
            written[0] += 1
            print("written", written[0], flush=True)
            if written[0] == KILL_AFTER:
                time.sleep(600)
    EdgeStore.upsert = one_by_one
    from st_unirep.search.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_killed_indexing_resumes_with_every_item_once(tmp_path, corpus_dir, search_model_path, search_model, capsys):
    folder, ids = corpus_dir
    index = str(tmp_path / "index")
    args = [
        "index",
        "--model",
        search_model_path,
        "--corpus",
        str(folder),
        "--index",
        index,
        "--batch-size",
        "4",
        TRUST,
    ]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.replace("KILL_AFTER", "6"), *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watchdog = threading.Timer(300, child.kill)  # never hang the suite if the child stalls before point 6
    watchdog.start()
    written = 0
    for line in child.stdout:
        written = int(line.split()[1]) if line.startswith("written") else written
        if written == 6:
            break
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    watchdog.cancel()
    assert written == 6, "the indexing child exited before it was killed"

    first_six = [item.id for item in Corpus(folder)][:6]
    with SearchIndex(index, search_model) as opened:
        assert sorted(_stored(opened)) == sorted(first_six)  # batch 1 and half of batch 2 survived the kill

    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(
        "indexed 12 item(s) (12 new, 0 updated), 6 unchanged, 0 removed, 0 skipped; 18 in the index"
    )
    with SearchIndex(index, search_model) as opened:
        assert opened.count() == 18
        stored = _stored(opened)  # asserts that no item id occurs twice
        assert sorted(stored) == ids
        np.testing.assert_allclose(
            np.stack([stored[i][0] for i in ids]), search_model.encode(_inputs(folder, ids)), atol=1e-5
        )


def _index(folder, index: str, model: str, *extra: str) -> list[str]:
    return ["index", "--model", model, "--corpus", str(folder), "--index", index, "--no-progress", TRUST, *extra]


def test_second_folder_adds_and_a_deleted_file_is_removed(tmp_path, search_model_path, capsys):
    first, second = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    write_corpus(first)
    write_corpus(second)
    index = str(tmp_path / "index")
    assert main(_index(first, index, search_model_path)) == 0
    assert main(_index(second, index, search_model_path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "indexed 18 item(s) (18 new, 0 updated), 0 unchanged, 0 removed, 0 skipped; 36 in the index"
    (first / "notes/ball.txt").unlink()
    assert main(_index(first, index, search_model_path)) == 0
    assert capsys.readouterr().out == (
        "indexed 0 item(s) (0 new, 0 updated), 17 unchanged, 1 removed, 0 skipped; 35 in the index\n"
    )
    hits = _query(capsys, "--index", index, "--text", "a red ball on a white table", "--limit", "35", "--exhaustive")
    assert [h["corpus"] for h in hits if h["id"] == "notes/ball.txt"] == [second.resolve().as_posix()]
    named = _index(first, index, search_model_path, "--namespace", "photos")
    assert main(named) == 0 and capsys.readouterr().out.startswith("indexed 17 item(s) (17 new, 0 updated)")
    hits = _query(capsys, "--index", index, "--text", "x y z", "--where", "corpus=photos", "--limit", "50")
    assert len(hits) == 17 and {h["corpus"] for h in hits} == {"photos"}


def test_typed_where_and_a_misspelt_key(tmp_path, corpus_dir, search_model_path, capsys):
    folder, _ = corpus_dir
    rows = [{"id": "p3", "text": "page 3", "page": 3}, {"id": "s3", "text": "page 3 str", "page": "3"}]
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    index = str(tmp_path / "index")
    assert main(_index(folder / "rows.jsonl", index, search_model_path)) == 0
    capsys.readouterr()
    assert sorted(h["id"] for h in _query(capsys, "--index", index, "--text", "p", "--where", "metadata.page=3")) == [
        "p3",
        "s3",
    ]
    assert [h["id"] for h in _query(capsys, "--index", index, "--text", "p", "--where", 'metadata.page="3"')] == ["s3"]
    assert main(["query", "--index", index, "--text", "p", "--where", "metadata.pgae=3", TRUST]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "error: No item in the index has a value for the filter key 'metadata.pgae'; the keys it has: id, corpus, "
        "text, image, source, digest, metadata.page"
    )


def test_a_decompression_bomb_is_skipped_and_listed(tmp_path, corpus_dir, search_model_path, capsys):
    folder, ids = corpus_dir
    write_png_bomb(folder / "images" / "bomb.png")
    assert main(_index(folder, str(tmp_path / "index"), search_model_path, "--batch-size", "4")) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0] == "indexed 18 item(s) (18 new, 0 updated), 0 unchanged, 0 removed, 1 skipped; 18 in the index"
    assert out[1].startswith(f"  skipped {folder / 'images' / 'bomb.png'}: ") and "400,000,000 pixels" in out[1]
    assert captured.err.splitlines()[-1] == (
        "warning: 1 corpus entry skipped (listed above with the reason); every other item is indexed"
    )


def test_an_unreachable_server_is_one_error_line(tmp_path, corpus_dir, search_model_path, capsys):
    folder, _ = corpus_dir
    expected = "error: Cannot reach the Qdrant server at 'http://127.0.0.1:1' ("
    assert main(["query", "--url", "http://127.0.0.1:1", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err
    assert main(["index", "--model", search_model_path, "--corpus", str(folder), "--url", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1


def test_query_without_model_says_which_and_refuses_a_vanished_one(tmp_path, corpus_dir, search_model_path, capsys):
    folder, _ = corpus_dir
    model = tmp_path / "model-copy"
    shutil.copytree(search_model_path, model)
    index = str(tmp_path / "index")
    assert main(_index(folder, index, str(model))) == 0
    capsys.readouterr()
    hits = _query(capsys, "--index", index, "--text", "a blue square", "--limit", "1")
    assert hits[0]["id"] == "square.md"
    assert main(["query", "--index", index, "--text", "x", "--limit", "1", TRUST]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"note: no --model given; using the model the index recorded: {model}"
    shutil.rmtree(model)
    assert main(["query", "--index", index, "--text", "a blue square", TRUST]) == 2
    assert capsys.readouterr().err == (
        f"error: The index was built with the model at '{model}', which no longer exists; pass --model with that "
        "model (a copy or a moved folder works: its fingerprint is checked)\n"
    )
    hits = _query(capsys, "--index", index, "--text", "a blue square", "--limit", "1", "--model", search_model_path)
    assert hits[0]["id"] == "square.md"


def test_the_cli_never_opts_into_remote_code_for_the_user(tmp_path, corpus_dir, search_model, monkeypatch, capsys):
    import st_unirep.search.index as index_module

    folder, _ = corpus_dir
    calls: list[bool] = []

    def recorder(path, **kwargs):
        calls.append(kwargs["trust_remote_code"])
        return search_model

    monkeypatch.setattr(index_module, "load_st_unirep_model", recorder)
    index = str(tmp_path / "index")
    args = ["index", "--model", "some/model", "--corpus", str(folder), "--index", index, "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--trust-remote-code"]) == 0
    assert main(["query", "--index", index, "--text", "x", "--model", "some/model"]) == 0
    assert main(["query", "--index", index, "--text", "x", "--trust_remote_code"]) == 0  # the recorded "some/model"
    assert calls == [False, True, False, True]

    def refuse(path, **kwargs):
        raise ValueError(
            f"The model {path} references the module class 'st_unirep.modules.backbone.Backbone', which is not "
            "part of Sentence Transformers.\nPlease pass the argument `trust_remote_code=True` to allow custom code "
            "to be run."
        )

    monkeypatch.setattr(index_module, "load_st_unirep_model", refuse)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: Model 'some/model' needs trust_remote_code to load, and st_unirep does not turn it on"
    )
    assert err.rstrip().endswith(
        "If you trust that folder, pass --trust_remote_code (in Python: SearchIndex(..., trust_remote_code=True))."
    )


def _long_flags(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The long option strings of each of ``parser``'s options that have an underscore or hyphen in their name."""
    flags = [[o for o in action.option_strings if o.startswith("--")] for action in parser._actions]
    return [spellings for spellings in flags if spellings and any(c in spellings[0][2:] for c in "_-")]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_flag_is_spelt_with_underscores_and_takes_hyphens(capsys):
    for command, sub in _subparsers(_parser()).items():
        flags = _long_flags(sub)
        assert flags, command
        for spellings in flags:  # documented with underscores, hyphens as the alias: HfArgumentParser's order
            assert spellings == [spellings[0], spellings[0].replace("_", "-")] and "-" not in spellings[0][2:]
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage = capsys.readouterr().out.split("\n\n", 1)[0]
        assert "--" in usage and not re.search(r"--[a-z]+-[a-z]", usage), usage
    names = {command: {s[0] for s in _long_flags(sub)} for command, sub in _subparsers(_parser()).items()}
    assert names["index"] >= {"--batch_size", "--prefix_dim", "--no_progress", "--trust_remote_code"}
    assert names["query"] >= {"--min_score", "--trust_remote_code", "--hnsw_ef"} and "--no_progress" in names["copy"]


def test_min_score_parses_with_underscores_and_with_hyphens():
    parse = _parser().parse_args
    hyphens = parse(["query", "--min-score", "0.5", "--trust-remote-code", "--text", "x"])
    underscores = parse(["query", "--min_score", "0.5", "--trust_remote_code", "--text", "x"])
    assert hyphens == underscores and hyphens.min_score == 0.5 and hyphens.trust_remote_code is True
    index_args = ["index", "--model", "m", "--corpus", "c"]
    assert parse([*index_args, "--batch-size", "3", "--prefix-dim", "8", "--no-progress"]) == parse(
        [*index_args, "--batch_size", "3", "--prefix_dim", "8", "--no_progress"]
    )


def _evaluate_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "eval" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._parser()


def test_search_spells_its_flags_as_train_and_eval_do():
    """The three command lines (train/train.py: HfArgumentParser; eval/evaluate.py; this one) all list a flag as
    ``--x_y, --x-y`` and take both."""
    from st_unirep.training.config import ConfigArgumentParser

    for parser in (ConfigArgumentParser(), _evaluate_parser()):
        flags = _long_flags(parser)
        assert flags
        for spellings in flags:
            assert spellings == [spellings[0], spellings[0].replace("_", "-")]
    train = ConfigArgumentParser()
    assert train.parse_config_args(["--max-steps", "3"])[1] == train.parse_config_args(["--max_steps", "3"])[1]
    evaluate = _evaluate_parser().parse_args
    hyphens = evaluate(["--model", "m", "--batch-size", "4", "--truncate-dims", "8", "16", "--trust-remote-code"])
    underscores = evaluate(["--model", "m", "--batch_size", "4", "--truncate_dims", "8", "16", "--trust_remote_code"])
    assert hyphens == underscores and hyphens.truncate_dims == [8, 16] and hyphens.trust_remote_code is True
