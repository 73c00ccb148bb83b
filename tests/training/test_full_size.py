"""A full-size dry run CI can afford: every 2B training config, on a 2-layer slice of the real Qwen2-VL-2B
architecture (real widths, heads, vocabulary, tokenizer and processor; random weights), goes through
``build_trainer`` and one optimizer step of its real loss stack. A config that cannot train at full size fails
here, not on the first hour of a GPU job."""

from __future__ import annotations

import math

import pytest

from st_unirep.presets import PRESETS
from st_unirep.testing import build_qwen2_vl_slice
from st_unirep.training.config import load_config
from st_unirep.training.run import build_trainer
from tests.conftest import REAL_CONFIG, REPO
from tests.training.test_train import small_data  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_CONFIG.is_dir(), reason="the Qwen2-VL-2B config folder is not present"),
]


@pytest.fixture(scope="module")
def slice_2b(tmp_path_factory) -> str:
    return build_qwen2_vl_slice(REAL_CONFIG, tmp_path_factory.mktemp("qwen2-vl-2b-slice"), text_layers=2)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_2b_config_trains_one_step_at_full_width(tmp_path, slice_2b, small_data, preset):  # noqa: F811
    yaml = REPO / "train" / "configs" / f"{preset}.yaml"
    config = load_config(
        yaml,
        {
            "backbone": slice_2b,
            "data": small_data,
            "output_dir": str(tmp_path / "out"),
            "max_steps": 1,
            # CPU: the config's batch, GradCache mini-batch and precision scaled down; everything else as written
            "per_device_train_batch_size": 4,
            "mini_batch_size": 2 if load_config(yaml, {"data": small_data}).mini_batch_size else None,
            "gradient_accumulation_steps": 1,
            "bf16": False,
            "max_pixels": 56 * 56,
            "health_every": 1,
            "health_probe_size": 4,
            "save_steps": 0,
            "logging_steps": 1,
            "report_to": ["none"],
            "task_shares": None,  # the config's shares name its seed's tasks; the small data has all five
        },
    )
    trainer, _ = build_trainer(config)
    assert trainer.model.get_embedding_dimension() == PRESETS[preset].output_dim  # the preset's full width
    trainer.train()
    assert trainer.state.global_step == 1
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(math.isfinite(x) for x in losses)
