"""The trainer arguments of a TrainConfig: warm-up without transformers' deprecated warmup_ratio, the dev evaluation
and best-checkpoint fields (issue 17)."""

from __future__ import annotations

import logging

import pytest

from st_unirep.evaluation.datasets import PairData
from st_unirep.evaluation.dev_evaluator import DevEvaluator
from st_unirep.training.arguments import training_arguments
from st_unirep.training.config import load_config

STS = PairData("sts", "graded", ["a", "b"], ["c", "d"], [1.0, 2.0], (0.0, 5.0))


def test_warmup_is_a_share_of_the_steps_without_the_deprecation_warning(tmp_path, caplog):
    """Regression: every run logged transformers 5's "`warmup_ratio` argument is deprecated" warning."""
    with caplog.at_level(logging.WARNING):
        args = training_arguments(load_config(None, {"warmup_ratio": 0.05}), tmp_path)
    assert args.warmup_steps == 0.05 and args.get_warmup_steps(1000) == 50
    assert not [r for r in caplog.records if "warmup_ratio" in r.getMessage()]
    with pytest.raises(ValueError, match=r"warmup_ratio must be in \[0, 1\), got 1.5"):
        load_config(None, {"warmup_ratio": 1.5})


def test_no_evaluator_no_evaluation(tmp_path):
    args = training_arguments(load_config(None, {"dev_data": str(tmp_path)}), tmp_path)
    assert args.eval_strategy == "no" and args.save_strategy == "no" and not args.load_best_model_at_end


def test_dev_data_turns_on_evaluation_and_the_best_checkpoint(tmp_path):
    config = load_config(None, {"dev_data": str(tmp_path), "load_best_model_at_end": True})
    args = training_arguments(config, tmp_path, DevEvaluator([STS]))
    assert args.eval_strategy == "steps" and args.eval_steps == 0.1 and args.eval_on_start
    assert args.metric_for_best_model == "sts_spearman" and args.greater_is_better
    assert args.load_best_model_at_end and args.save_strategy == "best"  # a checkpoint at each new best
    config = load_config(
        None,
        {"dev_data": str(tmp_path), "metric_for_best_model": "sts_ece", "eval_steps": 5, "save_steps": 10}
        | {"load_best_model_at_end": True},
    )
    args = training_arguments(config, tmp_path, DevEvaluator([STS]))
    assert args.metric_for_best_model == "sts_ece" and not args.greater_is_better  # lower ECE is better
    assert args.eval_steps == 5 and args.save_strategy == "steps" and args.save_steps == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"eval_strategy": "steps"}, "eval_strategy 'steps' needs dev_data"),
        ({"load_best_model_at_end": True}, "load_best_model_at_end needs an evaluation"),
        ({"eval_strategy": "sometimes"}, "eval_strategy must be no, steps or epoch"),
        ({"dev_data": "/nowhere"}, "dev_data '/nowhere' is not an existing folder"),
        ({"dev_data": "builtin", "dev_datasets": ["x"]}, "dev_datasets names dataset folders of dev_data"),
        (
            {"dev_data": ".", "load_best_model_at_end": True, "save_steps": 10, "eval_steps": 3},
            "needs eval_strategy steps and eval_steps dividing save_steps",
        ),
    ],
)
def test_evaluation_fields_are_checked_before_training(fields, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, fields)


def test_builtin_dev_data_evaluates_only_on_the_builtin_data(tmp_path):
    assert load_config(None, {"dev_data": "builtin"}).evaluates
    assert not load_config(None, {"dev_data": "builtin", "data": str(tmp_path)}).evaluates  # no built-in dev set
