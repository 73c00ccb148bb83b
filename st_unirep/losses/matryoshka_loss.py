"""Matryoshka on embeddings computed once: the task loss at every prefix width (Kusupati et al. 2022; UniRep-M)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from st_unirep.losses._base import check_non_negative, loss_from_embeddings, summed
from st_unirep.losses.loss_wrapper import LossWrapper


def prefix(embeddings: Tensor, dim: int) -> Tensor:
    """The first ``dim`` coordinates, L2-normalised: ``(B, D) -> (B, dim)`` (sentence-transformers' ``shrink``)."""
    if dim > embeddings.shape[-1]:
        raise ValueError(f"Matryoshka dim {dim} is larger than the embeddings' width {embeddings.shape[-1]}")
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


def matryoshka_components(
    loss: nn.Module,
    embeddings: list[Tensor],
    labels: Tensor | None,
    dims: Sequence[int],
    weights: Sequence[float],
    n_dims_per_step: int = -1,
) -> dict[str, Tensor]:
    r"""``{"dim_<d>": w_d · L(normalize(e[:, :d]))}`` for the widths of this step (all, or ``n_dims_per_step`` drawn
    at random as sentence-transformers does). Labels that look like embeddings (distillation targets of the full
    width) are truncated with them."""
    chosen = list(range(len(dims)))
    if 0 < n_dims_per_step < len(chosen):
        chosen = sorted(random.sample(chosen, n_dims_per_step))
    width = embeddings[0].shape[-1]
    terms = {}
    for index in chosen:
        dim, weight = dims[index], weights[index]
        dim_labels = labels
        if isinstance(labels, Tensor) and labels.ndim in (2, 3) and labels.shape[-1] == width:
            dim_labels = labels[..., :dim]
        value = loss_from_embeddings(loss, [prefix(e, dim) for e in embeddings], dim_labels)  # e: (B, D) -> (B, d)
        terms[f"dim_{dim}"] = weight * value
    return terms


class MatryoshkaLoss(LossWrapper):
    r"""The wrapped loss at several prefix widths of the same embeddings, weighted:

    .. math::
        \mathcal{L} = \sum_{d \in D} w_d\,\mathcal{L}_{task}\big(\{ e_{1:d} / \lVert e_{1:d} \rVert \}\big)

    with UniRep-M's quadratic weights :math:`w_d \propto (d / D_{max})^2` (:func:`quadratic_matryoshka_weights`)
    or sentence-transformers' default :math:`w_d = 1`.

    The same loss as sentence-transformers' ``MatryoshkaLoss`` (tested equal, values and gradients), built to
    compose by embeddings: the model runs once per column, and :meth:`compute_loss_from_embeddings` takes the
    embeddings, so :class:`RegularizedLoss` can add its terms to the same forward and :class:`CachedLoss` can cache
    the whole objective. ST's version instead swaps the model's ``forward`` for a caching decorator while the inner
    loss runs (and rebinds a cached loss's ``calculate_loss``): the embeddings never reach the caller, so an outer
    regulariser could only read them with a hook.

    Args:
        model: The SentenceTransformer.
        loss: The task loss (any loss with ``compute_loss_from_embeddings``, also a :class:`CachedLoss`).
        matryoshka_dims: The widths, e.g. ``(2048, 1024, 768, 512)``; each at most the model's width.
        matryoshka_weights: One weight per width (default 1 each).
        n_dims_per_step: Widths drawn per step (-1: all), as in ST.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022; UniRep-M §6 (``UniRep and UniRep-M: A
        Single Architecture for Unified Embedding and Reranking with Hierarchical Matryoshka Learning``).

    Inputs:
        Those of the wrapped loss.

    Relations:
        sentence-transformers' ``MatryoshkaLoss``: same constructor, same value.

    Example:
        ::

            dims = (64, 32, 16)
            loss = MatryoshkaLoss(model, CachedLoss(InstructionLoss(model)), dims, quadratic_matryoshka_weights(dims))
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_dims_per_step: int = -1,
    ) -> None:
        super().__init__(model, loss)
        if not matryoshka_dims:
            raise ValueError("matryoshka_dims must contain at least one width")
        if any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in matryoshka_dims):
            raise ValueError(f"matryoshka_dims must be positive ints, got {list(matryoshka_dims)}")
        if matryoshka_weights is None:
            matryoshka_weights = [1.0] * len(matryoshka_dims)
        if len(matryoshka_weights) != len(matryoshka_dims):
            raise ValueError(
                f"matryoshka_weights needs one weight per dim: {len(matryoshka_weights)} weights for "
                f"{len(matryoshka_dims)} dims"
            )
        for weight in matryoshka_weights:
            check_non_negative("each Matryoshka weight", weight)
        if not isinstance(n_dims_per_step, int) or n_dims_per_step == 0 or n_dims_per_step < -1:
            raise ValueError(f"n_dims_per_step must be -1 (all) or a positive int, got {n_dims_per_step!r}")
        width = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        if width is not None and max(matryoshka_dims) > width:
            raise ValueError(
                f"Dimensions in matryoshka_dims cannot exceed the model's embedding dimension of {width}, got "
                f"{list(matryoshka_dims)}"
            )
        ordered = sorted(zip(matryoshka_dims, matryoshka_weights, strict=True), key=lambda pair: pair[0], reverse=True)
        self.matryoshka_dims = tuple(d for d, _ in ordered)
        self.matryoshka_weights = tuple(w for _, w in ordered)
        self.n_dims_per_step = n_dims_per_step

    def components(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        """The weighted task loss at each width of this step, ``{"dim_<d>": w_d · L_d}``; their sum is the loss."""
        return matryoshka_components(
            self.loss, embeddings, labels, self.matryoshka_dims, self.matryoshka_weights, self.n_dims_per_step
        )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss from full-width embeddings, one ``(B, D)`` per column (normalised here, per prefix)."""
        return summed(self.components(embeddings, labels))

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        cache = self.gradient_cache()
        if cache is not None:
            terms = cache.forward_components(
                sentence_features, labels, lambda e, y: {"loss": self.compute_loss_from_embeddings(e, y)}
            )
            return terms["loss"]
        embeddings = [output["sentence_embedding"] for output in self.embed(sentence_features)]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": type(self.loss).__name__,
            "matryoshka_dims": self.matryoshka_dims,
            "matryoshka_weights": self.matryoshka_weights,
            "n_dims_per_step": self.n_dims_per_step,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{kusupati2022matryoshka,
    title={Matryoshka Representation Learning},
    author={Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and Wallingford, Matthew and Sinha, Aditya and
            Ramanujan, Vivek and Howard-Snyder, William and Chen, Kaifeng and Kakade, Sham and Jain, Prateek and
            Farhadi, Ali},
    booktitle={Advances in Neural Information Processing Systems},
    year={2022}
}
"""
