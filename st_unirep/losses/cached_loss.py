"""GradCache for any st_unirep loss (Gao et al. 2021), on sentence-transformers' own machinery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor, nn

from st_unirep.losses._base import EmbeddingLoss


class CachedLoss(CachedLossMixin, nn.Module):
    r"""Runs any :class:`EmbeddingLoss` with gradient caching, so in-batch losses reach batches of thousands.

    The three GradCache steps are sentence-transformers' ``CachedLossMixin`` (the code behind
    ``CachedMultipleNegativesRankingLoss``): (1) embed every mini-batch without a graph, (2) compute the wrapped
    loss on the *whole* batch with ``compute_loss_from_embeddings`` and back-propagate to the embeddings,
    (3) re-embed each mini-batch with a graph (same RNG state) and push the cached gradients through. Peak memory
    is one mini-batch of activations plus the (B, d) embeddings, while the loss sees all B × B negatives.
    Loss value and gradients equal the uncached loss's (tested within 1e-5).

    Works inside ``MatryoshkaLoss`` (which decorates ``calculate_loss``) and :class:`RegularizedLoss`.

    Args:
        loss: The loss to cache, e.g. ``ContrastiveTripletLoss(model)``.
        mini_batch_size: Rows embedded at once in steps (1) and (3); memory, not the result, depends on it.
        mini_batch_num_tokens: Optional token budget per mini-batch instead of a row count (ST semantics).
        show_progress_bar: Show the mini-batch progress.

    References:
        Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021.

    Inputs:
        Those of the wrapped loss.

    Example:
        ::

            loss = CachedLoss(ContrastiveTripletLoss(model, margin=0.3), mini_batch_size=16)
            # per_device_train_batch_size=1024 now fits where 16 did
    """

    def __init__(
        self,
        loss: EmbeddingLoss,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        if not hasattr(loss, "compute_loss_from_embeddings"):
            raise ValueError(f"CachedLoss wraps a loss with compute_loss_from_embeddings, got {type(loss).__name__}")
        if not isinstance(mini_batch_size, int) or mini_batch_size <= 0:
            raise ValueError(f"mini_batch_size must be a positive int, got {mini_batch_size!r}")
        self.loss = loss
        self.model = loss.model
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        embeddings = [F.normalize(torch.cat(column), p=2, dim=-1) for column in reps]  # one (B, d) per column
        loss = self.loss.compute_loss_from_embeddings(embeddings, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(sentence_features, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": type(self.loss).__name__,
            **self.loss.get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Gao, Luyu and Zhang, Yunyi and Han, Jiawei and Callan, Jamie},
    booktitle={Proceedings of the 6th Workshop on Representation Learning for NLP},
    year={2021}
}
"""
