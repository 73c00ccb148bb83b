"""``run_training(config)``: the whole training job behind ``train/train.py``."""

from __future__ import annotations

import fnmatch
import functools
import glob
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, concatenate_datasets
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from st_unirep.loss_recipe import LossRecipe
from st_unirep.losses import build_loss
from st_unirep.model import build_model
from st_unirep.presets import Preset, get_preset
from st_unirep.tasks import get_task
from st_unirep.testing import build_tiny_qwen2_vl
from st_unirep.training.arguments import training_arguments
from st_unirep.training.clipping import ComponentClippingCallback
from st_unirep.training.config import TrainConfig
from st_unirep.training.data import load_sources, load_task_data
from st_unirep.training.health import HealthMonitorCallback
from st_unirep.training.prompts import encoder_prompts
from st_unirep.training.sampler import GradientVaccineBatchSampler, VaccineCallback
from st_unirep.training.schedules import DynamicTaskWeighting, LossScheduleCallback
from st_unirep.training.synthetic import generate_default_data, heldout_ocr_retrieval
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
    """A fixed probe of (anchor, positive) pairs: an equal share of rows from every task."""
    rng = random.Random(seed)
    per_task = max(2, size // len(data))
    probe = []
    for name, dataset in data.items():
        first, second = get_task(name).inputs[:2]
        rows = rng.sample(range(len(dataset)), min(per_task, len(dataset)))
        probe += [(dataset[i][first], dataset[i][second]) for i in rows]
    return probe


def _load_data(config: TrainConfig, output: Path) -> tuple[DatasetDict, tuple[float, float]]:
    """The training data and the text-pair score range its losses see.

    ``sources`` (the evaluation layouts) come with their scores already in [0, 1]; a ``data`` folder given beside
    them has its text-pair scores mapped from ``score_range`` to [0, 1] too, and the tasks are concatenated.
    """
    if config.sources and config.data is None:
        data, report = load_sources(config.sources)
        logger.info("Training data from %d sources: %s", len(config.sources), report.rows)
        _write_skipped([], output / "skipped_rows.txt")
        return data, (0.0, 1.0)
    data_root = Path(config.data) if config.data else output / "data"
    if config.data is None and not (data_root / "ocr.jsonl").is_file():
        generate_default_data(data_root, seed=0, stsb_path=config.default_text_pairs)
    data, report = load_task_data(data_root, tuple(config.score_range), skip_invalid=config.skip_invalid)
    logger.info("Training data from %s: %s (skipped: %s)", data_root, report.rows, report.skipped or "none")
    _write_skipped(report.errors, output / "skipped_rows.txt")
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


def _backbone(config: TrainConfig, output: Path) -> str:
    """The backbone folder or hub id; ``"tiny"`` builds the offline tiny Qwen2-VL into the output folder."""
    if config.backbone != "tiny":
        return config.backbone
    return build_tiny_qwen2_vl(
        output / "tiny-backbone",
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
    """Component clipping, loss schedules, health monitoring, and the vaccine / DWA callbacks when configured."""
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
    if config.dwa_temperature > 0:
        dwa = DynamicTaskWeighting(losses, temperature=config.dwa_temperature, period=config.dwa_period)
        if resume:
            dwa.load(resume)
        callbacks.append(dwa)
    return callbacks


def build_trainer(config: TrainConfig) -> tuple[SentenceTransformerTrainer, str | None]:
    """Everything up to ``trainer.train()``: backbone, data, model, losses, prompts, sampler and callbacks."""
    if config.bf16 is False and torch.cuda.is_available():
        logger.info("Training in fp32; pass --bf16 on GPUs that support it")
    output = Path(config.output_dir)
    _prepare_output_dir(config, output)
    checkpoints = output / "checkpoints"
    backbone = _backbone(config, output)
    data, score_range = _load_data(config, output)
    preset = _preset(config)
    model = _build_model(config, backbone)
    inference_max_seq_length = model.max_seq_length
    if config.max_seq_length is not None:  # training only: run_training saves the model with its own limit
        model.max_seq_length = config.max_seq_length
    losses = _build_losses(model, preset, config, data, score_range)
    args = training_arguments(
        config,
        checkpoints,
        max_grad_norm=0.0,  # component-wise clipping instead (ComponentClippingCallback)
        prompts=_training_prompts(model, preset, data) or None,
        multi_dataset_batch_sampler=_sampler(config, data),
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(config.save_steps, 1),
        save_total_limit=config.save_total_limit,
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=False,
        ddp_find_unused_parameters=True,  # frozen vision towers and per-task losses leave parameters unused
    )
    resume = _resolve_checkpoint(config, checkpoints)
    trainer = UniRepTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=losses,
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


def _attach_learned_calibration(trainer: SentenceTransformerTrainer) -> None:
    """A text-pair loss with a learned logistic calibration leaves its map on the model as profile ``learned``."""
    from st_unirep.calibration import attach_profiles
    from st_unirep.losses import CalibratedTextPairLoss

    losses = trainer.loss if isinstance(trainer.loss, dict) else {"": trainer.loss}
    for loss in losses.values():
        for module in loss.modules():
            if isinstance(module, CalibratedTextPairLoss) and module.logistic_weight:
                profile = module.learned_profile("learned")
                attach_profiles(trainer.model, [profile])
                logger.info("Learned calibration (scale, bias per width): %s", profile.extra["scale_bias"])
                return


# What a finished model (or a run's checkpoints) leaves in an output folder.
MODEL_MARKERS = ("modules.json", "model.safetensors", "config_sentence_transformers.json", "checkpoints/checkpoint-*")
# What a run writes into its output folder before the final save (and leaves there when it stops early): no reason to
# refuse the folder. (.saving-*: an interrupted save's staging folder; .replaced-*: see _replace_model.)
RUN_SCRATCH = ("data", "tiny-backbone", "checkpoints", "skipped_rows.txt", ".saving-*", ".replaced-*")
# Weight files of a model at the top of its folder: an earlier model's are removed with it (shards a new save lacks).
WEIGHT_FILES = (
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)


def _is_main_process() -> bool:
    """Global rank 0 (or no distributed launch): the one process that writes the output folder's files."""
    return os.environ.get("RANK", "0") == "0"


def _check_output_dir(config: TrainConfig, output: Path) -> None:
    """Refuse to train into a folder holding a trained model or checkpoints, or files a run's outputs would replace
    (a ``README.md`` or ``config.json`` of the user's), unless overwriting or resuming."""
    if config.overwrite_output_dir or config.resume_from_checkpoint or not output.is_dir():
        return
    found = [name for name in MODEL_MARKERS if any(output.glob(name))]
    if found:
        raise FileExistsError(
            f"output_dir {str(output)!r} already holds a trained model or checkpoints ({', '.join(found)}); a new run "
            "would replace them. Choose another --output_dir, resume with --resume_from_checkpoint last, or pass "
            "--overwrite_output_dir true to replace them."
        )
    other = sorted(p.name for p in output.iterdir() if not any(fnmatch.fnmatch(p.name, s) for s in RUN_SCRATCH))
    if other:
        shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
        raise FileExistsError(
            f"output_dir {str(output)!r} is not empty ({shown}) and holds no st_unirep run; the trained model's files "
            "(README.md, config.json, model.safetensors, ...) would replace any of the same names. Choose an empty or "
            "new --output_dir, or pass --overwrite_output_dir true to write into it anyway."
        )


def _prepare_output_dir(config: TrainConfig, output: Path) -> None:
    """Check the output folder (``_check_output_dir``) and create it; unless resuming, clear what an earlier run left
    in ``checkpoints/`` (its checkpoints would mix with this run's: the oldest-first rotation would delete the new ones
    and ``resume_from_checkpoint last`` would pick the old run's; its health log would be appended to) and an
    interrupted save's staging folders. The earlier model itself stays until this run's is saved."""
    _check_output_dir(config, output)
    output.mkdir(parents=True, exist_ok=True)
    if config.resume_from_checkpoint or not _is_main_process():
        return
    earlier = sorted(path.name for path in (output / "checkpoints").glob("checkpoint-*"))
    if earlier:
        logger.warning("overwrite_output_dir: removing the earlier run's checkpoints %s from %s", earlier, output)
    for stale in [output / "checkpoints", *output.glob(".saving-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def save_atomically(model, output: Path) -> None:
    """Save ``model`` into ``output`` so that a failure (a full disk) never leaves a half-written model.

    The model is written to a temporary folder inside ``output`` first; only when that save is complete are the
    old model's files replaced, by renames (no data is written in that step; see :func:`_replace_model`). On
    failure the temporary folder is removed, the earlier model (if any) is untouched, and the error says so.
    """
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=output))
    try:
        model.save(str(staging))
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, Exception):  # Ctrl-C stays an interrupt
            raise
        raise OSError(
            f"Saving the trained model into {str(output)!r} failed ({error}); nothing was replaced: the folder "
            "holds what it held before (checkpoints, if save_steps > 0, are in its checkpoints/ folder)."
        ) from error
    _replace_model(staging, output)
    logger.info("Saved the model to %s (written to a temporary folder first, then moved into place)", output)


def _model_entries(output: Path) -> set[str]:
    """The top-level names of the model saved in ``output``: its module folders (``modules.json``), weight files."""
    names = {path.name for pattern in WEIGHT_FILES for path in output.glob(pattern)}
    try:
        modules = json.loads((output / "modules.json").read_text(encoding="utf-8"))
        names |= {m["path"].split("/")[0] for m in modules if isinstance(m, dict) and m.get("path")}
    except (OSError, ValueError, TypeError, AttributeError):  # no model, or not one we can read: names only
        pass
    return names


def _replace_model(staging: Path, output: Path) -> None:
    """Move the model saved in ``staging`` into ``output``. The earlier model's entries (those of the new one's names,
    its module folders and weight files, so none of it is left beside the new one) are moved aside first and deleted
    last. A crash between the moves leaves the earlier model's entries in ``output/.replaced-*``, never deleted."""
    old = {entry.name for entry in staging.iterdir()} | _model_entries(output)
    aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=output))
    for name in sorted(old):
        if (output / name).exists() or (output / name).is_symlink():
            os.replace(output / name, aside / name)
    for entry in sorted(staging.iterdir()):
        os.replace(entry, output / entry.name)
    staging.rmdir()
    shutil.rmtree(aside)


def run_training(config: TrainConfig) -> Path:
    """Train as ``config`` says, save the final model to ``config.output_dir`` and return that path."""
    config.validate()
    output = Path(config.output_dir)
    trainer, resume = build_trainer(config)
    trainer.train(resume_from_checkpoint=resume)
    if trainer.is_world_process_zero():
        if config.lora_r > 0:  # merge the adapters: the saved model stands alone (no base checkpoint needed)
            backbone = trainer.model[0]
            backbone.model = backbone.model.merge_and_unload()
        trainer.model.max_seq_length = trainer.inference_max_seq_length
        if config.calibration:  # the profiles of the model as it will be used: after training, inference length
            _fit_calibration(trainer.model, config)
        _attach_learned_calibration(trainer)
        save_atomically(trainer.model, output)
        (output / "train_config.json").write_text(config.to_json(), encoding="utf-8")
        (output / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")
        if config.data is None and not config.sources:  # the built-in data: text -> image R@1 on its held-out OCR
            result = heldout_ocr_retrieval(trainer.model, output / "data")
            (output / "heldout_ocr.json").write_text(json.dumps(result), encoding="utf-8")
            logger.info(
                "Held-out OCR text->image R@1 = %.3f (chance %.3f, %d images never seen in training)",
                result["r@1"],
                result["chance"],
                result["n"],
            )
        else:  # an earlier (overwritten) default run's result would pass for this model's
            (output / "heldout_ocr.json").unlink(missing_ok=True)
    return output


__all__ = ["build_trainer", "run_training"]
