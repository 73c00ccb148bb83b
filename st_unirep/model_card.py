"""The README.md an st_unirep model saves: :func:`fill_model_card` and the card data it installs.

sentence-transformers writes a model card on every ``model.save`` from ``model.model_card_data``. Its generic card
says "a sentence-transformers model", finds no base model for a local backbone, and shows
``SentenceTransformer("...")``, which refuses st_unirep's modules. :class:`UniRepModelCardData` is ST's own
``SentenceTransformerModelCardData`` with ST's template, used through the hooks ST gives a card data class: the
usage snippet (``run_usage_snippet`` / ``generate_usage_snippet``, which ST documents as the place for other model
types), the default name, and ``to_dict`` (the template's variables), which adds the evaluation numbers to ST's
Evaluation section and the model-index. The card then says: the base model, preset, modules, output width and
Matryoshka dims; ``pip install st-unirep`` and ``st_unirep.load_model``; ``encode_query`` / ``encode_document`` and
the prompts they use (none: prefix-free); the calibrated score ``st_unirep.calibrated_similarity`` with the model's
profiles; the training data and evaluation numbers when given. No Hub request is made (``local_files_only``): the
base model is the backbone's hub id as given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import EvalResult
from huggingface_hub.repocard_data import eval_results_to_model_index
from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

from st_unirep.presets import get_preset

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGE = "st-unirep"  # the distribution name, for ``pip install``
MODEL_ID_PLACEHOLDER = "path/to/this/model"  # the snippet's model id until the model has one (push_to_hub sets it)
EVALUATED_WITH = "st_unirep.evaluation.evaluate"  # the default source of the evaluation numbers, as the card names it
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EXAMPLES = [  # a query, a relevant and an irrelevant document (sentence-transformers' own example)
    "Which planet is known as the Red Planet?",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Venus is often called Earth's twin because of its similar size and proximity.",
]


@dataclass
class UniRepModelCardData(SentenceTransformerModelCardData):
    """sentence-transformers' card data with st_unirep's usage section and evaluation numbers (see the module doc).

    Installed by :func:`fill_model_card` (``build_model`` calls it), which sets the fields below.
    """

    preset: str | None = None  # the st_unirep preset the model was built with (None: unknown)
    overrides: dict[str, Any] = field(default_factory=dict)  # build_model's preset overrides
    backbone: str | None = None  # the backbone as given to build_model (a hub id or a folder)
    training_data: list[dict[str, Any]] = field(default_factory=list)  # [{"name": ..., other keys shown}]
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)  # {dataset: {metric: value}}
    evaluated_with: str = EVALUATED_WITH  # what produced `evaluation` (named in the card)
    calibrated: str | None = field(default=None, init=False, repr=False)  # the snippet's printed calibrated scores

    # ------------------------------------------------------------------ what sentence-transformers calls
    def get_default_model_name(self) -> str:
        name = f"st_unirep {self.preset}" if self.preset else "st_unirep model"
        return f"{name} on {_backbone_name(self.backbone)}" if self.backbone else name

    def run_usage_snippet(self) -> None:
        """Encode the snippet's query and documents; keep the printed similarities and calibrated scores."""
        self.usage_examples = _text_examples(self.usage_examples)
        if not self.generate_widget_examples or self.model is None:
            return
        query, documents = self.usage_examples[:1], self.usage_examples[1:]
        kwargs = {"convert_to_numpy": True, "show_progress_bar": False}
        q, d = self.model.encode_query(query, **kwargs), self.model.encode_document(documents, **kwargs)
        self.similarities = _printed(self.model.similarity(q, d).numpy())
        self.calibrated = _printed(_calibrated(q, d, self.model, _snippet_profile(self.model)).numpy())

    def generate_usage_snippet(self) -> str:
        """Install, load, encode, score, then "About this model": what ST puts under "Direct Usage"."""
        snippet = "```python\n" + "\n".join(self._snippet_lines()) + "\n```"
        return "\n\n".join([_install_text(), snippet, *self._about()]) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """ST's template variables, with :attr:`evaluation` added to its Evaluation section and model-index."""
        data = super().to_dict()
        if self.evaluation:
            data["eval_metrics"] = [
                *(data.get("eval_metrics") or []),
                _eval_section(self.evaluation, self.evaluated_with),
            ]
            data["metrics"] = list(dict.fromkeys([*(data.get("metrics") or []), *_metric_names(self.evaluation)]))
            index = eval_results_to_model_index(self.model_name, _hub_eval_results(self.evaluation))
            if data.get("model-index"):
                data["model-index"][0]["results"].extend(index[0]["results"])
            else:
                data["model-index"] = index
        self._cached_dict = data  # to_yaml reads what to_dict returned
        return data

    # ------------------------------------------------------------------ the usage section
    def _snippet_lines(self) -> list[str]:
        examples = _text_examples(self.usage_examples)
        width = self.model.get_embedding_dimension() if self.model is not None else "?"
        profile = _snippet_profile(self.model)
        lines = [
            "from st_unirep import calibrated_similarity, load_model",
            "",
            f'model = load_model("{self.model_id or MODEL_ID_PLACEHOLDER}")',
            f"queries = [{examples[0]!r}]",
            "documents = [",
            *[f"    {text!r}," for text in examples[1:]],
            "]",
            "query_embeddings = model.encode_query(queries)",
            "document_embeddings = model.encode_document(documents)",
            "print(query_embeddings.shape, document_embeddings.shape)",
            f"# (1, {width}) ({len(examples) - 1}, {width})",
            "",
            "# Cosine similarity: for ranking",
            "print(model.similarity(query_embeddings, document_embeddings))",
            *([self.similarities] if self.similarities else []),
        ]
        if profile is None:
            lines += ["# (cos + 1) / 2: this model has no calibration profiles yet, so this is not calibrated"]
            lines += ["scores = calibrated_similarity(query_embeddings, document_embeddings)"]
        else:
            lines += [f"# Calibrated relevance in [0, 1]: the model's {profile!r} profile (same ranking as the cosine)"]
            lines += ["scores = calibrated_similarity(", "    query_embeddings, document_embeddings,"]
            lines += [f'    model=model, profile="{profile}"', ")"]
        lines += ["print(scores)", *([self.calibrated] if self.calibrated else [])]
        dims = self._matryoshka_dims()
        if dims and isinstance(width, int) and min(dims) < width:
            lines += ["", f"# Matryoshka: the re-normalised {min(dims)}-d prefix, a smaller index for some quality"]
            lines += [f"small = model.encode_document(documents, truncate_dim={min(dims)})"]
        if self.model is not None and "image" in self.model.modalities:
            lines += ["", "# Images: a path, a PIL image, or text with images", "# model.encode_document("]
            lines += ['#     ["receipt.jpg", {"text": "a red car", "image": "car.png"}]', "# )"]
        return lines

    def _about(self) -> list[str]:
        """ "About this model" (base model, preset, modules, width, Matryoshka, prompts, calibration) and the data."""
        items = []
        if self.backbone:
            items.append(f"**Base model:** {_backbone_link(self.backbone)}")
        if self.preset:
            set_ = ", ".join(f"`{key}={value!r}`" for key, value in self.overrides.items())
            items.append(f"**Preset:** `{self.preset}` (`st_unirep.presets`)" + (f", with {set_}" if set_ else ""))
        if self.model is not None:
            items.append("**Modules:** " + " → ".join(f"`{type(module).__name__}`" for module in self.model))
            width = self.model.get_embedding_dimension()
            items.append(f"**Output width:** {width} dimensions, unit-norm; similarity: cosine")
        dims = self._matryoshka_dims()
        items.append(
            f"**Matryoshka dims:** {', '.join(map(str, dims))}: `truncate_dim=d` (constructor, or "
            "`encode(..., truncate_dim=d)`) gives the re-normalised first d dimensions, trained as embeddings too"
            if dims
            else "**Matryoshka dims:** none trained: a truncated embedding (`truncate_dim`) loses more"
        )
        if self.model is not None:
            items.append(_prompts_text(self.model.prompts, _prefix_tokens(self.model)))
            items.append(_calibration_text(self.model))
        sections = ["#### About this model", "\n".join(f"- {item}" for item in items)]
        if self.training_data:
            sections += ["#### Training data\n" + ", ".join(_dataset_text(row) for row in self.training_data)]
        return sections

    def _matryoshka_dims(self) -> list[int]:
        if not self.preset:
            return []
        return sorted(get_preset(self.preset).with_overrides(**self.overrides).matryoshka_dims)


def fill_model_card(
    model: SentenceTransformer,
    *,
    preset: str | None = None,
    backbone: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    train_datasets: Sequence[str | Mapping[str, Any]] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    evaluated_with: str | None = None,
) -> UniRepModelCardData:
    """Make ``model.save`` write st_unirep's model card (README.md) for this model; returns the card data.

    Installs :class:`UniRepModelCardData` as ``model.model_card_data``, keeping every field of the card data the
    model had (e.g. what sentence-transformers' trainer recorded), or updates it if already installed: call it
    again with more (the training data, the evaluation numbers) before a later save. ``None`` leaves a field as it
    is. (A model loaded from a folder re-saves that folder's README.md until it is trained: sentence-transformers'
    own rule.)

    Args:
        model: An st_unirep ``SentenceTransformer``.
        preset: The preset it was built with.
        backbone: The backbone as given to ``build_model``; a hub id is linked and becomes the card's ``base_model``.
        overrides: The ``build_model`` preset overrides (shown, and used for the Matryoshka dims).
        train_datasets: What it was trained on: names, or mappings ``{"name": ..., "task": ..., "size": ...}``
            (every key besides ``name`` is shown as ``key: value``).
        eval_results: ``{dataset: {metric: value}}``, e.g. ``st_unirep.evaluation.evaluate``'s results: each
            dataset's numeric metrics go to the card's Evaluation section and model-index (keys starting with ``_``
            and nested dicts such as ``dim_512`` are skipped).
        evaluated_with: What produced ``eval_results`` (default ``st_unirep.evaluation.evaluate``).
    """
    card = install_card_data(model)
    if preset is not None:
        get_preset(preset).with_overrides(**dict(overrides or {}))  # an unknown preset or override raises here
        card.preset, card.overrides = preset, dict(overrides or {})
        card.add_tags(["st_unirep", f"st_unirep-{preset}"])
    if backbone is not None:
        card.backbone = str(backbone)
        card.base_model = card.backbone if _is_hub_id(card.backbone) else None
    card.model_name = None  # re-derived from the preset and backbone on save
    card.task_name = _task_name(model)
    if train_datasets is not None:
        card.training_data = [_checked_dataset(row) for row in train_datasets]
    if eval_results is not None:
        card.evaluation = _numeric_results(eval_results)
    if evaluated_with is not None:
        card.evaluated_with = evaluated_with
    return card


def install_card_data(model: SentenceTransformer) -> UniRepModelCardData:
    """``model.model_card_data`` as a :class:`UniRepModelCardData` (converted, keeping every field, if it is not)."""
    old = model.model_card_data
    if isinstance(old, UniRepModelCardData):
        return old
    card = UniRepModelCardData(local_files_only=True)  # st_unirep never asks the hub (base model, dataset info)
    skip = {"model", "template_path", "local_files_only"}
    for item in fields(old):
        if item.name not in skip and hasattr(card, item.name):
            setattr(card, item.name, getattr(old, item.name))
    card.register_model(model)
    model.model_card_data = card
    return card


# ---------------------------------------------------------------------------------- helpers
def _is_hub_id(backbone: str) -> bool:
    return bool(_HUB_ID.match(backbone)) and not Path(backbone).exists()


def _backbone_name(backbone: str) -> str:
    return backbone if _is_hub_id(backbone) else Path(backbone).name or backbone


def _backbone_link(backbone: str) -> str:
    return f"[{backbone}](https://huggingface.co/{backbone})" if _is_hub_id(backbone) else f"`{backbone}`"


def _task_name(model: SentenceTransformer) -> str:
    inputs = "text, images and text with images" if "image" in model.modalities else "text"
    return f"retrieval, semantic similarity and calibrated relevance scores of {inputs}"


def _install_text() -> str:
    return (
        "The model's modules are [st_unirep](https://pypi.org/project/st-unirep/)'s: install it as well, and load the "
        "model with `st_unirep.load_model`, which takes those modules from the installed package "
        "(`SentenceTransformer(...)` refuses them without `trust_remote_code=True`).\n\n"
        f"```bash\npip install {PACKAGE}\n```"
    )


def _text_examples(examples: list | None) -> list[str]:
    """The snippet's query and two documents: ``examples`` if they are at least two strings, else ST's own."""
    if examples and len(examples) >= 2 and all(isinstance(item, str) for item in examples):
        return list(examples[:3])
    return list(_EXAMPLES)


def _printed(matrix: np.ndarray) -> str:
    """A matrix as the snippet's output comment, 4 decimals."""
    text = np.array2string(np.asarray(matrix, dtype=np.float64), precision=4, suppress_small=True, floatmode="fixed")
    return "\n".join(f"# {line}" for line in text.splitlines())


def _snippet_profile(model: SentenceTransformer | None) -> str | None:
    """The profile the snippet uses: ``qa``, else a binary one, else the first (with a map for the full width)."""
    from st_unirep.calibration import find_calibration

    calibration = find_calibration(model) if model is not None else None
    if calibration is None or not calibration.names:
        return None
    width = model.get_embedding_dimension()
    usable = [name for name in calibration.names if width in calibration.get(name).maps] or calibration.names
    binary = [name for name in usable if calibration.get(name).target == "binary"]
    return "qa" if "qa" in usable else (binary or usable)[0]


def _calibrated(q: np.ndarray, d: np.ndarray, model: SentenceTransformer, profile: str | None):
    from st_unirep.model import calibrated_similarity

    return calibrated_similarity(q, d, model=model if profile else None, profile=profile)


def _prefix_tokens(model: SentenceTransformer) -> list[str]:
    return list(getattr(model[0], "prefix_tokens", None) or [])


def _prompts_text(prompts: Mapping[str, str] | None, prefix_tokens: list[str]) -> str:
    prompts = prompts or {}
    query = prompts.get("query") or ""
    document = next((prompts[name] for name in ("document", "passage", "corpus") if prompts.get(name)), "")
    if query or document:
        return (
            f"**Prompts:** `encode_query` prepends {query!r} and `encode_document` {document!r}: the backbone's own "
            "prompts, which training kept on the same sides; `encode` adds none unless given `prompt_name`"
        )
    tokens = ", ".join(f"`{token}`" for token in prefix_tokens)
    return (
        "**Prompts:** none. Inference is prefix-free: `encode`, `encode_query` and `encode_document` give the same "
        "vector, queries and documents share one space"
        + (f" (the task prefix tokens {tokens} were put on the inputs in training only)" if prefix_tokens else "")
    )


def _calibration_text(model: SentenceTransformer) -> str:
    from st_unirep.calibration import find_calibration

    calibration = find_calibration(model)
    if calibration is None or not calibration.names:
        return (
            "**Calibrated scores:** no profiles yet; `calibrated_similarity(a, b)` without `model=` is the seeds' "
            "uncalibrated (cos + 1) / 2. Fit profiles on labelled pairs with `python -m st_unirep.calibrate --model "
            "MODEL --data PAIRS.jsonl --profile NAME`"
        )
    described = []
    for name in calibration.names:
        profile = calibration.get(name)
        meaning = "P(relevant)" if profile.target == "binary" else "graded relevance"
        described.append(f"`{name}`: {meaning}, fit on {profile.pairs:,} pairs, widths {profile.widths}")
    return (
        "**Calibrated scores:** `st_unirep.calibrated_similarity(a, b, model=model, profile=NAME)` maps the cosine to "
        f"[0, 1] (same ranking as the cosine); profiles {', '.join(f'`{n}`' for n in calibration.names)} "
        f"({'; '.join(described)})"
    )


def _checked_dataset(row: str | Mapping[str, Any]) -> dict[str, Any]:
    row = {"name": row} if isinstance(row, str) else row
    if not isinstance(row, Mapping) or not isinstance(row.get("name"), str) or not row["name"]:
        raise ValueError(f"Each train_datasets entry must be a name or a mapping with a 'name' string, got {row!r}")
    return dict(row)


def _dataset_text(row: Mapping[str, Any]) -> str:
    extra = [f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}" for key, value in row.items()]
    return f"`{row['name']}`" + (f" ({'; '.join(extra[1:])})" if len(extra) > 1 else "")


def _numeric_results(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The finite numeric metrics of each dataset (``_meta``-like keys and nested dicts skipped)."""
    out: dict[str, dict[str, float]] = {}
    for name, scores in results.items():
        if str(name).startswith("_") or not isinstance(scores, Mapping):
            continue
        kept = {
            key: float(value)
            for key, value in scores.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        if kept:
            out[str(name)] = kept
    return out


def _metric_names(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    return sorted({key for metrics in results.values() for key in metrics})


def _eval_section(results: Mapping[str, Mapping[str, float]], evaluated_with: str) -> dict[str, Any]:
    """One entry of ST's template ``eval_metrics``: a table of datasets (rows) by metrics (columns)."""
    names = _metric_names(results)
    rows = [
        f"| {dataset} | " + " | ".join(f"{metrics[k]:.4f}" if k in metrics else "–" for k in names) + " |"
        for dataset, metrics in results.items()
    ]
    header = "| dataset | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1)
    return {
        "class_name": evaluated_with,
        "description": "st_unirep evaluation",
        "dataset_name": list(results),
        "config_code": "",
        "table": "\n".join([header, *rows]),
    }


def _description(metrics: Mapping[str, float]) -> str:
    if any(key.startswith(("r@", "t2i_", "ndcg")) for key in metrics):
        return "Retrieval"
    if "spearman" in metrics:
        return "Semantic Similarity"
    return "Pair Classification" if "ap" in metrics else "Evaluation"


def _hub_eval_results(results: Mapping[str, Mapping[str, float]]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=_description(metrics).lower().replace(" ", "-"),
            task_name=_description(metrics),
            dataset_type=name,
            dataset_name=name,
            metric_type=key,
            metric_name=key,
            metric_value=value,
        )
        for name, metrics in results.items()
        for key, value in metrics.items()
    ]
