"""The training configuration: one dataclass, loaded from YAML and overridden from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    """Everything ``train/train.py`` needs. YAML keys and ``--flags`` have the field names."""

    # --- model ---
    backbone: str = "tiny"  # checkpoint folder or hub id; "tiny" builds the offline tiny Qwen2-VL in output_dir
    preset: str = "unirep-m"  # vipolyqwen | unirep | unirep-m | viuniembed
    output_dim: int | None = None  # embedding width (None: the preset's); Matryoshka dims scale with it
    max_pixels: int | None = None  # image pixel budget (None: the preset's)
    freeze_vision: bool | None = None  # None: the preset's (UniRep-M freezes the vision tower)
    pooling_mode: str | None = None  # None: the preset's; "mean" is the ablation baseline
    loss_mode: str = "per_task"  # "per_task" (the seeds' losses) or "infonce" (every task, the ablation baseline)
    # Loss weights of the text_pair task (CalibratedTextPairLoss: mse/kl/rank/nce/cosent_weight; None: the preset's)
    text_pair_weights: dict[str, float] | None = None
    instruction_cos_weight: float | None = None  # λ_cos of the instr task's InstructionLoss (None: the preset's)
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
    # Sources in the evaluation layouts ({path, task, score_range?}; see training.data.load_sources): text_pair
    # scores are mapped to [0, 1] per source. Used with or instead of `data`.
    sources: list[dict[str, Any]] | None = None
    score_range: list[float] = field(default_factory=lambda: [0.0, 5.0])  # range of text_pair scores
    skip_invalid: bool = False  # skip (and count) invalid rows instead of failing on the first
    # Score calibration profiles fit on the trained model and saved with it: {profile: [source, ...]}, each source a
    # graded / binary pairs file or a retrieval folder (st_unirep.calibration.fitting). None: no profiles.
    calibration: dict[str, list[Any]] | None = None
    # --- optimisation (viPolyQwen §4.3 for the Qwen2-VL presets) ---
    output_dir: str = "output"  # the final model goes here; checkpoints in <output_dir>/checkpoints
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
    warmup_ratio: float = 0.05  # linear warm-up share of the steps
    lr_scheduler_type: str = "cosine"  # transformers scheduler name
    weight_decay: float = 0.001  # AdamW weight decay
    bf16: bool = False  # bf16 mixed precision (fp16 is refused: clipping needs unscaled gradients)
    seed: int = 42  # seed of the model head, the data order and the vaccine draws
    # --- batching: proportional | round_robin | vaccine ---
    sampler: str = "vaccine"  # multi-task batch sampler
    batch_sampler: str = "batch_sampler"  # per-task batches: ST's "batch_sampler" or "no_duplicates"
    vaccine_epsilon: float = 0.02  # ε of p_v(t) = min(1, ε (1 + r)^t)
    vaccine_rate: float = 0.05  # r of p_v(t)
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
    stop_on_collapse: bool = False  # stop when the p95 similarity exceeds 0.95
    # --- bookkeeping ---
    logging_steps: int = 5  # steps between log lines
    save_steps: int = 0  # steps between checkpoints (0: only the final model)
    save_total_limit: int | None = 2  # checkpoints kept
    resume_from_checkpoint: str | None = None  # a checkpoint folder, or "last" for the newest in output_dir
    dataloader_num_workers: int = 0  # dataloader workers

    def validate(self) -> None:
        if self.sampler not in ("proportional", "round_robin", "vaccine"):
            raise ValueError(f"sampler must be proportional, round_robin or vaccine, got {self.sampler!r}")
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
        if self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be >= 2: the losses compare samples within a batch")

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


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A ``TrainConfig`` from a YAML file (optional) and overrides; unknown keys raise a ValueError naming them."""
    values: dict[str, Any] = {}
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
