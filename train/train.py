"""Train an st_unirep model: ``python train/train.py [--config CONFIG.yaml] [--output_dir DIR] [--backbone PATH_OR_ID]
[--<any TrainConfig field> VALUE ...]``.

With no arguments it trains the tiny offline Qwen2-VL on the built-in generated data on the CPU (a few minutes)
and saves the model to ``output/``. Under ``torchrun`` / ``accelerate launch`` the same command trains with DDP.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from st_unirep.training.config import TrainConfig, load_config  # noqa: E402
from st_unirep.training.run import run_training  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "tiny.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML file of TrainConfig fields")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind = hints[field.name]
        if kind is bool or kind == (bool | None):
            parser.add_argument(f"--{field.name}", type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL")
        elif "dict" in str(kind):  # a JSON object, e.g. --text_pair_weights '{"cosent_weight": 1}'
            parser.add_argument(f"--{field.name}", type=json.loads, metavar="JSON")
        elif "list" in str(kind):
            parser.add_argument(f"--{field.name}", type=float, nargs="+")
        elif kind in (int, int | None):
            parser.add_argument(f"--{field.name}", type=int)
        elif kind in (float, float | None):
            parser.add_argument(f"--{field.name}", type=float)
        else:
            parser.add_argument(f"--{field.name}", type=str)
    return parser


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = vars(_parser().parse_args(argv))
    config_path = arguments.pop("config")
    overrides = {key: value for key, value in arguments.items() if value is not None}
    config = load_config(config_path, overrides)
    output = run_training(config)
    if os.environ.get("RANK", "0") == "0":
        print(f"Saved the trained model to {output.resolve()}")
        print(f"Load it with: SentenceTransformer({str(output)!r}, trust_remote_code=True)")
    return output


if __name__ == "__main__":
    main()
