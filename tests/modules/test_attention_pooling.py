from __future__ import annotations

import math

import pytest
import torch

from st_unirep.modules.attention_pooling import AttentionPooling


def _features(hidden, mask):
    return {"token_embeddings": hidden, "attention_mask": mask}


def test_context_hand_computed_3_tokens():
    pooling = AttentionPooling(2, mode="context")
    with torch.no_grad():
        pooling.context.copy_(torch.tensor([1.0, 0.0]))  # v_a
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])  # u = [1, 0, 2]
    out = pooling(_features(hidden, torch.ones(1, 3)))
    e = [math.e**1, 1.0, math.e**2]
    alpha = torch.tensor([x / sum(e) for x in e])
    expected = alpha[0] * hidden[0, 0] + alpha[1] * hidden[0, 1] + alpha[2] * hidden[0, 2]
    torch.testing.assert_close(out["sentence_embedding"][0], expected)
    torch.testing.assert_close(out["pooling_attention"][0, 0], alpha)


def test_context_zero_vector_is_masked_mean():
    pooling = AttentionPooling(4, mode="context")
    with torch.no_grad():
        pooling.context.zero_()
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = pooling(_features(hidden, mask))["sentence_embedding"]
    torch.testing.assert_close(out[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(out[1], hidden[1].mean(0))


def test_multihead_hand_computed():
    """H=1, W_q = W_k = W_v = I, q = [1, 0]: alpha = softmax(h_i[0] / sqrt(2))."""
    pooling = AttentionPooling(2, mode="multihead", num_heads=1)
    with torch.no_grad():
        for linear in (pooling.w_q, pooling.w_k, pooling.w_v):
            linear.weight.copy_(torch.eye(2))
        pooling.query.copy_(torch.tensor([1.0, 0.0]))
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    out = pooling(_features(hidden, torch.ones(1, 3)))
    alpha = torch.softmax(torch.tensor([1.0, 0.0, 2.0]) / math.sqrt(2), dim=0)
    torch.testing.assert_close(out["sentence_embedding"][0], (alpha[:, None] * hidden[0]).sum(0))


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_masked_positions_are_ignored(mode):
    torch.manual_seed(0)
    pooling = AttentionPooling(8, mode=mode, num_heads=2)
    hidden = torch.randn(1, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    poisoned = hidden.clone()
    poisoned[0, 4:] = 1e30
    a = pooling(_features(hidden, mask))["sentence_embedding"]
    b = pooling(_features(poisoned, mask))["sentence_embedding"]
    assert torch.equal(a, b)
    assert torch.isfinite(b).all()


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_all_padding_row_is_finite(mode):
    pooling = AttentionPooling(8, mode=mode, num_heads=2)
    out = pooling(_features(torch.randn(2, 3, 8), torch.tensor([[0, 0, 0], [1, 1, 0]])))
    assert torch.isfinite(out["sentence_embedding"]).all()
    assert torch.isfinite(out["pooling_attention"]).all()
    assert torch.equal(out["sentence_embedding"][0], torch.zeros(8))


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_left_and_right_padding_agree(mode):
    torch.manual_seed(1)
    pooling = AttentionPooling(8, mode=mode, num_heads=4)
    tokens = torch.randn(3, 8)
    right = torch.cat([tokens, torch.randn(2, 8)])[None]
    left = torch.cat([torch.randn(2, 8), tokens])[None]
    r = pooling(_features(right, torch.tensor([[1, 1, 1, 0, 0]])))["sentence_embedding"]
    lft = pooling(_features(left, torch.tensor([[0, 0, 1, 1, 1]])))["sentence_embedding"]
    torch.testing.assert_close(r, lft, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_weights_are_a_distribution_and_input_not_mutated(mode):
    pooling = AttentionPooling(8, mode=mode, num_heads=2)
    hidden = torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    features = _features(hidden, mask)
    out = pooling(features)
    heads = 2 if mode == "multihead" else 1
    assert out["pooling_attention"].shape == (2, heads, 4)
    torch.testing.assert_close(out["pooling_attention"].sum(-1), torch.ones(2, heads))
    assert "sentence_embedding" not in features  # the caller's dict is left alone


def test_bf16_input_pools_in_float32():
    pooling = AttentionPooling(8, mode="multihead", num_heads=2)
    out = pooling(_features(torch.randn(1, 3, 8).bfloat16(), torch.ones(1, 3)))
    assert out["sentence_embedding"].dtype == torch.float32


def test_bad_options():
    with pytest.raises(ValueError, match="Unknown pooling mode 'mean'"):
        AttentionPooling(8, mode="mean")
    with pytest.raises(ValueError, match="num_heads must be a positive divisor"):
        AttentionPooling(8, mode="multihead", num_heads=3)
    with pytest.raises(ValueError, match="embedding_dim must be a positive int"):
        AttentionPooling(0)


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_save_load_restores_weights(tmp_path, mode):
    pooling = AttentionPooling(8, mode=mode, num_heads=2)
    pooling.save(str(tmp_path))
    loaded = AttentionPooling.load(str(tmp_path))
    assert loaded.get_config_dict() == pooling.get_config_dict()
    features = _features(torch.randn(2, 3, 8), torch.ones(2, 3))
    assert torch.equal(pooling(features)["sentence_embedding"], loaded(features)["sentence_embedding"])


def _reference_pooling(pooling: AttentionPooling, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The unfolded formula: keys and values of every token, then per-head softmax attention."""
    batch, seq, dim = hidden.shape
    if pooling.mode == "context":
        scores, values = (hidden @ pooling.context).unsqueeze(1), hidden.unsqueeze(1)
    else:
        heads, d_k = pooling.num_heads, dim // pooling.num_heads
        query = pooling.w_q(pooling.query).view(heads, 1, d_k)
        keys = pooling.w_k(hidden).view(batch, seq, heads, d_k).transpose(1, 2)
        values = pooling.w_v(hidden).view(batch, seq, heads, d_k).transpose(1, 2)
        scores = (keys @ query.transpose(-1, -2)).squeeze(-1) / math.sqrt(d_k)
    scores = scores.masked_fill(~mask.bool().unsqueeze(1), float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return (weights.unsqueeze(-1) * values).sum(-2).reshape(batch, -1)


@pytest.mark.parametrize("mode", ["context", "multihead"])
@pytest.mark.parametrize("batch, seq, dim, heads", [(1, 1, 8, 2), (3, 7, 16, 4), (4, 33, 64, 8)])
def test_folded_heads_match_unfolded_formula_values_and_gradients(mode, batch, seq, dim, heads):
    torch.manual_seed(0)
    pooling = AttentionPooling(dim, mode=mode, num_heads=heads)
    hidden = torch.randn(batch, seq, dim, requires_grad=True)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, seq // 2 + 1 :] = 0  # right padding
    if batch > 2:
        mask[1, : seq // 3] = 0  # left padding
        mask[2] = 0  # all padding
    out = pooling(_features(hidden, mask))["sentence_embedding"]
    ref = _reference_pooling(pooling, hidden, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, *pooling.parameters()])
    ref_grads = torch.autograd.grad((ref * weights).sum(), [hidden, *pooling.parameters()])
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["context", "multihead"])
def test_reset_to_mean_is_masked_mean_pooling(mode):
    torch.manual_seed(0)
    pool = AttentionPooling(8, mode=mode, num_heads=2)
    pool.reset_to_mean()
    tokens = torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = pool({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
    expected = torch.stack([tokens[0, :3].mean(0), tokens[1, :2].mean(0)])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
