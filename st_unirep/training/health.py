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
    ``<output_dir>/health.jsonl``. Only the main process embeds and writes. Collapse (``sim_p95 >
    collapse_threshold``) is judged from step ``collapse_warmup_steps`` on — an untrained head already reads p95 ≈ 1,
    so earlier checks are recorded, not judged. Then it warns, and with ``stop_on_collapse`` every rank stops: the
    main process's verdict is all-reduced at each check, so no rank waits alone in a collective.

    Args:
        probe: (anchor, positive) input pairs, e.g. a few rows of every task.
        every: Steps between checks (also run at the end of training).
        dims: Matryoshka dims to report the mean similarity at.
        collapse_threshold: The p95 similarity that counts as collapse (0.95).
        stop_on_collapse: Stop training on collapse (all ranks together under DDP).
        batch_size: Encoding batch size.
        collapse_warmup_steps: Steps before collapse is judged.
    """

    def __init__(
        self,
        probe: list[tuple[Any, Any]],
        every: int = 50,
        dims: tuple[int, ...] = (),
        collapse_threshold: float = 0.95,
        stop_on_collapse: bool = False,
        batch_size: int = 16,
        collapse_warmup_steps: int = 0,
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
        if collapse_warmup_steps < 0:
            raise ValueError(f"collapse_warmup_steps must be >= 0, got {collapse_warmup_steps!r}")
        self.collapse_warmup_steps = collapse_warmup_steps
        self.last: dict[str, float] = {}
        self.last_step: int | None = None  # the step of the last check, on every rank (the health data: rank 0)
        self.pending_log = False

    def check(self, model, step: int) -> dict[str, float]:
        was_training = model.training
        with torch.no_grad():
            anchors = model.encode([a for a, _ in self.probe], batch_size=self.batch_size, normalize_embeddings=True)
            positives = model.encode([p for _, p in self.probe], batch_size=self.batch_size, normalize_embeddings=True)
        model.train(was_training)
        return {"step": step, **embedding_health(anchors, positives, self.dims)}

    def _run(self, args, state, control, model, agree: bool = True) -> None:
        self.last_step = state.global_step
        collapsed = False
        if state.is_world_process_zero and model is not None:
            collapsed = self._check_and_record(args, state, getattr(model, "module", model))
        # Every rank reaches this line at the same steps: the stop is decided together (rank 0 alone would hang DDP).
        if self.stop_on_collapse and agree and _any_rank(collapsed, args.device):
            control.should_training_stop = True

    def _check_and_record(self, args, state, model) -> bool:
        """Check, write ``health.jsonl``, warn; whether this check counts as collapse."""
        self.last = self.check(model, state.global_step)
        self.pending_log = True
        with open(os.path.join(args.output_dir, "health.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(self.last) + "\n")
        if self.last["sim_p95"] <= self.collapse_threshold or state.global_step < self.collapse_warmup_steps:
            return False
        logger.warning(
            "Embedding collapse at step %d: p95 similarity %.3f > %.2f (std %.4f)",
            state.global_step,
            self.last["sim_p95"],
            self.collapse_threshold,
            self.last["std"],
        )
        return True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        os.makedirs(args.output_dir, exist_ok=True)
        if state.global_step == 0:
            self._run(args, state, control, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._run(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.last_step != state.global_step:  # the final state, recorded; nothing left to stop
            self._run(args, state, control, model, agree=False)

    def add_metrics(self, state, logs: dict[str, float]) -> None:
        """The newest check as ``health/…``, once (called by ``UniRepTrainer.log``)."""
        if self.pending_log:
            logs.update({f"health/{k}": v for k, v in self.last.items() if k != "step"})
            self.pending_log = False


def _any_rank(flag: bool, device: torch.device | str) -> bool:
    """``flag`` OR-ed over every rank (an all-reduce under torch.distributed; the flag itself otherwise)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    if torch.distributed.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)
