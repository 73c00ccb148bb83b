"""The schedules reach the losses through the interfaces of st_unirep.losses.schedulable only."""

from __future__ import annotations

import types

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss as STMatryoshkaLoss
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from st_unirep.losses import (
    CalibratedTextPairLoss,
    ContrastiveTripletLoss,
    InstructionLoss,
    RegularizedLoss,
    TaskWeighted,
    TemperatureScheduled,
    UniformityLoss,
    WeightScheduled,
    build_loss,
)
from st_unirep.training.schedules import DynamicTaskWeighting, LossScheduleCallback, cosine_interpolate


def _step(step):
    return types.SimpleNamespace(global_step=step)


def test_interfaces_of_the_losses():
    pair, triplet = CalibratedTextPairLoss(None, (0, 5), nce_weight=1), ContrastiveTripletLoss(None)
    assert isinstance(pair, TemperatureScheduled) and isinstance(triplet, TemperatureScheduled)
    assert not isinstance(UniformityLoss(None), TemperatureScheduled)
    assert pair.scheduled_weights() == {"mse": 10.0, "rank": 5.0}
    assert triplet.scheduled_weights() == {"triplet": 1.0} and InstructionLoss(None).scheduled_weights() == {}
    regularized = RegularizedLoss(None, triplet)
    assert isinstance(regularized, TaskWeighted) and isinstance(regularized, WeightScheduled)
    assert not isinstance(triplet, TaskWeighted)
    regularized.set_weight_scale({"triplet": 0.25})
    assert triplet.triplet_weight == 0.25 and regularized.scheduled_weights() == {"triplet": 1.0}
    with pytest.raises(ValueError, match=r"has no scheduled weight\(s\) \['mse'\]"):
        regularized.set_weight_scale({"mse": 0.5})
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        regularized.set_temperature(0.0)


@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_schedule_reaches_the_task_loss_through_the_preset_stack(tiny_model, mini_batch_size):
    """RegularizedLoss(MatryoshkaLoss(CachedLoss(task))): temperature and warm-up land on the task loss."""
    losses = {
        "text_pair": build_loss(
            tiny_model, "text_pair", "unirep-m", score_range=(0, 5), mini_batch_size=mini_batch_size
        ),
        "ocr": build_loss(tiny_model, "ocr", "unirep-m", mini_batch_size=mini_batch_size),
        "st": RegularizedLoss(tiny_model, STMatryoshkaLoss(tiny_model, InstructionLoss(tiny_model), [64, 32])),
        "mnrl": MultipleNegativesRankingLoss(tiny_model),  # neither interface: left alone
    }
    pair = losses["text_pair"].loss.loss if mini_batch_size is None else losses["text_pair"].loss.loss.loss
    ocr = losses["ocr"].loss.loss if mini_batch_size is None else losses["ocr"].loss.loss.loss
    instruction = losses["st"].loss.loss
    callback = LossScheduleCallback(losses, 0.1, 0.07, temperature_steps=100, warmup_steps=10, triplet_warmup_steps=40)
    callback.on_step_begin(None, _step(5), None)
    expected = cosine_interpolate(0.1, 0.07, 5, 100)
    assert pair.nce_temperature == ocr.temperature == instruction.temperature == pytest.approx(expected)
    assert (pair.mse_weight, pair.rank_weight) == pytest.approx((5.0, 2.5))
    assert ocr.triplet_weight == pytest.approx(ocr.scheduled_weights()["triplet"] * 5 / 40)
    assert losses["mnrl"].scale == 20.0
    callback.on_step_begin(None, _step(1000), None)
    assert (pair.mse_weight, pair.rank_weight, pair.nce_temperature) == pytest.approx((10.0, 5.0, 0.07))
    assert ocr.triplet_weight == ocr.scheduled_weights()["triplet"]


class _TaskLoss:
    """The smallest TaskWeighted: a task whose loss the test sets."""

    def __init__(self):
        self.last_task_loss, self.task_loss_count, self.weight = None, 0, 1.0

    def set_task_weight(self, weight):
        self.weight = weight

    def run(self, value):
        self.last_task_loss, self.task_loss_count = torch.tensor(value), self.task_loss_count + 1


def test_dwa_through_the_interface():
    fast, slow = _TaskLoss(), _TaskLoss()
    assert isinstance(fast, TaskWeighted)
    dwa = DynamicTaskWeighting({"fast": fast, "slow": slow}, temperature=1.0, period=1)
    for step, (a, b) in enumerate([(4.0, 4.0), (1.0, 3.0)], start=1):
        fast.run(a)
        slow.run(b)
        dwa.on_step_end(None, _step(step), None)
    # r_fast = 1/4, r_slow = 3/4: w_k = 2 exp(r_k) / (exp(1/4) + exp(3/4))
    total = torch.tensor([0.25, 0.75]).exp().sum().item()
    assert fast.weight == pytest.approx(2 * torch.tensor(0.25).exp().item() / total)
    assert slow.weight == pytest.approx(2 * torch.tensor(0.75).exp().item() / total) and slow.weight > 1 > fast.weight
    dwa.on_step_end(None, _step(3), None)  # no new task loss (task_loss_count did not move): nothing counted
    assert dwa.counts == {"fast": 0, "slow": 0}


def test_dwa_refuses_a_loss_without_the_interface(tiny_model):
    with pytest.raises(ValueError, match="the loss of task 'mnrl' is a MultipleNegativesRankingLoss"):
        DynamicTaskWeighting({"mnrl": MultipleNegativesRankingLoss(tiny_model)})


def test_regularized_loss_reports_its_task_loss(tiny_model):
    loss = build_loss(tiny_model, "instr", "unirep")
    features = [tiny_model.preprocess(["a cat", "a dog"]), tiny_model.preprocess(["cats", "dogs"])]
    loss.set_task_weight(3.0)
    out = loss(features, None)
    assert loss.task_loss_count == 1
    torch.testing.assert_close(out["task"].detach(), 3.0 * loss.last_task_loss)
