"""Training options: LoRA (merged on save), bf16 on CPU, stop on collapse, clipping under gradient accumulation."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from st_unirep.training.clipping import component_parameters
from st_unirep.training.config import load_config
from st_unirep.training.run import build_trainer, run_training
from tests.conftest import REPO
from tests.training.test_train import small_data  # noqa: F401  (fixture)


def _config(output, data, **overrides):
    values = dict(output_dir=str(output), data=data, per_device_train_batch_size=4, logging_steps=1, max_steps=3)
    values.update(overrides)
    return load_config(REPO / "train" / "configs" / "tiny.yaml", values)


def test_lora_with_bf16_trains_and_saves_a_merged_model(tmp_path, small_data):  # noqa: F811
    pytest.importorskip("peft")
    output = run_training(_config(tmp_path / "lora", small_data, lora_r=4, bf16=True))
    model = SentenceTransformer(str(output), trust_remote_code=True)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert torch.isfinite(torch.as_tensor(model.encode(["xin chào", "hello"]))).all()


def test_stop_on_collapse_stops_training(tmp_path, small_data):  # noqa: F811
    # The untrained tiny model is collapsed (p95 similarity 0.999): the first check stops the run.
    trainer, _ = build_trainer(
        _config(tmp_path / "stop", small_data, max_steps=20, stop_on_collapse=True, health_every=1)
    )
    trainer.train()
    assert trainer.state.global_step == 1


class _Recorder(TrainerCallback):
    def __init__(self):
        self.norms = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        groups = component_parameters(model)
        self.norms.append(
            {
                name: float(
                    torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                )
                for name, params in groups.items()
            }
        )


def test_component_clipping_runs_once_per_optimizer_step_with_accumulation(tmp_path, small_data):  # noqa: F811
    trainer, _ = build_trainer(
        _config(
            tmp_path / "clip",
            small_data,
            gradient_accumulation_steps=2,
            clip_backbone=0.05,
            clip_pooling=0.01,
            clip_projection=0.02,
            learning_rate=0.01,
        )
    )
    recorder = _Recorder()
    trainer.add_callback(recorder)  # added after ComponentClippingCallback: sees the clipped gradients
    trainer.train()
    assert len(recorder.norms) == 3
    for norms in recorder.norms:
        assert norms["backbone"] <= 0.05 * 1.0001
        assert norms["pooling"] <= 0.01 * 1.0001
        assert norms["projection"] <= 0.02 * 1.0001
