"""``run_training(config)``: the whole training job behind ``train/train.py``."""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import random
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, concatenate_datasets
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from st_unirep.evaluation.dev_evaluator import DevEvaluator
from st_unirep.loss_recipe import LossRecipe
from st_unirep.losses import build_loss
from st_unirep.model import build_model
from st_unirep.model_card import fill_model_card
from st_unirep.presets import Preset, get_preset
from st_unirep.tasks import get_task
from st_unirep.testing import build_tiny_qwen2_vl
from st_unirep.training.arguments import training_arguments
from st_unirep.training.best_metric_check import BestMetricCheckCallback
from st_unirep.training.clipping import ComponentClippingCallback
from st_unirep.training.config import TrainConfig
from st_unirep.training.data import load_sources, load_task_data
from st_unirep.training.health import HealthMonitorCallback
from st_unirep.training.prompts import encoder_prompts
from st_unirep.training.run_layout import RunLayout, save_atomically
from st_unirep.training.sampler import GradientVaccineBatchSampler, VaccineCallback
from st_unirep.training.schedules import DynamicTaskWeighting, LossScheduleCallback
from st_unirep.training.synthetic import generate_default_data, heldout_ocr_retrieval, ocr_retrieval_data
from st_unirep.training.trainer import UniRepTrainer

logger = logging.getLogger(__name__)


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _resolve_checkpoint(config: TrainConfig, checkpoints: Path) -> str | None:
    if config.resume_from_checkpoint in (None, ""):
        return None
    if config.resume_from_checkpoint == "last":
        found = sorted(glob.glob(str(checkpoints / "checkpoint-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
        if not found:
            raise FileNotFoundError(f"resume_from_checkpoint='last' but {checkpoints} has no checkpoint-* folder")
        return found[-1]
    if not Path(config.resume_from_checkpoint).is_dir():
        raise FileNotFoundError(f"Checkpoint folder {config.resume_from_checkpoint!r} does not exist")
    return config.resume_from_checkpoint


def _health_probe(data, size: int, seed: int) -> list[tuple]:
    """A fixed probe of (anchor, positive) pairs: an equal share of rows from every task, each with a positive of its
    own (two renderings of one phrase are rightly close; such pairs would read as collapse in the p95 similarity)."""
    rng = random.Random(seed)
    per_task = max(2, size // len(data))
    probe = []
    for name, dataset in data.items():
        first, second = get_task(name).inputs[:2]
        seen: set[str] = set()
        for i in rng.sample(range(len(dataset)), len(dataset)):
            if len(seen) == per_task:
                break
            row = dataset[i]
            if repr(row[second]) not in seen:
                seen.add(repr(row[second]))
                probe.append((row[first], row[second]))
    return probe


def _load_data(config: TrainConfig, layout: RunLayout) -> tuple[DatasetDict, tuple[float, float]]:
    """The training data and the text-pair score range its losses see.

    ``sources`` (the evaluation layouts) come with their scores already in [0, 1]; a ``data`` folder given beside
    them has its text-pair scores mapped from ``score_range`` to [0, 1] too, and the tasks are concatenated.
    """
    if config.sources and config.data is None:
        data, report = load_sources(config.sources)
        logger.info("Training data from %d sources: %s", len(config.sources), report.rows)
        _write_skipped([], layout.skipped_rows)
        return data, (0.0, 1.0)
    data_root = Path(config.data) if config.data else layout.data
    if config.data is None and not all((data_root / name).is_file() for name in ("ocr.jsonl", "dev/ocr.jsonl")):
        generate_default_data(data_root, seed=0, stsb_path=config.default_text_pairs)
    data, report = load_task_data(data_root, tuple(config.score_range), skip_invalid=config.skip_invalid)
    logger.info("Training data from %s: %s (skipped: %s)", data_root, report.rows, report.skipped or "none")
    _write_skipped(report.errors, layout.skipped_rows)
    if not config.sources:
        return data, tuple(config.score_range)
    lo, hi = config.score_range
    for name in data:  # graded labels to [0, 1], like the sources'
        label = get_task(name).label
        if label is not None:
            data[name] = data[name].map(lambda row, label=label: {label: (row[label] - lo) / (hi - lo)})
    extra, report = load_sources(config.sources)
    logger.info("... plus %d sources: %s", len(config.sources), report.rows)
    for task, dataset in extra.items():
        data[task] = concatenate_datasets([data[task], dataset]) if task in data else dataset
    return data, (0.0, 1.0)


def _write_skipped(errors: list[str], listing: Path) -> None:
    """Every skipped row or file (``file:line: reason``) in ``listing`` beside the run, and a summary logged; with
    nothing skipped, no listing (an earlier run's would describe other data)."""
    if not _is_main_process():
        return
    if not errors:
        listing.unlink(missing_ok=True)
        return
    listing.write_text("\n".join(errors) + "\n", encoding="utf-8")
    logger.warning("skip_invalid: %d row(s) or file(s) skipped; every one with its reason in %s", len(errors), listing)


def _optimizer(model, config: TrainConfig, losses: dict[str, torch.nn.Module]) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the new head (every module after the backbone) and the losses' own
    parameters (the learned calibration's scale and bias) may get their own rate."""
    head_lr = config.head_learning_rate or config.learning_rate
    model_parameters = {id(p) for p in model.parameters()}
    loss_parameters = {
        id(p): p
        for loss in losses.values()
        for p in loss.parameters()
        if p.requires_grad and id(p) not in model_parameters
    }
    groups = [
        {"params": [p for p in model[0].parameters() if p.requires_grad], "lr": config.learning_rate},
        {"params": [p for m in list(model)[1:] for p in m.parameters() if p.requires_grad], "lr": head_lr},
        {"params": list(loss_parameters.values()), "lr": config.loss_learning_rate or head_lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.learning_rate, weight_decay=config.weight_decay
    )


def _preset_overrides(config: TrainConfig) -> dict[str, Any]:
    """Every ``TrainConfig`` field named like a preset field (architecture or loss) that is set (not None)."""
    names = {f.name for f in fields(Preset)} | {f.name for f in fields(LossRecipe)}
    return {
        f.name: getattr(config, f.name)
        for f in fields(TrainConfig)
        if f.name in names and getattr(config, f.name) is not None
    }


def _preset(config: TrainConfig) -> Preset:
    """The configured preset with the config's overrides applied."""
    return get_preset(config.preset).with_overrides(**_preset_overrides(config))


def _backbone(config: TrainConfig, layout: RunLayout) -> str:
    """The backbone folder or hub id; ``"tiny"`` builds the offline tiny Qwen2-VL into the run folder."""
    if config.backbone != "tiny":
        return config.backbone
    return build_tiny_qwen2_vl(
        layout.tiny_backbone,
        hidden_size=config.tiny_hidden_size,
        num_hidden_layers=config.tiny_layers,
        vision_depth=2,
        vision_embed_dim=config.tiny_hidden_size,
    )


def _build_model(config: TrainConfig, backbone: str) -> SentenceTransformer:
    """The configured preset's model on ``backbone``, with the training-only settings of ``config`` applied."""
    torch.manual_seed(config.seed)
    model = build_model(backbone, config.preset, **_preset_overrides(config))
    if config.backbone_dropout is not None:
        # Every dropout of the backbone (BERT's attention dropout reads its nn.Dropout's p as well). With dropout,
        # the two sides of a pair are noisier in training than at inference, so a score regressed in training is
        # biased at inference. (Measured on MiniLM the effect is small next to the dev-set calibration gap; see
        # README, Real quality.)
        for module in model[0].modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = config.backbone_dropout
    if config.freeze_embeddings:
        embeddings = model[0].model.get_input_embeddings()
        embeddings.requires_grad_(False)
        logger.info("Frozen input embeddings: %s parameters", f"{embeddings.weight.numel():,}")
    if config.lora_r > 0:
        _add_lora(model, config.lora_r)
    return model


def _add_lora(model: SentenceTransformer, rank: int) -> None:
    """LoRA adapters on every linear layer of the backbone, except a frozen vision tower's (UniRep-M keeps it
    frozen: adapters there would train it after all)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("lora_r > 0 needs peft: pip install peft") from error
    backbone = model[0]
    exclude = r".*\bvisual\b.*" if getattr(backbone, "freeze_vision", False) else None
    # peft's own wrapper (not transformers' add_adapter): merge_and_unload() then gives a standalone checkpoint.
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", exclude_modules=exclude)
    backbone.model = get_peft_model(backbone.model, lora)


def _build_losses(
    model: SentenceTransformer, preset: Preset, config: TrainConfig, data: DatasetDict, score_range
) -> dict[str, torch.nn.Module]:
    """One loss stack per task of the data (``losses.build_loss``)."""
    return {
        task: build_loss(
            model,
            task,
            preset,
            score_range=score_range,
            mini_batch_size=config.mini_batch_size,
            # Cross-device negatives need every rank on the same task each step: only the vaccine sampler does that.
            gather_across_devices=_world_size() > 1 and config.sampler == "vaccine",
            loss_mode=config.loss_mode,
            regularizers=config.regularizers,
        )
        for task in data
    }


def _training_prompts(model: SentenceTransformer, preset: Preset, data: DatasetDict) -> dict[str, dict[str, str]]:
    """Per task and input column: a text encoder's own prompts (E5), or the task's prefix token (training only)."""
    # A text encoder's own query / passage prompts (E5) stay on its inputs, as inference will put them.
    prompts = encoder_prompts(model.prompts, {task: dataset.column_names for task, dataset in data.items()})
    # Prefix-guided training (viPolyQwen §3.4): the task's prefix token on every input column, training only.
    for name, dataset in data.items():
        task = get_task(name)
        if task.prefix_token in preset.prefix_tokens:
            prompts[name] = {column: task.prefix_token for column in task.input_columns(dataset.column_names)}
    return prompts


def _sampler(config: TrainConfig, data: DatasetDict):
    """The multi-dataset batch sampler: the gradient vaccine (images annealed in) or one of ST's by name."""
    if config.sampler != "vaccine":
        return config.sampler
    return functools.partial(
        GradientVaccineBatchSampler,
        image_datasets=[i for i, name in enumerate(data) if get_task(name).images],
        epsilon=config.vaccine_epsilon,
        rate=config.vaccine_rate,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        task_shares=_task_shares(config, data),
    )


def _task_shares(config: TrainConfig, data: DatasetDict) -> list[float] | None:
    """``config.task_shares`` in the data's task order; every task of the data needs one, and only those."""
    if config.task_shares is None:
        return None
    missing = [name for name in data if name not in config.task_shares]
    extra = [name for name in config.task_shares if name not in data]
    if missing or extra:
        raise ValueError(
            f"task_shares must name exactly the tasks of the training data {list(data)}: "
            f"missing {missing}, not in the data {extra}"
        )
    return [float(config.task_shares[name]) for name in data]


def _callbacks(config: TrainConfig, losses: dict, data: DatasetDict, preset: Preset, resume: str | None) -> list:
    """Component clipping, loss schedules, health monitoring, and the vaccine / DWA / metric-name check callbacks when
    configured."""
    callbacks = [
        ComponentClippingCallback(
            {"backbone": config.clip_backbone, "pooling": config.clip_pooling, "projection": config.clip_projection}
        ),
        LossScheduleCallback(
            losses,
            temperature_start=config.temperature_start,
            temperature_end=config.temperature_end,
            temperature_steps=config.temperature_steps,
            warmup_steps=config.weight_warmup_steps,
            triplet_warmup_steps=config.triplet_warmup_steps,
        ),
        HealthMonitorCallback(
            _health_probe(data, config.health_probe_size, config.seed),
            every=config.health_every,
            dims=preset.matryoshka_dims,
            stop_on_collapse=config.stop_on_collapse,
            collapse_warmup_steps=config.collapse_warmup_steps,
        ),
    ]
    if config.sampler == "vaccine":
        callbacks.append(VaccineCallback(config.vaccine_epsilon, config.vaccine_rate))
    if config.evaluates:
        callbacks.append(BestMetricCheckCallback())
    if config.dwa_temperature > 0:
        dwa = DynamicTaskWeighting(losses, temperature=config.dwa_temperature, period=config.dwa_period)
        if resume:
            dwa.load(resume)
        callbacks.append(dwa)
    return callbacks


def _dev_evaluator(config: TrainConfig, model: SentenceTransformer, layout: RunLayout) -> DevEvaluator | None:
    """The dev evaluator of ``config.dev_data`` (None when the run does not evaluate); text <-> image sets only for a
    model with an image modality."""
    if not config.evaluates:
        return None
    if config.active_dev_data == "builtin":
        return DevEvaluator([ocr_retrieval_data(layout.data, "dev")])
    images = "image" in getattr(model, "modalities", ["text"])
    return DevEvaluator.from_folder(config.active_dev_data, config.dev_split, config.dev_datasets, images=images)


def build_trainer(config: TrainConfig) -> tuple[SentenceTransformerTrainer, str | None]:
    """Everything up to ``trainer.train()``: backbone, data, model, losses, prompts, sampler, callbacks and the dev
    evaluator."""
    if config.bf16 is False and torch.cuda.is_available():
        logger.info("Training in fp32; pass --bf16 on GPUs that support it")
    layout = RunLayout(config.output_dir)
    layout.check(overwrite=config.overwrite_output_dir, resume=bool(config.resume_from_checkpoint))
    layout.prepare(clear=not config.resume_from_checkpoint and _is_main_process())
    backbone = _backbone(config, layout)
    data, score_range = _load_data(config, layout)
    preset = _preset(config)
    model = _build_model(config, backbone)
    inference_max_seq_length = model.max_seq_length
    if config.max_seq_length is not None:  # training only: run_training saves the model with its own limit
        model.max_seq_length = config.max_seq_length
    losses = _build_losses(model, preset, config, data, score_range)
    evaluator = _dev_evaluator(config, model, layout)
    args = training_arguments(
        config,
        layout.checkpoints,
        evaluator,
        max_grad_norm=0.0,  # component-wise clipping instead (ComponentClippingCallback)
        prompts=_training_prompts(model, preset, data) or None,
        multi_dataset_batch_sampler=_sampler(config, data),
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=False,
        ddp_find_unused_parameters=True,  # frozen vision towers and per-task losses leave parameters unused
    )
    resume = _resolve_checkpoint(config, layout.checkpoints)
    trainer = UniRepTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=losses,
        evaluator=evaluator,
        callbacks=_callbacks(config, losses, data, preset, resume),
        # Only with a separate head rate: our AdamW (the trainer still builds the lr schedule around it).
        optimizers=(_optimizer(model, config, losses), None)
        if config.head_learning_rate or config.loss_learning_rate
        else (None, None),
    )
    trainer.inference_max_seq_length = inference_max_seq_length  # restored before saving (run_training)
    return trainer, resume


def _fit_calibration(model, config: TrainConfig) -> None:
    """Fit ``config.calibration``'s profiles on the trained model at its width and Matryoshka widths; attach them."""
    from st_unirep.calibration import attach_profiles, fit_profiles

    dims = list(_preset(config).matryoshka_dims) or None  # None: the width and the evaluation prefixes
    was_training = model.training
    model.eval()
    profiles = fit_profiles(model, config.calibration, dims=dims)
    model.train(was_training)
    attach_profiles(model, profiles)
    logger.info("Calibration profiles fit and saved with the model: %s", [p.name for p in profiles])


def _attach_learned_calibration(trainer: SentenceTransformerTrainer, best_loaded: bool = False) -> None:
    """A text-pair loss with a learned logistic calibration leaves its map on the model as profile ``learned``
    (the last step's map: with the best checkpoint loaded it was learned along a later model; a warning says so)."""
    from st_unirep.calibration import attach_profiles
    from st_unirep.losses import CalibratedTextPairLoss

    losses = trainer.loss if isinstance(trainer.loss, dict) else {"": trainer.loss}
    for loss in losses.values():
        for module in loss.modules():
            if isinstance(module, CalibratedTextPairLoss) and module.logistic_weight:
                profile = module.learned_profile("learned")
                attach_profiles(trainer.model, [profile])
                logger.info("Learned calibration (scale, bias per width): %s", profile.extra["scale_bias"])
                if best_loaded:
                    logger.warning(
                        "load_best_model_at_end: the 'learned' calibration profile is the last step's, not the best "
                        "checkpoint's; fit profiles on the saved model (calibration: in the config) for exact ones"
                    )
                return


def _is_main_process() -> bool:
    """Global rank 0 (or no distributed launch): the one process that writes the output folder's files."""
    return os.environ.get("RANK", "0") == "0"


def run_training(config: TrainConfig) -> Path:
    """Train as ``config`` says; save the final model (with ``load_best_model_at_end``: the best checkpoint's) to
    ``<output_dir>/model`` and the run's files beside it (:class:`RunLayout`); return the model folder."""
    config.validate()
    layout = RunLayout(config.output_dir)
    trainer, resume = build_trainer(config)
    trainer.train(resume_from_checkpoint=resume)
    if trainer.is_world_process_zero():
        _save_run(trainer, config, layout)
    return layout.model


def _save_run(trainer: SentenceTransformerTrainer, config: TrainConfig, layout: RunLayout) -> None:
    """The trained model into ``layout.model``; the run's config, log and held-out result beside it."""
    if config.lora_r > 0:  # merge the adapters: the saved model stands alone (no base checkpoint needed)
        backbone = trainer.model[0]
        backbone.model = backbone.model.merge_and_unload()
    trainer.model.max_seq_length = trainer.inference_max_seq_length
    if config.load_best_model_at_end and trainer.state.best_model_checkpoint:
        logger.info(
            "The saved model is the best checkpoint's, %s (%s = %s)",
            trainer.state.best_model_checkpoint,
            trainer.args.metric_for_best_model,
            trainer.state.best_metric,
        )
    if config.calibration:  # the profiles of the model as it will be used: after training, inference length
        _fit_calibration(trainer.model, config)
    _attach_learned_calibration(trainer, best_loaded=config.load_best_model_at_end)
    heldout = None
    if config.data is None and not config.sources:  # the built-in data: text -> image R@1 on its held-out OCR
        heldout = heldout_ocr_retrieval(trainer.model, layout.data)
        logger.info(
            "Held-out OCR text->image R@1 = %.3f (chance %.3f, %d images never seen in training)",
            heldout["r@1"],
            heldout["chance"],
            heldout["n"],
        )
    _fill_card(trainer, heldout)
    save_atomically(trainer.model, layout.model)
    layout.train_config.write_text(config.to_json(), encoding="utf-8")
    layout.train_log.write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")
    if heldout is not None:
        layout.heldout_ocr.write_text(json.dumps(heldout), encoding="utf-8")
    else:  # an earlier (overwritten) default run's result would pass for this model's
        layout.heldout_ocr.unlink(missing_ok=True)


def _fill_card(trainer: SentenceTransformerTrainer, heldout: dict | None) -> None:
    """The model card's training data (task, rows) and evaluation numbers (the last dev evaluation, held-out R@1)."""
    datasets = trainer.train_dataset
    named = datasets.items() if isinstance(datasets, dict) else [("train", datasets)]
    train = [{"name": name, "rows": len(dataset)} for name, dataset in named]
    results: dict[str, dict[str, float]] = {}
    evaluations = [row for row in trainer.state.log_history if any(key.startswith("eval_") for key in row)]
    if evaluations:
        results[f"dev (step {evaluations[-1].get('step', '?')})"] = {
            key.removeprefix("eval_"): value
            for key, value in evaluations[-1].items()
            if key.startswith("eval_") and isinstance(value, (int, float)) and "runtime" not in key
            and "per_second" not in key
        }  # fmt: skip
    if heldout is not None:
        results["built-in held-out OCR renderings"] = {"t2i_r@1": heldout["r@1"], "chance": heldout["chance"]}
    fill_model_card(trainer.model, train_datasets=train, eval_results=results or None,
                    evaluated_with="st_unirep's dev evaluation during training")  # fmt: skip


__all__ = ["build_trainer", "run_training"]
