"""Learnable attention pooling over the backbone's token embeddings (viPolyQwen §4.1, UniRep §5.1)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from sentence_transformers.base.modules import Module
from torch import nn

from st_unirep.modules._io import load_module_with_weights

PoolingMode = Literal["context", "multihead"]
POOLING_MODES: tuple[str, ...] = ("context", "multihead")


class AttentionPooling(Module):
    r"""Pools a sequence of token embeddings into one vector with learned attention weights.

    Two modes, one per seed:

    ``context`` (viPolyQwen §4.1): a learnable context vector :math:`\mathbf{v}_a \in \mathbb{R}^D`,
    initialised :math:`\mathcal{N}(0, 0.02^2)`, scores every token,

    .. math::
        u_i = \mathbf{h}_i^\top \mathbf{v}_a, \quad
        \alpha = \operatorname{softmax}(u) \text{ (padding } u_i = -\infty), \quad
        \mathbf{c} = \textstyle\sum_i \alpha_i \mathbf{h}_i .

    ``multihead`` (UniRep §5.1): a learnable query :math:`\mathbf{q} \in \mathbb{R}^D` and projections
    :math:`W_q, W_k, W_v \in \mathbb{R}^{D \times D}` split into :math:`H` heads of :math:`d_k = D / H`,

    .. math::
        \alpha_{h,i} = \operatorname{softmax}_i\!\left(
            \frac{(\mathbf{q} W_q)_h (\mathbf{h}_i W_k)_h^\top}{\sqrt{d_k}} \right), \quad
        \mathbf{c} = \big\Vert_h \textstyle\sum_i \alpha_{h,i} (\mathbf{h}_i W_v)_h .

    Numerics the seeds leave open: padding is masked to ``-inf`` (exact for any dtype, unlike ``-1e9`` in
    fp16); a row that is all padding gets weights 0 and a zero vector instead of NaN; the pooling runs in the
    dtype of its own parameters (float32 by default) whatever the backbone's dtype, so a bf16 backbone does not
    make the softmax bf16.

    Cost: the multi-head scores and values are folded through the single query,
    :math:`(\mathbf{h}_i W_k)_h \cdot (\mathbf{q} W_q)_h = \mathbf{h}_i \cdot (W_{k,h} (\mathbf{q} W_q)_h)` and
    :math:`\sum_i \alpha_{h,i} (\mathbf{h}_i W_v)_h = (\sum_i \alpha_{h,i} \mathbf{h}_i) W_{v,h}`, so the
    keys and values of every token (:math:`2 N D^2` multiply-adds) are never formed: :math:`O(N D H)` instead,
    the same function and gradients (parity-tested against the unfolded formula to 1e-5).

    The attention weights are written to ``features["pooling_attention"]`` with shape ``(batch, heads, seq)``
    (``heads = 1`` in ``context`` mode) so a regulariser can use their entropy.

    Args:
        embedding_dim: Width :math:`D` of the token embeddings.
        mode: ``"context"`` or ``"multihead"``.
        num_heads: Heads :math:`H` in ``multihead`` mode (must divide ``embedding_dim``); ignored otherwise.
    """

    config_keys: list[str] = ["embedding_dim", "mode", "num_heads"]

    def __init__(self, embedding_dim: int, mode: PoolingMode = "context", num_heads: int = 8) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; expected one of {list(POOLING_MODES)}")
        if not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        if mode == "multihead" and (num_heads <= 0 or embedding_dim % num_heads != 0):
            raise ValueError(
                f"num_heads must be a positive divisor of embedding_dim={embedding_dim} in multihead mode, "
                f"got {num_heads}"
            )
        self.embedding_dim = embedding_dim
        self.mode = mode
        self.num_heads = num_heads if mode == "multihead" else 1
        if mode == "context":
            self.context = nn.Parameter(torch.randn(embedding_dim) * 0.02)  # v_a ~ N(0, 0.02^2), (D,)
        else:
            self.query = nn.Parameter(torch.randn(embedding_dim) * 0.02)  # q, (D,)
            self.w_q = nn.Linear(embedding_dim, embedding_dim, bias=False)
            self.w_k = nn.Linear(embedding_dim, embedding_dim, bias=False)
            self.w_v = nn.Linear(embedding_dim, embedding_dim, bias=False)

    @torch.no_grad()
    def reset_to_mean(self) -> None:
        """Start as masked mean pooling: a zero query (or context) vector gives every token the same score, and
        ``W_v = I``. For fine-tuning a pretrained encoder whose mean-pooled vectors are already good: training
        starts from them instead of from a random mix of them."""
        if self.mode == "context":
            self.context.zero_()
        else:
            self.query.zero_()
            self.w_v.weight.copy_(torch.eye(self.embedding_dim))

    def forward(self, features: dict[str, torch.Tensor | Any], **kwargs) -> dict[str, torch.Tensor | Any]:
        token_embeddings = features["token_embeddings"]
        mask = features.get("attention_mask")
        if mask is None:
            mask = torch.ones(token_embeddings.shape[:2], device=token_embeddings.device, dtype=torch.long)
        dtype = self.context.dtype if self.mode == "context" else self.query.dtype
        hidden = token_embeddings.to(dtype)  # (batch, seq, D)
        valid = mask.to(torch.bool)  # (batch, seq)

        dim = hidden.shape[-1]
        if self.mode == "context":
            scores = (hidden @ self.context).unsqueeze(1)  # (batch, 1, seq)
        else:
            # Folded: (h_i W_k^T)_h . (q W_q^T)_h = h_i . (W_k,h^T (q W_q^T)_h), so the keys are never formed.
            d_k = dim // self.num_heads
            query = self.w_q(self.query).view(self.num_heads, 1, d_k)  # (heads, 1, d_k)
            w_k = self.w_k.weight.view(self.num_heads, d_k, dim)  # (heads, d_k, D), head h's rows of W_k
            key_query = (query @ w_k).squeeze(1) / math.sqrt(d_k)  # (heads, D)
            scores = (hidden @ key_query.T).transpose(1, 2)  # (batch, heads, seq)

        scores = scores.masked_fill(~valid.unsqueeze(1), float("-inf"))  # (batch, heads, seq)
        weights = torch.softmax(scores, dim=-1)  # (batch, heads, seq); NaN where a row is all padding
        has_token = valid.any(dim=-1)[:, None, None]  # (batch, 1, 1)
        weights = torch.where(has_token, weights, torch.zeros_like(weights))  # all-padding rows -> 0, not NaN
        context = weights @ hidden  # (batch, heads, D): sum_i alpha_{h,i} h_i
        if self.mode == "context":
            pooled = context.squeeze(1)  # (batch, D)
        else:
            # Folded: sum_i alpha_{h,i} (h_i W_v^T)_h = (sum_i alpha_{h,i} h_i) W_v,h^T, values never formed.
            w_v = self.w_v.weight.view(self.num_heads, d_k, dim)  # (heads, d_k, D)
            pooled = (context.transpose(0, 1) @ w_v.transpose(1, 2)).transpose(0, 1)  # (batch, heads, d_k)
            pooled = pooled.reshape(pooled.shape[0], dim)  # (batch, D)

        return {**features, "sentence_embedding": pooled, "pooling_attention": weights}

    def get_embedding_dimension(self) -> int:
        return self.embedding_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> AttentionPooling:
        return load_module_with_weights(cls, model_name_or_path, subfolder, **kwargs)


__all__ = ["AttentionPooling", "POOLING_MODES"]
