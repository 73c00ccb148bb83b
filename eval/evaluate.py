"""Evaluate a model on every dataset of a data folder: ``python eval/evaluate.py --model PATH [--data ROOT]
[--split dev] [--output DIR] [--truncate_dims D ...]``.

Writes ``DIR/results.json``, ``DIR/report.md``, ``DIR/reliability.png`` and ``DIR/matryoshka.png``; with ``--mteb``
also runs the same datasets as local mteb tasks (``DIR/mteb_results.json``). Works for
st_unirep models and plain sentence-transformers models alike (baselines go through the same code).

Each dataset is evaluated on its own: one that fails (a malformed file, a corrupt image) is listed under
``_meta.failed`` in ``results.json`` and in the report, the others are still evaluated, and the exit status is 1.

The model is loaded with ``st_unirep.model.load_model``: st_unirep's own modules come from the installed package,
and no code from the model folder runs. A model whose ``modules.json`` names classes of its own needs
``--trust_remote_code``; pass it only for a model whose code you trust.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from checkout import data_root  # noqa: E402
from st_unirep.evaluation.evaluate import evaluate  # noqa: E402
from st_unirep.evaluation.report import write_report  # noqa: E402
from st_unirep.model import load_model  # noqa: E402
from st_unirep.training.run_layout import model_folder  # noqa: E402


def _flag(name: str) -> list[str]:
    """``--name`` spelt with underscores, then with hyphens as an alias: the spellings and order of transformers'
    ``HfArgumentParser`` (train/train.py) and of ``python -m st_unirep.search``."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))


def _parser() -> argparse.ArgumentParser:
    """The command line; every flag takes underscores (as documented) or hyphens."""
    parser = argparse.ArgumentParser(
        description=f"{__doc__.split(':', 1)[0]}. Flags take underscores (as shown) or hyphens (--batch-size)."
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model folder, training run folder or id (st_unirep or any sentence-transformers)",
    )
    parser.add_argument("--data", default=str(data_root()), help="data root (default: ../shared/data)")
    parser.add_argument("--split", default="dev", help="split to evaluate (dev; a test split has the same files)")
    parser.add_argument("--output", default="eval_output", help="folder for results.json, report.md and plots")
    parser.add_argument(
        *_flag("truncate_dims"), type=int, nargs="*", default=None, help="Matryoshka widths to evaluate"
    )
    parser.add_argument(*_flag("batch_size"), type=int, default=32, help="encoding batch size")
    parser.add_argument("--mteb", action="store_true", help="also run the datasets as local mteb tasks")
    parser.add_argument(
        *_flag("trust_remote_code"),
        action="store_true",
        help="allow module classes and model code from the model folder or hub repo (off: only sentence-transformers "
        "and st_unirep classes load; use it only for a model whose code you trust)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Evaluate, write the report; the exit status: 1 if a dataset failed, else 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.model = model_folder(args.model)  # a training run's folder (train/train.py's output/): its model/
    model = load_model(args.model, trust_remote_code=args.trust_remote_code)
    results, artifacts = evaluate(
        model, args.data, args.split, args.truncate_dims, args.batch_size, model_name=args.model
    )
    report = write_report(results, artifacts, args.output, args.model)
    if args.mteb:
        from st_unirep.evaluation.mteb_tasks import mteb_model_name, run_mteb

        mteb_folder, mteb_name = str(Path(args.output) / "mteb"), mteb_model_name(args.model)
        scores = run_mteb(model, args.data, args.split, output_folder=mteb_folder, model_name=mteb_name)
        (Path(args.output) / "mteb_results.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
        print(f"mteb: {json.dumps(scores, indent=1)}")
    summary = {
        name: {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}
        for name, r in results.items()
        if name != "_meta"
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    for name, error in results["_meta"]["failed"].items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    print(f"Report: {report}")
    return 1 if results["_meta"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
