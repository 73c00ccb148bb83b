"""``python -m st_unirep.search``: index then query, refusals, and a run killed midway that the next run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from st_unirep.search import Corpus, SearchIndex
from st_unirep.search.cli import main

from .test_index import _inputs, _stored


def _query(capsys, *args: str) -> list[dict]:
    assert main(["query", *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_index_then_query(tmp_path, corpus_dir, search_model_path, capsys):
    folder, ids = corpus_dir
    index = str(tmp_path / "index")
    assert (
        main(["index", "--model", search_model_path, "--corpus", str(folder), "--index", index, "--no-progress"]) == 0
    )
    assert capsys.readouterr().out.startswith("indexed 18 item(s) (18 new, 0 updated), 0 unchanged, 0 skipped; 18 in")

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

    assert main(["query", "--index", index, "--text", "tổng tiền", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  1. 0.") and "  2. 0." in lines[2]


def test_refusals(tmp_path, corpus_dir, search_model_path, capsys):
    folder, _ = corpus_dir
    index = str(tmp_path / "index")
    assert main(["query", "--index", index, "--text", "x"]) == 2
    assert "No search index at" in capsys.readouterr().err
    assert (
        main(["index", "--model", search_model_path, "--corpus", str(folder), "--index", index, "--no-progress"]) == 0
    )
    capsys.readouterr()
    assert main(["query", "--index", index]) == 2
    assert capsys.readouterr().err.strip() == "error: A query needs --text, --image or both"
    assert main(["query", "--index", index, "--text", "x", "--min-score", "2"]) == 2
    assert "calibrated score in [0, 1]" in capsys.readouterr().err
    assert main(["query", "--index", index, "--text", "x", "--where", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


# Runs the CLI with each point written on its own; after KILL_AFTER points it hangs until the parent SIGKILLs it,
# so the kill always lands inside a batch (points 1-4 = batch 1, 5-6 of batch 2 written, 7-8 not).
CHILD = textwrap.dedent(
    """
    import sys, time
    from qdrant_client import QdrantClient
    upsert, written = QdrantClient.upsert, [0]
    def one_by_one(self, collection_name, points, **kwargs):
        for point in points:
            upsert(self, collection_name, points=[point], **kwargs)
            written[0] += 1
            print("written", written[0], flush=True)
            if written[0] == KILL_AFTER:
                time.sleep(600)
    QdrantClient.upsert = one_by_one
    from st_unirep.search.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_killed_indexing_resumes_with_every_item_once(tmp_path, corpus_dir, search_model_path, search_model, capsys):
    folder, ids = corpus_dir
    index = str(tmp_path / "index")
    args = ["index", "--model", search_model_path, "--corpus", str(folder), "--index", index, "--batch-size", "4"]
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
        "indexed 12 item(s) (12 new, 0 updated), 6 unchanged, 0 skipped; 18 in the index"
    )
    with SearchIndex(index, search_model) as opened:
        assert opened.count() == 18
        stored = _stored(opened)  # asserts that no item id occurs twice
        assert sorted(stored) == ids
        np.testing.assert_allclose(
            np.stack([stored[i][0] for i in ids]), search_model.encode(_inputs(folder, ids)), atol=1e-5
        )
