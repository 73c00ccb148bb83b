"""``python -m st_unirep.search index|query``: build a Qdrant index of a corpus, then search it.

python -m st_unirep.search index --model output --corpus photos/ --index search-index
python -m st_unirep.search query --index search-index --text "một người đàn ông trên đỉnh núi"
python -m st_unirep.search query --index search-index --image photo.jpg --limit 5 --min_score 0.6 --json
python -m st_unirep.search copy --index search-index --to http://localhost:6333

The index folder is an embedded Qdrant Edge shard (HNSW on the Matryoshka prefix, full vectors on disk); one process
opens it at a time. --url talks to a Qdrant server or cluster with the same layout; `copy` moves an index there.

Flags are spelt with underscores, as train/train.py's and eval/evaluate.py's are; each also takes hyphens
(--min_score = --min-score, --batch_size = --batch-size).

Items are keyed by corpus + relative path: the corpus is named by its absolute path (or --namespace), so indexing a
second folder with the same file names adds to the index, and re-indexing a folder removes what left it.

--where KEY=VALUE (repeatable, all must hold) types VALUE: 3 matches the number 3 or the string "3"; true/false the
boolean or the string; "3" or '3' (quoted) only the string; anything else the string. A KEY that no item has is an
error that lists the keys the index has (id, corpus, text, image, source, digest, metadata.*).

The model is loaded without trust_remote_code unless --trust_remote_code is given: a model folder whose modules
live outside sentence-transformers (e.g. st_unirep's own modules, where they still need it) asks you to opt in.
A query without --model uses the model the index recorded, says so on stderr, and refuses if that path is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_client.http.exceptions import ApiException

from st_unirep.search.copy import copy_index
from st_unirep.search.corpus import Corpus
from st_unirep.search.index import DEFAULT_COLLECTION, SearchIndex, open_store
from st_unirep.search.index_params import QUANTIZATIONS, IndexParams
from st_unirep.search.where import where_filter

logger = logging.getLogger(__name__)


def _model_name(model: str) -> str:
    """A local model folder is recorded by its absolute path, so a query from another folder finds it."""
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _location(args: argparse.Namespace) -> str:
    return args.url or args.index


def _option(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    """``parser.add_argument`` with each long flag spelt with underscores, then with hyphens as an alias (the order
    and spellings of transformers' ``HfArgumentParser``, which train/train.py uses: ``--min_score, --min-score``)."""
    spellings: list[str] = []
    for flag in flags:
        if flag.startswith("--"):
            spellings += dict.fromkeys(["--" + flag[2:].replace("-", "_"), "--" + flag[2:].replace("_", "-")])
        else:
            spellings.append(flag)
    parser.add_argument(*spellings, **kwargs)


def _common(sub: argparse.ArgumentParser) -> None:
    _option(sub, "--index", default="search-index", help="folder of the embedded Qdrant index")
    _option(sub, "--url", help="a Qdrant server/cluster URL instead of --index (same client API)")
    _option(sub, "--collection", default=DEFAULT_COLLECTION, help="collection name")
    _option(
        sub,
        "--trust_remote_code",
        action="store_true",
        help="let the model folder import module classes outside sentence-transformers (off unless given)",
    )
    _option(sub, "-v", "--verbose", action="store_true", help="log every batch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m st_unirep.search",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    described = {"description": parser.description, "formatter_class": argparse.RawTextHelpFormatter}
    index = commands.add_parser("index", help="encode a corpus into the index (idempotent, resumable)", **described)
    _option(index, "--model", required=True, help="a sentence-transformers model folder (e.g. output)")
    _option(
        index,
        "--corpus",
        required=True,
        help='a folder of images (.jpg/.png/.webp/...) and texts (.txt/.md), or a .jsonl of {"id", "text"?, "image"?}',
    )
    _option(
        index,
        "--namespace",
        help="the corpus's name in the index (default: its absolute path); items are keyed by namespace + id",
    )
    _common(index)
    _option(index, "--batch_size", type=int, default=16, help="items per forward pass")
    _option(index, "--prefix_dim", type=int, help="prefix width (default: half the model's width)")
    _option(index, "--force", action="store_true", help="re-encode items whose content did not change")
    _option(index, "--hnsw_m", type=int, default=IndexParams.m, help="new index: HNSW edges per node (recall vs size)")
    _option(
        index,
        "--ef_construct",
        type=int,
        default=IndexParams.ef_construct,
        help="new index: HNSW build width (recall vs build time)",
    )
    _option(
        index,
        "--quantization",
        choices=QUANTIZATIONS,
        default=IndexParams.quantization,
        help="new index: search the prefix graph on int8 copies (4x less RAM)",
    )
    _option(index, "--no_progress", action="store_true", help="no progress bar")

    query = commands.add_parser("query", help="search the index with a text, an image or both", **described)
    _common(query)
    _option(query, "--model", help="default: the model recorded in the index (said on stderr)")
    _option(query, "--text", help="query text")
    _option(query, "--image", help="query image path")
    _option(query, "--limit", type=int, default=10, help="results to return")
    _option(query, "--candidates", type=int, help="k': prefix candidates rescored at full width (max(100, 10*limit))")
    _option(
        query,
        "--min_score",
        type=float,
        help="drop results whose calibrated score is below this (the model's profile, else (cos+1)/2)",
    )
    _option(query, "--profile", help="the model's calibration profile for scores and --min_score (default: 'default')")
    _option(query, "--exhaustive", action="store_true", help="exact full-width search, no prefix stage")
    _option(query, "--hnsw_ef", type=int, help="HNSW search width of the prefix stage (default: the index's, >= k')")
    _option(
        query,
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="payload filter, e.g. metadata.company=ABC or metadata.page=3 (typed as said above)",
    )
    _option(query, "--json", action="store_true", help="one JSON object per result")

    copy = commands.add_parser(
        "copy", help="copy an index to a Qdrant server or another folder, without re-encoding", **described
    )
    _option(copy, "--index", help="the index folder to copy (or --url)")
    _option(copy, "--url", help="a Qdrant server/cluster URL to copy from instead of --index")
    _option(copy, "--to", required=True, help="target: a new folder, or a Qdrant server/cluster URL")
    _option(copy, "--collection", default=DEFAULT_COLLECTION, help="collection name (the same at the target)")
    _option(copy, "--no_progress", action="store_true", help="no progress bar")
    _option(copy, "-v", "--verbose", action="store_true", help="log progress")
    return parser


def _run_index(args: argparse.Namespace) -> int:
    corpus = Corpus(args.corpus, namespace=args.namespace)
    with SearchIndex(
        _location(args),
        args.model,
        collection=args.collection,
        prefix_dim=args.prefix_dim,
        model_name=_model_name(args.model),
        create=True,
        params=IndexParams(m=args.hnsw_m, ef_construct=args.ef_construct, quantization=args.quantization),
        trust_remote_code=args.trust_remote_code,
    ) as index:
        report = index.add(corpus, batch_size=args.batch_size, force=args.force, progress=not args.no_progress)
    print(report)
    if report.skipped:
        print(
            f"warning: {len(report.skipped)} corpus entr{'y' if len(report.skipped) == 1 else 'ies'} skipped "
            "(listed above with the reason); every other item is indexed",
            file=sys.stderr,
        )
    return 0


def _recorded_model(args: argparse.Namespace) -> str:
    """The model the index recorded, checked to exist if it is a local path, and said on stderr."""
    store = open_store(_location(args), args.collection)
    try:
        if not store.exists():
            raise FileNotFoundError(f"No collection {args.collection!r} at {_location(args)!r}")
        model = store.metadata().get("model_name")
    finally:
        store.close()
    if not model:
        raise ValueError("The index records no model; pass --model")
    if os.path.isabs(model) and not Path(model).exists():
        raise FileNotFoundError(
            f"The index was built with the model at {model!r}, which no longer exists; pass --model with that "
            "model (a copy or a moved folder works: its fingerprint is checked)"
        )
    print(f"note: no --model given; using the model the index recorded: {model}", file=sys.stderr)
    return model


def _print_hits(hits: list, args: argparse.Namespace) -> None:
    for rank, hit in enumerate(hits, start=1):
        if args.json:
            print(json.dumps({"rank": rank, **hit.to_dict()}, ensure_ascii=False))
            continue
        print(f"{rank:3d}. {hit.score:.4f}  {hit.id}  {hit.image or hit.source}")
        if hit.text:
            snippet = " ".join(hit.text.split())
            print(f"      {snippet[:117] + '...' if len(snippet) > 120 else snippet}")
    if not hits and not args.json:
        print("no results" + (f" with a calibrated score >= {args.min_score}" if args.min_score is not None else ""))


def _run_query(args: argparse.Namespace) -> int:
    if args.text is None and args.image is None:
        raise ValueError("A query needs --text, --image or both")
    query_filter = where_filter(args.where)
    model = args.model if args.model is not None else _recorded_model(args)
    with SearchIndex(
        _location(args),
        model,
        collection=args.collection,
        model_name=_model_name(model),
        trust_remote_code=args.trust_remote_code,
    ) as index:
        hits = index.query(
            args.text,
            args.image,
            limit=args.limit,
            candidates=args.candidates,
            min_score=args.min_score,
            exhaustive=args.exhaustive,
            query_filter=query_filter,
            profile=args.profile,
            hnsw_ef=args.hnsw_ef,
        )
    _print_hits(hits, args)
    return 0


def _run_copy(args: argparse.Namespace) -> int:
    source = _location(args)
    if not source:
        raise ValueError("copy needs --index FOLDER or --url URL to copy from")
    copied = copy_index(source, args.to, collection=args.collection, progress=not args.no_progress)
    print(f"copied {copied} item(s) from {source} to {args.to}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return {"index": _run_index, "query": _run_query, "copy": _run_copy}[args.command](args)
    except (ValueError, OSError, RuntimeError) as error:  # FileNotFoundError and ConnectionError are OSErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ApiException as error:
        print(f"error: Qdrant at {_location(args)!r}: {' '.join(str(error).split())[:300]}", file=sys.stderr)
        return 2
