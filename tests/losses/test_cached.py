"""GradCache parity: CachedLoss gives the uncached loss and gradients, for every mini-batch size."""

from __future__ import annotations

import pytest
import torch

from st_unirep.losses import CachedLoss, MatryoshkaLoss, RegularizedLoss, quadratic_matryoshka_weights
from tests.losses.test_on_model import DIMS, features, task_cases

CACHEABLE = ["text_pair", "ocr", "vqa", "instr"]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(model, loss_fn, feats, labels):
    model.zero_grad()
    out = loss_fn(feats, labels)
    total = torch.stack(list(out.values())).sum() if isinstance(out, dict) else out
    total.backward()
    return total.detach(), _grads(model)


def _compare(model, make_plain, make_cached, task):
    build, columns, labels = task_cases()[task]
    feats = features(model, columns)
    model.train()
    plain_loss, plain_grads = _run(model, make_plain(build(model)), feats, labels)
    cached_loss, cached_grads = _run(model, make_cached(build(model)), feats, labels)
    torch.testing.assert_close(cached_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == cached_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("task", CACHEABLE)
@pytest.mark.parametrize("mini_batch_size", [1, 3, 4])
def test_cached_equals_uncached(tiny_model, task, mini_batch_size):
    _compare(tiny_model, lambda loss: loss, lambda loss: CachedLoss(loss, mini_batch_size=mini_batch_size), task)


@pytest.mark.parametrize("task", ["text_pair", "vqa"])
@pytest.mark.parametrize("mini_batch_size", [1, 2])
def test_cached_equals_uncached_inside_matryoshka_and_regularized(tiny_model, task, mini_batch_size):
    weights = quadratic_matryoshka_weights(DIMS)

    def wrap(loss):
        return RegularizedLoss(
            tiny_model,
            MatryoshkaLoss(tiny_model, loss, DIMS, weights),
            uniformity=0.1,
            anti_collapse=1.0,
            orthogonality=1e-3,
        )

    _compare(tiny_model, wrap, lambda loss: wrap(CachedLoss(loss, mini_batch_size=mini_batch_size)), task)


def test_cached_regularized_rejects_attention_entropy(tiny_model):
    build, _, _ = task_cases()["instr"]
    with pytest.raises(ValueError, match="attention_entropy needs the pooling weights"):
        RegularizedLoss(tiny_model, CachedLoss(build(tiny_model)), attention_entropy=0.1)
