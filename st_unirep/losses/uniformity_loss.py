"""Uniformity on the hypersphere (Wang & Isola 2020; all seeds)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, check_batch, check_positive
from st_unirep.losses._citations import UNIREP_M, cite
from st_unirep.losses._functional import off_diagonal


def uniformity(embeddings: Tensor, t: float = 2.0) -> Tensor:
    r""":math:`\log \mathbb{E}_{i \ne j} \exp(-t \lVert e_i - e_j \rVert^2)` of one ``(n, d)`` set, via logsumexp."""
    return uniformity_from_gram(embeddings @ embeddings.T, t)


def uniformity_from_gram(gram: Tensor, t: float = 2.0) -> Tensor:
    r""":func:`uniformity` from the Gram matrix :math:`G = E E^\top` ``(n, n)``, with
    :math:`\lVert e_i - e_j \rVert^2 = G_{ii} + G_{jj} - 2 G_{ij}` (one product shared with other terms; cheaper
    than ``torch.cdist``, whose square root is squared again, forward and backward)."""
    norms = gram.diagonal()  # (n,), squared norms
    sq_dist = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0)  # (n, n)
    values = -t * off_diagonal(sq_dist)  # (n (n - 1),)
    return torch.logsumexp(values, dim=0) - math.log(values.numel())


class UniformityLoss(EmbeddingLoss):
    r""":math:`\mathcal{L}_{unif} = \log \mathbb{E}_{i \ne j} \exp(-t \lVert e_i - e_j \rVert^2)`, t = 2.

    Taken over all embeddings of the batch, every column together, whatever the task (as the seeds apply it).
    0 for a collapsed batch, lower is more uniform (two antipodal points: :math:`-4t`). Anti-collapse, by
    contrast, is taken within columns (see :class:`AntiCollapseLoss`).

    Args:
        model: The SentenceTransformer.
        t: The kernel's :math:`t` (> 0).

    References:
        Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on the
        Hypersphere", ICML 2020; applied as in UniRep-M ("UniRep and UniRep-M: A Single Architecture for Unified
        Embedding and Reranking with Hierarchical Matryoshka Learning"), γ = 0.1, and the other seeds.

    Inputs:
        +------------------+--------+
        | Texts / images   | Labels |
        +==================+========+
        | any columns      | none   |
        +------------------+--------+

    Example:
        ::

            loss = RegularizedLoss(model, task_loss, uniformity=0.1)  # the usual way to use it
    """

    config_keys = ["t"]

    def __init__(self, model, t: float = 2.0) -> None:
        super().__init__(model)
        check_positive("t", t)
        self.t = t

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        check_batch(type(self).__name__, embeddings, min_columns=1, min_batch=1 if len(embeddings) > 1 else 2)
        return {"uniformity": uniformity(torch.cat(embeddings), self.t)}

    @property
    def citation(self) -> str:
        return cite(
            """
@inproceedings{wang2020understanding,
    title={Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere},
    author={Wang, Tongzhou and Isola, Phillip},
    booktitle={ICML},
    year={2020}
}
""",
            UNIREP_M,
        )
