"""The seeds' planned ablations (H1/H2) as matched training runs: ``python eval/ablate.py [--backbone PATH]
[--data DIR] [--eval_data ROOT] [--output DIR] [--<TrainConfig field> VALUE ...]``.

Every variant trains with the same data, steps and seed from ``train/configs/tiny.yaml`` (or ``--config``) and
changes one thing against the full recipe:

- ``mean pooling``: sentence-transformers' mean ``Pooling`` instead of attention pooling;
- ``InfoNCE only``: symmetric InfoNCE for every task instead of the per-task (prefix-guided) losses;
- ``no regularisers``: no uniformity, anti-collapse, orthogonality or entropy terms;
- ``seeds' text losses``: the preset's own text-pair loss (UniRep: KL + 10·MSE + 5·rank on (cos+1)/2) and
  InstructionLoss's cosine pull, where a config (the text configs) trains for ranking instead.

Each model is evaluated on the held-out OCR renderings of the built-in data (when it is used) and on every dataset
of ``--eval_data`` (default ``../shared/data``, dev split) that it can read; one table is printed and written to
``<output>/ablation.md``. On a CPU with no arguments it runs the tiny model on the built-in data (about 20 minutes
on 2 cores, most of it evaluating four models on the shared data).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from checkout import data_root, train_defaults  # noqa: E402
from st_unirep.evaluation.evaluate import evaluate  # noqa: E402
from st_unirep.training.config import ConfigArgumentParser, load_config  # noqa: E402
from st_unirep.training.run import build_trainer  # noqa: E402
from st_unirep.training.run_layout import RunLayout  # noqa: E402
from st_unirep.training.synthetic import heldout_ocr_retrieval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = "The seeds' planned ablations (H1/H2) as matched training runs (see the module docstring)."
VARIANTS = {
    "full recipe": {},
    "mean pooling": {"pooling_mode": "mean"},
    "InfoNCE only": {"loss_mode": "infonce"},
    "no regularisers": {"regularizers": False},
    "seeds' text losses": {"text_pair_weights": None, "instruction_cos_weight": None},
}
# Headline metric per evaluation dataset kind (higher is better except ece).
COLUMNS = [
    ("stsb_en", "spearman"),
    ("stsb_en", "ece"),
    ("stsb_zh", "spearman"),
    ("stsb_zh", "ece"),
    ("sick_en", "spearman"),
    ("sick_en", "ece"),
    ("vnpara_vi", "ap"),
    ("viquad_vi", "r@1"),
    ("viqa_regwiki_vi", "r@1"),
    ("vicaption_vi", "t2i_r@1"),
]


@dataclass
class AblationArguments:
    """The options of the ablation itself (the TrainConfig flags change every variant alike)."""

    output: str = "ablation_output"  # one folder per variant, ablation.md and ablation.json
    eval_data: str = str(data_root())  # data root in the evaluation layouts (skipped when it does not exist)
    eval_split: str = "dev"  # split of eval_data to evaluate
    # The variants to train, by name
    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"choices": list(VARIANTS), "metavar": "NAME"}
    )


def main(argv: list[str] | None = None) -> dict:
    parser = ConfigArgumentParser(
        AblationArguments, default_config=ROOT / "train" / "configs" / "tiny.yaml", description=DESCRIPTION
    )
    config_file, overrides, (args,) = parser.parse_config_args(argv)
    logging.basicConfig(level=logging.WARNING)
    output = Path(args.output)
    rows = {}
    for name, change in ((n, VARIANTS[n]) for n in args.variants):
        folder = output / name.replace(" ", "_")
        config = load_config(config_file, {**overrides, **change, "output_dir": str(folder)}, train_defaults())
        trainer, _ = build_trainer(config)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        row = {"final loss": sum(losses[-3:]) / max(1, len(losses[-3:]))}
        if config.data is None and not config.sources:  # the built-in data (and its held-out renderings) was used
            row["held-out OCR t2i R@1"] = heldout_ocr_retrieval(trainer.model, RunLayout(folder).data)["r@1"]
        if Path(args.eval_data).is_dir():
            results, _ = evaluate(trainer.model, args.eval_data, args.eval_split, dims=[], show_progress_bar=False)
            for dataset, metric in COLUMNS:
                if dataset in results and metric in results[dataset]:
                    row[f"{dataset} {metric}"] = results[dataset][metric]
        rows[name] = row
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    table += [
        f"| {name} | " + " | ".join(f"{row.get(c, float('nan')):.3f}" for c in columns) + " |"
        for name, row in rows.items()
    ]
    output.mkdir(parents=True, exist_ok=True)
    (output / "ablation.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    (output / "ablation.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n".join(table))
    return rows


if __name__ == "__main__":
    main()
