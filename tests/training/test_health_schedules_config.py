from __future__ import annotations

import types

import numpy as np
import pytest

from st_unirep.evaluation.metrics import embedding_health
from st_unirep.losses import CalibratedTextPairLoss, ContrastiveTripletLoss
from st_unirep.training.config import load_config
from st_unirep.training.schedules import LossScheduleCallback, cosine_interpolate


def test_health_of_perfect_and_collapsed_embeddings():
    eye = np.eye(8, dtype=np.float32)
    perfect = embedding_health(eye, eye, dims=(4, 8))
    assert perfect["sim_p95"] == pytest.approx(0.0) and perfect["pos_neg_gap"] == pytest.approx(1.0)
    assert perfect["std"] == pytest.approx(np.eye(8).std(axis=0).mean())
    collapsed = np.tile(np.array([[1.0, 0, 0, 0]], dtype=np.float32), (6, 1))
    bad = embedding_health(collapsed, collapsed, dims=(2,))
    assert bad["sim_p95"] == pytest.approx(1.0) and bad["std"] == 0.0 and bad["pos_neg_gap"] == pytest.approx(0.0)
    assert bad["mean_sim@2"] == pytest.approx(1.0)


def test_schedules_follow_the_step():
    assert cosine_interpolate(0.1, 0.07, 0, 100) == pytest.approx(0.1)
    assert cosine_interpolate(0.1, 0.07, 50, 100) == pytest.approx(0.085)
    assert cosine_interpolate(0.1, 0.07, 200, 100) == pytest.approx(0.07)
    losses = {"pair": CalibratedTextPairLoss(None, (0, 5), nce_weight=1.0), "ocr": ContrastiveTripletLoss(None)}
    callback = LossScheduleCallback(losses, 0.1, 0.07, temperature_steps=100, warmup_steps=10)
    callback.on_step_begin(None, types.SimpleNamespace(global_step=5), None)
    assert losses["pair"].mse_weight == pytest.approx(5.0) and losses["pair"].rank_weight == pytest.approx(2.5)
    assert losses["ocr"].temperature == pytest.approx(cosine_interpolate(0.1, 0.07, 5, 100))
    assert losses["pair"].nce_temperature == losses["ocr"].temperature
    callback.on_step_begin(None, types.SimpleNamespace(global_step=1000), None)
    assert losses["pair"].mse_weight == 10.0 and losses["ocr"].temperature == pytest.approx(0.07)


def test_config_loading(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: vipolyqwen\nmax_steps: 7\n")
    config = load_config(path, {"learning_rate": 0.5})
    assert (config.preset, config.max_steps, config.learning_rate) == ("vipolyqwen", 7, 0.5)
    path.write_text("presett: unirep\n")
    with pytest.raises(ValueError, match=r"Unknown config field\(s\) \['presett'\] in .*c.yaml"):
        load_config(path)
    with pytest.raises(ValueError, match="sampler must be proportional, round_robin or vaccine"):
        load_config(None, {"sampler": "random"})
    with pytest.raises(ValueError, match="per_device_train_batch_size must be >= 2"):
        load_config(None, {"per_device_train_batch_size": 1})
