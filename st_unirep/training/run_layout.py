"""``RunLayout``: where a training run puts its files. The trained model gets a folder of its own, so it can be
copied or uploaded as it is, without the run's data, backbone or checkpoints::

    <output_dir>/
      model/              the trained model: what load_model reads, its README.md model card, calibration/
      checkpoints/        checkpoint-<step>/, health.jsonl, eval/ (the dev evaluator's CSV), runs/ (TensorBoard)
      data/               the generated built-in data (default job)
      tiny-backbone/      the generated tiny Qwen2-VL ("tiny" backbone)
      train_config.json   the TrainConfig of the run
      train_log.json      the trainer's log history (training and dev-evaluation rows)
      heldout_ocr.json    text -> image R@1 on the built-in data's held-out renderings (default job)
      skipped_rows.txt    every row skipped with skip_invalid (only when some were)
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# What a finished run (or an earlier version's output folder, whose model sat at the top) leaves in an output folder.
MODEL_MARKERS = (
    "model/modules.json",
    "modules.json",
    "model.safetensors",
    "config_sentence_transformers.json",
    "checkpoints/checkpoint-*",
)
# What a run writes before its final save (and leaves when it stops early): no reason to refuse the folder.
# (.saving-*: an interrupted save's staging folder; .replaced-*: see save_atomically.)
RUN_SCRATCH = ("data", "tiny-backbone", "checkpoints", "skipped_rows.txt", ".saving-*", ".replaced-*")


@dataclass(frozen=True)
class RunLayout:
    """The paths of one training run under its output folder ``root`` (the module docstring shows the tree).

    Example::

        layout = RunLayout("output")
        model = st_unirep.load_model(layout.model)
        history = json.loads(layout.train_log.read_text())
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tiny_backbone(self) -> Path:
        return self.root / "tiny-backbone"

    @property
    def train_config(self) -> Path:
        return self.root / "train_config.json"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.json"

    @property
    def heldout_ocr(self) -> Path:
        return self.root / "heldout_ocr.json"

    @property
    def skipped_rows(self) -> Path:
        return self.root / "skipped_rows.txt"

    @property
    def health_log(self) -> Path:
        return self.checkpoints / "health.jsonl"

    def finished(self) -> list[str]:
        """The markers of a trained model or checkpoints found in the folder (empty: none)."""
        return [name for name in MODEL_MARKERS if any(self.root.glob(name))]

    def check(self, overwrite: bool = False, resume: bool = False) -> None:
        """Refuse (``FileExistsError``, one line) a folder holding a trained model or checkpoints, or files that are
        not a run's, unless overwriting or resuming."""
        if overwrite or resume or not self.root.is_dir():
            return
        found = self.finished()
        if found:
            raise FileExistsError(
                f"output_dir {str(self.root)!r} already holds a trained model or checkpoints ({', '.join(found)}); a "
                "new run would replace them. Choose another --output_dir, resume with --resume_from_checkpoint last, "
                "or pass --overwrite_output_dir true to replace them."
            )
        other = sorted(p.name for p in self.root.iterdir() if not any(fnmatch.fnmatch(p.name, s) for s in RUN_SCRATCH))
        if other:
            shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
            raise FileExistsError(
                f"output_dir {str(self.root)!r} is not empty ({shown}) and holds no st_unirep run; the run's files "
                "(model/, train_log.json, train_config.json, ...) would replace any of the same names. Choose an "
                "empty or new --output_dir, or pass --overwrite_output_dir true to write into it anyway."
            )

    def prepare(self, clear: bool = True) -> None:
        """Create the folder; with ``clear`` (not when resuming, and on the main process only), remove what an
        earlier run left in ``checkpoints/`` (its checkpoints would mix with this run's: the oldest-first rotation
        would delete the new ones and ``resume_from_checkpoint last`` would pick the old run's; its health log would
        be appended to) and interrupted saves' staging folders. The earlier model itself stays until this run's is
        saved (:func:`save_atomically`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not clear:
            return
        earlier = sorted(path.name for path in self.checkpoints.glob("checkpoint-*"))
        if earlier:
            logger.warning(
                "overwrite_output_dir: removing the earlier run's checkpoints %s from %s", earlier, self.root
            )
        for stale in [self.checkpoints, *self.root.glob(".saving-*")]:
            shutil.rmtree(stale, ignore_errors=True)


def free_output_dir(path: str | Path) -> Path:
    """``path`` when it holds no finished run, else the first of ``<path>-2``, ``<path>-3``, ... that holds none
    (a stopped run's leftovers do not count: that run is simply started again)."""
    path = Path(path)
    candidate, number = path, 1
    while True:
        try:
            RunLayout(candidate).check()
            return candidate
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.name}-{number}")


def model_folder(path: str | Path) -> str:
    """``path`` itself, unless it is a run's folder (no ``modules.json``, but ``model/modules.json``): then its model
    folder. Lets ``--model output`` (the run) mean ``output/model`` (its model); a hub id passes through."""
    layout = RunLayout(path)
    if not (layout.root / "modules.json").is_file() and (layout.model / "modules.json").is_file():
        logger.info("%s is a training run's folder: loading its model, %s", path, layout.model)
        return str(layout.model)
    return str(path)


def save_atomically(model, folder: str | Path) -> None:
    """Save ``model`` as the folder ``folder`` so that a failure (a full disk) never leaves a half-written model.

    The model is written to a staging folder beside ``folder`` first; only when that save is complete is the
    earlier model folder (if any) moved aside, the new one renamed into place, and the earlier one deleted (no data
    is written in those steps). On failure the staging folder is removed, the earlier model is untouched, and the
    error says so. A crash between the renames leaves the earlier model in ``.replaced-*`` beside it, never deleted.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder.parent))
    try:
        model.save(str(staging))
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, Exception):  # Ctrl-C stays an interrupt
            raise
        raise OSError(
            f"Saving the trained model into {str(folder)!r} failed ({error}); nothing was replaced: the folder "
            "holds what it held before (checkpoints, if save_steps > 0, are in the run's checkpoints/ folder)."
        ) from error
    aside = None
    if folder.exists() or folder.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=folder.parent)) / folder.name
        os.replace(folder, aside)
    os.replace(staging, folder)
    if aside is not None:
        shutil.rmtree(aside.parent)
    logger.info("Saved the model to %s (written to a temporary folder first, then moved into place)", folder)


__all__ = ["MODEL_MARKERS", "RUN_SCRATCH", "RunLayout", "free_output_dir", "model_folder", "save_atomically"]
