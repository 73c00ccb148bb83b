"""End-to-end training: resume equals an uninterrupted run, DDP on 2 CPU processes, the default job learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sentence_transformers import SentenceTransformer

from st_unirep.training.config import load_config
from st_unirep.training.run import build_trainer
from tests.conftest import REPO

SMALL = dict(ocr_per_phrase=1, vqa_single=16, vqa_multi=8, text_pairs=32)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from st_unirep.training.synthetic import generate_default_data

    return str(generate_default_data(tmp_path_factory.mktemp("data"), **SMALL))


def _config(output, data, **overrides):
    values = dict(
        output_dir=str(output),
        data=data,
        per_device_train_batch_size=4,
        logging_steps=1,
        max_steps=6,
        health_every=3,
        temperature_steps=4,
        weight_warmup_steps=3,
        vaccine_rate=0.5,
        dwa_temperature=2.0,
        dwa_period=2,
    )
    values.update(overrides)
    return load_config(REPO / "train" / "configs" / "tiny.yaml", values)


def _losses(trainer):
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def test_resume_equals_uninterrupted(tmp_path, small_data):
    full, _ = build_trainer(_config(tmp_path / "full", small_data, save_steps=3, save_total_limit=None))
    full.train()
    uninterrupted = _losses(full)
    checkpoint = tmp_path / "full" / "checkpoints" / "checkpoint-3"
    assert (checkpoint / "modules.json").is_file() and (checkpoint / "dwa_state.json").is_file()
    resumed, resume = build_trainer(_config(tmp_path / "resumed", small_data, resume_from_checkpoint=str(checkpoint)))
    resumed.train(resume_from_checkpoint=resume)
    after = _losses(resumed)
    assert {4, 5, 6} <= set(after)  # (the history of steps 1-3 comes back from the checkpoint)
    for step in (4, 5, 6):
        assert after[step] == pytest.approx(uninterrupted[step], rel=1e-4, abs=1e-5), step
    health = [
        json.loads(line) for line in (tmp_path / "full" / "checkpoints" / "health.jsonl").read_text().splitlines()
    ]
    assert [h["step"] for h in health] == [0, 3, 6] and {"std", "sim_p95", "pos_neg_gap"} <= set(health[0])


@pytest.mark.slow
def test_two_process_ddp_trains(tmp_path, small_data):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(REPO / "train" / "train.py"),
        "--output_dir",
        str(tmp_path / "ddp"),
        "--data",
        small_data,
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--logging_steps",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Saved the trained model to") == 1  # rank 0 only
    model = SentenceTransformer(str(tmp_path / "ddp" / "model"), trust_remote_code=True)
    assert model.encode(["xin chào"]).shape == (1, 64)
