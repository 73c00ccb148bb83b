"""``evaluate(model, root, split, ...)``: every metric of every dataset found, at full width and each truncation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from st_unirep.calibration import find_calibration
from st_unirep.evaluation import metrics
from st_unirep.evaluation.datasets import PairData, RetrievalData, dataset_reader, discover

logger = logging.getLogger(__name__)


def default_dims(width: int) -> list[int]:
    """512/768/1024 under a 2048-d model (and every such dim below the width); width/4 and width/2 otherwise."""
    standard = [d for d in (512, 768, 1024, 2048) if d < width]
    return standard if width >= 1024 else sorted({max(1, width // 4), max(1, width // 2)} - {width})


def _supports_images(model) -> bool:
    return "image" in getattr(model, "modalities", ["text"])


def prompt_names(model) -> tuple[str | None, str | None]:
    """The model's own prompt names for queries (and both sides of a pair) and for documents, if it has them.

    E5-style models are trained with ``"query: "`` / ``"passage: "`` and lose accuracy without them (an st_unirep
    model built on one keeps them: ``build_model``); a model without prompts (Qwen2-VL st_unirep models: their task
    prefixes are a training signal only) gets ``(None, None)``.
    """
    prompts = getattr(model, "prompts", None) or {}
    query = "query" if prompts.get("query") else None
    document = next((name for name in ("passage", "document") if prompts.get(name)), None)
    return query, document


def encode_texts(
    model, items: list[str], batch_size: int, prompt_name: str | None = None, progress: bool = False
) -> np.ndarray:
    """Unit-norm float32 embeddings ``(n, d)`` of ``items`` with the model's prompt ``prompt_name``."""
    return model.encode(
        items,
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=progress,
        convert_to_numpy=True,
        prompt_name=prompt_name,
    )


PROFILE_THRESHOLDS = (0.5, 0.7, 0.9)  # the cuts reported for a binary profile's P(relevant)


def _profile_metrics(
    calibration, target: str, cosines: np.ndarray, gold: np.ndarray, width: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """ECE / Brier (and reliability or thresholds) of each of the model's profiles for this kind of target.

    Graded sets are scored with the graded profiles, binary pairs and retrieval pairs with the binary ones
    (P(relevant)); keys ``ece@<profile>``, ``brier@<profile>``. Profiles without a map for ``width`` are skipped.
    """
    out: dict[str, float] = {}
    artifacts: dict[str, Any] = {}
    for name in calibration.names if calibration is not None else []:
        profile = calibration.get(name)
        if profile.target != target or width not in profile.maps:
            continue
        predicted = profile(cosines, width)
        scores = metrics.calibration(predicted, gold)
        out[f"ece@{name}"], out[f"brier@{name}"] = scores["ece"], scores["brier"]
        if target == "graded":
            artifacts[f"reliability@{name}"] = metrics.reliability_curve(predicted, gold)
        else:
            artifacts[f"thresholds@{name}"] = metrics.threshold_table(predicted, gold, PROFILE_THRESHOLDS)
    return out, artifacts


def _pair_metrics(
    data: PairData, a: np.ndarray, b: np.ndarray, calibration=None
) -> tuple[dict[str, float], dict[str, Any]]:
    cosines = (a * b).sum(axis=1)
    gold = np.asarray(data.gold)
    predicted = metrics.calibrated(cosines)
    if data.kind == "graded":
        lo, hi = data.score_range
        target = (gold - lo) / (hi - lo)
        out = metrics.correlation(cosines, gold) | metrics.calibration(predicted, target)
        extra, artifacts = _profile_metrics(calibration, "graded", cosines, target, a.shape[1])
        return out | extra, {"reliability": metrics.reliability_curve(predicted, target)} | artifacts
    out = metrics.binary(cosines, gold) | metrics.calibration(predicted, gold)
    extra, artifacts = _profile_metrics(calibration, "binary", cosines, gold, a.shape[1])
    return out | extra, {"thresholds": metrics.threshold_table(predicted, gold)} | artifacts


def _retrieval_metrics(data: RetrievalData, q: np.ndarray, c: np.ndarray) -> dict[str, float]:
    scores = q @ c.T
    if not data.image_corpus:
        return metrics.retrieval(scores, data.relevant)
    forward = metrics.retrieval(scores, data.relevant)
    backward_relevant = [set() for _ in range(c.shape[0])]
    for query, relevant in enumerate(data.relevant):
        for item in relevant:
            backward_relevant[item].add(query)
    backward = metrics.retrieval(scores.T, backward_relevant)
    return {f"t2i_{k}": v for k, v in forward.items()} | {f"i2t_{k}": v for k, v in backward.items()}


def _rerank_pairs(
    data: RetrievalData, q: np.ndarray, c: np.ndarray, calibration=None
) -> tuple[dict[str, float], dict[str, Any]]:
    """The score as a reranking cut over every (query, item) pair, relevant or not: ECE of P(relevant) and
    precision / recall of ``score >= t``, for the seeds' (cos + 1)/2 (``ece``, ``thresholds``) and each binary
    profile (``ece@<profile>``, ``thresholds@<profile>``)."""
    relevant = np.zeros((len(data.queries), len(data.corpus)))
    for query, items in enumerate(data.relevant):
        relevant[query, list(items)] = 1.0
    cosines, labels = (q @ c.T).ravel(), relevant.ravel()
    seed = metrics.calibrated(cosines)
    out = {"ece": metrics.calibration(seed, labels)["ece"]}
    artifacts = {"thresholds": metrics.threshold_table(seed, labels, np.round(np.arange(0.30, 1.0, 0.05), 2))}
    extra, profile_artifacts = _profile_metrics(calibration, "binary", cosines, labels, q.shape[1])
    return out | extra, artifacts | profile_artifacts


def evaluate(
    model,
    root: str | Path,
    split: str = "dev",
    dims: list[int] | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = True,
    model_name: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate ``model`` (an st_unirep or any sentence-transformers model) on every dataset under ``root``.

    Each dataset is read and evaluated on its own: one that fails (a malformed file, a corrupt image, an encode
    error) is logged and listed in ``results["_meta"]["failed"]`` as ``{dataset: "ErrorType: message"}``, and the
    others are still evaluated.

    Returns ``(results, artifacts)``: ``results[name]`` maps metric keys to values at full width, plus
    ``results[name]["dim_<d>"]`` for each truncation and ``results[name]["health"]``; ``results["_meta"]`` has the
    model, split, dims, time and the failed datasets. ``artifacts`` holds the reliability curves and threshold
    tables for the report.
    """
    start = time.time()
    width = model.get_embedding_dimension()
    dims = [d for d in (default_dims(width) if dims is None else dims) if d < width]
    results: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    failed: dict[str, str] = {}
    prompts = prompt_names(model)
    calibration = find_calibration(model)
    for name, read in dataset_readers(root, split):
        try:
            data = read()
            if isinstance(data, RetrievalData) and data.image_corpus and not _supports_images(model):
                logger.info("Skipping %s: the model has no image modality", name)
                continue
            logger.info("Evaluating %s (%s)", name, data.kind)
            scored = _evaluate_one(model, data, dims, batch_size, prompts, calibration, show_progress_bar)
        except Exception as error:  # one bad dataset or image must not throw away the results of the others
            failed[name] = f"{type(error).__name__}: {error}"
            logger.error("Evaluating %s failed: %s", name, failed[name], exc_info=logger.isEnabledFor(logging.DEBUG))
            continue
        results[name], artifacts[name] = scored
    results["_meta"] = {
        "model": model_name,
        "split": split,
        "width": width,
        "dims": dims,
        "prompts": list(prompts),
        "calibration_profiles": calibration.names if calibration is not None else [],
        "seconds": round(time.time() - start, 1),
        "failed": failed,
    }
    return results, artifacts


def dataset_readers(root: str | Path, split: str) -> list[tuple[str, Callable[[], PairData | RetrievalData]]]:
    """``(name, read)`` for each dataset folder under ``root`` that has the ``split``, in folder-name order, as
    :func:`~st_unirep.evaluation.datasets.discover` finds them; ``read()`` reads one, so a malformed dataset raises
    on its own. A missing root or a root without the split raises as ``discover`` does."""
    root = Path(root)
    if not root.is_dir():
        discover(root, split)  # raises its FileNotFoundError naming the root
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    readers = [(folder.name, read) for folder in folders if (read := dataset_reader(folder, split)) is not None]
    if not readers:
        discover(root, split)  # raises its ValueError: no dataset with the split
    return readers


def _evaluate_one(
    model, data: PairData | RetrievalData, dims: list[int], batch_size: int, prompts, calibration, progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every metric of one dataset at full width and each truncation in ``dims``, and its artifacts."""
    query_prompt, document_prompt = prompts
    if isinstance(data, PairData):
        a = encode_texts(model, data.sentences1, batch_size, query_prompt, progress)
        b = encode_texts(model, data.sentences2, batch_size, query_prompt, progress)
        results, artifacts = _pair_metrics(data, a, b, calibration)
        for dim in dims:
            results[f"dim_{dim}"] = _pair_metrics(
                data, metrics.truncate(a, dim), metrics.truncate(b, dim), calibration
            )[0]
        anchors, positives = a, b
    else:
        q = encode_texts(model, data.queries, batch_size, query_prompt, progress)
        corpus_prompt = None if data.image_corpus else document_prompt
        c = encode_texts(model, data.corpus, batch_size, corpus_prompt, progress)
        results = _retrieval_metrics(data, q, c)
        if not data.image_corpus:
            rerank, artifacts = _rerank_pairs(data, q, c, calibration)
            results |= rerank
        else:
            artifacts = {"thresholds": _rerank_pairs(data, q, c)[1]["thresholds"]}
        for dim in dims:
            results[f"dim_{dim}"] = _retrieval_metrics(data, metrics.truncate(q, dim), metrics.truncate(c, dim))
        anchors, positives = q, c[[min(r) for r in data.relevant]]
    if anchors.shape[0] >= 2:
        results["health"] = metrics.embedding_health(anchors, positives)
    return results, artifacts
