"""Adaptive schedules (ViUniEmbed Defense 2): temperature cooling, loss-weight warm-up, dynamic task weights."""

from __future__ import annotations

import json
import math
import os

from torch import nn
from transformers import TrainerCallback

from st_unirep.losses.schedulable import TaskWeighted, TemperatureScheduled, WeightScheduled


def cosine_interpolate(start: float, end: float, step: int, total: int) -> float:
    """``start`` at step 0 to ``end`` at ``total`` (and after), along a half cosine."""
    if total <= 0 or step >= total:
        return end
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / total))


def linear_warmup(step: int, total: int) -> float:
    """0 at step 0 to 1 at ``total`` (and after); 1 throughout when ``total <= 0``."""
    return 1.0 if total <= 0 else min(1.0, step / total)


class LossScheduleCallback(TrainerCallback):
    r"""Sets the losses' hyperparameters from ``state.global_step`` before every step (so resume is exact).

    - temperature cooling: every loss that takes a temperature (:class:`~st_unirep.losses.TemperatureScheduled`:
      the InfoNCE :math:`\tau` of the task losses) goes from ``temperature_start`` (0.1) to ``temperature_end``
      (0.07) along a half cosine over ``temperature_steps``;
    - weight warm-up: the weights a loss declares (:class:`~st_unirep.losses.WeightScheduled`: ``mse`` and ``rank``
      (α, β) of the text-pair loss, and the hardest-negative ``triplet``) grow linearly from 0 to their configured
      values over ``warmup_steps`` :math:`T_w` (``triplet``: ``triplet_warmup_steps``). The triplet term needs it
      more than the seeds say: while a model cannot yet tell samples apart, the *hardest* negative is on average
      closer than the positive, so the hinge is minimised by shrinking every distance, i.e. by collapse (FaceNet
      §3.2 warns of this). Measured on the tiny default model: InfoNCE + triplet from step 0 collapsed within 100
      steps (task loss stuck at log B + m); InfoNCE alone separated the held-out OCR images.

    Only those two interfaces are used, on the trainer's losses as given (the loss wrappers pass them down to the
    task loss); a loss with neither, e.g. one of sentence-transformers', is left alone.

    Args:
        losses: The trainer's dict of losses (task → loss module).
        temperature_start, temperature_end, temperature_steps: The cooling schedule (``temperature_steps=0``: off).
        warmup_steps: :math:`T_w` of the MSE / rank weights (0: off).
        triplet_warmup_steps: Warm-up of the triplet weight (None: ``warmup_steps``).
    """

    def __init__(
        self,
        losses: dict[str, nn.Module],
        temperature_start: float = 0.1,
        temperature_end: float = 0.07,
        temperature_steps: int = 0,
        warmup_steps: int = 0,
        triplet_warmup_steps: int | None = None,
    ) -> None:
        self.temperature_start, self.temperature_end = temperature_start, temperature_end
        self.temperature_steps, self.warmup_steps = temperature_steps, warmup_steps
        self.triplet_warmup_steps = warmup_steps if triplet_warmup_steps is None else triplet_warmup_steps
        self.temperatures = [loss for loss in losses.values() if isinstance(loss, TemperatureScheduled)]
        self.weighted = [loss for loss in losses.values() if isinstance(loss, WeightScheduled)]

    def values_at(self, step: int) -> dict[str, float]:
        temperature = cosine_interpolate(self.temperature_start, self.temperature_end, step, self.temperature_steps)
        return {"temperature": temperature, "weight_scale": linear_warmup(step, self.warmup_steps)}

    def weight_scale(self, term: str, step: int) -> float:
        """The warm-up factor of the weight named ``term`` at ``step``."""
        return linear_warmup(step, self.triplet_warmup_steps if term == "triplet" else self.warmup_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step
        if self.temperature_steps > 0:
            temperature = self.values_at(step)["temperature"]
            for loss in self.temperatures:
                loss.set_temperature(temperature)
        for loss in self.weighted:
            loss.set_weight_scale({term: self.weight_scale(term, step) for term in loss.scheduled_weights()})

    def add_metrics(self, state, logs: dict[str, float]) -> None:
        """``schedule/temperature`` and ``schedule/weight_scale`` (called by ``UniRepTrainer.log``)."""
        values = self.values_at(state.global_step)
        logs.update({"schedule/temperature": values["temperature"], "schedule/weight_scale": values["weight_scale"]})


class DynamicTaskWeighting(TrainerCallback):
    r"""Dynamic Weight Averaging (Liu et al. 2019), UniRep-M's "task weights adapt dynamically":
    :math:`w_k \propto \exp(r_k / T)`, :math:`r_k = \bar L_k(t-1) / \bar L_k(t-2)`, normalised to sum to K, where
    :math:`\bar L_k` is task k's mean loss over a period of ``period`` steps. Tasks whose loss falls slowly get more
    weight. Every loss is a :class:`~st_unirep.losses.TaskWeighted` (``RegularizedLoss``): the weight goes in with
    ``set_task_weight`` and each step's task loss comes back as ``last_task_loss`` (read when ``task_loss_count``
    moved, i.e. when the task had a batch). Its state goes into every checkpoint (``dwa_state.json``) and
    :meth:`load` restores it on resume.
    """

    state_file = "dwa_state.json"

    def __init__(self, losses: dict[str, nn.Module], temperature: float = 2.0, period: int = 20) -> None:
        if not temperature > 0 or period <= 0:
            raise ValueError(f"DWA needs temperature > 0 and period > 0, got {temperature!r}, {period!r}")
        for task, loss in losses.items():
            if not isinstance(loss, TaskWeighted):
                raise ValueError(
                    f"DWA weights task losses through set_task_weight / last_task_loss (RegularizedLoss); the loss of "
                    f"task {task!r} is a {type(loss).__name__}, which has neither"
                )
        self.losses, self.temperature, self.period = losses, temperature, period
        self.sums: dict[str, float] = {k: 0.0 for k in losses}
        self.counts: dict[str, int] = {k: 0 for k in losses}
        self.seen: dict[str, int] = {k: 0 for k in losses}
        self.history: list[dict[str, float]] = []  # mean loss per task of the last two periods
        self.weights: dict[str, float] = {k: 1.0 for k in losses}

    def on_step_end(self, args, state, control, **kwargs):
        for task, loss in self.losses.items():
            if loss.task_loss_count != self.seen[task] and loss.last_task_loss is not None:
                self.sums[task] += float(loss.last_task_loss)
                self.counts[task] += 1
                self.seen[task] = loss.task_loss_count
        if state.global_step % self.period:
            return
        means = {k: self.sums[k] / self.counts[k] for k in self.losses if self.counts[k]}
        self.sums = {k: 0.0 for k in self.losses}
        self.counts = {k: 0 for k in self.losses}
        if len(means) == len(self.losses):
            self.history = (self.history + [means])[-2:]
        if len(self.history) == 2:
            ratios = {k: self.history[1][k] / max(self.history[0][k], 1e-12) for k in self.losses}
            exps = {k: math.exp(r / self.temperature) for k, r in ratios.items()}
            total = sum(exps.values())
            self.weights = {k: len(exps) * e / total for k, e in exps.items()}
        self._apply()

    def _apply(self) -> None:
        for task, loss in self.losses.items():
            loss.set_task_weight(self.weights[task])

    def add_metrics(self, state, logs: dict[str, float]) -> None:
        """``task_weight/<task>`` (called by ``UniRepTrainer.log``)."""
        logs.update({f"task_weight/{k}": v for k, v in self.weights.items()})

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            state_dict = {"sums": self.sums, "counts": self.counts, "history": self.history, "weights": self.weights}
            with open(os.path.join(folder, self.state_file), "w") as handle:
                json.dump(state_dict, handle)

    def load(self, checkpoint: str) -> None:
        """Restore the state saved in ``checkpoint`` (a no-op if it has none)."""
        path = os.path.join(checkpoint, self.state_file)
        if os.path.isfile(path):
            with open(path) as handle:
                saved = json.load(handle)
            self.sums, self.counts = saved["sums"], saved["counts"]
            self.history, self.weights = saved["history"], saved["weights"]
            self._apply()
