from __future__ import annotations

import pytest
import torch

from st_unirep.training.clipping import ComponentClippingCallback, clip_components, component_parameters


def test_groups_partition_the_trainable_parameters(tiny_model):
    groups = component_parameters(tiny_model)
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in tiny_model.parameters() if p.requires_grad}
    assert all(groups.values())


def test_each_group_is_clipped_to_its_own_norm_and_others_untouched(tiny_model):
    groups = component_parameters(tiny_model)
    torch.manual_seed(0)
    scale = {"backbone": 10.0, "pooling": 0.01, "projection": 50.0}
    for name, params in groups.items():
        for p in params:
            p.grad = torch.randn_like(p) * scale[name]
    pooling_before = [p.grad.clone() for p in groups["pooling"]]
    max_norms = {"backbone": 1.0, "pooling": 5.0, "projection": 5.0}
    norms = clip_components(groups, max_norms)
    assert norms["backbone"] > 1.0 and norms["projection"] > 5.0 and norms["pooling"] < 5.0
    for name, params in groups.items():
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        assert after <= max_norms[name] * (1 + 1e-5), name
    assert all(torch.equal(a, p.grad) for a, p in zip(pooling_before, groups["pooling"], strict=True))


def test_callback_options():
    with pytest.raises(ValueError, match="max_norms must map"):
        ComponentClippingCallback({"backbone": 0.0})
    with pytest.raises(ValueError, match="max_norms must map"):
        ComponentClippingCallback({"head": 1.0})
