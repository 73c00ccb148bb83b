"""``build_model``, ``load_model`` and ``calibrated_similarity``: the public entry points."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling

from st_unirep._compat import optional_hub_file, st_load_with_module_classes
from st_unirep.model_card import fill_model_card
from st_unirep.modules.attention_pooling import AttentionPooling
from st_unirep.modules.backbone import Backbone
from st_unirep.modules.matryoshka_normalize import MatryoshkaNormalize
from st_unirep.modules.score_calibration import ScoreCalibration
from st_unirep.modules.stable_projection import StableProjection
from st_unirep.presets import DEFAULT_BACKBONE, get_preset

logger = logging.getLogger(__name__)

# The classes a saved st_unirep model's modules.json may name, by the dotted name sentence-transformers writes there.
MODULE_CLASSES: dict[str, type] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (Backbone, AttentionPooling, StableProjection, MatryoshkaNormalize, ScoreCalibration)
}


def build_model(backbone: str = DEFAULT_BACKBONE, preset: str = "unirep", **overrides: Any) -> SentenceTransformer:
    """Build an st_unirep ``SentenceTransformer``: Backbone → AttentionPooling → StableProjection → Normalize.

    Args:
        backbone: A Qwen2-VL checkpoint (folder or hub id) or any text encoder ST's ``Transformer`` loads.
        preset: ``"vipolyqwen"``, ``"unirep"``, ``"unirep-m"`` or ``"viuniembed"`` (see ``st_unirep.presets``).
        **overrides: Any :class:`~st_unirep.presets.Preset` field, e.g. ``output_dim=64``,
            ``pooling_mode="mean"`` (sentence-transformers' mean ``Pooling``, the ablation baseline),
            ``pooling_mode="context"``, ``max_pixels=256 * 28 * 28``. For a text-only backbone the pixel budget
            is ignored.

    Returns:
        A ``SentenceTransformer`` whose ``encode`` gives unit-norm vectors (also under ``truncate_dim``). Save it
        with ``model.save(path)`` (its README.md is st_unirep's card: :func:`st_unirep.model_card.fill_model_card`);
        load it with :func:`load_model` (no ``trust_remote_code`` needed).

        Prompts: on a Qwen2-VL backbone inference is prefix-free (the seeds; the task prefix tokens are put on the
        inputs in training only), so ``encode_query``, ``encode_document`` and ``encode`` are the same map. A text
        encoder saved with its own prompts (E5: ``"query: "`` / ``"passage: "``) keeps them, as in training, and
        ``encode_document`` uses the passage prompt (:func:`document_prompt_as_passage`).

    Raises:
        ValueError: ``backbone`` is a saved st_unirep model: load it with :func:`load_model` instead (building on it
            would replace its trained head with a random one).
    """
    config = get_preset(preset).with_overrides(**overrides)
    _refuse_trained_model(backbone)
    backbone_kwargs = dict(config.backbone_kwargs)
    from transformers import AutoConfig

    is_vlm = getattr(AutoConfig.from_pretrained(backbone), "vision_config", None) is not None
    if is_vlm:
        backbone_kwargs.update(min_pixels=config.min_pixels, max_pixels=config.max_pixels)
    first = Backbone(
        backbone,
        prefix_tokens=config.prefix_tokens,
        freeze_vision=config.freeze_vision,
        attn_implementation=config.attn_implementation,
        gradient_checkpointing=config.gradient_checkpointing,
        **backbone_kwargs,
    )
    hidden = first.get_embedding_dimension()
    if config.pooling_mode == "mean":  # the ablation baseline: sentence-transformers' own masked mean pooling
        pooling = Pooling(hidden, pooling_mode="mean")
    else:
        pooling = AttentionPooling(hidden, mode=config.pooling_mode, num_heads=config.num_heads)
    projection = StableProjection(
        hidden, config.output_dim, mode=config.projection_mode, hidden_features=config.projection_hidden_dim
    )
    if config.head_init == "identity":
        if config.output_dim != hidden:
            raise ValueError(
                f"head_init='identity' needs output_dim == the backbone width ({hidden}), got {config.output_dim}"
            )
        if isinstance(pooling, AttentionPooling):
            pooling.reset_to_mean()
        projection.reset_to_identity()
    prompts, default_prompt_name = _backbone_prompts(backbone)
    model = SentenceTransformer(
        modules=[first, pooling, projection, MatryoshkaNormalize()],
        similarity_fn_name="cosine",
        prompts=prompts,
        default_prompt_name=default_prompt_name,
    )
    fill_model_card(model, preset=preset, backbone=backbone, overrides=overrides)
    return model


def load_model(path: str | Path, *, trust_remote_code: bool = False, **kwargs: Any) -> SentenceTransformer:
    """Load a saved st_unirep model (or any sentence-transformers model) without running code from its folder.

    ``SentenceTransformer(path)`` refuses st_unirep's modules (sentence-transformers 6 imports a ``modules.json``
    class outside its own package only with ``trust_remote_code=True``), and with ``trust_remote_code=True`` it also
    imports any ``*.py`` the folder's ``modules.json`` names. Here st_unirep's own classes (:data:`MODULE_CLASSES`)
    come from the installed package, and anything else still needs ``trust_remote_code=True``, which stays off unless
    you pass it for a model whose code you trust.

    Args:
        path: A model folder or hub id. A training run's folder (``output``, whose model is in ``output/model``)
            loads its model, and says so.
        trust_remote_code: Allow classes and model code from outside sentence-transformers and st_unirep.
        **kwargs: Passed to ``SentenceTransformer`` (``device``, ``truncate_dim``, ``model_kwargs``, ...).
    """
    folder = Path(path)
    if not (folder / "modules.json").is_file() and (folder / "model" / "modules.json").is_file():
        logger.info("%s is a training run's folder: loading its model, %s", folder, folder / "model")
        path = folder / "model"
    model = st_load_with_module_classes(
        SentenceTransformer, str(path), MODULE_CLASSES, trust_remote_code=trust_remote_code, **kwargs
    )
    model.prompts = document_prompt_as_passage(model.prompts)
    return model


def _refuse_trained_model(backbone: str) -> None:
    """Raise a ValueError if ``backbone`` is a saved st_unirep model: building on it would drop its trained head."""
    import json

    path = optional_hub_file(str(backbone), "modules.json")
    if path is None:
        return
    types = [entry.get("type", "") for entry in json.loads(Path(path).read_text(encoding="utf-8"))]
    ours = [name for name in types if name in MODULE_CLASSES or name.startswith("st_unirep.")]
    if ours:
        raise ValueError(
            f"{backbone} is a saved st_unirep model (its modules.json names {', '.join(ours)}), not a backbone: "
            "build_model would put a new, random pooling and projection on its backbone and throw the trained head "
            f"away. Load it with st_unirep.load_model({str(backbone)!r}); to fine-tune a trained model, load it "
            "that way and train the loaded model."
        )


def _backbone_prompts(backbone: str) -> tuple[dict[str, str] | None, str | None]:
    """The prompts a sentence-transformers backbone was saved with (``config_sentence_transformers.json``).

    ``SentenceTransformer(modules=...)`` starts with empty prompts, so without this an E5 backbone would lose its
    ``"query: "`` / ``"passage: "``: trained and evaluated without them (README, "Real quality").
    A plain transformers checkpoint (Qwen2-VL) has no such file: ``(None, None)``.
    """
    import json

    path = optional_hub_file(backbone, "config_sentence_transformers.json")
    if path is None:
        return None, None
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    prompts = config.get("prompts") or None
    if prompts is not None and not (
        isinstance(prompts, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())
    ):
        raise ValueError(f"{path}: 'prompts' must map prompt names to strings, got {prompts!r}")
    return document_prompt_as_passage(prompts), config.get("default_prompt_name")


def document_prompt_as_passage(prompts: dict[str, str] | None) -> dict[str, str] | None:
    """``prompts`` with an empty ``"document"`` prompt set to the ``"passage"`` one (a copy; else unchanged).

    sentence-transformers' ``encode_document`` takes the first of ``"document"``, ``"passage"``, ``"corpus"`` that
    exists, and an E5 checkpoint saved by sentence-transformers carries ``"document": ""`` beside
    ``"passage": "passage: "``, so ``encode_document`` would drop the prefix that the model was pre-trained with and
    that st_unirep keeps in training (``training.prompts``) and evaluation (``evaluation.evaluate.prompt_names``).
    Measured in ``eval/prompts_probe.py``.
    """
    if not prompts or prompts.get("document") or not prompts.get("passage"):
        return prompts
    return {**prompts, "document": prompts["passage"]}


def calibrated_similarity(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    model: SentenceTransformer | ScoreCalibration | str | Path | None = None,
    profile: str | None = None,
    pairwise: bool = False,
) -> torch.Tensor:
    r"""The relevance in [0, 1] of embedding pairs: the model's calibrated score, or the seeds' ``(cos + 1) / 2``.

    Args:
        a: ``(d,)`` or ``(n, d)`` embeddings (need not be normalised).
        b: ``(d,)`` or ``(m, d)`` embeddings.
        model: ``None``: the seeds' mapping :math:`s = (\cos(a, b) + 1) / 2` (UniRep / viPolyQwen), which is *not*
            calibrated on real data (README, Real quality). A model (a ``SentenceTransformer`` with a
            ``ScoreCalibration`` module, that module, or a saved model folder): its calibration profile
            :math:`g_d(\cos)` for the embeddings' width d (a monotone map fit on labelled pairs; see
            :class:`~st_unirep.calibration.CalibrationProfile`).
        profile: The model's profile to apply (e.g. ``"sts"``, ``"relatedness"``, ``"paraphrase"``, ``"qa"``);
            ``None``: ``"default"``. An unknown name raises a ValueError listing the model's profiles.
        pairwise: If True, ``a`` and ``b`` have the same number of rows and the result is ``(n,)``, row i against
            row i. Otherwise the result is the ``(n, m)`` matrix of every pair.

    Returns:
        A float tensor in ``[0, 1]``: ``(n, m)``, ``(n,)`` when ``pairwise``, or a scalar for two vectors. Both
        mappings are strictly increasing in the cosine, so they rank exactly as the cosine does.
    """
    # float64: a calibration map can be steep between close knots, where float32 cosines would move the score.
    a_t = torch.as_tensor(a).detach().cpu().double()
    b_t = torch.as_tensor(b).detach().cpu().double()
    single = a_t.ndim == 1 and b_t.ndim == 1
    a_t, b_t = torch.atleast_2d(a_t), torch.atleast_2d(b_t)
    if a_t.ndim != 2 or b_t.ndim != 2 or a_t.shape[-1] != b_t.shape[-1]:
        raise ValueError(
            f"Expected (n, d) and (m, d) embeddings with the same d, got {tuple(a_t.shape)} and {tuple(b_t.shape)}"
        )
    finite = torch.isfinite(a_t).all(-1), torch.isfinite(b_t).all(-1)
    if not (bool(finite[0].all()) and bool(finite[1].all())):
        rows = [torch.nonzero(~f).flatten()[:5].tolist() for f in finite]
        raise ValueError(f"Embeddings must be finite; non-finite rows: a {rows[0]}, b {rows[1]}")
    if model is None and profile is not None:
        raise ValueError(f"profile={profile!r} needs the model whose calibration it is: pass model=...")
    calibration = _calibration_of(model) if model is not None else None
    chosen = calibration.get(profile) if calibration is not None else None
    a_t = torch.nn.functional.normalize(a_t, dim=-1, eps=1e-12)
    b_t = torch.nn.functional.normalize(b_t, dim=-1, eps=1e-12)
    if pairwise or single:
        if a_t.shape[0] != b_t.shape[0]:
            raise ValueError(f"pairwise=True needs the same number of rows, got {a_t.shape[0]} and {b_t.shape[0]}")
        cos = (a_t * b_t).sum(-1)  # (n,)
    else:
        cos = a_t @ b_t.T  # (n, m)
    if chosen is None:
        score = ((cos + 1) / 2).clamp(0.0, 1.0).float()
    else:
        score = torch.as_tensor(chosen(cos.numpy(), a_t.shape[-1]), dtype=torch.float32)
    return score[0] if single else score


def _calibration_of(model: SentenceTransformer | ScoreCalibration | str | Path) -> ScoreCalibration:
    """The ``ScoreCalibration`` of a model object, of a saved model folder, or the module itself."""
    from st_unirep.calibration import find_calibration, load_calibration

    if isinstance(model, ScoreCalibration):
        return model
    if isinstance(model, (str, Path)):
        found, where = load_calibration(model), str(model)
    elif isinstance(model, SentenceTransformer):
        found, where = find_calibration(model), "this model"
    else:
        raise TypeError(
            f"model must be a SentenceTransformer, a ScoreCalibration or a model folder, got {type(model).__name__}"
        )
    if found is None:
        raise ValueError(
            f"{where} has no calibration profiles. Fit them on labelled pairs with python -m st_unirep.calibrate "
            "--model MODEL --data PAIRS.jsonl --profile NAME, or call calibrated_similarity without model= for "
            "the seeds' (cos + 1) / 2"
        )
    return found
