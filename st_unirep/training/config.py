"""The training configuration: one dataclass, loaded from YAML and overridden from the command line.

The command line of ``train/train.py`` and ``eval/ablate.py`` is :class:`ConfigArgumentParser`: transformers'
``HfArgumentParser`` over the fields of :class:`TrainConfig`, with help text from the field comments.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


@dataclass
class TrainConfig:
    """Everything ``train/train.py`` needs. YAML keys and ``--flags`` have the field names."""

    # --- model ---
    backbone: str = "tiny"  # checkpoint folder or hub id; "tiny" builds the offline tiny Qwen2-VL in the run folder
    preset: str = "unirep-m"  # vipolyqwen | unirep | unirep-m | viuniembed
    output_dim: int | None = None  # embedding width (None: the preset's); Matryoshka dims scale with it
    max_pixels: int | None = None  # image pixel budget (None: the preset's)
    freeze_vision: bool | None = None  # None: the preset's (UniRep-M freezes the vision tower)
    pooling_mode: str | None = None  # None: the preset's; "mean" is the ablation baseline
    loss_mode: str = "per_task"  # "per_task" (the seeds' losses) or "infonce" (every task, the ablation baseline)
    # Loss weights of the text_pair task (CalibratedTextPairLoss: mse/kl/rank/nce/cosent_weight; None: the preset's)
    text_pair_weights: dict[str, float] | None = None
    instruction_cos_weight: float | None = None  # λ_cos of the instr task's InstructionLoss (None: the preset's)
    attention_entropy: float | None = None  # weight of UniRep's pooling-entropy term (None: the preset's)
    regularizers: bool = True  # uniformity / anti-collapse / orthogonality / entropy terms (False: ablation)
    gradient_checkpointing: bool = False  # non-reentrant checkpointing in the backbone
    lora_r: int = 0  # > 0: train LoRA adapters of this rank on the backbone instead of all its weights (needs peft)
    max_seq_length: int | None = None  # truncate training inputs to this many tokens (None: the backbone's)
    projection_mode: str | None = None  # None: the preset's ("mlp" or "linear_layernorm")
    head_init: str | None = None  # None: the preset's ("random"); "identity" starts from mean pooling
    backbone_dropout: float | None = None  # None: the backbone's own dropout; 0 turns it off (see README)
    freeze_embeddings: bool = False  # freeze the input token embeddings (e.g. e5's 250k x 384 matrix: 96M params)
    tiny_hidden_size: int = 64  # width of the "tiny" backbone
    tiny_layers: int = 2  # decoder layers of the "tiny" backbone
    # --- data ---
    data: str | None = None  # folder of <task>.jsonl / <task>/ files; None: generate the built-in default set
    # Graded-pairs JSONL (sentence1, sentence2, score) for the built-in data's text_pair task; None: templated pairs
    default_text_pairs: str | None = None
    # Sources in the evaluation layouts ({path, task, score_range?}; see training.data.load_sources): text_pair
    # scores are mapped to [0, 1] per source. Used with or instead of `data`.
    sources: list[dict[str, Any]] | None = None
    score_range: list[float] = field(default_factory=lambda: [0.0, 5.0])  # range of text_pair scores
    skip_invalid: bool = False  # skip (and count) invalid rows instead of failing on the first
    # Score calibration profiles fit on the trained model and saved with it: {profile: [source, ...]}, each source a
    # graded / binary pairs file or a retrieval folder (st_unirep.calibration.fitting). None: no profiles.
    calibration: dict[str, list[Any]] | None = None
    # --- optimisation (viPolyQwen §4.3 for the Qwen2-VL presets) ---
    # The run's folder: the trained model in <output_dir>/model, checkpoints, logs and generated data beside it
    # (st_unirep.training.run_layout). train/train.py without --output_dir picks <output_dir>-2, -3, ... when it
    # already holds a finished run.
    output_dir: str = "output"
    # Train into an output_dir that already holds a trained model or other files: the earlier run's checkpoints are
    # removed at the start, its model is replaced only once the new one is saved (false: such a folder is refused)
    overwrite_output_dir: bool = False
    num_train_epochs: float = 1.0  # epochs (ignored when max_steps > 0)
    max_steps: int = -1  # optimizer steps (> 0 overrides num_train_epochs)
    per_device_train_batch_size: int = 16  # batch per device and micro-step
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step
    mini_batch_size: int | None = None  # GradCache mini-batch (None: no caching)
    learning_rate: float = 1e-4  # peak learning rate (AdamW)
    head_learning_rate: float | None = None  # peak learning rate of the new pooling + projection (None: learning_rate)
    # Peak learning rate of the losses' own parameters (the learned calibration's scale and bias; None: the head's).
    # Two scalars need a far larger rate than the network to move in a few hundred steps.
    loss_learning_rate: float | None = None
    warmup_ratio: float = 0.05  # linear warm-up share of the steps, in [0, 1)
    lr_scheduler_type: str = "cosine"  # transformers scheduler name
    weight_decay: float = 0.001  # AdamW weight decay
    bf16: bool = False  # bf16 mixed precision (fp16 is refused: clipping needs unscaled gradients)
    seed: int = 42  # seed of the model head, the data order and the vaccine draws
    # --- batching: proportional | round_robin | vaccine ---
    sampler: str = "vaccine"  # multi-task batch sampler
    batch_sampler: str = "batch_sampler"  # per-task batches: ST's "batch_sampler" or "no_duplicates"
    vaccine_epsilon: float = 0.02  # ε of p_v(t) = min(1, ε (1 + r)^t)
    vaccine_rate: float = 0.05  # r of p_v(t)
    # Share of the batches per task once images are fully in (p_v = 1), e.g. the seeds' {"text_pair": 0.5, "ocr":
    # 0.25, "vqa_single": 0.25}; None: proportional to each task's number of batches (the data's own mix)
    task_shares: dict[str, float] | None = None
    # --- schedules ---
    temperature_start: float = 0.1  # contrastive temperature at step 0
    temperature_end: float = 0.07  # ... after temperature_steps
    temperature_steps: int = 0  # cooling length (0: keep the losses' own temperature)
    weight_warmup_steps: int = 0  # T_w: MSE / rank weights grow from 0 over this many steps (0: off)
    triplet_warmup_steps: int | None = None  # warm-up of the hardest-negative triplet weight (None: T_w)
    dwa_temperature: float = 0.0  # > 0: dynamic task weights (DWA) with this temperature
    dwa_period: int = 20  # steps per DWA period
    # --- stability ---
    clip_backbone: float = 1.0  # max grad norm of the backbone
    clip_pooling: float = 5.0  # max grad norm of the attention pooling
    clip_projection: float = 5.0  # max grad norm of the projection
    health_every: int = 25  # steps between health checks
    health_probe_size: int = 32  # (anchor, positive) pairs in the health probe
    stop_on_collapse: bool = False  # stop when the p95 similarity exceeds 0.95 (all ranks stop together)
    # Steps before collapse is judged: an untrained head already reads p95 ≈ 1, so early checks are recorded only
    collapse_warmup_steps: int = 200
    # --- evaluation during training (st_unirep.evaluation.dev_evaluator.DevEvaluator) ---
    # Dev data: a folder of dataset folders in the evaluation layouts (../shared/data), one dataset folder, or
    # "builtin" (the generated default data's dev renderings, text <-> image retrieval; no evaluation when the run
    # trains on data or sources instead); None: no evaluation
    dev_data: str | None = None
    dev_datasets: list[str] | None = None  # dataset folders of dev_data to evaluate (None: every one with dev_split)
    dev_split: str = "dev"  # the split of dev_data to evaluate
    eval_strategy: str | None = None  # "no", "steps" or "epoch"; None: "steps" when dev_data is set, else "no"
    # Steps between evaluations (also the first one at step 0); None: a tenth of the run
    eval_steps: int | None = None
    # Keep the checkpoint with the best metric_for_best_model and end on its weights: the saved model is the best one
    # (with save_steps 0 a checkpoint is written only when the metric improves; else save_steps must be a multiple
    # of eval_steps)
    load_best_model_at_end: bool = False
    # Dev metric that picks the best checkpoint, as logged without "eval_" ("stsb_en_spearman", "ocr_t2i_r@1",
    # "viquad_vi_ndcg@10"; lower is better for ece / brier); None: the evaluator's primary metric
    metric_for_best_model: str | None = None
    # --- bookkeeping ---
    logging_steps: int = 5  # steps between log lines
    # Where the trainer reports (transformers' report_to: "tensorboard", "wandb", "none", ...); None: TensorBoard
    # when it is installed, else none. Every callback metric (grad_norm/, health/, schedule/, vaccine/) goes there.
    report_to: list[str] | None = None
    save_steps: int = 0  # steps between checkpoints (0: none; with load_best_model_at_end, at each new best)
    save_total_limit: int | None = 2  # checkpoints kept
    resume_from_checkpoint: str | None = None  # a checkpoint folder, or "last": the newest in <output_dir>/checkpoints
    dataloader_num_workers: int = 0  # dataloader workers

    def validate(self) -> None:
        if self.sampler not in ("proportional", "round_robin", "vaccine"):
            raise ValueError(f"sampler must be proportional, round_robin or vaccine, got {self.sampler!r}")
        if self.task_shares is not None:
            self._validate_task_shares()
        if self.batch_sampler not in ("batch_sampler", "no_duplicates"):
            raise ValueError(f"batch_sampler must be batch_sampler or no_duplicates, got {self.batch_sampler!r}")
        for name in ("head_learning_rate", "loss_learning_rate"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if len(self.score_range) != 2 or not self.score_range[0] < self.score_range[1]:
            raise ValueError(f"score_range must be [lo, hi] with lo < hi, got {self.score_range!r}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "health_every", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        self._validate_calibration()
        if self.default_text_pairs is not None and not Path(self.default_text_pairs).is_file():
            raise ValueError(f"default_text_pairs {self.default_text_pairs!r} is not an existing file")
        if self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be >= 2: the losses compare samples within a batch")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        self._validate_evaluation()

    @property
    def evaluates(self) -> bool:
        """Whether the run evaluates on dev data during training."""
        return self.resolved_eval_strategy != "no"

    @property
    def active_dev_data(self) -> str | None:
        """``dev_data``, or None when it is "builtin" and the run trains on other data (which has no such dev set)."""
        if self.dev_data == "builtin" and (self.data is not None or self.sources):
            return None
        return self.dev_data

    @property
    def resolved_eval_strategy(self) -> str:
        """``eval_strategy``, its None resolved: "steps" with dev data, else "no" (always "no" when the dev data is
        the built-in data's and the run trains on other data)."""
        if self.active_dev_data is None and self.dev_data is not None:
            return "no"
        if self.eval_strategy is not None:
            return self.eval_strategy
        return "steps" if self.dev_data is not None else "no"

    def _validate_evaluation(self) -> None:
        """Fail before training: evaluation needs dev data, and the dev data must exist."""
        if self.eval_strategy not in (None, "no", "steps", "epoch"):
            raise ValueError(f"eval_strategy must be no, steps or epoch, got {self.eval_strategy!r}")
        if self.evaluates and self.dev_data is None:
            raise ValueError(f"eval_strategy {self.eval_strategy!r} needs dev_data (the data to evaluate on)")
        if self.load_best_model_at_end and not self.evaluates:
            raise ValueError("load_best_model_at_end needs an evaluation: set dev_data (and eval_strategy steps)")
        if self.eval_steps is not None and self.eval_steps <= 0:
            raise ValueError(f"eval_steps must be > 0, got {self.eval_steps!r}")
        if self.load_best_model_at_end and self.save_steps > 0:  # checkpoints by steps: evaluations at the same steps
            if self.resolved_eval_strategy != "steps" or self.eval_steps is None or self.save_steps % self.eval_steps:
                raise ValueError(
                    f"load_best_model_at_end with save_steps {self.save_steps} needs eval_strategy steps and "
                    f"eval_steps dividing save_steps (got {self.resolved_eval_strategy}, {self.eval_steps}); or "
                    "save_steps 0: a checkpoint whenever the dev metric improves"
                )
        if self.dev_data not in (None, "builtin") and not Path(self.dev_data).is_dir():
            raise ValueError(f"dev_data {self.dev_data!r} is not an existing folder (nor 'builtin')")
        if self.dev_datasets is not None and self.dev_data in (None, "builtin"):
            raise ValueError("dev_datasets names dataset folders of dev_data: set dev_data to their parent folder")

    def _validate_task_shares(self) -> None:
        from st_unirep.tasks import TASKS

        if self.sampler != "vaccine":
            raise ValueError(f"task_shares is read by the vaccine sampler only; sampler is {self.sampler!r}")
        if not isinstance(self.task_shares, dict) or not self.task_shares:
            raise ValueError(f"task_shares must map task names to shares, got {self.task_shares!r}")
        for name, share in self.task_shares.items():
            if name not in TASKS:
                raise ValueError(f"task_shares: unknown task {name!r}; expected any of {list(TASKS)}")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not share >= 0:
                raise ValueError(f"task_shares.{name} must be a number >= 0, got {share!r}")

    def _validate_calibration(self) -> None:
        """Fail before training, not after it: every calibration source must exist."""
        if self.calibration is None:
            return
        if not isinstance(self.calibration, dict) or not self.calibration:
            raise ValueError(f"calibration must map profile names to lists of sources, got {self.calibration!r}")
        for name, sources in self.calibration.items():
            for source in [sources] if isinstance(sources, (str, dict)) else sources or [None]:
                path = source.get("path") if isinstance(source, dict) else source
                if not isinstance(path, str) or not Path(path).exists():
                    raise ValueError(f"calibration.{name}: source {source!r} is not an existing file or folder")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None
) -> TrainConfig:
    """A ``TrainConfig`` from ``defaults``, then a YAML file (optional), then ``overrides``, each replacing the
    fields it names; unknown keys raise a ValueError naming them."""
    values: dict[str, Any] = dict(defaults or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config file {str(path)!r} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(loaded).__name__}")
        values.update(loaded)
    values.update(overrides or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f" in {path}" if path else ""
        raise ValueError(f"Unknown config field(s) {unknown}{where}; valid fields: {sorted(known)}")
    config = TrainConfig(**values)
    config.validate()
    return config


def field_comments(cls: type) -> dict[str, str]:
    """The comment of every field of the dataclass ``cls`` in its source: the comment lines right above the field
    (section rules such as ``# --- data ---`` excepted) followed by the comment at the end of its line."""
    try:
        source = textwrap.dedent("".join(inspect.getsourcelines(cls)[0]))
    except (OSError, TypeError):  # no source (a class built at run time): no help text
        return {}
    lines = source.splitlines()
    comments = {
        token.start[0] - 1: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    names = {f.name for f in fields(cls)}
    found: dict[str, str] = {}
    for number, line in enumerate(lines):
        match = re.match(r"\s+(\w+)\s*:", line)
        if match is None or match.group(1) not in names or match.group(1) in found:
            continue
        parts = [comments[number]] if number in comments else []
        above = number - 1
        while above in comments and lines[above].lstrip().startswith("#") and not comments[above].startswith("---"):
            parts.insert(0, comments[above])
            above -= 1
        found[match.group(1)] = " ".join(parts)
    return found


def _json_argument(name: str, kind: type, optional: bool) -> Callable[[str], Any]:
    """The argparse ``type`` of a dict or list field: a JSON value of that kind (or ``null`` when optional)."""
    what = "a JSON object" if kind is dict else "a JSON array"

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} ({error})") from None
        if not isinstance(value, kind) and not (optional and value is None):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = f"{name} JSON"
    return parse


def _argument_type(name: str, hint: Any) -> Any:
    """The type ``HfArgumentParser`` should see for a field: the field's own, except JSON for dict fields and for
    lists of anything but scalars (``list[float]`` stays several values: ``--score_range 0 5``)."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    inner = next(a for a in args if a is not type(None)) if optional else hint
    if dict in (inner, typing.get_origin(inner)):
        return _json_argument(name, dict, optional)
    if list in (inner, typing.get_origin(inner)) and typing.get_args(inner) not in ((str,), (int,), (float,)):
        return _json_argument(name, list, optional)
    return hint


def _is_list(hint: Any) -> bool:
    """``list[...]`` or ``list[...] | None`` (HfArgumentParser unwraps the Optional)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return typing.get_origin(hint) is list


def _argument_view(cls: type, keep_defaults: bool) -> type:
    """A dataclass with the fields of ``cls`` as ``HfArgumentParser`` should parse them: help text from the field
    comments, JSON types for structured fields, and (``keep_defaults=False``) no defaults, so that a flag appears in
    the parsed namespace only when it is given."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    specs = []
    for item in fields(cls):
        if not item.init:
            continue
        hint = _argument_type(item.name, hints[item.name])
        metadata = {"help": comments.get(item.name, "").replace("%", "%%"), **item.metadata}
        if hint is not hints[item.name]:
            metadata.setdefault("metavar", "JSON")
        if not keep_defaults and _is_list(hint):  # HfArgumentParser reads a list's default_factory only
            default = dataclasses.field(default_factory=lambda: argparse.SUPPRESS, metadata=metadata)
        elif not keep_defaults:
            default = dataclasses.field(default=argparse.SUPPRESS, metadata=metadata)
        elif item.default_factory is not dataclasses.MISSING:
            default = dataclasses.field(default_factory=item.default_factory, metadata=metadata)
        else:
            default = dataclasses.field(default=item.default, metadata=metadata)
        specs.append((item.name, hint, default))
    return dataclasses.make_dataclass(f"{cls.__name__}Arguments", specs)


class ConfigArgumentParser(HfArgumentParser):
    """``--config FILE.yaml`` and one ``--<field> VALUE`` flag per :class:`TrainConfig` field, then the fields of the
    ``extra`` dataclasses (a script's own options, with their defaults).

    Built by transformers' ``HfArgumentParser``: help text from the field comments, strict booleans
    (``true/false/yes/no/1/0``; a bare ``--flag`` means true), several values for ``list[float]`` fields, and JSON
    for dict and list-of-dict fields (``--sources '[{"path": "stsb_en/train.jsonl", "task": "text_pair"}]'``).
    A TrainConfig field keeps the value of the YAML file (else its default) unless its flag is given.

    Example::

        parser = ConfigArgumentParser(default_config="train/configs/tiny.yaml")
        config_file, overrides, _ = parser.parse_config_args(["--max_steps", "10", "--bf16", "true"])
        config = load_config(config_file, overrides)
    """

    def __init__(self, *extra: type, default_config: str | Path | None = None, **kwargs: Any) -> None:
        self.extra = extra
        kwargs.setdefault("usage", "%(prog)s [-h] [--config FILE.yaml] [--<option or TrainConfig field> VALUE ...]")
        views = [_argument_view(cls, keep_defaults=True) for cls in extra]
        super().__init__([*views, _argument_view(TrainConfig, keep_defaults=False)], **kwargs)
        self.add_argument(
            "--config",
            default=None if default_config is None else str(default_config),
            help="YAML file whose keys are TrainConfig fields; the flags given on the command line override it",
        )

    def parse_config_args(self, args: Sequence[str] | None = None) -> tuple[str | None, dict[str, Any], list[Any]]:
        """``(the --config file, the TrainConfig fields given as flags, one instance per extra dataclass)``."""
        namespace = vars(self.parse_args(args))
        config_file = namespace.pop("config")
        instances = []
        for cls in self.extra:
            names = [item.name for item in fields(cls) if item.init]
            instances.append(cls(**{name: namespace.pop(name) for name in names}))
        return config_file, namespace, instances
