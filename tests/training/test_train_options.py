"""Training options: LoRA (merged on save), bf16 on CPU, stop on collapse, clipping under gradient accumulation;
the command line of train/train.py (strict booleans, JSON fields, YAML overridden by flags)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from st_unirep.training.clipping import component_parameters
from st_unirep.training.config import ConfigArgumentParser, TrainConfig, field_comments, load_config
from st_unirep.training.run import build_trainer, run_training
from st_unirep.training.run_layout import RunLayout
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


def test_stop_on_collapse_stops_training_after_the_warm_up(tmp_path, small_data):  # noqa: F811
    # The untrained tiny model is collapsed (p95 similarity 0.999). Regression (issue 14): that stopped every fresh
    # run at step 1; now the checks of the warm-up are recorded only, and the first judged check stops the run.
    trainer, _ = build_trainer(
        _config(
            tmp_path / "stop",
            small_data,
            max_steps=20,
            stop_on_collapse=True,
            health_every=1,
            collapse_warmup_steps=3,
        )
    )
    trainer.train()
    assert trainer.state.global_step == 3


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


def _train_script(monkeypatch):
    """train/train.py as a module, with ``run_training`` replaced by a recorder of the config it is given."""
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = []
    monkeypatch.setattr(module, "run_training", lambda config: seen.append(config) or Path(config.output_dir))
    return module, seen


def test_a_misspelt_boolean_is_refused_naming_the_flag_and_the_accepted_values(monkeypatch, capsys):
    """Regression: any word but 1/true/yes parsed as False (`--skip_invalid ture` trained with skip_invalid=False)."""
    script, seen = _train_script(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--skip_invalid", "ture"])
    assert exit_info.value.code == 2 and not seen
    error = capsys.readouterr().err
    assert "--skip_invalid" in error and "ture" in error
    assert all(values in error for values in ("true/false", "yes/no", "1/0"))


@pytest.mark.parametrize(("word", "value"), [("true", True), ("Yes", True), ("1", True), ("no", False), ("0", False)])
def test_boolean_flags_take_the_accepted_words(monkeypatch, word, value):
    script, seen = _train_script(monkeypatch)
    script.main(["--skip_invalid", word, "--regularizers", "no" if value else "yes"])
    assert seen[0].skip_invalid is value and seen[0].regularizers is not value


def test_sources_and_dict_fields_take_json_and_flags_override_the_yaml(tmp_path, monkeypatch):
    """Regression: `--sources` could not be given on the command line (it parsed as floats)."""
    config = tmp_path / "c.yaml"
    config.write_text("preset: viuniembed\nmax_steps: 7\nskip_invalid: true\nbf16: false\n", encoding="utf-8")
    sources = [{"path": str(tmp_path / "stsb_en" / "train.jsonl"), "task": "text_pair", "score_range": [0, 5]}]
    script, seen = _train_script(monkeypatch)
    script.main(
        [
            *("--config", str(config), "--sources", json.dumps(sources), "--max_steps", "3", "--bf16"),
            *("--text_pair_weights", '{"cosent_weight": 1.0}', "--score_range", "1", "5"),
        ]
    )
    (trained,) = seen
    assert trained.sources == sources
    assert trained.text_pair_weights == {"cosent_weight": 1.0} and trained.score_range == [1.0, 5.0]
    assert trained.max_steps == 3 and trained.bf16 is True  # the flags win over the YAML
    assert trained.preset == "viuniembed" and trained.skip_invalid is True  # the YAML wins over the defaults
    assert trained.learning_rate == TrainConfig.learning_rate  # neither: the dataclass default


def test_a_json_field_refuses_what_is_not_json_of_its_kind(monkeypatch, capsys):
    script, seen = _train_script(monkeypatch)
    for flag, text in (("--sources", '{"path": "x"}'), ("--text_pair_weights", "cosent_weight=1")):
        with pytest.raises(SystemExit):
            script.main([flag, text])
        assert flag in capsys.readouterr().err
    assert not seen


def test_no_flags_leave_the_yaml_alone_and_help_comes_from_the_field_comments():
    parser = ConfigArgumentParser(default_config="c.yaml")
    assert parser.parse_config_args([]) == ("c.yaml", {}, [])
    text = " ".join(parser.format_help().split())
    assert "multi-task batch sampler" in text  # TrainConfig.sampler's comment
    assert "Sources in the evaluation layouts" in text  # a comment above its field


@dataclass
class _Commented:
    # --- a section rule, not help ---
    plain: int = 1  # the end-of-line comment
    # A comment above the field,
    # on two lines
    above: str = "x"  # and one after it
    bare: float = 0.5
    items: list[str] = field(default_factory=list)  # several


def test_field_comments():
    assert field_comments(_Commented) == {
        "plain": "the end-of-line comment",
        "above": "A comment above the field, on two lines and one after it",
        "bare": "",
        "items": "several",
    }
    command, overrides, (extra,) = ConfigArgumentParser(_Commented).parse_config_args(
        ["--plain", "2", "--items", "a", "b", "--max_steps", "4"]
    )
    assert command is None and overrides == {"max_steps": 4}
    assert extra == _Commented(plain=2, above="x", bare=0.5, items=["a", "b"])


def test_every_callback_metric_reaches_the_saved_log(tmp_path, small_data):  # noqa: F811
    """Regression (issue 14): grad_norm/, health/ and vaccine/ metrics reached the console only (the trainer copies
    the row into its history before the callbacks' on_log), never train_log.json or report_to."""
    run_training(
        _config(tmp_path / "log", small_data, max_steps=4, logging_steps=2, health_every=2, dwa_temperature=2.0)
    )
    rows = [row for row in json.loads(RunLayout(tmp_path / "log").train_log.read_text()) if "loss" in row]
    assert [row["step"] for row in rows] == [2, 4]
    for row in rows:
        assert {"grad_norm/backbone", "grad_norm/pooling", "grad_norm/projection", "vaccine/p_image"} <= set(row)
        assert {"schedule/temperature", "schedule/weight_scale", "task_weight/ocr"} <= set(row)
        assert "health/sim_p95" in row and 0.0 <= row["health/sim_p95"] <= 1.0


def test_report_to_defaults_to_tensorboard_when_installed_and_takes_a_list():
    from st_unirep.training.arguments import report_to

    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    assert report_to(None) == (["tensorboard"] if has_tensorboard else [])
    assert report_to(["wandb"]) == ["wandb"] and report_to(["none"]) == []
    assert load_config(None, {"report_to": ["none"]}).report_to == ["none"]


def test_console_line_is_one_readable_line():
    from st_unirep.training.console import format_log_line

    line = format_log_line(40, 900, {"loss": 1.23456, "learning_rate": 1e-4, "health/sim_p95": 0.5, "x/y": 3.0})
    assert line == "step 40/900 | loss 1.235 | lr 1.0e-04 | health/sim_p95 0.5"


@pytest.mark.parametrize(("preset", "vision_adapters"), [("unirep-m", False), ("viuniembed", True)])
def test_lora_leaves_a_frozen_vision_tower_frozen(tmp_path, small_data, preset, vision_adapters):  # noqa: F811
    """Regression (issue 14): LoRA added trainable adapters to unirep-m's vision tower, which is meant frozen."""
    pytest.importorskip("peft")
    config = _config(tmp_path / preset, small_data, preset=preset, lora_r=2, freeze_vision=None)  # the preset's
    trainer, _ = build_trainer(config)
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in name and "visual" not in name for name in trainable)  # the language model adapts
    assert any("lora_" in name and "visual" in name for name in trainable) == vision_adapters


@pytest.mark.parametrize("flag", ["--max_steps", "--max-steps"])
def test_flags_take_underscores_or_dashes(monkeypatch, flag):
    script, seen = _train_script(monkeypatch)
    script.main([flag, "7", "--per-device-train-batch-size", "4"])
    assert seen[0].max_steps == 7 and seen[0].per_device_train_batch_size == 4


def test_without_output_dir_a_finished_run_is_never_replaced(tmp_path, monkeypatch, capsys):
    """Issue 17: `python train/train.py --max_steps 200` after the default job replaced output/ (later: refused it).
    Without --output_dir the run goes to a free output-N; a folder named with --output_dir is used as given."""
    monkeypatch.chdir(tmp_path)
    script, seen = _train_script(monkeypatch)
    script.main(["--max_steps", "200"])
    assert seen[-1].output_dir == "output"  # a fresh clone: the README's output/
    (tmp_path / "output" / "model").mkdir(parents=True)
    (tmp_path / "output" / "model" / "modules.json").write_text("[]")  # the default job's model
    script.main(["--max_steps", "200"])
    assert seen[-1].output_dir == "output-2"
    assert "Saved the trained model to" in capsys.readouterr().out
    for given in (["--output_dir", "output"], ["--overwrite_output_dir", "true"], ["--resume_from_checkpoint", "last"]):
        script.main(given)
        assert seen[-1].output_dir == "output", given  # the folder meant: refused or replaced by run_training
