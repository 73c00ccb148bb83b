"""Hand-computed values of every loss component against the seeds' formulas (raw tensors, no model)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from st_unirep.losses import (
    AntiCollapseLoss,
    CalibratedTextPairLoss,
    ContrastiveTripletLoss,
    InstructionLoss,
    UniformityLoss,
    quadratic_matryoshka_weights,
)
from st_unirep.losses._functional import symmetric_info_nce
from st_unirep.losses.regularized_loss import attention_entropy

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def _pairs():
    """Anchors all e1; partners e1, e2, -e1: cosines 1, 0, -1 -> calibrated p = 1, 0.5, 0."""
    return [torch.stack([E1, E1, E1]), torch.stack([E1, E2, -E1])]


@pytest.mark.parametrize("batch", [2, 3, 8])
def test_info_nce_of_identical_embeddings_is_log_batch(batch):
    same = F.normalize(torch.ones(batch, 4), dim=-1)
    assert symmetric_info_nce(same, same, 0.07).item() == pytest.approx(math.log(batch), rel=1e-6)
    # with one explicit negative per row, the anchor side has 2B candidates
    value = symmetric_info_nce(same, same, 0.07, [same]).item()
    assert value == pytest.approx((math.log(2 * batch) + math.log(batch)) / 2, rel=1e-6)


def test_text_pair_mse():
    loss = CalibratedTextPairLoss(None, score_range=(0, 5), mse_weight=1, kl_weight=0, rank_weight=0)
    assert loss.compute_loss_from_embeddings(_pairs(), torch.tensor([5.0, 2.5, 0.0])).item() == pytest.approx(0.0)
    # s = (0, 1, 0.5) against p = (1, 0.5, 0): ((1)^2 + 0.5^2 + 0.5^2) / 3
    assert loss.compute_loss_from_embeddings(_pairs(), torch.tensor([0.0, 5.0, 2.5])).item() == pytest.approx(0.5)


def test_text_pair_kl():
    loss = CalibratedTextPairLoss(None, score_range=(0, 5), mse_weight=0, kl_weight=1, rank_weight=0)
    p, s, tau = [1.0, 0.5, 0.0], [0.0, 1.0, 0.5], 0.1
    target = [math.exp(x / tau) / sum(math.exp(y / tau) for y in s) for x in s]
    predicted = [math.exp(x / tau) / sum(math.exp(y / tau) for y in p) for x in p]
    expected = sum(t * math.log(t / q) for t, q in zip(target, predicted, strict=True))
    value = loss.compute_loss_from_embeddings(_pairs(), torch.tensor([0.0, 5.0, 2.5])).item()
    assert value == pytest.approx(expected, rel=1e-5)
    # equal distributions -> 0
    assert loss.compute_loss_from_embeddings(_pairs(), torch.tensor([5.0, 2.5, 0.0])).item() == pytest.approx(
        0, abs=1e-6
    )


def test_text_pair_rank():
    loss = CalibratedTextPairLoss(None, score_range=(0, 5), mse_weight=0, kl_weight=0, rank_weight=1)
    # s = (0, 1, .5), p = (1, .5, 0); ordered pairs s_i > s_j: (1,0): .15 - (.5 - 1) = .65; (1,2): .15 - .5 -> 0;
    # (2,0): .15 - (0 - 1) = 1.15; mean over the 3 pairs = 0.6
    assert loss.compute_loss_from_embeddings(_pairs(), torch.tensor([0.0, 5.0, 2.5])).item() == pytest.approx(0.6)


def test_text_pair_weights_and_nce():
    labels = torch.tensor([0.0, 5.0, 2.5])
    full = CalibratedTextPairLoss(None, score_range=(0, 5), mse_weight=10, kl_weight=1, rank_weight=5, nce_weight=2)
    parts = full.components(_pairs(), labels)
    assert parts["mse"].item() == pytest.approx(10 * 0.5)
    assert parts["rank"].item() == pytest.approx(5 * 0.6)
    assert parts["nce"].item() == pytest.approx(2 * symmetric_info_nce(*_pairs(), 0.07).item())
    assert full.compute_loss_from_embeddings(_pairs(), labels).item() == pytest.approx(
        sum(v.item() for v in parts.values())
    )


def test_text_pair_cosent_matches_sentence_transformers():
    """cos = (1, 0, -1), s = (0, 1, .5): ordered pairs (1,0), (1,2), (2,0) -> log(1 + e^{20(1-0)} + e^{20(-1-0)} +
    e^{20(1+1)}); and equal to ST's own CoSENTLoss on the same cosines."""
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    loss = CalibratedTextPairLoss(None, score_range=(0, 5), mse_weight=0, kl_weight=0, rank_weight=0, cosent_weight=1)
    labels = torch.tensor([0.0, 5.0, 2.5])
    expected = math.log(1 + math.exp(20) + math.exp(-20) + math.exp(40))
    assert loss.compute_loss_from_embeddings(_pairs(), labels).item() == pytest.approx(expected, rel=1e-6)
    a, b = _pairs()
    reference = CoSENTLoss.__new__(CoSENTLoss)
    torch.nn.Module.__init__(reference)
    reference.scale, reference.similarity_fct = 20.0, torch.nn.functional.cosine_similarity
    assert reference.compute_loss_from_embeddings([a, b], labels / 5).item() == pytest.approx(expected, rel=1e-6)
    # perfectly ordered cosines: only the "1 +" is left as the scale grows
    ordered = CalibratedTextPairLoss(
        None, score_range=(0, 5), mse_weight=0, kl_weight=0, rank_weight=0, cosent_weight=1, cosent_scale=1000
    )
    assert ordered.compute_loss_from_embeddings(_pairs(), torch.tensor([5.0, 2.5, 0.0])).item() == pytest.approx(
        math.log(1), abs=1e-6
    )


def test_text_pair_learned_logistic():
    """BCE of σ(α cos + β) against s with the initial α = 10, β = −5; the learned profile is that map."""
    loss = CalibratedTextPairLoss(
        None, score_range=(0, 5), mse_weight=0, kl_weight=0, rank_weight=0, logistic_weight=1, logistic_widths=(2,)
    )
    labels = torch.tensor([5.0, 2.5, 0.0])
    logits = torch.tensor([5.0, -5.0, -15.0])
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.5, 0.0])).item()
    assert loss.compute_loss_from_embeddings(_pairs(), labels).item() == pytest.approx(expected, rel=1e-6)
    profile = loss.learned_profile()
    assert profile.widths == [2] and profile.target == "graded"
    assert float(profile(torch.tensor(0.5).numpy(), 2)) == pytest.approx(0.5, abs=2e-3)
    with pytest.raises(ValueError, match="no parameters for width 4"):
        loss.compute_loss_from_embeddings([torch.ones(3, 4) / 2, torch.ones(3, 4) / 2], labels)
    with pytest.raises(ValueError, match="needs logistic_widths"):
        CalibratedTextPairLoss(None, score_range=(0, 5), logistic_weight=1)


def test_contrastive_triplet_hand_computed():
    a = torch.stack([E1, E2, F.normalize(E1 + E2, dim=0)])
    p = torch.stack([E1, F.normalize(E1 + E2, dim=0), E2])
    tau, m = 0.5, 0.2
    loss = ContrastiveTripletLoss(None, temperature=tau, margin=m, triplet_weight=1.0, margin_units="scaled")
    s = a @ p.T  # S_ij
    hinge = []
    for i in range(3):
        hardest = max(s[i, j].item() for j in range(3) if j != i)
        hinge.append(max(0.0, hardest / tau - s[i, i].item() / tau + m))
    parts = loss.components([a, p])
    assert parts["triplet"].item() == pytest.approx(sum(hinge) / 3, rel=1e-6)
    logits = s / tau
    forward = -sum(logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(3)) / 3
    backward = -sum(logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(3)) / 3
    assert parts["nce"].item() == pytest.approx(((forward + backward) / 2).item(), rel=1e-6)


def test_unirep_m_triplet_margin_is_in_cosine_units_as_the_seed_writes_it():
    """Regression (issue 14): UniRep-M §5.2 writes max(0, s(a, n⁻) − s(a, p) + m) on similarities, m = 0.3 for OCR;
    the loss applied m to S/τ, a cosine margin of 0.3 · 0.07 = 0.021 and a gradient 1/τ ≈ 14× the seed's."""
    a = torch.stack([E1, E2, F.normalize(E1 + E2, dim=0)])
    p = torch.stack([E1, F.normalize(E1 + E2, dim=0), E2])
    s = (a @ p.T).tolist()  # cosines
    hinge = [max(0.0, max(s[i][j] for j in range(3) if j != i) - s[i][i] + 0.3) for i in range(3)]
    loss = ContrastiveTripletLoss(None, temperature=0.07, margin=0.3)  # UniRep-M OCR, the default units
    assert loss.components([a, p])["triplet"].item() == pytest.approx(sum(hinge) / 3, rel=1e-5)


def test_contrastive_triplet_uses_explicit_negatives():
    a = torch.stack([E1, E2])
    p = torch.stack([E1, E2])
    hard_negative = torch.stack([E1, E2])  # identical to the positives: hardest similarity = 1
    loss = ContrastiveTripletLoss(None, temperature=1.0, margin=0.2)
    assert loss.components([a, p])["triplet"].item() == pytest.approx(0.0)  # 0 - 1 + .2 < 0
    assert loss.components([a, p, hard_negative])["triplet"].item() == pytest.approx(0.2)


def test_instruction_loss_hand_computed():
    a = torch.stack([E1, E2])
    b = torch.stack([E1, F.normalize(E1 + E2, dim=0)])
    loss = InstructionLoss(None, temperature=0.07, cos_weight=2.0)
    parts = loss.components([a, b])
    assert parts["cos"].item() == pytest.approx(2.0 * ((0 + (1 - 1 / math.sqrt(2))) / 2))
    assert parts["nce"].item() == pytest.approx(symmetric_info_nce(a, b, 0.07).item())


def test_uniformity_hand_computed():
    loss = UniformityLoss(None, t=2.0)
    # two antipodal points: ||e1 - e2||^2 = 4 -> log exp(-8) = -8
    assert loss.compute_loss_from_embeddings([torch.stack([E1, -E1])]).item() == pytest.approx(-8.0)
    # e1, e2, -e1: squared distances 2, 4, 2 (each twice) -> log((2 e^-4 + 2 e^-8 + 2 e^-4) / 6)
    expected = math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6)
    assert loss.compute_loss_from_embeddings([torch.stack([E1, E2, -E1])]).item() == pytest.approx(expected, rel=1e-6)
    # collapse -> 0; all columns together: [e1, -e1, e1, e1] has 6 ordered pairs at distance^2 4 and 6 at 0
    assert loss.compute_loss_from_embeddings([torch.stack([E1, E1])]).item() == pytest.approx(0.0, abs=1e-6)
    two = loss.compute_loss_from_embeddings([torch.stack([E1, -E1]), torch.stack([E1, E1])]).item()
    assert two == pytest.approx(math.log((1 + math.exp(-8)) / 2), rel=1e-6)


def test_anti_collapse_hand_computed():
    close = F.normalize(torch.tensor([0.99, math.sqrt(1 - 0.99**2)]), dim=0)  # cos(e1, close) = 0.99
    x = torch.stack([E1, close, torch.tensor([0.0, -1.0])])
    s01 = 0.99
    mean = AntiCollapseLoss(None, weight=2.0, variant="mean")
    assert mean.compute_loss_from_embeddings([x]).item() == pytest.approx(2.0 * 2 * (s01 - 0.95) / 6, rel=1e-4)
    hardest = AntiCollapseLoss(None, variant="max")
    assert hardest.compute_loss_from_embeddings([x]).item() == pytest.approx(10 * (s01 - 0.95), rel=1e-4)
    spread = torch.stack([E1, E2, -E1])
    assert mean.compute_loss_from_embeddings([spread]).item() == 0.0


def test_attention_entropy_hand_computed():
    attention = torch.tensor([[[0.5, 0.5, 0.0]], [[1.0, 0.0, 0.0]]])  # (batch 2, heads 1, seq 3)
    assert attention_entropy(attention).item() == pytest.approx(math.log(2) / 2)


def test_quadratic_matryoshka_weights():
    weights = quadratic_matryoshka_weights((512, 768, 1024, 2048))
    squares = [0.25**2, 0.375**2, 0.5**2, 1.0]
    assert weights == pytest.approx([s / sum(squares) for s in squares])
    assert weights == pytest.approx((0.0430, 0.0968, 0.1720, 0.6882), abs=1e-4)
    assert sum(weights) == pytest.approx(1.0)
    assert quadratic_matryoshka_weights((64, 16)) == pytest.approx((16 / 17, 1 / 17))
    with pytest.raises(ValueError, match="positive ints"):
        quadratic_matryoshka_weights((0, 64))


def test_masked_info_nce_selects_positive_rows():
    from st_unirep.losses._functional import masked_symmetric_info_nce

    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    everything = masked_symmetric_info_nce(a, b, 0.07, torch.ones(5, dtype=torch.bool))
    assert everything.item() == pytest.approx(symmetric_info_nce(a, b, 0.07).item(), rel=1e-6)
    chosen = torch.tensor([True, False, True, False, False])
    logits = a @ b.T / 0.07
    expected = (
        F.cross_entropy(logits[[0, 2]], torch.tensor([0, 2])) + F.cross_entropy(logits.T[[0, 2]], torch.tensor([0, 2]))
    ) / 2
    assert masked_symmetric_info_nce(a, b, 0.07, chosen).item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked_symmetric_info_nce(a, b, 0.07, torch.zeros(5, dtype=torch.bool)).item() == 0.0
    loss = CalibratedTextPairLoss(
        None, score_range=(0, 5), mse_weight=0, kl_weight=0, rank_weight=0, nce_weight=1, nce_min_score=0.8
    )
    labels = torch.tensor([5.0, 1.0, 4.0, 0.0, 2.0])  # mapped 1, .2, .8, 0, .4: rows 0 and 2
    assert loss.compute_loss_from_embeddings([a, b], labels).item() == pytest.approx(expected.item(), rel=1e-6)
