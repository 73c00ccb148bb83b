"""Add the seeds' global regularisers to any task loss, on the same forward pass."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import uses_gradient_cache
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from torch import Tensor, nn

from st_unirep.losses._base import check_non_negative
from st_unirep.losses.anti_collapse_loss import anti_collapse_from_similarities, check_variant
from st_unirep.losses.uniformity_loss import uniformity_from_gram


def attention_entropy(attention: Tensor) -> Tensor:
    r"""Mean entropy :math:`H = -\sum_i \alpha_i \log \alpha_i` of pooling weights ``(batch, heads, seq)``
    (padding has weight 0 and contributes 0)."""
    # where(), not xlogy: d(a log a)/da = log a + 1 is -inf at the padded zeros and turns the softmax's backward NaN
    tiny = torch.finfo(attention.dtype).tiny
    plogp = torch.where(attention > 0, attention * attention.clamp_min(tiny).log(), torch.zeros_like(attention))
    return -plogp.sum(-1).mean()


class _RegularizedCalculateLoss:
    """Decorates a GradCache loss's ``calculate_loss``: adds the embedding regularisers to the cached gradients.

    The regularisers' gradients go into the embeddings' ``.grad`` next to the task loss's, so GradCache's replay
    carries both. The returned value is the task loss alone; the regularisers' values are kept (detached) for
    :class:`RegularizedLoss` to report, so the trainer's sum of components equals the total.
    """

    def __init__(self, fn, owner: RegularizedLoss) -> None:
        self.fn = fn
        self.owner = owner

    def __call__(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        columns = [torch.cat(column) for column in reps]
        terms = self.owner.embedding_terms(columns)
        if terms and with_backward:
            torch.stack(list(terms.values())).sum().backward()
        self.owner._cached_terms = {name: value.detach() for name, value in terms.items()}
        return self.fn(reps, labels, with_backward=with_backward)


class RegularizedLoss(nn.Module):
    r"""Wraps a task loss and adds the global regularisers on the *same* forward pass (no second forward):

    .. math::
        \mathcal{L} = \mathcal{L}_{task} + \gamma\,\mathcal{L}_{unif} + \lambda_{ac}\,\mathcal{L}_{ac}
            + \lambda_{orth}\,\lVert W W^\top - I \rVert_F^2 - \lambda_{ent}\,H(\alpha)

    - :math:`\mathcal{L}_{unif}` (:class:`UniformityLoss`, t = 2) and :math:`\mathcal{L}_{ac}`
      (:class:`AntiCollapseLoss`, δ = 0.95, ``mean`` or ``max``) on the full-width embeddings of the batch,
      whatever the task (uniformity over all of them, anti-collapse within each column); γ = 0.1 as in UniRep-M.
    - orthogonality: the ``orthogonality_penalty()`` of every module that has one (``StableProjection`` in
      ``mlp`` mode), UniRep §5.2.
    - attention entropy: the mean entropy :math:`H` of the pooling weights that ``AttentionPooling`` writes to
      ``features["pooling_attention"]``, *subtracted* so that weight spreads over more than one token
      (UniRep §5.1). Not available under GradCache (its first pass keeps no graph), which raises.

    The embeddings and attention weights are read with a forward hook on the model while the task loss runs.
    ``forward`` returns a dict of the weighted components (``task``, ``uniformity``, …), which
    ``SentenceTransformerTrainer`` sums and logs one by one. Put it outermost:
    ``RegularizedLoss(model, MatryoshkaLoss(model, task, dims))`` regularises the full-width embeddings once.

    Args:
        model: The SentenceTransformer.
        loss: The task loss (any ST loss; also ``MatryoshkaLoss`` and :class:`CachedLoss` around one).
        uniformity: γ (>= 0).
        anti_collapse: λ_ac (>= 0).
        anti_collapse_variant: ``"mean"`` (ViUniEmbed) or ``"max"`` (UniRep-M Defense 4).
        anti_collapse_threshold: δ.
        orthogonality: λ_orth (>= 0).
        attention_entropy: λ_ent (>= 0).
        uniformity_t: t of the uniformity kernel.

    References:
        ../shared/seeds/000_* (UniRep §5.1, §5.2), 001_* (UniRep-M), 002_* (ViUniEmbed).

    Inputs:
        Those of the wrapped loss.

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
        super().__init__()
        for name, value in (
            ("uniformity", uniformity),
            ("anti_collapse", anti_collapse),
            ("orthogonality", orthogonality),
            ("attention_entropy", attention_entropy),
            ("uniformity_t", uniformity_t),
        ):
            check_non_negative(name, value)
        check_variant(anti_collapse_variant)
        self.model = model
        self.loss = loss
        self.uniformity = uniformity
        self.anti_collapse = anti_collapse
        self.anti_collapse_variant = anti_collapse_variant
        self.anti_collapse_threshold = anti_collapse_threshold
        self.orthogonality = orthogonality
        self.attention_entropy = attention_entropy
        self.uniformity_t = uniformity_t
        self._cached_terms: dict[str, Tensor] = {}
        # Multiplies the task term; set by a dynamic task-weighting schedule (training.schedules.DynamicTaskWeighting).
        self.task_weight = 1.0
        self.last_task_loss: Tensor | None = None  # detached task term of the latest forward (for such schedules)
        self.calls = 0
        self.uses_cache = uses_gradient_cache(loss)
        if self.uses_cache:
            if attention_entropy:
                raise ValueError(
                    "attention_entropy needs the pooling weights of a forward pass with gradients, which GradCache "
                    "(CachedLoss) does not keep; set attention_entropy=0 or drop the caching"
                )
            target = loss.loss if isinstance(loss, MatryoshkaLoss) else loss
            target.calculate_loss = _RegularizedCalculateLoss(target.calculate_loss, self)

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
        if not self.orthogonality:
            return {}
        penalties = [m.orthogonality_penalty() for m in self.model.modules() if hasattr(m, "orthogonality_penalty")]
        if not penalties:
            raise ValueError("orthogonality > 0 but the model has no module with orthogonality_penalty()")
        return {"orthogonality": self.orthogonality * torch.stack(penalties).sum()}

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> dict[str, Tensor]:
        sentence_features = list(sentence_features)
        if self.uses_cache:
            self._cached_terms = {}
            task = self._weighted(self.loss(sentence_features, labels))
            return {"task": task, **self._cached_terms, **self.model_terms()}

        records: list[tuple[Tensor, Tensor | None]] = []

        def record(module, args, output):
            if isinstance(output, dict) and "sentence_embedding" in output:
                records.append((output["sentence_embedding"], output.get("pooling_attention")))

        handle = self.model.register_forward_hook(record)
        try:
            task = self.loss(sentence_features, labels)
        finally:
            handle.remove()
        if not records:
            raise ValueError(f"{type(self.loss).__name__} never called the model; nothing to regularise")
        # Under MatryoshkaLoss the later calls return truncated copies: keep the full-width ones.
        width = max(embedding.shape[-1] for embedding, _ in records)
        full = [(embedding, attention) for embedding, attention in records if embedding.shape[-1] == width]
        out = {
            "task": self._weighted(task),
            **self.embedding_terms([embedding for embedding, _ in full]),
            **self.model_terms(),
        }
        if self.attention_entropy:
            attentions = [attention for _, attention in full if attention is not None]
            if not attentions:
                raise ValueError(
                    "attention_entropy > 0 but the model writes no 'pooling_attention' (no AttentionPooling)"
                )
            entropy = torch.stack([attention_entropy(a) for a in attentions]).mean()
            out["attention_entropy"] = -self.attention_entropy * entropy
        return out

    def _weighted(self, task: Tensor) -> Tensor:
        self.last_task_loss = task.detach()
        self.calls += 1
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
