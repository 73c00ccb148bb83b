"""The formulas shared by several losses, on raw (L2-normalised) embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sentence_transformers.util import all_gather_with_grad, get_rank
from torch import Tensor


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def gather(tensor: Tensor, enabled: bool) -> tuple[Tensor, int]:
    """``(all ranks' rows concatenated, offset of this rank's rows)``; identity when not distributed.

    Uses sentence-transformers' ``all_gather_with_grad``: gradients flow back to the rank that owns each row.
    """
    if not enabled or not _is_distributed():
        return tensor, 0
    return all_gather_with_grad(tensor), get_rank() * tensor.shape[0]


def info_nce(anchors: Tensor, candidates: Tensor, temperature: float, offset: int = 0) -> Tensor:
    r"""Mean of :math:`-\log \frac{\exp(S_{i,i+o}/\tau)}{\sum_j \exp(S_{ij}/\tau)}`; the positive of anchor i is
    candidate ``i + offset`` (anchors ``(B, d)``, candidates ``(C, d)``, C >= B)."""
    logits = anchors @ candidates.T / temperature  # (B, C)
    targets = torch.arange(anchors.shape[0], device=anchors.device) + offset  # (B,)
    return F.cross_entropy(logits, targets)


def local_logits(anchors: Tensor, positives: Tensor, temperature: float, negatives: list[Tensor] = ()) -> Tensor:
    """``(B, C)`` scaled similarities of the anchors to ``[positives; negatives]`` on this device."""
    candidates = torch.cat([positives, *negatives]) if len(negatives) else positives  # (C, d)
    return anchors @ candidates.T / temperature  # (B, C)


def symmetric_info_nce(
    anchors: Tensor,
    positives: Tensor,
    temperature: float,
    negatives: list[Tensor] = (),
    gather_across_devices=False,
    logits: Tensor | None = None,
) -> Tensor:
    r"""Symmetric in-batch InfoNCE (CLIP-style):
    :math:`\tfrac12 [\mathrm{NCE}(a \to [p; n]) + \mathrm{NCE}(p \to a)]`.

    Explicit negatives only enlarge the anchor→candidate side. With ``gather_across_devices`` each rank scores its
    own anchors against the candidates of every rank (world_size × B of them). On one device both directions
    read one similarity matrix (:math:`p \to a` is the transpose of the first B columns of :math:`a \to [p; n]`):
    one matrix product instead of two, forward and backward; ``logits`` passes in that matrix
    (:func:`local_logits`) when another term already computed it.
    """
    if not (gather_across_devices and _is_distributed()):
        logits = local_logits(anchors, positives, temperature, negatives) if logits is None else logits  # (B, C)
        targets = torch.arange(anchors.shape[0], device=anchors.device)  # (B,)
        forward = F.cross_entropy(logits, targets)
        backward = F.cross_entropy(logits[:, : positives.shape[0]].T, targets)  # p_i against every anchor
        return (forward + backward) / 2
    all_positives, offset = gather(positives, gather_across_devices)
    all_anchors, _ = gather(anchors, gather_across_devices)
    candidates = torch.cat([all_positives, *[gather(n, gather_across_devices)[0] for n in negatives]])  # (C, d)
    forward = info_nce(anchors, candidates, temperature, offset)
    backward = info_nce(positives, all_anchors, temperature, offset)
    return (forward + backward) / 2


def masked_symmetric_info_nce(
    anchors: Tensor, positives: Tensor, temperature: float, selected: Tensor, gather_across_devices: bool = False
) -> Tensor:
    r"""Symmetric InfoNCE in which only the rows ``selected`` (``(B,)`` bool) are positive pairs; every row's
    partner is still a candidate (a negative) for the others. On graded pairs this is InfoNCE over the pairs rated
    similar, with the rest of the batch as negatives. Zero (with a gradient path) when no row is selected.
    Equals :func:`symmetric_info_nce` when every row is selected."""
    all_positives, offset = gather(positives, gather_across_devices)
    all_anchors, _ = gather(anchors, gather_across_devices)
    rows = torch.nonzero(selected).flatten()  # (k,)
    if rows.numel() == 0:
        return anchors.sum() * 0.0
    targets = rows + offset  # (k,)
    forward = F.cross_entropy(anchors[rows] @ all_positives.T / temperature, targets)  # (k, C)
    backward = F.cross_entropy(positives[rows] @ all_anchors.T / temperature, targets)  # (k, C)
    return (forward + backward) / 2


def hardest_negative_triplet(
    anchors: Tensor,
    positives: Tensor,
    temperature: float,
    margin: float,
    negatives: list[Tensor] = (),
    gather_across_devices: bool = False,
    logits: Tensor | None = None,
) -> Tensor:
    r""":math:`\frac1B \sum_i \max(0, \max_{j \ne i} S_{ij}/\tau - S_{ii}/\tau + m)` over the in-batch positives of
    the other rows and any explicit negatives (``S`` in scaled-similarity units, as viPolyQwen). With
    ``gather_across_devices`` the hardest negative is mined among every rank's candidates; on one device
    ``logits`` may pass in :func:`local_logits` computed for another term."""
    if gather_across_devices and _is_distributed():
        all_positives, offset = gather(positives, gather_across_devices)
        candidates = torch.cat([all_positives, *[gather(n, gather_across_devices)[0] for n in negatives]])  # (C, d)
        scores = anchors @ candidates.T / temperature  # (B, C)
    else:
        scores = local_logits(anchors, positives, temperature, negatives) if logits is None else logits  # (B, C)
        offset = 0
    rows = torch.arange(anchors.shape[0], device=anchors.device)  # (B,)
    positive = scores[rows, rows + offset]  # (B,)
    is_positive = torch.zeros_like(scores, dtype=torch.bool)
    is_positive[rows, rows + offset] = True
    hardest = scores.masked_fill(is_positive, float("-inf")).max(dim=1).values  # (B,)
    return F.relu(hardest - positive + margin).mean()


def off_diagonal(matrix: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened: ``(n * (n - 1),)``."""
    n = matrix.shape[0]
    # Row-major order as masked_select gives, but as views and one copy: a flattened (n, n) matrix without its first
    # entry, read as (n - 1, n + 1) rows, has the diagonal in its last column (masked_select and its backward
    # cost several times more on CPU).
    if n < 2:
        return matrix.reshape(-1)[:0]
    return matrix.reshape(-1)[1:].reshape(n - 1, n + 1)[:, :-1].reshape(-1)
