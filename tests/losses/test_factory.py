from __future__ import annotations

import pytest
import torch

from st_unirep.losses import CachedLoss, CalibratedTextPairLoss, MatryoshkaLoss, RegularizedLoss, build_loss
from st_unirep.presets import PRESETS
from st_unirep.tasks import TASKS
from tests.conftest import make_image

COLUMNS = {
    "text_pair": ([["a cat", "a dog", "một con mèo"], ["the cat", "a car", "con mèo"]], torch.tensor([4.5, 1.0, 5.0])),
    "instr": ([["find cats", "find dogs", "tìm mèo"], ["cats", "dogs", "mèo"]], None),
    "ocr": ([[make_image(colour=c) for c in ("red", "blue", "green")], ["RED", "BLUE", "GREEN"]], None),
    "vqa_single": (
        [
            [{"text": "colour?", "image": make_image(colour=c)} for c in ("red", "blue", "green")],
            ["red", "blue", "green"],
        ],
        None,
    ),
    "vqa_multi": (
        [
            [
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": make_image(colour=c)},
                            {"type": "text", "text": "colour?"},
                        ],
                    },
                    {"role": "assistant", "content": c},
                    {"role": "user", "content": "shape?"},
                ]
                for c in ("red", "blue", "green")
            ],
            ["ellipse"] * 3,
        ],
        None,
    ),
}


@pytest.mark.parametrize("task", TASKS)
def test_every_preset_builds_and_trains_every_task(preset_model, task):
    name, model = preset_model
    loss = build_loss(model, task, name, score_range=(0, 5))
    assert isinstance(loss, RegularizedLoss)
    assert isinstance(loss.loss, MatryoshkaLoss) is bool(PRESETS[name].matryoshka_dims)
    columns, labels = COLUMNS[task]
    out = loss([model.preprocess(c) for c in columns], labels)
    total = torch.stack(list(out.values())).sum()
    total.backward()
    assert torch.isfinite(total)


def test_presets_choose_the_seed_variants(tiny_model):
    vipoly = build_loss(tiny_model, "text_pair", "vipolyqwen", score_range=(0, 5)).loss
    assert isinstance(vipoly, CalibratedTextPairLoss)
    assert (vipoly.nce_weight, vipoly.mse_weight, vipoly.kl_weight, vipoly.rank_weight) == (1, 1, 0, 0)
    unirep_m = build_loss(tiny_model, "text_pair", "unirep-m", score_range=(0, 5))
    assert unirep_m.loss.matryoshka_weights == pytest.approx((0.6882, 0.1720, 0.0968, 0.0430), abs=1e-4)
    inner = unirep_m.loss.loss
    assert (inner.kl_weight, inner.mse_weight, inner.rank_weight) == (1, 10, 5)
    assert build_loss(tiny_model, "vqa_multi", "vipolyqwen").loss.margin == 0.3
    assert build_loss(tiny_model, "vqa_multi", "vipolyqwen").loss.triplet_weight == 1.5
    assert build_loss(tiny_model, "vqa_single", "unirep").loss.margin == 0.25
    assert build_loss(tiny_model, "ocr", "viuniembed").anti_collapse_variant == "mean"
    cached = build_loss(tiny_model, "instr", "unirep-m", mini_batch_size=2)
    assert isinstance(cached.loss.loss, CachedLoss)


def test_factory_errors(tiny_model):
    with pytest.raises(ValueError, match="Unknown task 'caption'"):
        build_loss(tiny_model, "caption")
    with pytest.raises(ValueError, match="needs score_range"):
        build_loss(tiny_model, "text_pair")
    with pytest.raises(ValueError, match=r"matryoshka_dims must be ints in \[1, output_dim=64\], got 128"):
        build_loss(tiny_model, "instr", "unirep-m", matryoshka_dims=(128, 64))


def test_each_preset_reads_its_seeds_triplet_margin_units(tiny_model):
    """UniRep-family presets hinge on cosines (UniRep-M §5.2); vipolyqwen on scaled similarities (viPolyQwen §4.2)."""

    def units(name):
        return next(m.margin_units for m in build_loss(tiny_model, "ocr", name).modules() if hasattr(m, "margin_units"))

    assert {name: units(name) for name in ("unirep-m", "vipolyqwen")} == {"unirep-m": "cosine", "vipolyqwen": "scaled"}


def test_gradcache_with_the_entropy_term_is_refused_not_silently_dropped(tiny_model):
    """Regression (issue 14): unirep's GradCache config turned the attention-entropy term off without a word."""
    with pytest.raises(ValueError, match=r"attention_entropy=0.01 .* GradCache \(mini_batch_size\)"):
        build_loss(tiny_model, "ocr", "unirep", mini_batch_size=2)
    assert build_loss(tiny_model, "ocr", "unirep", mini_batch_size=2, attention_entropy=0.0).attention_entropy == 0.0
    assert build_loss(tiny_model, "ocr", "unirep").attention_entropy == 0.01
