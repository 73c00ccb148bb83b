"""eval/ablate.py on a text backbone trained from the evaluation layouts (``sources``)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO
from tests.test_presets import build_tiny_bert


def _ablate():
    spec = importlib.util.spec_from_file_location("ablate", REPO / "eval" / "ablate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (importlib's recipe: its dataclass resolves its annotations through it)
    spec.loader.exec_module(module)
    return module


def test_ablation_of_a_text_backbone_on_sources_has_no_heldout_ocr_column(tmp_path):
    """Regression: the held-out OCR column was computed whenever `data` was unset, also for `sources` runs,
    which have no built-in data: FileNotFoundError after the first variant had trained."""
    bert = build_tiny_bert(tmp_path / "bert")
    sts = tmp_path / "stsb_en" / "train.jsonl"
    sts.parent.mkdir(parents=True)
    rows = [{"sentence1": f"the {w}", "sentence2": f"a {w}", "score": i % 6} for i, w in enumerate(["cat", "dog"] * 4)]
    sts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"backbone: {bert}\npreset: viuniembed\noutput_dim: 32\nmax_steps: 1\nper_device_train_batch_size: 4\n"
        f"health_every: 100\nsources:\n  - {{path: {sts}, task: text_pair}}\n",
        encoding="utf-8",
    )
    rows = _ablate().main(
        [
            "--config",
            str(config),
            "--output",
            str(tmp_path / "out"),
            "--eval_data",
            str(tmp_path / "none"),
            "--variants",
            "full recipe",
            "mean pooling",
        ]
    )
    assert set(rows) == {"full recipe", "mean pooling"}
    for row in rows.values():
        assert set(row) == {"final loss"} and row["final loss"] == pytest.approx(row["final loss"])  # not NaN
    assert (tmp_path / "out" / "ablation.md").read_text().count("\n") == 4  # header, rule, two rows


def test_ablation_flags_are_parsed_strictly_before_any_training(tmp_path, capsys):
    ablate = _ablate()
    for argv, named in (
        (["--regularizers", "ture"], "--regularizers"),
        (["--variants", "no such variant"], "--variants"),
        (["--sources", "stsb_en/train.jsonl"], "--sources"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            ablate.main([*argv, "--output", str(tmp_path / "out")])
        assert exit_info.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
