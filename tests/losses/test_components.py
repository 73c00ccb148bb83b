"""Every loss names its weighted terms with components(embeddings, labels); their sum is the loss. Every loss cites
its sources by title."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import st_unirep.losses as losses
from st_unirep.losses import (
    AntiCollapseLoss,
    CachedLoss,
    CalibratedTextPairLoss,
    ContrastiveTripletLoss,
    InstructionLoss,
    MatryoshkaLoss,
    RegularizedLoss,
    UniformityLoss,
)

GENERATOR = torch.Generator().manual_seed(0)
COLUMNS = [F.normalize(torch.randn(5, 8, generator=GENERATOR), dim=-1) for _ in range(3)]
LABELS = torch.tensor([5.0, 1.0, 4.0, 0.0, 2.0])

LOSSES = {
    "text_pair": (
        lambda: CalibratedTextPairLoss(None, (0, 5), nce_weight=1, cosent_weight=1),
        {"mse", "kl", "rank", "nce", "cosent"},
    ),
    "triplet": (lambda: ContrastiveTripletLoss(None, margin=0.3), {"nce", "triplet"}),
    "instruction": (lambda: InstructionLoss(None), {"nce", "cos"}),
    "uniformity": (lambda: UniformityLoss(None), {"uniformity"}),
    "anti_collapse": (lambda: AntiCollapseLoss(None, threshold=-0.5), {"anti_collapse"}),
    "cached": (lambda: CachedLoss(InstructionLoss(None), mini_batch_size=2), {"nce", "cos"}),
    "matryoshka": (lambda: MatryoshkaLoss(None, InstructionLoss(None), (8, 4), (1.0, 0.5)), {"dim_8", "dim_4"}),
    "regularized": (
        lambda: RegularizedLoss(None, InstructionLoss(None), uniformity=0.1, anti_collapse=1.0),
        {"task", "uniformity", "anti_collapse"},
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_components_sum_to_the_loss(name):
    build, names = LOSSES[name]
    loss = build()
    columns = COLUMNS[:2] if name != "triplet" else COLUMNS
    parts = loss.components(columns, LABELS)
    assert set(parts) == names
    value = loss.compute_loss_from_embeddings(columns, LABELS)
    total = torch.stack(list(value.values())).sum() if isinstance(value, dict) else value
    torch.testing.assert_close(torch.stack(list(parts.values())).sum(), total)


def test_every_loss_class_has_components():
    classes = [getattr(losses, name) for name in losses.__all__ if inspect.isclass(getattr(losses, name))]
    loss_classes = [c for c in classes if issubclass(c, torch.nn.Module) and c is not losses.LossWrapper]
    assert len(loss_classes) == 8
    for cls in loss_classes:  # its own, not EmbeddingLoss's abstract one
        assert getattr(cls, "components", None) not in (None, losses._base.EmbeddingLoss.components), cls


def test_citations_name_the_seeds_not_paths():
    package = Path(losses.__file__).parent
    for path in package.glob("*.py"):
        assert "../shared" not in path.read_text(encoding="utf-8"), path
    for build, _ in LOSSES.values():
        citation = build().citation
        assert "title=" in citation and "shared" not in citation
    assert "UniRep: A Unified Representation Architecture" in RegularizedLoss(None, InstructionLoss(None)).citation
    assert "viPolyQwen: Synergizing Prefix-Guided" in ContrastiveTripletLoss(None).citation
