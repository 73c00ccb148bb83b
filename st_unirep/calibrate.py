"""Fit a score calibration profile on labelled pairs and save it into a model folder.

    python -m st_unirep.calibrate --model MODEL --data pairs.jsonl [more ...] --profile NAME [--score_range LO HI]

``--data``: graded pairs ``{"sentence1", "sentence2", "score"}`` (scores mapped to [0, 1] with ``--score_range``;
STS-B / SICK folders know theirs), binary pairs ``{"sentence1", "sentence2", "label": 0|1}`` or a retrieval
folder (``queries.jsonl``, ``corpus.jsonl``, ``qrels.jsonl``: every query-item pair, relevant = 1). A bad row stops
with ``file:line: field ...``. The profile is written into ``MODEL`` (its ``ScoreCalibration`` module; the
weights are not rewritten) and replaces a profile of the same name. Then
``st_unirep.calibrated_similarity(a, b, model=model, profile=NAME)`` applies it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from st_unirep.calibration import CalibrationProfile, fit_profiles, load_calibration
from st_unirep.calibration.fitting import calibration_entry
from st_unirep.errors import DataError

logger = logging.getLogger("st_unirep.calibrate")
MODULE_TYPE = "st_unirep.modules.score_calibration.ScoreCalibration"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_profiles(model_dir: str | Path, profiles: list[CalibrationProfile]) -> Path:
    """Write ``profiles`` into the model folder's ``ScoreCalibration`` module (adding the module if it has none).

    Only the module's ``config.json`` (and, for a new module, ``modules.json``) change, each replaced atomically;
    the module's config is written before ``modules.json`` names it, so an interrupted call leaves a loadable
    model. Returns the config file written.
    """
    from st_unirep.modules.score_calibration import ScoreCalibration

    model_dir = Path(model_dir)
    existing = load_calibration(model_dir) or ScoreCalibration()
    for profile in profiles:
        existing.add(profile)
    modules_file = model_dir / "modules.json"
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    entry = calibration_entry(modules)
    if entry is None:
        entry = {"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_ScoreCalibration"}
        entry["type"] = MODULE_TYPE
        modules.append(entry)
    config_file = model_dir / entry["path"] / ScoreCalibration.config_file_name
    _atomic_write(config_file, json.dumps(existing.get_config_dict(), indent=1))
    _atomic_write(modules_file, json.dumps(modules, indent=2))
    return config_file


def main(argv: list[str] | None = None) -> CalibrationProfile:
    parser = argparse.ArgumentParser(prog="python -m st_unirep.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved sentence-transformers / st_unirep model folder")
    parser.add_argument("--data", required=True, nargs="+", help="labelled pairs (.jsonl) or retrieval folders")
    parser.add_argument("--profile", required=True, help="the profile's name (e.g. sts, qa, default)")
    parser.add_argument("--score_range", type=float, nargs=2, metavar=("LO", "HI"), help="range of graded scores")
    parser.add_argument(
        "--dims", type=int, nargs="*", help="embedding widths to fit (default: the model's evaluation widths)"
    )
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.profile.strip() or "/" in args.profile:
        parser.error(f"--profile must be a plain name, got {args.profile!r}")
    if not (Path(args.model) / "modules.json").is_file():
        parser.error(f"--model {args.model!r} is not a saved sentence-transformers model folder (no modules.json)")
    from st_unirep.model import load_model

    sources = [{"path": p, "score_range": args.score_range} if args.score_range else p for p in args.data]
    try:
        model = load_model(args.model)
        (profile,) = fit_profiles(model, {args.profile: sources}, dims=args.dims, batch_size=args.batch_size)
    except (DataError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    written = save_profiles(args.model, [profile])
    width = max(profile.widths)
    summary = {
        "profile": profile.name,
        "target": profile.target,
        "pairs": profile.pairs,
        "widths": profile.widths,
        "mean_target": round(profile.extra["mean_target"], 4),
        "score_at_cos": {str(c): round(float(profile(np.array(c), width)), 4) for c in (0.0, 0.5, 0.7, 0.9)},
        "written": str(written),
    }
    print(json.dumps(summary, ensure_ascii=False))
    return profile


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
