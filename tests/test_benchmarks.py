"""The benchmark scripts' arithmetic and bookkeeping (bench/): FLOP counting, MFU, BENCHMARKS.md sections.

Benchmarks themselves are scripts that print numbers; nothing here times anything.
"""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import AutoConfig, Qwen2VLForConditionalGeneration

from tests.conftest import REAL_CONFIG, REPO

sys.path.insert(0, str(REPO / "bench"))
import _common  # noqa: E402
import full_size_gpu  # noqa: E402


def test_param_split_sums_to_the_model_and_flops_follow_the_formulas(tiny_qwen2_vl_path):
    config = AutoConfig.from_pretrained(tiny_qwen2_vl_path)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration._from_config(config)
    split = full_size_gpu.param_split(model)
    assert split.total == sum(p.numel() for p in model.parameters())
    assert split.embedding == config.text_config.vocab_size * config.text_config.hidden_size
    assert split.vision == sum(p.numel() for p in model.model.visual.parameters())
    params = full_size_gpu.ParamSplit(vision=10, language=100, embedding=1000)
    assert full_size_gpu.forward_flops(params, tokens=7, patches=3) == 2 * (100 * 7 + 10 * 3)
    assert full_size_gpu.train_flops(params, tokens=7, patches=3) == 6 * (100 * 7 + 10 * 3)
    assert full_size_gpu.train_flops(params, tokens=7, patches=3, vision_trainable=False) == 6 * 700 + 2 * 30
    assert full_size_gpu.mfu(flops=395e12, seconds=1.0, peak_tflops=790) == pytest.approx(0.5)


def test_2b_parameter_split():
    if not REAL_CONFIG.is_dir():
        pytest.skip(f"{REAL_CONFIG} not present")
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration._from_config(AutoConfig.from_pretrained(REAL_CONFIG))
    split = full_size_gpu.param_split(model)
    assert split.total == 2_208_985_600
    assert split.embedding == 151_936 * 1536


def test_dry_run_on_cpu_and_refusal_without_cuda(tiny_qwen2_vl_path, capsys, monkeypatch):
    full_size_gpu.main(["--dry-run", "--config", tiny_qwen2_vl_path])
    out = capsys.readouterr().out
    assert "| parameters |" in out and "TFLOP" in out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs CUDA"):
        full_size_gpu.main(["--config", tiny_qwen2_vl_path])
    with pytest.raises(SystemExit, match="No Qwen2-VL config"):
        full_size_gpu.main(["--dry-run", "--config", "/nonexistent"])


def test_a_benchmark_replaces_its_own_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    _common.write_section("a", "A", "first", path)
    _common.write_section("b", "B", "other", path)
    _common.write_section("a", "A", "second", path)
    text = path.read_text()
    assert text.count("<!-- bench:a -->") == 1 and "second" in text and "first" not in text
    assert "other" in text and text.index("bench:a") < text.index("bench:b")
    assert _common.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 2.0]) == 2.0
