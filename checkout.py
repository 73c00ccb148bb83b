"""Paths of this source checkout, for its scripts (``train/``, ``eval/``, ``bench/``) and its tests.

The ``shared`` folder beside the repository holds the data sets in the evaluation layouts, model configs and the
seeds. The package never reads it (a pip user has none); this module, which is not installed, is the one place
that finds it: ``$ST_UNIREP_SHARED`` when set (a copy elsewhere), else ``../shared``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent


def shared_root() -> Path:
    """The shared folder: ``$ST_UNIREP_SHARED`` when set, else ``shared`` beside the repository."""
    return Path(os.environ.get("ST_UNIREP_SHARED") or REPO.parent / "shared")


def data_root() -> Path:
    """The data sets of the shared folder (``stsb_en/``, ``viquad_vi/``, ...), the scripts' default ``--data``."""
    return shared_root() / "data"


def train_defaults() -> dict[str, Any]:
    """The TrainConfig values a checkout's training scripts start from, below any YAML file and flag: the STS-B
    train split as the built-in data's graded text pairs, when the shared folder has it."""
    stsb = data_root() / "stsb_en" / "train.jsonl"
    return {"default_text_pairs": str(stsb)} if stsb.is_file() else {}
