"""RegularizedLoss composes by embeddings: one forward per column, no hooks, ST losses that merge columns included."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from st_unirep.losses import AntiCollapseLoss, CachedLoss, InstructionLoss, RegularizedLoss, UniformityLoss
from st_unirep.losses.regularized_loss import attention_entropy
from tests.losses.test_on_model import TEXTS, features, task_cases

# anchor, positive, hard negative: ST 6's MultipleNegativesRankingLoss embeds the last two in one merged forward
TRIPLETS = [TEXTS, ["RED", "BLUE", "GREEN", "BLACK"], ["a cat", "a dog asleep on the mat", "cars", "x"]]
REGULARISERS = dict(uniformity=0.1, anti_collapse=1.0, anti_collapse_threshold=-0.5, orthogonality=1e-3)


def _rows_per_call(model, call):
    rows = []
    handle = model.register_forward_hook(lambda module, args, output: rows.append(output["sentence_embedding"].shape))
    try:
        result = call()
    finally:
        handle.remove()
    return result, [shape[0] for shape in rows]


def _total(out):
    return torch.stack(list(out.values())).sum() if isinstance(out, dict) else out


def _grads(model, value):
    model.zero_grad()
    value.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_merged_column_loss_gets_one_column_per_input(tiny_model):
    """MNRL alone embeds (anchors) and (positives + negatives) in 2 calls; wrapped, every column has its own call and
    its own anti-collapse block, and the task value is MNRL's."""
    feats = features(tiny_model, TRIPLETS)
    mnrl = MultipleNegativesRankingLoss(tiny_model)
    alone, rows = _rows_per_call(tiny_model, lambda: mnrl([dict(f) for f in feats], None))
    assert rows == [4, 8]  # the merged forward the old forward-hook design mistook for one column
    loss = RegularizedLoss(tiny_model, mnrl, **REGULARISERS)
    out, rows = _rows_per_call(tiny_model, lambda: loss([dict(f) for f in feats], None))
    assert rows == [4, 4, 4]
    torch.testing.assert_close(out["task"], alone, rtol=1e-4, atol=1e-5)
    columns = [tiny_model(dict(f))["sentence_embedding"] for f in feats]
    expected = AntiCollapseLoss(None, weight=1.0, threshold=-0.5).compute_loss_from_embeddings(columns)
    torch.testing.assert_close(out["anti_collapse"], expected, rtol=1e-5, atol=1e-6)
    uniformity = 0.1 * UniformityLoss(None).compute_loss_from_embeddings(columns)
    torch.testing.assert_close(out["uniformity"], uniformity, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mini_batch_size", [1, 3])
def test_merged_column_loss_under_gradient_cache(tiny_model, mini_batch_size):
    """CachedLoss(MNRL) inside RegularizedLoss: the same components and gradients as uncached."""
    feats = features(tiny_model, TRIPLETS)
    plain = RegularizedLoss(tiny_model, MultipleNegativesRankingLoss(tiny_model), **REGULARISERS)
    cached = RegularizedLoss(
        tiny_model, CachedLoss(MultipleNegativesRankingLoss(tiny_model), mini_batch_size), **REGULARISERS
    )
    plain_out = plain([dict(f) for f in feats], None)
    cached_out = cached([dict(f) for f in feats], None)
    assert list(cached_out) == list(plain_out)
    for name, value in plain_out.items():
        torch.testing.assert_close(cached_out[name], value, rtol=1e-5, atol=1e-6, msg=name)
    plain_grads, cached_grads = _grads(tiny_model, _total(plain_out)), _grads(tiny_model, _total(cached_out))
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("task_weight", [0.5, 2.0])
def test_task_weight_scales_only_the_task_term_under_gradient_cache(tiny_model, task_weight):
    """A DWA weight multiplies the task term's gradient, not the regularisers' that travel in the same replay."""
    build, columns, labels = task_cases()["instr"]
    feats = features(tiny_model, columns)
    plain = RegularizedLoss(tiny_model, build(tiny_model), **REGULARISERS)
    cached = RegularizedLoss(tiny_model, CachedLoss(build(tiny_model), mini_batch_size=2), **REGULARISERS)
    for loss in (plain, cached):
        loss.set_task_weight(task_weight)
    plain_out, cached_out = plain([dict(f) for f in feats], labels), cached([dict(f) for f in feats], labels)
    torch.testing.assert_close(cached_out["task"], plain_out["task"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(plain.last_task_loss * task_weight, plain_out["task"].detach())
    torch.testing.assert_close(cached.last_task_loss, plain.last_task_loss, rtol=1e-5, atol=1e-6)
    plain_grads, cached_grads = _grads(tiny_model, _total(plain_out)), _grads(tiny_model, _total(cached_out))
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_no_hooks_and_entropy_from_the_same_forward(tiny_model, monkeypatch):
    """The entropy term reads the pooling weights of the forward that produced the embeddings; nothing registers a
    hook or rebinds a method while the loss runs."""
    build, columns, labels = task_cases()["ocr"]
    feats = features(tiny_model, columns)
    loss = RegularizedLoss(tiny_model, build(tiny_model), attention_entropy=0.5, **REGULARISERS)

    def refuse(*args, **kwargs):
        raise AssertionError("RegularizedLoss registered a hook")

    monkeypatch.setattr(torch.nn.Module, "register_forward_hook", refuse)
    tiny_model.eval()  # deterministic, so that a second forward reproduces the first
    with torch.no_grad():
        out = loss([dict(f) for f in feats], labels)
        outputs = [tiny_model(dict(f)) for f in feats]
    entropy = torch.stack([attention_entropy(o["pooling_attention"]) for o in outputs]).mean()
    torch.testing.assert_close(out["attention_entropy"], -0.5 * entropy)
    embeddings = [o["sentence_embedding"] for o in outputs]
    pooling = [o["pooling_attention"] for o in outputs]
    with torch.no_grad():
        components = loss.components(embeddings, labels, pooling)
    assert (
        list(components) == list(out) == ["task", "uniformity", "anti_collapse", "orthogonality", "attention_entropy"]
    )
    for name, value in out.items():
        torch.testing.assert_close(components[name], value, msg=name)


def test_sentence_transformers_cached_losses_are_refused_with_the_fix(tiny_model):
    with pytest.raises(ValueError, match=r"wrap the plain loss in st_unirep.losses.CachedLoss"):
        RegularizedLoss(tiny_model, CachedMultipleNegativesRankingLoss(tiny_model))


def test_a_loss_without_compute_loss_from_embeddings_is_refused(tiny_model):
    loss = RegularizedLoss(tiny_model, torch.nn.Identity())
    with pytest.raises(ValueError, match="Identity has no compute_loss_from_embeddings"):
        loss(features(tiny_model, [TEXTS, TEXTS]), None)


def test_bad_threshold_and_task_weight():
    with pytest.raises(ValueError, match=r"anti_collapse_threshold is a cosine and must be in \[-1, 1\]"):
        RegularizedLoss(None, InstructionLoss(None), anti_collapse_threshold=1.5)
    with pytest.raises(ValueError, match="task weight must be a number >= 0"):
        RegularizedLoss(None, InstructionLoss(None)).set_task_weight(-1.0)
