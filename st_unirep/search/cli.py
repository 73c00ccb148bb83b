"""``python -m st_unirep.search index|query``: build a Qdrant index of a corpus, then search it.

python -m st_unirep.search index --model output --corpus photos/ --index search-index
python -m st_unirep.search query --index search-index --text "một người đàn ông trên đỉnh núi"
python -m st_unirep.search query --index search-index --image photo.jpg --limit 5 --min-score 0.6 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from qdrant_client import models

from st_unirep.search.corpus import Corpus
from st_unirep.search.index import DEFAULT_COLLECTION, SearchIndex

logger = logging.getLogger(__name__)


def _model_name(model: str) -> str:
    """A local model folder is recorded by its absolute path, so a query from another folder finds it."""
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _location(args: argparse.Namespace) -> str:
    return args.url or args.index


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m st_unirep.search",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def where(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--index", default="search-index", help="folder of the embedded Qdrant index")
        sub.add_argument("--url", help="a Qdrant server/cluster URL instead of --index (same client API)")
        sub.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name")
        sub.add_argument("-v", "--verbose", action="store_true", help="log every batch")

    index = commands.add_parser("index", help="encode a corpus into the index (idempotent, resumable)")
    index.add_argument("--model", required=True, help="a sentence-transformers model folder (e.g. output)")
    index.add_argument(
        "--corpus",
        required=True,
        help='a folder of images (.jpg/.png/.webp/...) and texts (.txt/.md), or a .jsonl of {"id", "text"?, "image"?}',
    )
    where(index)
    index.add_argument("--batch-size", type=int, default=16, help="items per forward pass")
    index.add_argument("--prefix-dim", type=int, help="prefix width (default: a quarter of the model's width)")
    index.add_argument("--force", action="store_true", help="re-encode items whose content did not change")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")

    query = commands.add_parser("query", help="search the index with a text, an image or both")
    where(query)
    query.add_argument("--model", help="default: the model recorded in the index")
    query.add_argument("--text", help="query text")
    query.add_argument("--image", help="query image path")
    query.add_argument("--limit", type=int, default=10, help="results to return")
    query.add_argument(
        "--candidates", type=int, help="k': prefix candidates rescored at full width (default max(100, 10*limit))"
    )
    query.add_argument(
        "--min-score",
        type=float,
        help="drop results whose calibrated score is below this (the model's profile, else (cos+1)/2)",
    )
    query.add_argument(
        "--profile", help="the model's calibration profile for scores and --min-score (default: its 'default')"
    )
    query.add_argument("--exhaustive", action="store_true", help="exact full-width search, no prefix stage")
    query.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE", help="payload filter, e.g. metadata.company=ABC"
    )
    query.add_argument("--json", action="store_true", help="one JSON object per result")
    return parser


def _filter(conditions: Sequence[str]) -> models.Filter | None:
    must = []
    for condition in conditions:
        key, sep, value = condition.partition("=")
        if not sep or not key:
            raise ValueError(f"--where expects KEY=VALUE, got {condition!r}")
        must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must) if must else None


def _run_index(args: argparse.Namespace) -> int:
    corpus = Corpus(args.corpus)
    with SearchIndex(
        _location(args),
        args.model,
        collection=args.collection,
        prefix_dim=args.prefix_dim,
        model_name=_model_name(args.model),
        create=True,
    ) as index:
        report = index.add(corpus, batch_size=args.batch_size, force=args.force, progress=not args.no_progress)
    print(report)
    return 0


def _run_query(args: argparse.Namespace) -> int:
    if args.text is None and args.image is None:
        raise ValueError("A query needs --text, --image or both")
    client = SearchIndex.connect(_location(args))
    try:
        model = args.model
        if model is None:
            if not client.collection_exists(args.collection):
                raise FileNotFoundError(f"No collection {args.collection!r} at {_location(args)!r}")
            model = (client.get_collection(args.collection).config.metadata or {}).get("model_name")
            if not model:
                raise ValueError("The index records no model; pass --model")
        index = SearchIndex(client, model, collection=args.collection, model_name=_model_name(model))
        hits = index.query(
            args.text,
            args.image,
            limit=args.limit,
            candidates=args.candidates,
            min_score=args.min_score,
            exhaustive=args.exhaustive,
            query_filter=_filter(args.where),
            profile=args.profile,
        )
    finally:
        client.close()
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run_index(args) if args.command == "index" else _run_query(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
