"""HealthMonitorCallback under DDP: the stop on collapse is agreed by every rank (no rank waits alone)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import TrainerControl, TrainerState

from st_unirep.training.health import HealthMonitorCallback


class _CollapsedModel:
    """Every input embeds to the same vector: p95 similarity 1."""

    training = False

    def encode(self, texts, **kwargs):
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0

    def train(self, mode=True):
        return self


class _Args:
    device = torch.device("cpu")

    def __init__(self, output_dir):
        self.output_dir = output_dir


def _rank(rank: int, world: int, port: int, output_dir: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        callback = HealthMonitorCallback(
            [("a", "b"), ("c", "d")], every=2, stop_on_collapse=True, collapse_warmup_steps=4
        )
        state = TrainerState()
        state.is_world_process_zero = rank == 0
        stops = []
        for step in range(1, 7):
            state.global_step = step
            control = TrainerControl()
            callback.on_step_end(_Args(output_dir), state, control, model=_CollapsedModel())
            stops.append(control.should_training_stop)
        results[rank] = stops
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_every_rank_stops_together_and_only_after_the_warm_up(tmp_path):
    """Regression (issue 14): only rank 0 decided to stop and a 2-process run hung. Only rank 0 embeds; both ranks
    stop at the first judged check (step 4), none during the warm-up."""
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path), results), nprocs=2, join=True)
    expected = [False, False, False, True, False, True]  # checks at 2, 4, 6; judged from 4
    assert results[0] == expected and results[1] == expected


def test_single_process_warm_up_is_recorded_not_judged(tmp_path):
    callback = HealthMonitorCallback([("a", "b"), ("c", "d")], every=1, stop_on_collapse=True, collapse_warmup_steps=2)
    state = TrainerState()
    stops = []
    for step in range(3):
        state.global_step = step
        control = TrainerControl()
        callback.on_step_end(_Args(str(tmp_path)), state, control, model=_CollapsedModel())
        stops.append(control.should_training_stop)
    assert stops == [False, False, True]
    assert len((tmp_path / "health.jsonl").read_text().splitlines()) == 3  # every check recorded
    with pytest.raises(ValueError, match="collapse_warmup_steps must be >= 0"):
        HealthMonitorCallback([("a", "b"), ("c", "d")], collapse_warmup_steps=-1)
