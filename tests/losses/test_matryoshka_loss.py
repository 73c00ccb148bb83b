"""st_unirep's MatryoshkaLoss (embeddings computed once) against sentence-transformers' (forward patched per dim)."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss as STMatryoshkaLoss

from st_unirep.losses import CachedLoss, InstructionLoss, MatryoshkaLoss, RegularizedLoss, quadratic_matryoshka_weights
from tests.conftest import TINY_OUTPUT_DIM
from tests.losses.test_on_model import DIMS, features, task_cases

DIM_SETS = [(TINY_OUTPUT_DIM,), DIMS, (TINY_OUTPUT_DIM, 48, 8, 1)]


def _run(model, loss, feats, labels, seed=0):
    model.zero_grad()
    random.seed(seed)  # n_dims_per_step draws its widths from `random`, as ST does
    value = loss([dict(f) for f in feats], labels)
    value.backward()
    return value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(mine, reference, rtol, atol):
    torch.testing.assert_close(mine[0], reference[0], rtol=rtol, atol=atol)
    assert mine[1].keys() == reference[1].keys() and reference[1]
    for name, grad in reference[1].items():
        torch.testing.assert_close(mine[1][name], grad, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("task", sorted(task_cases()))
@pytest.mark.parametrize("dims", DIM_SETS, ids=lambda d: "x".join(map(str, d)))
def test_equals_sentence_transformers_matryoshka_in_float64(tiny_model, task, dims):
    """Same loss and gradients (float64: the two differ only in rounding, ST normalising each prefix of the last)."""
    model = tiny_model.double().train()
    build, columns, labels = task_cases()[task]
    feats = features(model, columns)
    weights = quadratic_matryoshka_weights(dims)
    reference = _run(model, STMatryoshkaLoss(model, build(model), dims, weights), feats, labels)
    mine = _run(model, MatryoshkaLoss(model, build(model), dims, weights), feats, labels)
    _assert_same(mine, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_dims_per_step", [1, 2])
def test_equals_sentence_transformers_with_dims_drawn_per_step(tiny_model, n_dims_per_step):
    build, columns, labels = task_cases()["instr"]
    feats = features(tiny_model, columns)
    for seed in range(3):
        reference = _run(
            tiny_model,
            STMatryoshkaLoss(tiny_model, build(tiny_model), DIMS, None, n_dims_per_step),
            feats,
            labels,
            seed,
        )
        mine = _run(
            tiny_model, MatryoshkaLoss(tiny_model, build(tiny_model), DIMS, None, n_dims_per_step), feats, labels, seed
        )
        _assert_same(mine, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mini_batch_size", [1, 3])
def test_cached_equals_sentence_transformers_matryoshka_around_the_same_cached_loss(tiny_model, mini_batch_size):
    """ST's MatryoshkaLoss still works around a CachedLoss on its own (it decorates calculate_loss); ours caches the
    whole objective instead: same loss and gradients."""
    build, columns, labels = task_cases()["vqa"]
    feats = features(tiny_model, columns)
    weights = quadratic_matryoshka_weights(DIMS)

    def make():
        return CachedLoss(build(tiny_model), mini_batch_size=mini_batch_size)

    reference = _run(tiny_model, STMatryoshkaLoss(tiny_model, make(), DIMS, weights), feats, labels)
    mine = _run(tiny_model, MatryoshkaLoss(tiny_model, make(), DIMS, weights), feats, labels)
    _assert_same(mine, reference, rtol=1e-4, atol=1e-5)


def test_compute_loss_from_embeddings_and_components_by_hand():
    generator = torch.Generator().manual_seed(0)
    columns = [torch.randn(5, 8, generator=generator) for _ in range(2)]
    inner = InstructionLoss(None, cos_weight=0.5)
    loss = MatryoshkaLoss(None, inner, (4, 8), (0.25, 1.0))
    parts = loss.components(columns)
    assert list(parts) == ["dim_8", "dim_4"]  # widest first, as ST sorts them
    for dim, weight in ((8, 1.0), (4, 0.25)):
        prefixes = [F.normalize(c[:, :dim], dim=-1) for c in columns]
        torch.testing.assert_close(parts[f"dim_{dim}"], weight * inner.compute_loss_from_embeddings(prefixes))
    torch.testing.assert_close(loss.compute_loss_from_embeddings(columns), parts["dim_8"] + parts["dim_4"])


def test_regularized_rejects_sentence_transformers_matryoshka_around_a_cached_loss(tiny_model):
    cached = CachedLoss(InstructionLoss(tiny_model), mini_batch_size=2)
    with pytest.raises(ValueError, match="use st_unirep.losses.MatryoshkaLoss"):
        RegularizedLoss(tiny_model, STMatryoshkaLoss(tiny_model, cached, DIMS))
    RegularizedLoss(tiny_model, MatryoshkaLoss(tiny_model, copy.deepcopy(cached), DIMS))  # ours composes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matryoshka_dims": ()}, "at least one width"),
        ({"matryoshka_dims": (0, 8)}, "positive ints"),
        ({"matryoshka_dims": (8, 4), "matryoshka_weights": (1.0,)}, "one weight per dim"),
        ({"matryoshka_dims": (8,), "matryoshka_weights": (-1.0,)}, "each Matryoshka weight must be a number >= 0"),
        ({"matryoshka_dims": (8,), "n_dims_per_step": 0}, "n_dims_per_step must be -1"),
        ({"matryoshka_dims": (TINY_OUTPUT_DIM * 2,)}, "cannot exceed the model's embedding dimension"),
    ],
)
def test_bad_arguments(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MatryoshkaLoss(tiny_model, InstructionLoss(tiny_model), **kwargs)
