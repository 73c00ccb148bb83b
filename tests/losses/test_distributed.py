"""Cross-device negatives: 2 CPU processes (gloo) against one process on the concatenated batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from st_unirep.losses import CalibratedTextPairLoss, ContrastiveTripletLoss, InstructionLoss
from st_unirep.losses._functional import gather

WORLD, BATCH, DIM = 2, 3, 8


def _losses(gather_across_devices):
    return {
        "triplet": ContrastiveTripletLoss(None, margin=0.3, gather_across_devices=gather_across_devices),
        "instr": InstructionLoss(None, cos_weight=0.5, gather_across_devices=gather_across_devices),
        "pair_nce": CalibratedTextPairLoss(
            None,
            (0, 1),
            mse_weight=0,
            kl_weight=0,
            rank_weight=0,
            nce_weight=1,
            gather_across_devices=gather_across_devices,
        ),
    }


def _data():
    generator = torch.Generator().manual_seed(0)
    columns = [F.normalize(torch.randn(WORLD * BATCH, DIM, generator=generator), dim=-1) for _ in range(3)]
    labels = torch.rand(WORLD * BATCH, generator=generator)
    return columns, labels


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        columns, labels = _data()
        rows = slice(rank * BATCH, (rank + 1) * BATCH)
        results = {"candidates": gather(columns[1][rows], True)[0].shape[0]}
        for name, loss in _losses(True).items():
            local = [c[rows].clone().requires_grad_() for c in columns]
            used = local if name == "triplet" else local[:2]
            value = loss.compute_loss_from_embeddings(used, labels[rows])
            value.backward()
            results[name] = (value.detach(), [t.grad for t in used])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_match_one_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    columns, labels = _data()
    for rank in ranks:
        assert rank["candidates"] == WORLD * BATCH  # each rank's InfoNCE sees world_size x batch candidates
    for name, loss in _losses(False).items():
        full = [c.clone().requires_grad_() for c in columns]
        used = full if name == "triplet" else full[:2]
        single = loss.compute_loss_from_embeddings(used, labels)
        single.backward()
        # DDP averages the ranks: the mean of the per-rank losses is the full-batch loss, and each rank's
        # embedding gradient (summed over ranks by all_gather_with_grad) / world_size is the full-batch gradient.
        mean = torch.stack([r[name][0] for r in ranks]).mean()
        torch.testing.assert_close(mean, single.detach(), rtol=1e-5, atol=1e-6, msg=name)
        for column, tensor in enumerate(used):
            distributed = torch.cat([r[name][1][column] for r in ranks]) / WORLD
            torch.testing.assert_close(distributed, tensor.grad, rtol=1e-4, atol=1e-6, msg=f"{name} column {column}")
