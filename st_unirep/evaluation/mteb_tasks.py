"""The evaluation layouts of :mod:`st_unirep.evaluation.datasets` as ``mteb`` (2.x) tasks, read from local files.

``build_mteb_tasks(root, split)`` gives one task per dataset that ``discover(root, split)`` finds, nothing is fetched
from the hub:

- graded pairs → an ``AbsTaskSTS`` (``min_score``/``max_score`` from ``PairData.score_range``; main score
  ``cosine_spearman``);
- binary pairs → an ``AbsTaskPairClassification`` (main score ``cosine_ap``);
- text retrieval → an ``AbsTaskRetrieval`` of type ``"Retrieval"`` (``t2t``; main score ``ndcg_at_10``);
- caption/receipt ↔ image retrieval → two ``AbsTaskRetrieval`` tasks of type ``"Any2AnyRetrieval"`` (mteb 2.x has
  no separate any-to-any class: the task type, ``category`` and ``modalities`` make a retrieval task
  multimodal), ``<name>_t2i`` (text queries, image corpus) and ``<name>_i2t`` (the reverse, as ``evaluate`` does).

``mteb_model(model)`` wraps a ``SentenceTransformer`` in mteb's own ``SentenceTransformerEncoderWrapper`` with
its ``ModelMeta.modalities`` set from ``model.modalities`` (mteb's default meta for a model object says text
only, which makes ``mteb.evaluate`` refuse image tasks and drop the image column of a batch).
``run_mteb(model, root, split, model_name=...)`` runs ``mteb.evaluate`` on the tasks and returns the scores under the
metric names of :func:`st_unirep.evaluation.evaluate.evaluate`, so the two can be compared directly. mteb files its
results under the model's name (``<output>/results/<org>__<name>/<revision>/<task>.json``);
``mteb_model_name(path)`` makes one from a model folder, so two models' results do not overwrite each other.

They agree (to mteb's 5-decimal rounding) on every metric defined the same way, with one difference in the input:
mteb strips leading and trailing whitespace from corpus texts (``_corpus_to_dict`` in
``mteb/_create_dataloaders.py``), ``evaluate`` embeds them as written, so a passage ending in a space (one in
``viqa_regwiki_vi`` dev does) embeds slightly differently and can move a ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, get_args

import datasets
import mteb
from mteb.abstasks import AbsTask, AbsTaskPairClassification, AbsTaskRetrieval, AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import SentenceTransformerEncoderWrapper
from mteb.types import Modalities

from st_unirep._compat import mteb_declare_model_meta, mteb_retrieval_split
from st_unirep.evaluation.datasets import (
    PairData,
    RetrievalData,
    discover,
    read_image_retrieval,
    read_pairs,
    read_text_retrieval,
)

logger = logging.getLogger(__name__)

Reader = Callable[[], "PairData | RetrievalData"]

# ISO 639-3 + ISO 15924 (what TaskMetadata.eval_langs accepts) by the dataset name's language suffix.
LANGUAGES = {"en": "eng-Latn", "vi": "vie-Latn", "zh": "cmn-Hans"}
UNKNOWN_LANGUAGE = "und-Zyyy"
RETRIEVAL_KS = (1, 5, 10)


def _language(name: str) -> str:
    return LANGUAGES.get(name.rsplit("_", 1)[-1], UNKNOWN_LANGUAGE)


def _reader(folder: Path, split: str) -> Reader:
    """The reader ``discover`` uses for ``folder`` (same precedence), as a call that re-reads the files."""
    name, split_dir = folder.name, folder / split
    if (folder / f"{split}.jsonl").is_file():
        return partial(read_pairs, folder / f"{split}.jsonl", name)
    if (split_dir / "queries.jsonl").is_file():
        return partial(read_text_retrieval, split_dir, name)
    if (split_dir / "captions.jsonl").is_file():
        return partial(read_image_retrieval, split_dir / "captions.jsonl", name, "caption")
    if (split_dir / "manifest.jsonl").is_file():
        return partial(read_image_retrieval, split_dir / "manifest.jsonl", name, "full_text")
    raise FileNotFoundError(f"{str(folder)!r} has no {split!r} split in a known layout")


def _metadata(name: str, source: Path, split: str, description: str, **fields: Any) -> TaskMetadata:
    """TaskMetadata for a local dataset: the ``dataset`` path is the local folder, the revision a placeholder
    (``load_data`` never passes them to ``datasets.load_dataset``)."""
    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": str(source), "revision": "local"},
        eval_splits=[split],
        eval_langs=[_language(source.name)],
        license="not specified",
        **fields,
    )


class _LocalTask:
    """Mixin: ``load_data`` re-reads the local files with the ``datasets`` reader stored on the task class."""

    read_local: Reader  # set (as a staticmethod) on each task class by ``_task``

    def _read(self) -> PairData | RetrievalData:
        return self.read_local()


class LocalSTSTask(_LocalTask, AbsTaskSTS):
    """Graded sentence pairs as an mteb STS task; scores are normalised with ``PairData.score_range``."""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Read the pairs file into ``{split: Dataset(sentence1, sentence2, score)}``."""
        if self.data_loaded:
            return
        data = self._read()
        self.min_score, self.max_score = data.score_range
        rows = {"sentence1": data.sentences1, "sentence2": data.sentences2, "score": data.gold}
        self.dataset = datasets.DatasetDict({self.metadata.eval_splits[0]: datasets.Dataset.from_dict(rows)})
        self.data_loaded = True


class LocalPairClassificationTask(_LocalTask, AbsTaskPairClassification):
    """Binary (0/1) sentence pairs as an mteb pair-classification task."""

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Read the pairs file into ``{split: Dataset(sentence1, sentence2, labels)}``."""
        if self.data_loaded:
            return
        data = self._read()
        rows = {"sentence1": data.sentences1, "sentence2": data.sentences2, "labels": [int(g) for g in data.gold]}
        self.dataset = datasets.DatasetDict({self.metadata.eval_splits[0]: datasets.Dataset.from_dict(rows)})
        self.data_loaded = True


class LocalRetrievalTask(_LocalTask, AbsTaskRetrieval):
    """Text retrieval (``direction="t2t"``) or image retrieval (``"t2i"``: caption queries, image corpus;
    ``"i2t"``: image queries, caption corpus) over the local files. Every relevant item has gain 1."""

    direction: str = "t2t"

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Read the files into mteb's ``{"default": {split: RetrievalSplitData}}``."""
        if self.data_loaded:
            return
        data = self._read()
        texts = [f"text-{i}" for i in range(len(data.queries))]
        items = [f"item-{j}" for j in range(len(data.corpus))]
        pairs = [(i, j) for i, relevant in enumerate(data.relevant) for j in sorted(relevant)]
        text_side = datasets.Dataset.from_dict({"id": texts, "text": data.queries})
        if data.image_corpus:  # image paths, decoded to PIL images by the datasets Image feature
            item_side = datasets.Dataset.from_dict({"id": items, "image": data.corpus})
            item_side = item_side.cast_column("image", datasets.Image())
        else:
            item_side = datasets.Dataset.from_dict({"id": items, "text": data.corpus})
        if self.direction == "i2t":
            queries, corpus = item_side, text_side
            relevant_docs: dict[str, dict[str, int]] = {}
            for i, j in pairs:
                relevant_docs.setdefault(items[j], {})[texts[i]] = 1
        else:
            queries, corpus = text_side, item_side
            relevant_docs = {}
            for i, j in pairs:
                relevant_docs.setdefault(texts[i], {})[items[j]] = 1
        split = mteb_retrieval_split(corpus=corpus, queries=queries, relevant_docs=relevant_docs)
        self.dataset = {"default": {self.metadata.eval_splits[0]: split}}
        self.data_loaded = True


def _task(base: type[AbsTask], metadata: TaskMetadata, read: Reader, **attributes: Any) -> AbsTask:
    """An instance of a fresh subclass of ``base`` carrying ``metadata`` as a class attribute (mteb restores the
    class metadata when it unloads a task's data, so it cannot live on the instance only)."""
    class_name = f"{base.__name__}_{metadata.name}"
    cls = type(class_name, (base,), {"metadata": metadata, "read_local": staticmethod(read), **attributes})
    return cls()


def build_mteb_tasks(root: str | Path, split: str = "dev") -> list[AbsTask]:
    """One mteb task per dataset ``discover(root, split)`` finds (two for an image dataset: ``<name>_t2i`` and
    ``<name>_i2t``), each reading its local files in ``load_data``.

    Args:
        root: A folder in the layout of ``st_unirep.evaluation.datasets``.
        split: The split to read (``dev``, ``test``, ...).

    Returns:
        mteb task objects, ready for ``mteb.evaluate``.
    """
    root = Path(root)
    tasks: list[AbsTask] = []
    for data in discover(root, split):
        folder = root / data.name
        read = _reader(folder, split)
        if isinstance(data, PairData) and data.kind == "graded":
            lo, hi = data.score_range
            metadata = _metadata(
                data.name,
                folder,
                split,
                f"Graded sentence pairs (score {lo:g}-{hi:g}) from the local folder {data.name}.",
                type="STS",
                category="t2t",
                modalities=["text"],
                main_score="cosine_spearman",
            )
            tasks.append(_task(LocalSTSTask, metadata, read, min_score=lo, max_score=hi))
        elif isinstance(data, PairData):
            metadata = _metadata(
                data.name,
                folder,
                split,
                f"Binary sentence pairs (1 = positive) from the local folder {data.name}.",
                type="PairClassification",
                category="t2t",
                modalities=["text"],
                main_score="cosine_ap",
            )
            tasks.append(_task(LocalPairClassificationTask, metadata, read))
        elif not data.image_corpus:
            metadata = _metadata(
                data.name,
                folder,
                split,
                f"Query to passage retrieval from the local folder {data.name}.",
                type="Retrieval",
                category="t2t",
                modalities=["text"],
                main_score="ndcg_at_10",
            )
            tasks.append(_task(LocalRetrievalTask, metadata, read, direction="t2t"))
        else:
            for direction, what in (("t2i", "Text to image"), ("i2t", "Image to text")):
                metadata = _metadata(
                    f"{data.name}_{direction}",
                    folder,
                    split,
                    f"{what} retrieval from the local folder {data.name}.",
                    type="Any2AnyRetrieval",
                    category=direction,
                    modalities=["text", "image"],
                    task_subtypes=["Image Text Retrieval"],
                    main_score="ndcg_at_10",
                )
                tasks.append(_task(LocalRetrievalTask, metadata, read, direction=direction))
    return tasks


# mteb's placeholder for a model without a name (``ModelMeta.create_empty``, mteb 2.x; tests/test_compat.py checks it):
# results filed under it overwrite each other.
MTEB_NO_NAME = "no_model_name/available"
# The folder a training run saves its model in (``st_unirep.training.run_layout.RunLayout.model``): a model at
# ``<run>/model`` takes its name from the run folder.
RUN_MODEL_FOLDER = "model"


def mteb_model_name(model_path: str | Path) -> str:
    """The ``organization/model_name`` mteb files a model's results under, from where the model was loaded.

    A local folder gives ``<parent folder>/<folder>``, the folder being the training run's when the model sits in a
    run's ``model/`` (``compare/minilm/st_unirep/model`` → ``minilm/st_unirep``); a hub id ``org/name`` is kept, a
    bare id ``name`` becomes ``local/name``.
    """
    path = Path(model_path)
    if path.is_dir():
        path = path.resolve()
        if path.name == RUN_MODEL_FOLDER and path.parent.name:
            path = path.parent
        parent = path.parent.name or "local"
        return f"{parent}/{path.name}".replace(" ", "_")
    name = str(model_path).strip("/")
    return name if "/" in name else f"local/{name}"


def mteb_model(model: Any, name: str | None = None) -> SentenceTransformerEncoderWrapper:
    """Wrap a ``SentenceTransformer`` for ``mteb.evaluate``, declaring the modalities it encodes.

    mteb builds the wrapper's ``ModelMeta`` with ``modalities=["text"]`` whatever the model is; ``mteb.evaluate``
    checks task modalities against it and the wrapper keeps only those modalities of each batch. Here they are
    the mteb modalities (text, image, audio, video) that ``model.modalities`` lists, so an st_unirep model with
    a vision backbone is text- and image-capable.

    Args:
        model: A ``SentenceTransformer`` (e.g. ``SentenceTransformer(path, trust_remote_code=True)``).
        name: The model name mteb records (``"org/name"``); default: the model card's name or mteb's placeholder.
    """
    wrapper = SentenceTransformerEncoderWrapper(model)
    supported = [m for m in get_args(Modalities) if m in getattr(model, "modalities", ["text"])] or ["text"]
    update: dict[str, Any] = {"modalities": supported}
    if name is not None:
        update["name"] = _checked_name(name)
    return mteb_declare_model_meta(wrapper, **update)


def _checked_name(name: str) -> str:
    """``name``, if mteb accepts it as a model name (``ModelMeta``'s check, which ``model_copy`` skips)."""
    if "/" not in name:
        raise ValueError(f"mteb model names are 'organization/model_name', got {name!r}")
    return name


def _our_names(scores: dict[str, Any], task: AbsTask) -> dict[str, float]:
    """mteb's scores of one task under the metric names of ``st_unirep.evaluation.evaluate``."""
    out = {"main_score": float(scores["main_score"])}
    task_type = task.metadata.type
    if task_type == "STS":
        out |= {"spearman": scores["cosine_spearman"], "pearson": scores["cosine_pearson"]}
    elif task_type == "PairClassification":
        out |= {"ap": scores["cosine_ap"]}
    else:
        # mteb's hit_rate_at_k (pytrec_eval "success") is our r@k: a query counts if any relevant item is in the
        # top k. mteb's recall_at_k is the fraction of a query's relevant items in the top k, kept as recall@k;
        # the two coincide when every query has exactly one relevant item.
        out |= {"ndcg@10": scores["ndcg_at_10"], "mrr@10": scores["mrr_at_10"], "map@10": scores["map_at_10"]}
        out |= {f"r@{k}": scores[f"hit_rate_at_{k}"] for k in RETRIEVAL_KS}
        out |= {f"recall@{k}": scores[f"recall_at_{k}"] for k in RETRIEVAL_KS}
    return {key: float(value) for key, value in out.items()}


def _named_wrapper(model: Any, name: str | None) -> Any:
    """``model`` wrapped with :func:`mteb_model` (unless it is an mteb encoder already), its meta named ``name``."""
    if not hasattr(model, "mteb_model_meta"):
        return mteb_model(model, name)
    if name is not None:
        mteb_declare_model_meta(model, name=_checked_name(name))
    return model


def run_mteb(
    model: Any,
    root: str | Path,
    split: str = "dev",
    output_folder: str | Path | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    model_name: str | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` with ``mteb.evaluate`` on every dataset under ``root``.

    Args:
        model: A ``SentenceTransformer`` (wrapped with :func:`mteb_model`) or an already wrapped mteb encoder.
        root: A folder in the layout of ``st_unirep.evaluation.datasets``.
        split: The split to evaluate.
        output_folder: Where mteb writes its result JSON files (a ``ResultCache``); ``None``: nothing is written.
        batch_size: Encoding batch size.
        show_progress_bar: Show mteb's and the encoder's progress bars.
        model_name: The ``organization/model_name`` mteb files the results under (``<output_folder>/results/
            <organization>__<model_name>/``), e.g. ``mteb_model_name(model_path)``; default: the name the model (or
            the wrapper's ``ModelMeta``) already has. With an ``output_folder``, a model without any name is an
            error: mteb would file every such model's results in one folder, each overwriting the last.

    Returns:
        ``{dataset name: {metric: value}}`` keyed like ``evaluate``'s results: STS ``spearman``/``pearson``
        (cosine), binary pairs ``ap`` (cosine), retrieval ``ndcg@10``, ``mrr@10``, ``map@10``, ``r@k`` (hit rate),
        ``recall@k`` (mteb's fraction of relevant items), each with mteb's ``main_score``. An image dataset's two
        tasks are merged under its name with ``t2i_`` / ``i2t_`` prefixes; image tasks are skipped when the
        model has no image modality.
    """
    wrapped = _named_wrapper(model, model_name)
    if output_folder is not None and wrapped.mteb_model_meta.name in (None, MTEB_NO_NAME):
        raise ValueError(
            "run_mteb needs a model_name ('organization/model_name', e.g. mteb_model_name(model_path)) to write "
            f"results to {str(output_folder)!r}: without one mteb files them under {MTEB_NO_NAME!r}, where each "
            "model's results overwrite the last's"
        )
    tasks = build_mteb_tasks(root, split)
    if "image" not in wrapped.mteb_model_meta.modalities:
        for task in tasks:
            if "image" in task.metadata.modalities:
                logger.info("Skipping %s: the model has no image modality", task.metadata.name)
        tasks = [task for task in tasks if "image" not in task.metadata.modalities]
    if not tasks:  # mteb.evaluate fails on an empty task list (UnboundLocalError in mteb 2.26)
        return {}
    result = mteb.evaluate(
        wrapped,
        tasks,
        cache=mteb.ResultCache(output_folder) if output_folder is not None else None,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
        show_progress_bar=show_progress_bar,
        co2_tracker=False,
    )
    by_name = {task.metadata.name: task for task in tasks}
    out: dict[str, dict[str, float]] = {}
    for task_result in result.task_results:
        task = by_name[task_result.task_name]
        (scores,) = [s for s in task_result.scores[split] if s["hf_subset"] == "default"]
        metrics = _our_names(scores, task)
        if task.metadata.type == "Any2AnyRetrieval":
            name, direction = task.metadata.name.rsplit("_", 1)
            out.setdefault(name, {}).update({f"{direction}_{key}": value for key, value in metrics.items()})
        else:
            out[task.metadata.name] = metrics
    return out
