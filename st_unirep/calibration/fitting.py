"""Fitting calibration profiles on labelled pairs and attaching them to a model.

A *source* of labelled pairs is a path (or ``{"path": ..., "score_range": [lo, hi]}``):

- a JSON Lines file of graded pairs ``{"sentence1", "sentence2", "score"}``: the score is mapped to [0, 1] with
  ``score_range`` (default: the known range of the dataset folder, e.g. STS-B 0–5, SICK 1–5; otherwise the
  scores must already lie in [0, 1]);
- a JSON Lines file of binary pairs ``{"sentence1", "sentence2", "label": 0|1}``;
- a retrieval folder (``queries.jsonl``, ``corpus.jsonl``, ``qrels.jsonl``): every (query, corpus item) pair,
  label 1 where the qrels judge it relevant — the question a reranking cut asks.

Pairs are encoded as ``evaluate`` encodes them (the model's query prompt on both sides of a pair; query and
document prompts for retrieval), so a profile fit here is applied to the same kind of cosine.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from st_unirep.calibration.calibration_profile import CalibrationProfile
from st_unirep.errors import DataError

if TYPE_CHECKING:  # the module imports this package's profile class: imported lazily below to avoid a cycle
    from st_unirep.modules.score_calibration import ScoreCalibration

logger = logging.getLogger(__name__)


@dataclass
class LabelledPairs:
    """Cosines of labelled pairs at each width, with their relevance in [0, 1] and kind."""

    source: str
    target: str  # "graded" or "binary"
    cosines: dict[int, np.ndarray]  # width -> (n,)
    values: np.ndarray  # (n,) in [0, 1]


def _source(source: str | Path | dict[str, Any]) -> tuple[Path, tuple[float, float] | None]:
    if isinstance(source, dict):
        unknown = sorted(set(source) - {"path", "score_range"})
        if "path" not in source or unknown:
            raise ValueError(f"A calibration source is a path or {{path, score_range?}}, got {source!r}")
        score_range = source.get("score_range")
        if score_range is not None:
            if len(score_range) != 2 or not float(score_range[0]) < float(score_range[1]):
                raise ValueError(f"score_range of {source['path']!r} must be [lo, hi] with lo < hi, got {score_range}")
            score_range = (float(score_range[0]), float(score_range[1]))
        return Path(source["path"]), score_range
    return Path(source), None


def _prefixes(embeddings: np.ndarray, dims: list[int]) -> dict[int, np.ndarray]:
    from st_unirep.evaluation.metrics import truncate

    return {dim: truncate(embeddings, dim) for dim in dims}


def encode_pairs(model, source: str | Path | dict[str, Any], dims: list[int], batch_size: int = 64) -> LabelledPairs:
    """Read one source, encode it with ``model`` and return the cosines at each width of ``dims``."""
    from st_unirep.evaluation.datasets import SCORE_RANGES, read_pairs, read_text_retrieval
    from st_unirep.evaluation.evaluate import encode_texts, prompt_names

    path, score_range = _source(source)
    if not path.exists():
        raise FileNotFoundError(f"Calibration data {str(path)!r} does not exist")
    query_prompt, document_prompt = prompt_names(model)
    if path.is_dir():
        if not (path / "queries.jsonl").is_file():
            raise ValueError(f"{path}: a calibration folder must be a retrieval split (queries/corpus/qrels.jsonl)")
        data = read_text_retrieval(path, path.name)
        queries = _prefixes(encode_texts(model, data.queries, batch_size, query_prompt), dims)
        corpus = _prefixes(encode_texts(model, data.corpus, batch_size, document_prompt), dims)
        labels = np.zeros((len(data.queries), len(data.corpus)))  # (queries, corpus)
        for row, items in enumerate(data.relevant):
            labels[row, list(items)] = 1.0
        cosines = {dim: (queries[dim] @ corpus[dim].T).ravel() for dim in dims}
        return LabelledPairs(str(path), "binary", cosines, labels.ravel())
    name = path.parent.name if path.parent.name not in ("", ".") else path.stem
    guessed = score_range is None and name not in SCORE_RANGES
    try:  # an unknown graded set must state its range unless its scores are already in [0, 1]
        data = read_pairs(path, name, (0.0, 1.0) if guessed else score_range)
    except DataError as error:
        if guessed and error.field == "score" and "expected a number in" in str(error):
            raise DataError(
                error.path,
                error.line,
                "score",
                f"{str(error).split(': ', 2)[-1]}; scores on another "
                "scale need their range: score_range [lo, hi] (--score_range LO HI)",
            ) from error
        raise
    a = _prefixes(encode_texts(model, data.sentences1, batch_size, query_prompt), dims)
    b = _prefixes(encode_texts(model, data.sentences2, batch_size, query_prompt), dims)
    cosines = {dim: (a[dim] * b[dim]).sum(axis=1) for dim in dims}
    gold = np.asarray(data.gold, dtype=np.float64)
    if data.kind == "binary":
        return LabelledPairs(str(path), "binary", cosines, gold)
    lo, hi = data.score_range
    return LabelledPairs(str(path), "graded", cosines, (gold - lo) / (hi - lo))


def fit_profiles(
    model,
    spec: dict[str, list[str | Path | dict[str, Any]]],
    dims: list[int] | None = None,
    batch_size: int = 64,
) -> list[CalibrationProfile]:
    """Fit one profile per ``spec`` entry (``{name: [source, ...]}``), each source encoded once for all profiles.

    A profile's sources must be all graded or all binary. ``dims``: the embedding widths to fit (default: the
    model's width and its evaluation prefixes, ``evaluation.evaluate.default_dims``).
    """
    from st_unirep.evaluation.evaluate import default_dims

    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"Calibration spec must map profile names to lists of sources, got {spec!r}")
    width = model.get_embedding_dimension()
    dims = sorted({width, *(default_dims(width) if dims is None else dims)})
    bad = [d for d in dims if not isinstance(d, int) or not 0 < d <= width]
    if bad:
        raise ValueError(f"Calibration dims must be ints in [1, {width}], got {bad}")
    cache: dict[str, LabelledPairs] = {}
    profiles = []
    for name, sources in spec.items():
        if isinstance(sources, (str, Path, dict)):
            sources = [sources]
        if not sources:
            raise ValueError(f"Calibration profile {name!r} has no sources")
        parts = []
        for source in sources:
            key = json.dumps(source, sort_keys=True, default=str)
            if key not in cache:
                logger.info("Calibration: encoding %s", source)
                cache[key] = encode_pairs(model, source, dims, batch_size)
            parts.append(cache[key])
        kinds = {part.target for part in parts}
        if len(kinds) > 1:
            raise ValueError(
                f"Calibration profile {name!r} mixes graded and binary sources: "
                + ", ".join(f"{p.source} ({p.target})" for p in parts)
            )
        cosines = {dim: np.concatenate([p.cosines[dim] for p in parts]) for dim in dims}
        values = np.concatenate([p.values for p in parts])
        profiles.append(CalibrationProfile.fit(name, cosines, values, kinds.pop(), tuple(p.source for p in parts)))
        logger.info("Calibration profile %r: %d pairs, widths %s", name, values.size, dims)
    return profiles


def find_calibration(model) -> ScoreCalibration | None:
    """The ``ScoreCalibration`` module of a SentenceTransformer, if it has one."""
    from st_unirep.modules.score_calibration import ScoreCalibration

    return next((module for module in model.children() if isinstance(module, ScoreCalibration)), None)


def attach_profiles(model, profiles: list[CalibrationProfile]) -> ScoreCalibration:
    """Add (or replace) ``profiles`` in the model's ``ScoreCalibration``, appending the module if it has none."""
    from st_unirep.modules.score_calibration import ScoreCalibration

    calibration = find_calibration(model)
    if calibration is None:
        calibration = ScoreCalibration()
        model.append(calibration)
    for profile in profiles:
        calibration.add(profile)
    return calibration


def calibration_entry(modules: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``ScoreCalibration`` entry of a model folder's ``modules.json`` list, if it has one."""
    return next((m for m in modules if m.get("type", "").rsplit(".", 1)[-1] == "ScoreCalibration"), None)


def load_calibration(path: str | Path) -> ScoreCalibration | None:
    """The ``ScoreCalibration`` saved in a model folder (without loading the model's weights), or None."""
    from st_unirep.modules.score_calibration import ScoreCalibration

    path = Path(path)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a sentence-transformers model folder (no modules.json)")
    entry = calibration_entry(json.loads(modules_file.read_text(encoding="utf-8")))
    return None if entry is None else ScoreCalibration.load(str(path), subfolder=entry.get("path", ""))
