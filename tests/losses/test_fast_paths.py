"""Parity of the losses' fast paths with the plain formulas they replace (values and gradients within 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from st_unirep.losses import ContrastiveTripletLoss, InstructionLoss, RegularizedLoss
from st_unirep.losses._functional import hardest_negative_triplet, off_diagonal, symmetric_info_nce
from st_unirep.losses.uniformity_loss import uniformity
from tests.conftest import TINY_OUTPUT_DIM

SIZES = [(2, 4), (5, 16), (16, 64)]


def _unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1).requires_grad_()


def _assert_same(value, reference, inputs):
    torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-5)
    for grad, ref_grad in zip(torch.autograd.grad(value, inputs), torch.autograd.grad(reference, inputs), strict=True):
        torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)


def _reference_info_nce(anchors, candidates, temperature):
    return F.cross_entropy(anchors @ candidates.T / temperature, torch.arange(anchors.shape[0]))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_off_diagonal_is_masked_select_in_row_major_order(n):
    matrix = torch.arange(n * n, dtype=torch.float32).view(n, n).requires_grad_()
    reference = matrix.masked_select(~torch.eye(n, dtype=torch.bool))
    assert torch.equal(off_diagonal(matrix), reference)
    if n > 1:
        _assert_same((off_diagonal(matrix) ** 2).sum(), (reference**2).sum(), [matrix])


@pytest.mark.parametrize("batch, dim", SIZES)
@pytest.mark.parametrize("with_negatives", [False, True])
def test_symmetric_info_nce_one_matrix_equals_two_products(batch, dim, with_negatives):
    a, p, n = _unit(batch, dim, seed=1), _unit(batch, dim, seed=2), _unit(batch, dim, seed=3)
    negatives = [n] if with_negatives else []
    fast = symmetric_info_nce(a, p, 0.07, negatives)
    reference = (_reference_info_nce(a, torch.cat([p, *negatives]), 0.07) + _reference_info_nce(p, a, 0.07)) / 2
    _assert_same(fast, reference, [a, p, n] if with_negatives else [a, p])


@pytest.mark.parametrize("batch, dim", SIZES)
def test_triplet_loss_with_shared_similarities_equals_separate_terms(batch, dim):
    a, p, n = _unit(batch, dim, seed=4), _unit(batch, dim, seed=5), _unit(batch, dim, seed=6)
    loss = ContrastiveTripletLoss(torch.nn.Module(), margin=0.3, triplet_weight=0.5, margin_units="scaled")
    fast = loss.compute_loss_from_embeddings([a, p, n])
    candidates = torch.cat([p, n])
    scores = a @ candidates.T / 0.07
    rows = torch.arange(batch)
    hardest = scores.masked_fill(torch.eye(batch, 2 * batch, dtype=torch.bool), float("-inf")).max(1).values
    triplet = F.relu(hardest - scores[rows, rows] + 0.3).mean()
    nce = (_reference_info_nce(a, candidates, 0.07) + _reference_info_nce(p, a, 0.07)) / 2
    _assert_same(fast, nce + 0.5 * triplet, [a, p, n])
    torch.testing.assert_close(hardest_negative_triplet(a, p, 0.07, 0.3, [n]), triplet, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch, dim", SIZES)
def test_uniformity_from_gram_equals_cdist_formula(batch, dim):
    e = _unit(2 * batch, dim, seed=7)
    sq = torch.cdist(e, e).pow(2)
    values = -2.0 * sq.masked_select(~torch.eye(2 * batch, dtype=torch.bool))
    reference = torch.logsumexp(values, 0) - math.log(values.numel())
    _assert_same(uniformity(e), reference, [e])


@pytest.mark.parametrize("batch, dim", SIZES)
@pytest.mark.parametrize("variant", ["mean", "max"])
def test_regularizer_terms_from_one_gram_equal_separate_terms(batch, dim, variant):
    columns = [_unit(batch, dim, seed=8), _unit(batch, dim, seed=9)]
    loss = RegularizedLoss(torch.nn.Module(), torch.nn.Module(), uniformity=0.1, anti_collapse=1.0,
                           anti_collapse_variant=variant, anti_collapse_threshold=0.1)  # fmt: skip
    terms = loss.embedding_terms(columns)
    fast = terms["uniformity"] + terms["anti_collapse"]
    normalised = [F.normalize(c, dim=-1) for c in columns]  # embedding_terms normalises its inputs
    everything = torch.cat(normalised)
    sq = torch.cdist(everything, everything).pow(2).masked_select(~torch.eye(2 * batch, dtype=torch.bool))
    unif = torch.logsumexp(-2.0 * sq, 0) - math.log(sq.numel())
    penalties = []
    for c in normalised:
        s = (c @ c.T).masked_select(~torch.eye(batch, dtype=torch.bool))
        penalties.append(F.relu(s - 0.1).mean() if variant == "mean" else F.relu(10 * (s.max() - 0.1)))
    reference = 0.1 * unif + torch.stack(penalties).mean()
    _assert_same(fast, reference, columns)


def test_losses_skip_renormalising_a_normalised_model_with_same_loss_and_gradients(tiny_model, monkeypatch):
    texts = ["a red ellipse", "a blue box", "một hình tròn xanh", "黑色的圆"]
    features = [tiny_model.preprocess(texts), tiny_model.preprocess([t.upper() for t in texts])]
    loss = InstructionLoss(tiny_model)
    assert loss._model_normalizes()
    parameters = [p for p in tiny_model.parameters() if p.requires_grad]

    def run():
        value = loss([dict(f) for f in features], None)
        return value, torch.autograd.grad(value, parameters, allow_unused=True)

    fast, fast_grads = run()
    monkeypatch.setattr(InstructionLoss, "_model_normalizes", lambda self: False)
    reference, ref_grads = run()
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    for grad, ref_grad in zip(fast_grads, ref_grads, strict=True):
        if ref_grad is None:
            assert grad is None
        else:
            torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)
    assert tiny_model.get_embedding_dimension() == TINY_OUTPUT_DIM
