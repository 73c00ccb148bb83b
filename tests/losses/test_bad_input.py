from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from st_unirep.losses import (
    AntiCollapseLoss,
    CachedLoss,
    CalibratedTextPairLoss,
    ContrastiveTripletLoss,
    InstructionLoss,
    RegularizedLoss,
    UniformityLoss,
)

PAIRS = [F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "needs a score label"),
        (torch.tensor([1.0, float("nan"), 2.0, 3.0]), r"score_range=\[0.0, 5.0\]; got \[nan\]"),
        (torch.tensor([1.0, 6.0, 2.0, -1.0]), r"got \[6.0, -1.0\]"),
    ],
)
def test_text_pair_labels(labels, message):
    loss = CalibratedTextPairLoss(None, score_range=(0, 5))
    with pytest.raises(ValueError, match=message):
        loss.compute_loss_from_embeddings(PAIRS, labels)


def test_batch_of_one_for_in_batch_losses():
    one = [PAIRS[0][:1], PAIRS[1][:1]]
    for loss in (ContrastiveTripletLoss(None), InstructionLoss(None), CalibratedTextPairLoss(None, (0, 5))):
        with pytest.raises(ValueError, match="needs a batch of >= 2, got 1"):
            loss.compute_loss_from_embeddings(one, torch.tensor([1.0]))
    # MSE alone is not in-batch: a single pair is fine
    mse_only = CalibratedTextPairLoss(None, (0, 5), mse_weight=1, kl_weight=0, rank_weight=0)
    assert torch.isfinite(mse_only.compute_loss_from_embeddings(one, torch.tensor([1.0])))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ContrastiveTripletLoss(None, temperature=0), "temperature must be a number > 0, got 0"),
        (lambda: ContrastiveTripletLoss(None, margin=-0.1), "margin must be a number >= 0, got -0.1"),
        (lambda: InstructionLoss(None, temperature=-1), "temperature must be a number > 0"),
        (lambda: InstructionLoss(None, cos_weight=-1), "cos_weight must be a number >= 0"),
        (lambda: CalibratedTextPairLoss(None, (5, 0)), r"score_range must be \(lo, hi\) with lo < hi"),
        (lambda: CalibratedTextPairLoss(None, (0, 5), rank_weight=-1), "rank_weight must be a number >= 0"),
        (lambda: CalibratedTextPairLoss(None, (0, 5), kl_temperature=0), "kl_temperature must be a number > 0"),
        (lambda: CalibratedTextPairLoss(None, (0, 5), mse_weight=0, kl_weight=0, rank_weight=0), "At least one"),
        (lambda: UniformityLoss(None, t=0), "t must be a number > 0"),
        (lambda: AntiCollapseLoss(None, variant="median"), "Unknown anti-collapse variant 'median'"),
        (lambda: AntiCollapseLoss(None, weight=-1), "weight must be a number >= 0"),
        (lambda: RegularizedLoss(None, InstructionLoss(None), uniformity=-0.1), "uniformity must be a number >= 0"),
        (lambda: CachedLoss(InstructionLoss(None), mini_batch_size=0), "mini_batch_size must be a positive int"),
    ],
)
def test_bad_hyperparameters(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_number_of_columns():
    with pytest.raises(ValueError, match="expects at least 2 input columns, got 1"):
        ContrastiveTripletLoss(None).compute_loss_from_embeddings(PAIRS[:1])
    with pytest.raises(ValueError, match="same batch size"):
        InstructionLoss(None).compute_loss_from_embeddings([PAIRS[0], PAIRS[1][:3]])
