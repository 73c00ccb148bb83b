from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, ConcatDataset, SequentialSampler

from st_unirep.training.sampler import GradientVaccineBatchSampler, vaccine_probability


def _sampler(sizes=(64, 64, 64), image=(1, 2), batch=4, accumulation=1, seed=0, epsilon=0.02, rate=0.1):
    datasets = [list(range(n)) for n in sizes]
    samplers = [BatchSampler(SequentialSampler(d), batch, drop_last=True) for d in datasets]
    return GradientVaccineBatchSampler(
        ConcatDataset(datasets),
        samplers,
        seed=seed,
        image_datasets=image,
        epsilon=epsilon,
        rate=rate,
        gradient_accumulation_steps=accumulation,
    )


def test_probability_formula():
    assert vaccine_probability(0, 0.02, 0.1) == pytest.approx(0.02)
    assert vaccine_probability(10, 0.02, 0.1) == pytest.approx(0.02 * 1.1**10)
    assert vaccine_probability(100, 0.02, 0.1) == 1.0


def test_observed_image_fraction_follows_the_schedule():
    """Over many seeds, the share of image batches at optimizer step t matches p_v(t) (binomial 4-sigma band)."""
    seeds, accumulation = 300, 2
    counts = np.zeros(48 // accumulation)
    for seed in range(seeds):
        sampler = _sampler(sizes=(64, 64, 64), batch=4, accumulation=accumulation, seed=seed, rate=0.15)
        for index, batch in enumerate(sampler):
            counts[sampler.step_of_batch(index)] += batch[0] >= 64  # datasets 1 and 2 are the image tasks
    observed = counts / (seeds * accumulation)
    for step, value in enumerate(observed):
        p = vaccine_probability(step, 0.02, 0.15)
        band = 4 * np.sqrt(p * (1 - p) / (seeds * accumulation)) + 1e-9
        assert abs(value - p) <= band, (step, value, p)
    assert observed[0] < 0.06 and observed[-1] > 0.35  # p_v(23) = 0.02 * 1.15^23 = 0.50


def test_step_of_batch_counts_accumulation_and_epochs():
    sampler = _sampler(accumulation=4)
    assert len(sampler) == 48
    assert [sampler.step_of_batch(i) for i in (0, 3, 4, 47)] == [0, 0, 1, 11]
    sampler.set_epoch(2)
    assert sampler.step_of_batch(0) == 2 * 48 // 4


def test_deterministic_per_epoch_so_resume_replays_the_same_batches():
    sampler = _sampler()
    sampler.set_epoch(3)
    first = list(sampler)
    again = _sampler()
    again.set_epoch(3)
    assert list(again) == first
    again.set_epoch(4)
    assert list(again) != first


def test_every_batch_is_from_one_dataset_and_tasks_cycle():
    sampler = _sampler(sizes=(8, 64, 8), image=(1,), rate=0.0, epsilon=0.5)
    for batch in sampler:
        assert len({(i >= 8) + (i >= 72) for i in batch}) == 1  # all indices in one dataset
    assert len(list(sampler)) == len(sampler) == 2 + 16 + 2


def test_bad_options():
    with pytest.raises(ValueError, match="epsilon must be in"):
        _sampler(epsilon=0)
    with pytest.raises(ValueError, match="rate must be >= 0"):
        _sampler(rate=-1)
    with pytest.raises(ValueError, match=r"image_datasets \[5\] are not dataset indices"):
        _sampler(image=(5,))


def test_all_image_or_all_text_tasks():
    only_text = _sampler(image=())
    batches = list(only_text)
    # No image task: the vaccine never fires, every batch comes from one of the three text tasks, and all of them
    # are drawn (in proportion to their batches, as ST's ProportionalBatchSampler).
    assert only_text.text_datasets == [0, 1, 2] and len(batches) == len(only_text) == 48
    assert all(len({i // 64 for i in batch}) == 1 for batch in batches)
    assert {batch[0] // 64 for batch in batches} == {0, 1, 2}
    only_image = _sampler(sizes=(16,), image=(0,))
    assert len(list(only_image)) == 4
    torch.manual_seed(0)


def test_under_ddp_the_batches_of_one_step_share_a_task(monkeypatch):
    """Rank r consumes batches k with k % world_size == r: both ranks must run the same task's loss each step."""
    monkeypatch.setattr(GradientVaccineBatchSampler, "world_size", property(lambda self: 2))
    sampler = _sampler(sizes=(40, 40, 40), accumulation=1, rate=0.05)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 30
    for first, second in zip(batches[::2], batches[1::2], strict=True):
        assert first[0] // 40 == second[0] // 40
    assert [sampler.step_of_batch(k) for k in (0, 1, 2, 29)] == [0, 0, 1, 14]
