"""Embedding health monitor (UniRep §6, UniRep-M §8): catch representation collapse while it happens."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from transformers import TrainerCallback

from st_unirep.evaluation.metrics import embedding_health

logger = logging.getLogger(__name__)


class HealthMonitorCallback(TrainerCallback):
    """Every ``every`` steps, embeds a fixed probe of (anchor, positive) pairs and records :func:`embedding_health`.

    The numbers go into the trainer's logs (``health/…``) and, one JSON line per check, into
    ``<output_dir>/health.jsonl``. When ``sim_p95 > collapse_threshold`` it warns, and with ``stop_on_collapse``
    it stops training. Only the main process embeds and writes.

    Args:
        probe: (anchor, positive) input pairs, e.g. a few rows of every task.
        every: Steps between checks (also run at the end of training).
        dims: Matryoshka dims to report the mean similarity at.
        collapse_threshold: The p95 similarity that counts as collapse (0.95).
        stop_on_collapse: Stop training on collapse.
        batch_size: Encoding batch size.
    """

    def __init__(
        self,
        probe: list[tuple[Any, Any]],
        every: int = 50,
        dims: tuple[int, ...] = (),
        collapse_threshold: float = 0.95,
        stop_on_collapse: bool = False,
        batch_size: int = 16,
    ) -> None:
        if len(probe) < 2:
            raise ValueError(f"The health probe needs at least 2 pairs, got {len(probe)}")
        if every <= 0:
            raise ValueError(f"every must be a positive number of steps, got {every!r}")
        self.probe, self.every, self.dims = probe, every, tuple(dims)
        self.collapse_threshold, self.stop_on_collapse, self.batch_size = (
            collapse_threshold,
            stop_on_collapse,
            batch_size,
        )
        self.last: dict[str, float] = {}
        self.pending_log = False

    def check(self, model, step: int) -> dict[str, float]:
        was_training = model.training
        with torch.no_grad():
            anchors = model.encode([a for a, _ in self.probe], batch_size=self.batch_size, normalize_embeddings=True)
            positives = model.encode([p for _, p in self.probe], batch_size=self.batch_size, normalize_embeddings=True)
        model.train(was_training)
        return {"step": step, **embedding_health(anchors, positives, self.dims)}

    def _run(self, args, state, control, model) -> None:
        if not state.is_world_process_zero or model is None:
            return
        model = getattr(model, "module", model)
        self.last = self.check(model, state.global_step)
        self.pending_log = True
        with open(os.path.join(args.output_dir, "health.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(self.last) + "\n")
        if self.last["sim_p95"] > self.collapse_threshold:
            logger.warning(
                "Embedding collapse at step %d: p95 similarity %.3f > %.2f (std %.4f)",
                state.global_step,
                self.last["sim_p95"],
                self.collapse_threshold,
                self.last["std"],
            )
            if self.stop_on_collapse:
                control.should_training_stop = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        os.makedirs(args.output_dir, exist_ok=True)
        if state.global_step == 0:
            self._run(args, state, control, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._run(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.last.get("step") != state.global_step:
            self._run(args, state, control, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.pending_log:
            logs.update({f"health/{k}": v for k, v in self.last.items() if k != "step"})
            self.pending_log = False
