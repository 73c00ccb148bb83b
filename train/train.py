"""Train an st_unirep model: ``python train/train.py [--config CONFIG.yaml] [--output_dir DIR] [--backbone PATH_OR_ID]
[--<any TrainConfig field> VALUE ...]``.

With no arguments it trains the tiny offline Qwen2-VL on the built-in generated data on the CPU (a few minutes),
evaluating on the data's dev renderings as it goes, and saves the model to ``output/model/`` (the run's checkpoints,
logs and generated data beside it in ``output/``; see ``st_unirep.training.run_layout``). Under ``torchrun`` /
``accelerate launch`` the same command trains with DDP.

Without ``--output_dir`` a folder that already holds a finished run is never replaced: the run goes to the first free
``<output_dir>-2``, ``-3``, ... instead (and says so). A folder named with ``--output_dir`` is used as given: one
holding a finished run is refused unless ``--overwrite_output_dir true`` or ``--resume_from_checkpoint``.

Flags override the keys of the YAML file; ``--help`` lists every field with its comment. Booleans take
``true/false/yes/no/1/0`` (``--bf16`` alone means true); dict and list-of-dict fields take JSON, e.g.
``--sources '[{"path": "../shared/data/stsb_en/train.jsonl", "task": "text_pair"}]'``. In a checkout the built-in
data draws its graded text pairs from ``../shared/data/stsb_en/train.jsonl`` when present (``default_text_pairs``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from checkout import train_defaults  # noqa: E402
from st_unirep.errors import DataError  # noqa: E402
from st_unirep.training.config import ConfigArgumentParser, load_config  # noqa: E402
from st_unirep.training.run import run_training  # noqa: E402
from st_unirep.training.run_layout import free_output_dir  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "tiny.yaml"
DESCRIPTION = "Train an st_unirep model; with no arguments, the tiny offline default job (see the module docstring)."


def main(argv: list[str] | None = None) -> Path:
    parser = ConfigArgumentParser(default_config=DEFAULT_CONFIG, description=DESCRIPTION)
    config_file, overrides, _ = parser.parse_config_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_file, overrides, defaults=train_defaults())
    except (ValueError, FileNotFoundError) as error:  # a bad config: one line, naming the field
        parser.exit(2, f"error: {error}\n")
    if "output_dir" not in overrides:
        config.output_dir = str(default_output_dir(config))
    try:
        model = run_training(config)
    except (FileExistsError, DataError) as error:  # a refused output folder or a bad data row: one line
        parser.exit(2, f"error: {error}\n")
    if os.environ.get("RANK", "0") == "0":
        print(f"Saved the trained model to {model.resolve()}")
        print(f"Load it with: st_unirep.load_model({str(model)!r})")
        print(f"The run's checkpoints, logs and data: {Path(config.output_dir).resolve()}")
    return model


def default_output_dir(config) -> Path:
    """The configured folder, or, when it holds a finished run, the first free ``<folder>-N`` — except when the run
    resumes or overwrites (the folder is meant), or under a multi-process launch (the ranks could pick different
    free names: the folder is used as configured, and refused if it holds a finished run)."""
    configured = Path(config.output_dir)
    if config.resume_from_checkpoint or config.overwrite_output_dir or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return configured
    chosen = free_output_dir(configured)
    if chosen != configured:
        logging.getLogger("train").warning(
            "%s already holds a finished run (or other files); this run goes to %s (--output_dir to choose a folder, "
            "--overwrite_output_dir true to replace it)",
            configured,
            chosen,
        )
    return chosen


if __name__ == "__main__":
    main()
