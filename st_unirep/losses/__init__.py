"""st_unirep's losses: per-task objectives, regularisers, Matryoshka and GradCache, composed by embeddings.

A stack such as ``RegularizedLoss(model, MatryoshkaLoss(model, CachedLoss(task), dims))`` runs the model once per
input column (in mini-batches under GradCache) and hands the embeddings to every layer's
``compute_loss_from_embeddings``; every loss names its weighted terms with ``components(embeddings, labels)``.
Training schedules talk to a loss only through the interfaces of :mod:`st_unirep.losses.schedulable`.
"""

from __future__ import annotations

import warnings
from typing import Any

from st_unirep.losses.anti_collapse_loss import AntiCollapseLoss
from st_unirep.losses.cached_loss import CachedLoss
from st_unirep.losses.calibrated_text_pair_loss import CalibratedTextPairLoss
from st_unirep.losses.contrastive_triplet_loss import ContrastiveTripletLoss
from st_unirep.losses.factory import build_loss
from st_unirep.losses.instruction_loss import InstructionLoss
from st_unirep.losses.loss_wrapper import LossWrapper
from st_unirep.losses.matryoshka_loss import MatryoshkaLoss
from st_unirep.losses.matryoshka_weights import quadratic_matryoshka_weights
from st_unirep.losses.regularized_loss import RegularizedLoss
from st_unirep.losses.schedulable import TaskWeighted, TemperatureScheduled, WeightScheduled
from st_unirep.losses.uniformity_loss import UniformityLoss

__all__ = [
    "AntiCollapseLoss",
    "CachedLoss",
    "CalibratedTextPairLoss",
    "ContrastiveTripletLoss",
    "InstructionLoss",
    "LossWrapper",
    "MatryoshkaLoss",
    "RegularizedLoss",
    "TaskWeighted",
    "TemperatureScheduled",
    "UniformityLoss",
    "WeightScheduled",
    "build_loss",
    "quadratic_matryoshka_weights",
]


def __getattr__(name: str) -> Any:
    """``TASKS`` and ``MARGINS`` moved (0.2): the task registry and the presets' loss recipes."""
    if name == "TASKS":
        from st_unirep.tasks import TASKS

        warnings.warn("st_unirep.losses.TASKS moved to st_unirep.tasks.TASKS", DeprecationWarning, stacklevel=2)
        return tuple(TASKS)
    if name == "MARGINS":
        from st_unirep.presets import UNIREP_M_MARGINS, VIPOLYQWEN_MARGINS

        warnings.warn(
            "st_unirep.losses.MARGINS moved to the presets: Preset.losses.triplet_margins",
            DeprecationWarning,
            stacklevel=2,
        )
        return {"vipolyqwen": VIPOLYQWEN_MARGINS, "unirep-m": UNIREP_M_MARGINS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
