"""Matryoshka funnel vs exhaustive search on the embedded engine (Qdrant Edge), on real embeddings and at 1M items.

    python bench/search_funnel.py                       # both stages, writes the "Search funnel" section
    python bench/search_funnel.py --stage real --no_write

Model: the trained e5-small st_unirep model (Matryoshka 96/192/384; ``python eval/compare.py`` writes it to
``compare/e5-small/st_unirep/model``), ``--model`` for another.

(a) ``real``: every distinct text of ``../shared/data`` train + dev (36,476 texts, see ``bench/_real_corpus.py``)
embedded once (cached in ``bench/.cache``) and stored with ``SearchIndex.add_embeddings``; 1,000 real queries with a
gold item (retrieval questions → their passage, paraphrase and near-identical pairs → their partner). Per prefix
width and k′: recall@10 of the funnel against the exhaustive full-width top 10, gold-in-top-10 of both, latency.

(b) ``scale``: the real embeddings plus synthetic ones up to ``--size`` (1,000,000): each synthetic vector is
normalise(a·x_i + (1 − a)·x_j + σ·ε), x_i, x_j two random real embeddings, a ~ U(0.5, 1), ε ~ N(0, I), σ = 0.02 (a
cosine of about 0.93 to the mixture): points on the real embeddings' manifold, so prefixes keep their real
structure. The same 1,000 real queries; exhaustive ground truth by numpy over all vectors. Reports index build time
(upsert, graph), disk and bytes per item, p50/p95 latency and recall@10 of the funnel (per k′ and ef), exhaustive
search in the engine and in numpy (all vectors in RAM), HNSW on the full vectors (``--hnsw_full``), batched QPS, and
the peak RSS of a separate query process (model + index, funnel queries only).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import BENCHMARKS_MD, REPO, command_line, machine_line, markdown_table, versions_line, write_section
from _real_corpus import collect, embed

from checkout import data_root  # importable once _common has put the repository on sys.path
from st_unirep.model import load_model
from st_unirep.search import CorpusItem, SearchIndex
from st_unirep.search.index_params import IndexParams

LIMIT = 10


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 200_000) -> np.ndarray:
    """(q, k) row numbers of the exact top k by cosine (vectors and queries unit-norm), in blocks of rows."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ vectors[start : start + block].T  # (q, block)
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
    return best_rows


def _synthetic(real: np.ndarray, size: int, seed: int = 0, block: int = 100_000) -> np.ndarray:
    """``real`` followed by synthetic mixtures up to ``size`` rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real
    for start in range(len(real), size, block):
        n = min(block, size - start)
        i, j = rng.integers(0, len(real), n), rng.integers(0, len(real), n)
        a = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
        mixed = a * real[i] + (1 - a) * real[j] + 0.02 * rng.standard_normal((n, real.shape[1])).astype(np.float32)
        out[start : start + n] = _unit(mixed)
    return out


def _items(n: int, texts: list[str]) -> list[CorpusItem]:
    return [
        CorpusItem(id=str(i), text=texts[i] if i < len(texts) else None, corpus="bench", source="real" if i < len(
            texts) else "synthetic")
        for i in range(n)
    ]  # fmt: skip


def _disk_bytes(path: Path) -> int:
    """Bytes allocated on disk (the engine's files are sparse: their apparent size is larger)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file() and f.name != "bench.json")


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    return 1000 * float(np.percentile(seconds, 50)), 1000 * float(np.percentile(seconds, 95))


def _recall(found: list[list[str]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & {str(t) for t in row}) / LIMIT for f, row in zip(found, truth, strict=True)]))


def _gold_in_top(found: list[list[str]], gold: list[int]) -> float:
    return float(np.mean([str(g) in f for f, g in zip(found, gold, strict=True)]))


def _timed_queries(index: SearchIndex, queries: np.ndarray, **kwargs) -> tuple[list[list[str]], list[float]]:
    ids, seconds = [], []
    for query in queries[:5]:
        index.query(vector=query, limit=LIMIT, **kwargs)  # warm-up
    for query in queries:
        start = time.perf_counter()
        hits = index.query(vector=query, limit=LIMIT, **kwargs)
        seconds.append(time.perf_counter() - start)
        ids.append([hit.id for hit in hits])
    return ids, seconds


def _build(path: Path, model, vectors: np.ndarray, texts: list[str], prefix_dim: int, params: IndexParams) -> dict:
    """Create the index at ``path`` (reused when it holds the same number of items); build times and disk."""
    info_file = path / "bench.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        if info["items"] == len(vectors) and info["params"] == params.to_dict() and info["prefix_dim"] == prefix_dim:
            return info
    shutil.rmtree(path, ignore_errors=True)
    items = _items(len(vectors), texts)
    with SearchIndex(path, model, create=True, prefix_dim=prefix_dim, params=params, model_name="bench") as index:
        start = time.perf_counter()
        for first in range(0, len(items), 50_000):
            index.add_embeddings(
                items[first : first + 50_000], vectors[first : first + 50_000], progress=False, optimize=False
            )
            print(f"  stored {min(first + 50_000, len(items)):,} / {len(items):,}", flush=True)
        upsert_s = time.perf_counter() - start
        start = time.perf_counter()
        index.optimize()
        graph_s = time.perf_counter() - start
        indexed = index.store.shard.info().indexed_vectors_count
    info = {
        "items": len(vectors),
        "prefix_dim": prefix_dim,
        "params": params.to_dict(),
        "upsert_s": upsert_s,
        "graph_s": graph_s,
        "indexed_vectors": indexed,
    }
    info_file.write_text(json.dumps(info))
    return info


def _real_configs(prefix_dims: list[int], candidates: list[int], dim: int) -> list[tuple[str, int, str, list[int]]]:
    """(label, prefix width, quantization, k′ sweep) of stage (a): funnels, int8, and HNSW on the full vector."""
    configs = [(f"funnel {p} → {dim}", p, "none", candidates) for p in prefix_dims]
    widest = max(prefix_dims)
    configs.append((f"funnel {widest} → {dim}, int8 graph", widest, "int8", [k for k in candidates if k >= 100]))
    configs.append((f"HNSW on the full {dim}-d", dim, "none", [LIMIT]))  # k′ = limit: the rescoring is a no-op
    return configs


def stage_real(model, vectors, corpus, work: Path, prefix_dims: list[int], candidates: list[int]) -> str:
    queries = vectors[corpus.queries]
    truth = _exact_top(vectors, queries, LIMIT)
    rows = []
    for label, prefix_dim, quantization, sweep in _real_configs(prefix_dims, candidates, vectors.shape[1]):
        path = work / f"real-{prefix_dim}-{quantization}"
        info = _build(path, model, vectors, corpus.texts, prefix_dim, IndexParams(quantization=quantization))
        with SearchIndex(path, model) as index:
            exact_ids, exact_s = _timed_queries(index, queries, exhaustive=True)
            exact_gold = _gold_in_top(exact_ids, corpus.gold)
            for k in sweep:
                ids, seconds = _timed_queries(index, queries, candidates=k)
                p50, p95 = _percentiles(seconds)
                rows.append([
                    label, k, f"{_recall(ids, truth):.4f}",
                    f"{_gold_in_top(ids, corpus.gold):.3f} / {exact_gold:.3f}", f"{p50:.2f} / {p95:.2f}",
                    f"{_percentiles(exact_s)[0]:.2f}", f"{info['graph_s']:.1f}",
                ])  # fmt: skip
                print(rows[-1], flush=True)
        assert _recall(exact_ids, truth) > 0.999, "the engine's exhaustive search disagrees with numpy"
    header = ["search", "k′", f"recall@{LIMIT}", f"gold in top {LIMIT}: funnel / exhaustive",
              "latency ms p50 / p95", "exhaustive ms p50", "graph build s"]  # fmt: skip
    return (
        f"**(a) Real corpus**: {len(vectors):,} distinct texts of `../shared/data` (train + dev), "
        f"{len(queries):,} real queries with a gold item, ef = max(128, k′).\n\n" + markdown_table(header, rows)
    )


def _rss_probe(path: Path, model_path: str, queries_file: Path, candidates: int) -> dict:
    """Peak RSS of a fresh process that loads the model, opens the index and runs the funnel queries."""
    code = (
        "import json, sys, numpy as np\n"
        "def status(key):  # VmHWM: this process's own peak (ru_maxrss would include the parent's, from the fork)\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key + ':'): return int(line.split()[1])\n"
        "def peak_kb(): return status('VmHWM')\n"
        "from st_unirep.search import SearchIndex\n"
        f"queries = np.load({str(queries_file)!r})\n"
        f"with SearchIndex({str(path)!r}, {model_path!r}) as index:\n"
        "    after_open = peak_kb()\n"
        f"    for q in queries: index.query(vector=q, limit={LIMIT}, candidates={candidates})\n"
        "print(json.dumps({'open_kb': after_open, 'peak_kb': peak_kb(), 'anon_kb': status('RssAnon'),\n"
        "                  'file_kb': status('RssFile')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def _numpy_exhaustive_ms(vectors: np.ndarray, queries: np.ndarray) -> list[float]:
    """Single-query exhaustive search in numpy (all vectors in RAM, one matrix-vector product + top 10)."""
    seconds = []
    for query in queries:
        start = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, LIMIT)[:LIMIT]
        top[np.argsort(-scores[top])]
        seconds.append(time.perf_counter() - start)
    return seconds


def _scale_rows(index, queries, truth, args, label: str, sweep: list[tuple[int, int]], exact_p50: float) -> list:
    rows = []
    for k, ef in sweep:
        ids, seconds = _timed_queries(index, queries, candidates=k, hnsw_ef=ef)
        p50, p95 = _percentiles(seconds)
        rows.append([label, k, max(ef, k), f"{_recall(ids, truth):.4f}", f"{p50:.2f} / {p95:.2f}",
                     f"{exact_p50 / p50:.0f}×"])  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def _built_index(model, everything, corpus, work: Path, args, prefix_dim: int) -> tuple[Path, dict]:
    params = IndexParams(m=args.m, ef_construct=args.ef_construct, quantization=args.quantization)
    path = work / f"scale-{args.size}-{prefix_dim}-{args.quantization}-{args.m}-{args.ef_construct}"
    info = _build(path, model, everything, corpus.texts, prefix_dim, params)
    info["disk_bytes"] = _disk_bytes(path)  # after closing: the optimizer's temporary segments are gone by then
    print(f"built {path.name}: {info}", flush=True)
    return path, info


def stage_scale(model, model_path, vectors, corpus, work: Path, args) -> str:
    everything = _synthetic(vectors, args.size)
    queries = vectors[corpus.queries]
    truth = _exact_top(everything, queries, LIMIT)
    numpy_p50, numpy_p95 = _percentiles(_numpy_exhaustive_ms(everything, queries[: args.exact_queries]))
    path, info = _built_index(model, everything, corpus, work, args, args.prefix_dim)
    dim = vectors.shape[1]
    rows = []
    with SearchIndex(path, model) as index:
        exact_ids, exact_s = _timed_queries(index, queries[: args.exact_queries], exhaustive=True)
        exact_p50, exact_p95 = _percentiles(exact_s)
        rows.append(["exhaustive (engine, full width)", "-", "-", f"{_recall(exact_ids, truth[: len(exact_ids)]):.4f}",
                     f"{exact_p50:.1f} / {exact_p95:.1f}", "1×"])  # fmt: skip
        rows.append(["exhaustive (numpy, all vectors in RAM)", "-", "-", "1.0000", f"{numpy_p50:.1f} / {numpy_p95:.1f}",
                     f"{exact_p50 / numpy_p50:.1f}×"])  # fmt: skip
        sweep = [(k, ef) for k in args.candidates for ef in args.ef]
        rows += _scale_rows(index, queries, truth, args, f"funnel {args.prefix_dim} → {dim}", sweep, exact_p50)
        batch_qps = _batched_qps(index, queries, args.default_candidates)
    np.save(work / "queries.npy", queries[:200])
    rss = _rss_probe(path, model_path, work / "queries.npy", args.default_candidates)
    full_line = ""
    if args.hnsw_full:
        full_path, full_info = _built_index(model, everything, corpus, work, args, dim)
        with SearchIndex(full_path, model) as index:
            rows += _scale_rows(index, queries, truth, args, f"HNSW on the full {dim}-d", [(LIMIT, ef) for ef in
                                args.ef], exact_p50)  # fmt: skip
        minutes = (full_info["upsert_s"] + full_info["graph_s"]) / 60
        full_line = (
            f" HNSW on the full vectors: build {minutes:.1f} min, {full_info['disk_bytes'] / args.size:.0f} B/item."
        )
    header = [
        "search",
        "k′",
        "ef",
        f"recall@{LIMIT} vs exhaustive",
        "latency ms p50 / p95",
        "speed-up vs engine exhaustive (p50)",
    ]
    return "\n".join([
        f"**(b) {args.size:,} items** ({len(vectors):,} real + synthetic mixtures), prefix {args.prefix_dim} of {dim}, "
        f"HNSW m = {args.m}, ef_construct = {args.ef_construct}, quantization {args.quantization}, full vectors on "
        f"disk. Build: upsert {info['upsert_s'] / 60:.1f} min + graph {info['graph_s'] / 60:.1f} min; disk "
        f"{info['disk_bytes'] / 2**30:.2f} GiB ({info['disk_bytes'] / args.size:.0f} bytes per item, payload "
        f"included).{full_line}",
        "",
        markdown_table(header, rows),
        "",
        f"Exhaustive latencies over the first {args.exact_queries} queries; funnel and recall over all "
        f"{len(queries):,}. Batched funnel (k′ = {args.default_candidates}, 64 queries per call): "
        f"{batch_qps:.0f} queries/s. Query process (a fresh process: model + index, 200 funnel queries): peak RSS "
        f"{rss['peak_kb'] / 2**20:.2f} GiB ({rss['open_kb'] / 2**20:.2f} GiB after loading the model and opening; at "
        f"the end {rss['anon_kb'] / 2**20:.2f} GiB anonymous + {rss['file_kb'] / 2**20:.2f} GiB mapped index files, "
        "which the kernel can drop).",
    ])  # fmt: skip


def _batched_qps(index: SearchIndex, queries: np.ndarray, candidates: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(queries), 64):
        index.query_batch(queries[first : first + 64], limit=LIMIT, candidates=candidates)
    return len(queries) / (time.perf_counter() - start)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "compare/e5-small/st_unirep/model"), help="st_unirep model")
    parser.add_argument("--data", default=str(data_root()), help="data root (default: ../shared/data)")
    parser.add_argument("--stage", choices=("real", "scale", "all"), default="all")
    parser.add_argument("--work_dir", default=str(REPO / "bench/.cache/search"), help="indexes (reused if same)")
    parser.add_argument("--prefix_dims", type=int, nargs="+", default=[96, 192], help="(a): prefix widths")
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 30, 50, 100, 200, 400], help="k′ sweep")
    parser.add_argument("--size", type=int, default=1_000_000, help="(b): items")
    parser.add_argument("--prefix_dim", type=int, default=96, help="(b): prefix width")
    parser.add_argument("--ef", type=int, nargs="+", default=[128], help="(b): hnsw_ef sweep (at least k′)")
    parser.add_argument("--m", type=int, default=IndexParams.m)
    parser.add_argument("--ef_construct", type=int, default=IndexParams.ef_construct)
    parser.add_argument("--quantization", default=IndexParams.quantization)
    parser.add_argument("--default_candidates", type=int, default=100, help="(b): k′ for QPS and RSS")
    parser.add_argument("--exact_queries", type=int, default=100, help="(b): queries timed exhaustively")
    parser.add_argument("--hnsw_full", action="store_true", help="(b): also build and time HNSW on the full vectors")
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    return parser


def main() -> None:
    args = _parser().parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    versions = (
        f"{versions_line()}, qdrant-edge-py {importlib.metadata.version('qdrant-edge-py')}, numpy {np.__version__}"
    )
    machine = machine_line()
    print(f"{machine}\n{versions}", flush=True)
    corpus = collect(Path(args.data))
    model = load_model(args.model)
    vectors = embed(model, corpus.texts, REPO / "bench/.cache", args.model)
    sections = []
    start = time.perf_counter()
    if args.stage in ("real", "all"):
        sections.append(stage_real(model, vectors, corpus, work, args.prefix_dims, args.candidates))
    if args.stage in ("scale", "all"):
        sections.append(stage_scale(model, args.model, vectors, corpus, work, args))
    body = (
        f"Command: `{command_line()}` ({(time.perf_counter() - start) / 60:.0f} min; model `{args.model}`)\n\n"
        f"Machine: {machine}; load avg after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}, peak RSS of this "
        f"process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB  \nVersions: {versions}\n\n"
        "Embedded Qdrant Edge. Funnel = one Query API call: `Prefetch` of the top k′ by the `prefix` vector (HNSW, "
        "ef = max(hnsw_ef, k′)), rescored by the `full` vector (on disk, no graph). recall@10 = mean overlap with "
        "the exhaustive full-width top 10; gold in top 10 = share of queries whose gold item is there. Latency: "
        "one `SearchIndex.query(vector=...)` call (payload included, query encoding excluded).\n\n"
        + "\n\n".join(sections)
    )
    print("\n" + body)
    if not args.no_write:
        write_section("search_funnel", "Search funnel", body)
        print(f"(written to {BENCHMARKS_MD})")


if __name__ == "__main__":
    main()
