from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, ConcatDataset, SequentialSampler

from st_unirep.training.sampler import GradientVaccineBatchSampler, task_probabilities, vaccine_probability


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
    """Over many seeds, the share of image batches at optimizer step t matches the image tasks' exposure p_v(t) on
    top of the full mix (binomial 4-sigma band): with three equal tasks, two of them images, P(image) at exposure p
    is 2p / (2p + 1) by hand, p at the start and 2/3 once p = 1."""
    seeds, accumulation = 300, 2
    counts = np.zeros(48 // accumulation)
    for seed in range(seeds):
        sampler = _sampler(sizes=(64, 64, 64), batch=4, accumulation=accumulation, seed=seed, rate=0.15)
        for index, batch in enumerate(sampler):
            counts[sampler.step_of_batch(index)] += batch[0] >= 64  # datasets 1 and 2 are the image tasks
    observed = counts / (seeds * accumulation)
    for step, value in enumerate(observed):
        exposure = vaccine_probability(step, 0.02, 0.15)
        p = 2 * exposure / (2 * exposure + 1)
        band = 4 * np.sqrt(p * (1 - p) / (seeds * accumulation)) + 1e-9
        assert abs(value - p) <= band, (step, value, p)
    assert observed[0] < 0.06 and observed[-1] > 0.35  # p_v(23) = 0.02 * 1.15^23 = 0.50: P(image) = 0.5


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


def test_task_probabilities_by_hand():
    # shares 2 : 1 : 1, tasks 1 and 2 images, exposure 0.5: weights 2, 0.5, 0.5 -> 2/3, 1/6, 1/6
    assert task_probabilities([2, 1, 1], [False, True, True], 0.5) == pytest.approx([2 / 3, 1 / 6, 1 / 6])
    assert task_probabilities([2, 1, 1], [False, True, True], 1.0) == pytest.approx([0.5, 0.25, 0.25])
    assert task_probabilities([1, 3], [True, True], 0.02) == pytest.approx([0.25, 0.75])  # images only


@pytest.mark.parametrize("world_size", [1, 2])
def test_at_full_exposure_every_rank_sees_the_configured_mix(monkeypatch, world_size):
    """Regression (issue 14): once p_v = 1 every batch was an image batch and the text tasks starved. Now, over a
    whole epoch at p_v = 1, each rank's share of each task is the configured share (4-sigma band)."""
    monkeypatch.setattr(GradientVaccineBatchSampler, "world_size", property(lambda self: world_size))
    shares = [0.5, 0.25, 0.25]  # the seeds' mix: text pairs / OCR / VQA
    counts = np.zeros((world_size, 3))
    for seed in range(20):
        sampler = _sampler(sizes=(400, 400, 400), batch=4, seed=seed, epsilon=1.0, rate=0.0)
        sampler.task_shares = shares
        for index, batch in enumerate(sampler):
            counts[index % world_size, batch[0] // 400] += 1
    for rank in range(world_size):
        observed = counts[rank] / counts[rank].sum()
        band = 4 * np.sqrt(0.25 / counts[rank].sum())
        assert np.all(np.abs(observed - shares) <= band), (rank, observed)


def test_text_tasks_keep_their_share_to_the_end_of_a_slow_schedule():
    """Regression (issue 14): with the 2B configs' r = 0.001 no text batch was drawn after p_v reached 1. Now the
    last tenth of a long epoch still holds the text tasks' share of the data (here 1/3)."""
    sampler = _sampler(sizes=(1200, 1200, 1200), batch=4, epsilon=0.02, rate=0.02)  # p_v = 1 after ~198 of 900 steps
    tasks = np.array([batch[0] // 1200 for batch in sampler])
    tail = tasks[-len(tasks) // 10 :]
    assert abs(np.mean(tail == 0) - 1 / 3) < 4 * np.sqrt(2 / 9 / len(tail))
    assert np.mean(tasks[:20] == 0) > 0.8  # and the start is text, as the vaccine wants


def test_bad_task_shares():
    with pytest.raises(ValueError, match="task_shares must give a share >= 0 to each of the 3 tasks"):
        GradientVaccineBatchSampler(
            ConcatDataset([list(range(8))] * 3),
            [BatchSampler(SequentialSampler(range(8)), 4, drop_last=True)] * 3,
            task_shares=[1.0, 2.0],
        )
