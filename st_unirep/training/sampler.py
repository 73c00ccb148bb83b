"""The gradient vaccine (ViUniEmbed Defense 1): image batches phased in on an exponential schedule."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset
from transformers import TrainerCallback


def vaccine_probability(step: int, epsilon: float = 0.02, rate: float = 0.05) -> float:
    r""":math:`p_v(t) = \min(1, \varepsilon (1 + r)^t)`: the image tasks' exposure at optimizer step t, from
    :math:`\varepsilon` to full exposure (ViUniEmbed: "annealed image batches")."""
    return min(1.0, epsilon * (1.0 + rate) ** step)


def task_probabilities(shares: Sequence[float], is_image: Sequence[bool], exposure: float) -> list[float]:
    r"""The probability that a batch comes from each task at image exposure :math:`p_v`:

    .. math::
        P(k \mid t) = \frac{s_k\, e_k(t)}{\sum_j s_j\, e_j(t)}, \qquad
        e_k(t) = \begin{cases} p_v(t) & k \text{ an image task} \\ 1 & \text{otherwise} \end{cases}

    with :math:`s_k` the task's share of the full mix. At :math:`p_v = 1` the mix is the shares themselves: the
    vaccine anneals the images *in*; it never anneals the text tasks out. (With no text task, images only.)
    """
    weights = [share * (exposure if image else 1.0) for share, image in zip(shares, is_image, strict=True)]
    total = sum(weights)
    if total <= 0:  # only image tasks at exposure 0 cannot happen (epsilon > 0); guard all-zero shares anyway
        raise ValueError(f"task shares {list(shares)} give no task a positive probability")
    return [w / total for w in weights]


class GradientVaccineBatchSampler(MultiDatasetDefaultBatchSampler):
    r"""A multi-dataset batch sampler for ``SentenceTransformerTrainingArguments(multi_dataset_batch_sampler=...)``.

    Each batch comes from task k with probability :func:`task_probabilities`: the task's share of the full mix
    (``task_shares``, by default its number of batches, as ST's ``ProportionalBatchSampler``), the image tasks'
    shares scaled by their exposure :math:`p_v(t) = \min(1, \varepsilon(1+r)^t)`. Early batches are mostly text;
    from :math:`p_v = 1` on, the mix is the shares (the seeds' 50 % text pairs / 25 % OCR / 25 % VQA, or the
    data's own). A task that runs out starts a fresh shuffled pass.

    ``t`` is the optimizer step that will consume the batch, computed from the batch's position and not from a
    counter: batch ``k`` of epoch ``e`` is consumed at step ``(e · len(self) + k) // (accumulation · world_size)``.
    Under DDP the batches of one step come from one task on every rank (see ``__iter__``).
    So the schedule is exact whatever the dataloader prefetches, across epochs, and after ``resume_from_checkpoint``
    (the trainer calls ``set_epoch`` and skips the batches already seen; the draws are seeded by epoch).
    ``VaccineCallback`` logs :math:`p_v(\text{state.global\_step})` next to it.

    Args:
        dataset, batch_samplers, generator, seed: As ST's ``MultiDatasetDefaultBatchSampler``.
        image_datasets: Indices (in ``DatasetDict`` order) of the image tasks.
        epsilon: :math:`\varepsilon` (0.02 in ViUniEmbed).
        rate: :math:`r`, the growth per optimizer step.
        gradient_accumulation_steps: Batches per optimizer step.
        task_shares: Each task's share of the full mix (any positive scale, in dataset order); None: its number of
            batches.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        image_datasets: Sequence[int] = (),
        epsilon: float = 0.02,
        rate: float = 0.05,
        gradient_accumulation_steps: int = 1,
        task_shares: Sequence[float] | None = None,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator, seed)
        if task_shares is None:
            task_shares = [float(max(1, len(sampler))) for sampler in batch_samplers]
        if len(task_shares) != len(batch_samplers) or any(not share >= 0 for share in task_shares):
            raise ValueError(
                f"task_shares must give a share >= 0 to each of the {len(batch_samplers)} tasks, got {task_shares!r}"
            )
        if not sum(task_shares) > 0:
            raise ValueError(f"task_shares must not all be 0, got {task_shares!r}")
        self.task_shares = [float(share) for share in task_shares]
        if not 0 < epsilon <= 1:
            raise ValueError(f"vaccine epsilon must be in (0, 1], got {epsilon!r}")
        if rate < 0:
            raise ValueError(f"vaccine rate must be >= 0, got {rate!r}")
        unknown = [i for i in image_datasets if not 0 <= i < len(batch_samplers)]
        if unknown:
            raise ValueError(f"image_datasets {unknown} are not dataset indices (0..{len(batch_samplers) - 1})")
        self.image_datasets = sorted(set(image_datasets))
        self.text_datasets = [i for i in range(len(batch_samplers)) if i not in self.image_datasets]
        self.epsilon, self.rate = epsilon, rate
        self.gradient_accumulation_steps = gradient_accumulation_steps
        # A generator of our own: the trainer's is shared with (and re-seeded by) the per-dataset batch samplers.
        self._rng = torch.Generator()

    @property
    def world_size(self) -> int:
        """Processes that share these batches (accelerate gives rank r the batches k with k % world_size == r)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size()
        return 1

    def step_of_batch(self, batch_index: int) -> int:
        """The optimizer step that consumes batch ``batch_index`` of the current epoch."""
        per_step = self.gradient_accumulation_steps * self.world_size
        return (self.epoch * len(self) + batch_index) // per_step

    def probabilities(self, step: int) -> list[float]:
        """Each task's probability for the batches of optimizer step ``step`` (:func:`task_probabilities`)."""
        exposure = vaccine_probability(step, self.epsilon, self.rate)
        is_image = [i in self.image_datasets for i in range(len(self.batch_samplers))]
        return task_probabilities(self.task_shares, is_image, exposure)

    def _pick(self, step: int) -> int:
        weights = torch.tensor(self.probabilities(step), dtype=torch.float64)
        return int(torch.multinomial(weights, 1, generator=self._rng))

    def __iter__(self) -> Iterator[list[int]]:
        self._rng.manual_seed(self.seed + 7919 * (self.epoch + 1))
        offsets = [0]
        for dataset in self.dataset.datasets[:-1]:
            offsets.append(offsets[-1] + len(dataset))
        iterators = [iter(sampler) for sampler in self.batch_samplers]
        world = self.world_size
        chosen = 0
        for batch_index in range(len(self)):
            # Under DDP, the world_size consecutive batches that the ranks consume at the same step come from the
            # same task: every rank then runs the same loss, and its collectives (cross-device negatives) match.
            if batch_index % world == 0:
                chosen = self._pick(self.step_of_batch(batch_index))
            try:
                batch = next(iterators[chosen])
            except StopIteration:  # this task ran out: a fresh shuffled pass over it
                iterators[chosen] = iter(self.batch_samplers[chosen])
                batch = next(iterators[chosen])
            yield [index + offsets[chosen] for index in batch]

    def __len__(self) -> int:
        total = sum(len(sampler) for sampler in self.batch_samplers)
        return total - total % self.world_size  # whole steps for every rank


class VaccineCallback(TrainerCallback):
    """Logs the image exposure :math:`p_v` at ``state.global_step`` as ``vaccine/p_image``."""

    def __init__(self, epsilon: float, rate: float) -> None:
        self.epsilon, self.rate = epsilon, rate

    def add_metrics(self, state, logs: dict[str, float]) -> None:
        """``vaccine/p_image`` at ``state.global_step`` (called by ``UniRepTrainer.log``)."""
        logs["vaccine/p_image"] = vaccine_probability(state.global_step, self.epsilon, self.rate)
