"""Add the seeds' global regularisers to any task loss, on the same embeddings (one forward per column)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss as STMatryoshkaLoss
from torch import Tensor, nn

from st_unirep.losses._base import check_non_negative, loss_from_embeddings, summed
from st_unirep.losses._citations import UNIREP, UNIREP_M, VIUNIEMBED, cite
from st_unirep.losses.anti_collapse_loss import anti_collapse_from_similarities, check_variant
from st_unirep.losses.loss_wrapper import LossWrapper
from st_unirep.losses.matryoshka_loss import matryoshka_components
from st_unirep.losses.uniformity_loss import uniformity_from_gram


def attention_entropy(attention: Tensor) -> Tensor:
    r"""Mean entropy :math:`H = -\sum_i \alpha_i \log \alpha_i` of pooling weights ``(batch, heads, seq)``
    (padding has weight 0 and contributes 0)."""
    # where(), not xlogy: d(a log a)/da = log a + 1 is -inf at the padded zeros and turns the softmax's backward NaN
    tiny = torch.finfo(attention.dtype).tiny
    plogp = torch.where(attention > 0, attention * attention.clamp_min(tiny).log(), torch.zeros_like(attention))
    return -plogp.sum(-1).mean()


class RegularizedLoss(LossWrapper):
    r"""Wraps a task loss and adds the global regularisers on the *same* embeddings (no second forward):

    .. math::
        \mathcal{L} = w_{task}\,\mathcal{L}_{task} + \gamma\,\mathcal{L}_{unif} + \lambda_{ac}\,\mathcal{L}_{ac}
            + \lambda_{orth}\,\lVert W W^\top - I \rVert_F^2 - \lambda_{ent}\,H(\alpha)

    - :math:`\mathcal{L}_{unif}` (:class:`UniformityLoss`, t = 2) and :math:`\mathcal{L}_{ac}`
      (:class:`AntiCollapseLoss`, δ = 0.95, ``mean`` or ``max``) on the full-width embeddings of the batch,
      whatever the task (uniformity over all of them, anti-collapse within each column); γ = 0.1 as in UniRep-M.
    - orthogonality: the ``orthogonality_penalty()`` of every module that has one (``StableProjection`` in
      ``mlp`` mode), UniRep §5.2.
    - attention entropy: the mean entropy :math:`H` of the pooling weights that ``AttentionPooling`` writes to
      ``features["pooling_attention"]``, *subtracted* so that weight spreads over more than one token
      (UniRep §5.1). Not available under GradCache (its first pass keeps no graph), which raises.
    - :math:`w_{task}` = 1 unless a dynamic task-weighting schedule sets it (:meth:`set_task_weight`).

    Composition: ``forward`` runs the model once per input column and keeps each column's output features. The
    ``sentence_embedding`` of every column goes to the task loss's ``compute_loss_from_embeddings`` and to the
    regularisers' formulas (one Gram matrix for both); the ``pooling_attention`` of the same outputs goes to the
    entropy term. No hook, no second forward, and no merged forward: a sentence-transformers loss that would
    embed its candidate columns in one call (``MultipleNegativesRankingLoss`` in ST 6) gets them as separate
    columns here, so anti-collapse never mixes positives with negatives. Under :class:`MatryoshkaLoss` the task
    loss sees every prefix width of those embeddings; the regularisers see the full width once. With a
    :class:`CachedLoss` in the stack the whole objective above (less the orthogonality term, which reads weights,
    not embeddings) is what GradCache computes on the full batch, so every term's gradient travels through its
    replay. sentence-transformers' own ``MatryoshkaLoss`` is composed the same way from its public dims, weights
    and inner loss (never through its ``forward``), except around a gradient-caching loss (its ``__init__`` has
    already rebound that loss's ``calculate_loss``), which raises: use :class:`MatryoshkaLoss` there.

    ``forward`` returns a dict of the weighted components (``task``, ``uniformity``, …), which
    ``SentenceTransformerTrainer`` sums and logs one by one; :meth:`components` gives the same dict from
    embeddings. Put it outermost: ``RegularizedLoss(model, MatryoshkaLoss(model, task, dims))``.

    Args:
        model: The SentenceTransformer.
        loss: The task loss: any loss with ``compute_loss_from_embeddings`` (ours, or sentence-transformers'),
            possibly inside :class:`MatryoshkaLoss` (or ST's) and :class:`CachedLoss`.
        uniformity: γ (>= 0).
        anti_collapse: λ_ac (>= 0).
        anti_collapse_variant: ``"mean"`` (ViUniEmbed) or ``"max"`` (UniRep-M Defense 4).
        anti_collapse_threshold: δ, a cosine in [-1, 1].
        orthogonality: λ_orth (>= 0).
        attention_entropy: λ_ent (>= 0).
        uniformity_t: t of the uniformity kernel.

    References:
        UniRep ("UniRep: A Unified Representation Architecture for Provably Stable Multimodal Learning") §5.1, §5.2;
        UniRep-M ("UniRep and UniRep-M: A Single Architecture for Unified Embedding and Reranking with Hierarchical
        Matryoshka Learning"); ViUniEmbed ("ViUniEmbed: Unified Embedding and Reranking with a Single, Calibrated
        Multimodal Vector"). Seed drafts by Nguyen Anh Nguyen (EraX, GMobile).

    Inputs:
        Those of the wrapped loss.

    Relations:
        sentence-transformers' ``GlobalOrthogonalRegularizationLoss`` is a regulariser of the same kind, composed
        the same way (embed once, call each term's ``compute_loss_from_embeddings``, return a dict of terms).

    Example:
        ::

            task = CalibratedTextPairLoss(model, score_range=(0, 5))
            loss = RegularizedLoss(model, MatryoshkaLoss(model, task, dims, quadratic_matryoshka_weights(dims)),
                                   uniformity=0.1, orthogonality=1e-4)
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        uniformity: float = 0.1,
        anti_collapse: float = 0.0,
        anti_collapse_variant: str = "mean",
        anti_collapse_threshold: float = 0.95,
        orthogonality: float = 0.0,
        attention_entropy: float = 0.0,
        uniformity_t: float = 2.0,
    ) -> None:
        super().__init__(model, loss)
        for name, value in (
            ("uniformity", uniformity),
            ("anti_collapse", anti_collapse),
            ("orthogonality", orthogonality),
            ("attention_entropy", attention_entropy),
            ("uniformity_t", uniformity_t),
        ):
            check_non_negative(name, value)
        check_variant(anti_collapse_variant)
        if not -1.0 <= anti_collapse_threshold <= 1.0:
            raise ValueError(
                f"anti_collapse_threshold is a cosine and must be in [-1, 1], got {anti_collapse_threshold!r}"
            )
        self.uniformity = uniformity
        self.anti_collapse = anti_collapse
        self.anti_collapse_variant = anti_collapse_variant
        self.anti_collapse_threshold = anti_collapse_threshold
        self.orthogonality = orthogonality
        self.attention_entropy = attention_entropy
        self.uniformity_t = uniformity_t
        # The TaskWeighted interface (st_unirep.losses.schedulable), for training.schedules.DynamicTaskWeighting.
        self.task_weight = 1.0
        self.last_task_loss: Tensor | None = None
        self.task_loss_count = 0
        if self.gradient_cache() is not None and attention_entropy:  # (also raises on a foreign GradCache loss)
            raise ValueError(
                "attention_entropy needs the pooling weights of a forward pass with gradients, which GradCache "
                "(CachedLoss) does not keep; set attention_entropy=0 or drop the caching"
            )

    # --- schedules ---
    def schedule_target(self) -> nn.Module:
        return self.loss.loss if isinstance(self.loss, STMatryoshkaLoss) else self.loss

    def set_task_weight(self, weight: float) -> None:
        check_non_negative("task weight", weight)
        self.task_weight = weight

    # --- the terms, from embeddings ---
    def task_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The wrapped loss (unweighted) on the model's embeddings, one ``(B, D)`` per column."""
        if isinstance(self.loss, STMatryoshkaLoss):  # the same maths as its forward, from its public fields
            matryoshka = self.loss
            terms = matryoshka_components(
                matryoshka.loss,
                embeddings,
                labels,
                matryoshka.matryoshka_dims,
                matryoshka.matryoshka_weights,
                matryoshka.n_dims_per_step,
            )
            return summed(terms)
        return loss_from_embeddings(self.loss, embeddings, labels)

    def embedding_terms(self, columns: list[Tensor]) -> dict[str, Tensor]:
        """Weighted uniformity and anti-collapse of full-width embeddings, one ``(B, d)`` per column."""
        columns = [F.normalize(c, p=2, dim=-1) for c in columns if c.shape[0] >= 2]
        terms: dict[str, Tensor] = {}
        if not columns or not (self.uniformity or self.anti_collapse):
            return terms
        embeddings = torch.cat(columns)  # (N, d)
        gram = embeddings @ embeddings.T  # (N, N): one product for both terms
        if self.uniformity:  # over every embedding of the batch (UniformityLoss)
            terms["uniformity"] = self.uniformity * uniformity_from_gram(gram, self.uniformity_t)
        if self.anti_collapse:  # within each column (AntiCollapseLoss): the diagonal blocks of the Gram matrix
            values, start = [], 0
            for column in columns:
                end = start + column.shape[0]
                block = gram[start:end, start:end]  # (B, B), cosines within the column
                values.append(
                    anti_collapse_from_similarities(block, self.anti_collapse_threshold, self.anti_collapse_variant)
                )
                start = end
            terms["anti_collapse"] = self.anti_collapse * torch.stack(values).mean()
        return terms

    def model_terms(self) -> dict[str, Tensor]:
        """The weighted orthogonality penalty of the model's projection (reads weights, not embeddings)."""
        if not self.orthogonality:
            return {}
        penalties = [m.orthogonality_penalty() for m in self.model.modules() if hasattr(m, "orthogonality_penalty")]
        if not penalties:
            raise ValueError("orthogonality > 0 but the model has no module with orthogonality_penalty()")
        return {"orthogonality": self.orthogonality * torch.stack(penalties).sum()}

    def entropy_terms(self, pooling_attention: list[Tensor | None] | None) -> dict[str, Tensor]:
        """:math:`-\\lambda_{ent} H`, the mean entropy over the columns' pooling weights ``(B, heads, seq)``."""
        if not self.attention_entropy:
            return {}
        attentions = [a for a in pooling_attention or () if a is not None]
        if not attentions:
            raise ValueError("attention_entropy > 0 but the model writes no 'pooling_attention' (no AttentionPooling)")
        entropy = torch.stack([attention_entropy(a) for a in attentions]).mean()
        return {"attention_entropy": -self.attention_entropy * entropy}

    def components(
        self,
        embeddings: list[Tensor],
        labels: Tensor | None = None,
        pooling_attention: list[Tensor | None] | None = None,
    ) -> dict[str, Tensor]:
        """Every weighted term by name (``task``, ``uniformity``, ``anti_collapse``, ``orthogonality``,
        ``attention_entropy``, those that are on) from the embeddings and pooling weights of one forward."""
        return self._assemble(self.task_loss_from_embeddings(embeddings, labels), embeddings, pooling_attention)

    def compute_loss_from_embeddings(
        self,
        embeddings: list[Tensor],
        labels: Tensor | None = None,
        pooling_attention: list[Tensor | None] | None = None,
    ) -> dict[str, Tensor]:
        """The loss as its dict of components (as ST's ``GlobalOrthogonalRegularizationLoss`` returns it)."""
        return self.components(embeddings, labels, pooling_attention)

    # --- the forward pass ---
    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> dict[str, Tensor]:
        sentence_features = list(sentence_features)
        cache = self.gradient_cache()
        if cache is not None:
            return {**cache.forward_components(sentence_features, labels, self._cached_objective), **self.model_terms()}
        outputs = self.embed(sentence_features)  # embed once: one forward per column
        embeddings = [output["sentence_embedding"] for output in outputs]
        task = self._record(self.task_loss_from_embeddings(embeddings, labels))
        return self._assemble(task, embeddings, [output.get("pooling_attention") for output in outputs])

    def _cached_objective(self, embeddings: list[Tensor], labels: Tensor | None) -> dict[str, Tensor]:
        """What GradCache computes on the whole batch: every term that reads the embeddings."""
        task = self._record(self.task_loss_from_embeddings(embeddings, labels))
        return {"task": self._weighted(task), **self.embedding_terms(embeddings)}

    def _assemble(
        self, task: Tensor, embeddings: list[Tensor], pooling_attention: list[Tensor | None] | None
    ) -> dict[str, Tensor]:
        return {
            "task": self._weighted(task),
            **self.embedding_terms(embeddings),
            **self.model_terms(),
            **self.entropy_terms(pooling_attention),
        }

    def _record(self, task: Tensor) -> Tensor:
        self.last_task_loss = task.detach()
        self.task_loss_count += 1
        return task

    def _weighted(self, task: Tensor) -> Tensor:
        return task if self.task_weight == 1.0 else self.task_weight * task

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": type(self.loss).__name__,
            "uniformity": self.uniformity,
            "anti_collapse": self.anti_collapse,
            "anti_collapse_variant": self.anti_collapse_variant,
            "anti_collapse_threshold": self.anti_collapse_threshold,
            "orthogonality": self.orthogonality,
            "attention_entropy": self.attention_entropy,
            "uniformity_t": self.uniformity_t,
        }

    @property
    def citation(self) -> str:
        return cite(UNIREP, UNIREP_M, VIUNIEMBED)
