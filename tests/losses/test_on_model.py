"""Every loss, wrapped in RegularizedLoss and MatryoshkaLoss, trains the tiny Qwen2-VL on text/image/mixed columns."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

from st_unirep.losses import (
    AntiCollapseLoss,
    CalibratedTextPairLoss,
    ContrastiveTripletLoss,
    InstructionLoss,
    RegularizedLoss,
    UniformityLoss,
    quadratic_matryoshka_weights,
)
from tests.conftest import TINY_OUTPUT_DIM, make_image

COLOURS = ["red", "blue", "green", "black"]
TEXTS = ["a red ellipse", "a blue box", "một hình tròn xanh", "黑色的圆"]
DIMS = (TINY_OUTPUT_DIM, TINY_OUTPUT_DIM // 2, TINY_OUTPUT_DIM // 4)


def task_cases():
    images = [make_image(colour=c) for c in COLOURS]
    return {
        "text_pair": (
            lambda m: CalibratedTextPairLoss(m, (0, 5), nce_weight=1),
            [TEXTS, TEXTS[::-1]],
            torch.tensor([5.0, 1.0, 2.5, 4.0]),
        ),
        "ocr": (lambda m: ContrastiveTripletLoss(m, margin=0.3), [images, TEXTS, TEXTS[1:] + TEXTS[:1]], None),
        "vqa": (
            lambda m: ContrastiveTripletLoss(m, margin=0.25),
            [[{"text": "what colour?", "image": image} for image in images], COLOURS],
            None,
        ),
        "instr": (lambda m: InstructionLoss(m), [TEXTS, [t.upper() for t in TEXTS]], None),
        "uniformity": (lambda m: UniformityLoss(m), [images, TEXTS], None),
        "anti_collapse": (lambda m: AntiCollapseLoss(m, variant="max"), [images], None),
    }


def features(model, columns):
    return [model.preprocess(column) for column in columns]


def wrap(model, loss):
    matryoshka = MatryoshkaLoss(model, loss, DIMS, quadratic_matryoshka_weights(DIMS))
    return RegularizedLoss(
        model, matryoshka, uniformity=0.1, anti_collapse=1.0, orthogonality=1e-3, attention_entropy=0.01
    )


@pytest.mark.parametrize("task", sorted(task_cases()))
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_wrapped_loss_backward_is_finite(tiny_model, task, autocast):
    build, columns, labels = task_cases()[task]
    loss_fn = wrap(tiny_model, build(tiny_model))
    tiny_model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        components = loss_fn(features(tiny_model, columns), labels)
        total = torch.stack(list(components.values())).sum()
    assert {"task", "uniformity", "anti_collapse", "orthogonality", "attention_entropy"} <= set(components)
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    head = [g for n, g in grads.items() if n.startswith(("1.", "2."))]
    assert head and all(g is not None and g.abs().sum() > 0 for g in head), "pooling/projection got no gradient"


def test_regularizers_read_the_same_forward(tiny_model):
    """RegularizedLoss adds no forward pass: the model runs once per column."""
    build, columns, labels = task_cases()["instr"]
    calls = []
    handle = tiny_model.register_forward_hook(lambda *args: calls.append(1))
    wrap(tiny_model, build(tiny_model))(features(tiny_model, columns), labels)
    handle.remove()
    # Embed once: RegularizedLoss composes sentence-transformers' MatryoshkaLoss from the embeddings it computed (it
    # used to run ST's forward-patching decorator, whose cached outputs re-entered __call__ once per dim: 2 × 3).
    assert len(calls) == len(columns)
    calls.clear()
    handle = tiny_model.register_forward_hook(lambda *args: calls.append(1))
    RegularizedLoss(tiny_model, build(tiny_model))(features(tiny_model, columns), labels)
    handle.remove()
    assert len(calls) == len(columns)


def test_regularizer_values(tiny_model):
    build, columns, labels = task_cases()["instr"]
    loss = RegularizedLoss(tiny_model, build(tiny_model), uniformity=0.5, orthogonality=2.0)
    out = loss(features(tiny_model, columns), labels)
    projection = tiny_model[2]
    torch.testing.assert_close(out["orthogonality"], 2.0 * projection.orthogonality_penalty())
    embeddings = [tiny_model(f)["sentence_embedding"] for f in features(tiny_model, columns)]
    expected = 0.5 * UniformityLoss(None).compute_loss_from_embeddings(embeddings)
    torch.testing.assert_close(out["uniformity"], expected, rtol=1e-5, atol=1e-6)


def test_matryoshka_dims_larger_than_the_model(tiny_model):
    with pytest.raises(ValueError, match="cannot exceed the model's embedding dimension"):
        MatryoshkaLoss(tiny_model, InstructionLoss(tiny_model), [TINY_OUTPUT_DIM * 2, TINY_OUTPUT_DIM])
