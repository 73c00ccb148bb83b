"""GradCache for any st_unirep loss (Gao et al. 2021), on sentence-transformers' own machinery."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses import CachedLossMixin
from torch import Tensor

from st_unirep.losses._base import EmbeddingLoss, loss_from_embeddings
from st_unirep.losses.loss_wrapper import LossWrapper

# A function of the whole batch's embeddings (one (B, d) per column) and the labels, returning named loss terms.
Objective = Callable[[list[Tensor], Tensor | None], dict[str, Tensor]]


class CachedLoss(CachedLossMixin, LossWrapper):
    r"""Runs any loss with ``compute_loss_from_embeddings`` with gradient caching, so in-batch losses reach batches
    of thousands.

    The three GradCache steps are sentence-transformers' ``CachedLossMixin`` (the code behind
    ``CachedMultipleNegativesRankingLoss``): (1) embed every mini-batch without a graph, (2) compute the objective on
    the *whole* batch from the embeddings and back-propagate to them, (3) re-embed each mini-batch with a graph
    (same RNG state) and push the cached gradients through. Peak memory is one mini-batch of activations plus the
    (B, d) embeddings, while the loss sees all B × B negatives. Loss value and gradients equal the uncached loss's
    (tested within 1e-5).

    Inside :class:`MatryoshkaLoss` and :class:`RegularizedLoss` the *outermost* wrapper's objective is cached
    (:meth:`forward_components`): every Matryoshka width and every regulariser is computed in step (2) from the
    same embeddings, so their gradients all travel through the one replay. sentence-transformers'
    ``MatryoshkaLoss`` around a ``CachedLoss`` also works on its own (it decorates ``calculate_loss``), but not
    inside :class:`RegularizedLoss`.

    Args:
        loss: The loss to cache, e.g. ``ContrastiveTripletLoss(model)``.
        mini_batch_size: Rows embedded at once in steps (1) and (3); memory, not the result, depends on it.
        mini_batch_num_tokens: Optional token budget per mini-batch instead of a row count (ST semantics).
        show_progress_bar: Show the mini-batch progress.

    References:
        Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021.

    Inputs:
        Those of the wrapped loss.

    Relations:
        ``CachedLoss(MultipleNegativesRankingLoss(model))`` is ``CachedMultipleNegativesRankingLoss``.

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
        if not hasattr(loss, "compute_loss_from_embeddings"):
            raise ValueError(f"CachedLoss wraps a loss with compute_loss_from_embeddings, got {type(loss).__name__}")
        if not isinstance(mini_batch_size, int) or mini_batch_size <= 0:
            raise ValueError(f"mini_batch_size must be a positive int, got {mini_batch_size!r}")
        super().__init__(loss.model, loss)
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._objective: Objective | None = None  # set only for the duration of one forward_components call
        self._last_terms: dict[str, Tensor] = {}

    def gradient_cache(self) -> CachedLoss:
        return self

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        """The wrapped loss's components on the L2-normalised embeddings (caching changes no value)."""
        unit = [F.normalize(e, p=2, dim=-1) for e in embeddings]
        if isinstance(self.loss, EmbeddingLoss):
            return self.loss.components(unit, labels)
        return {"loss": loss_from_embeddings(self.loss, unit, labels)}

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The wrapped loss on the L2-normalised embeddings of the whole batch."""
        return loss_from_embeddings(self.loss, [F.normalize(e, p=2, dim=-1) for e in embeddings], labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """GradCache step (2): the objective on the concatenated mini-batch embeddings, back-propagated to them."""
        embeddings = [torch.cat(column) for column in reps]  # one (B, d) per column
        if self._objective is None:
            terms = {"loss": self.compute_loss_from_embeddings(embeddings, labels)}
        else:
            terms = self._objective(embeddings, labels)
        self._last_terms = {name: value.detach() for name, value in terms.items()}
        total = torch.stack(list(terms.values())).sum()
        if with_backward:
            total.backward()
            total = total.detach()
        return total

    def forward_components(
        self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None, objective: Objective
    ) -> dict[str, Tensor]:
        """GradCache of ``objective`` (an outer wrapper's named terms on the whole batch's embeddings).

        Returns the terms by name, with their values; the first carries the gradient of them all (the replay of
        step (3) pushes the cached gradient of their sum), the rest are detached, so the trainer's sum of the
        components is the total and back-propagates exactly once.
        """
        self._objective = objective
        try:
            total = self.forward_cached(sentence_features, labels)
        finally:
            self._objective = None
        first, *rest = self._last_terms
        others = {name: self._last_terms[name] for name in rest}
        if others:
            total = total - torch.stack(list(others.values())).sum()
        return {first: total, **others}

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(sentence_features, labels)

    def get_config_dict(self) -> dict[str, Any]:
        inner = self.loss.get_config_dict() if hasattr(self.loss, "get_config_dict") else {}
        return {"loss": type(self.loss).__name__, **inner, "mini_batch_size": self.mini_batch_size}

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
