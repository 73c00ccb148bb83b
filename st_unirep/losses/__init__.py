"""st_unirep's losses: per-task objectives, regularisers, Matryoshka weights and GradCache."""

from __future__ import annotations

from st_unirep.losses.anti_collapse_loss import AntiCollapseLoss
from st_unirep.losses.cached_loss import CachedLoss
from st_unirep.losses.calibrated_text_pair_loss import CalibratedTextPairLoss
from st_unirep.losses.contrastive_triplet_loss import MARGINS, ContrastiveTripletLoss
from st_unirep.losses.factory import TASKS, build_loss
from st_unirep.losses.instruction_loss import InstructionLoss
from st_unirep.losses.matryoshka_weights import quadratic_matryoshka_weights
from st_unirep.losses.regularized_loss import RegularizedLoss
from st_unirep.losses.uniformity_loss import UniformityLoss

__all__ = [
    "AntiCollapseLoss",
    "CachedLoss",
    "CalibratedTextPairLoss",
    "ContrastiveTripletLoss",
    "InstructionLoss",
    "MARGINS",
    "RegularizedLoss",
    "TASKS",
    "UniformityLoss",
    "build_loss",
    "quadratic_matryoshka_weights",
]
