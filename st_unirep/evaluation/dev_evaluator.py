"""``DevEvaluator``: the project's evaluation (``st_unirep.evaluation.evaluate``) as a sentence-transformers evaluator,
so the trainer reports dev metrics while training and can keep the best checkpoint."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentence_transformers.base.evaluation import BaseEvaluator

from st_unirep.calibration import find_calibration
from st_unirep.evaluation.datasets import PairData, RetrievalData, dataset_reader
from st_unirep.evaluation.evaluate import _evaluate_one, dataset_readers, prompt_names

logger = logging.getLogger(__name__)

# Metrics for which lower is better (ECE and Brier of any profile, a loss); every other metric: higher is better.
_LOWER_IS_BETTER = re.compile(r"(^|_)(ece|brier)(@[\w.-]+)?$|loss$")


class DevEvaluator(BaseEvaluator):
    """Every metric of :func:`st_unirep.evaluation.evaluate.evaluate` on dev datasets, at full width, as one flat
    dict ``{"<dataset>_<metric>": value}``: graded pairs ``spearman``, ``pearson``, ``ece``, ``brier``; binary pairs
    ``ap``, ``roc_auc``, ``ece``, ``brier``; text retrieval ``r@1``, ``r@5``, ``r@10``, ``mrr@10``, ``ndcg@10`` and
    the reranking ``ece``; text <-> image retrieval the same with ``t2i_`` / ``i2t_`` (e.g. ``ocr_t2i_r@1``). The
    model's calibration profiles, when it has any, add ``ece@<profile>`` / ``brier@<profile>``.

    It is sentence-transformers' ``SentenceEvaluator`` (``BaseEvaluator`` in 6.2): give it to the trainer as
    ``evaluator=`` and every evaluation adds these numbers, prefixed ``eval_``, to the log history, ``report_to``
    and the model card.

    The primary metric (``primary_metric``, the default ``metric_for_best_model``; ``greater_is_better``) is the
    dataset's main metric with one dataset — ``spearman`` (graded), ``ap`` (binary), ``ndcg@10`` (text retrieval),
    ``t2i_ndcg@10`` (text -> image) — and with several, ``score``: the mean of their main metrics.

    Args:
        datasets: The dev sets, as read by :mod:`st_unirep.evaluation.datasets` (names must differ).
        name: A prefix of every key (``"<name>_<dataset>_<metric>"``); "" for none.
        batch_size: Encoding batch size.
        show_progress_bar: Progress bars while encoding.
        write_csv: Append each evaluation's metrics to ``<output_path>/<name or "dev">_results.csv``.

    Example::

        evaluator = DevEvaluator.from_folder("../shared/data", "dev", datasets=["stsb_en", "viquad_vi"])
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                             evaluator=evaluator)
        # args: eval_strategy="steps", load_best_model_at_end=True, metric_for_best_model=evaluator.primary_metric
    """

    def __init__(
        self,
        datasets: Sequence[PairData | RetrievalData],
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
    ) -> None:
        super().__init__()
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("DevEvaluator needs at least one dataset")
        names = [data.name for data in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"DevEvaluator: dataset names must differ, got {names}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
        self.name, self.batch_size = name, batch_size
        self.show_progress_bar, self.write_csv = show_progress_bar, write_csv
        self.greater_is_better = True
        self.primary_metric = self._unprefixed_primary()
        if name:
            self.primary_metric = f"{name}_{self.primary_metric}"

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        split: str = "dev",
        datasets: Sequence[str] | None = None,
        images: bool = True,
        **kwargs: Any,
    ) -> DevEvaluator:
        """The ``split`` of every dataset under ``root`` (a folder of dataset folders in the evaluation layouts, as
        ``../shared/data``), or of ``root`` itself when it is one dataset folder; ``datasets`` names the folders to
        keep (an unknown name is an error listing the found ones). ``images=False`` leaves out text <-> image sets (a
        text-only model). Every file is read now: a malformed one raises ``DataError`` before any training."""
        root = Path(root)
        own = dataset_reader(root, split) if root.is_dir() else None
        readers = [(root.name, own)] if own is not None else dataset_readers(root, split)
        if datasets is not None:
            found = [name for name, _ in readers]
            unknown = [name for name in datasets if name not in found]
            if unknown:
                raise ValueError(f"dev datasets {unknown} have no {split!r} split under {str(root)!r}; found {found}")
            readers = [(name, read) for name, read in readers if name in datasets]
        loaded = [read() for _, read in readers]
        kept = [data for data in loaded if images or not getattr(data, "image_corpus", False)]
        if not kept:
            raise ValueError(f"No {'' if images else 'text-only '}dataset with a {split!r} split under {str(root)!r}")
        return cls(kept, **kwargs)

    @staticmethod
    def main_metric(data: PairData | RetrievalData) -> str:
        """The metric that stands for a dataset: spearman, ap, ndcg@10 or t2i_ndcg@10."""
        if isinstance(data, PairData):
            return "spearman" if data.kind == "graded" else "ap"
        return "t2i_ndcg@10" if data.image_corpus else "ndcg@10"

    @staticmethod
    def greater_is_better_for(metric: str) -> bool:
        """False for the metrics where lower is better (``ece``, ``brier``, ``ece@<profile>``, a loss)."""
        return _LOWER_IS_BETTER.search(metric.removeprefix("eval_")) is None

    def _unprefixed_primary(self) -> str:
        if len(self.datasets) == 1:
            return f"{self.datasets[0].name}_{self.main_metric(self.datasets[0])}"
        return "score"

    def compute_metrics(self, model) -> dict[str, float]:
        """The flat metrics of ``model`` on every dataset, without the evaluator's name prefix."""
        was_training = model.training
        prompts, calibration = prompt_names(model), find_calibration(model)
        out: dict[str, float] = {}
        main = []
        for data in self.datasets:
            results, _ = _evaluate_one(model, data, [], self.batch_size, prompts, calibration, self.show_progress_bar)
            out |= {f"{data.name}_{key}": float(value) for key, value in results.items() if _is_number(value)}
            main.append(out[f"{data.name}_{self.main_metric(data)}"])
        if len(self.datasets) > 1:
            out["score"] = sum(main) / len(main)
        model.train(was_training)
        return out

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        where = f" after {steps} steps" if steps != -1 else ""
        metrics = self.compute_metrics(model)
        if output_path is not None and self.write_csv:
            self._append_csv(Path(output_path), epoch, steps, metrics)
        # debug: in training the console shows one line per evaluation (st_unirep.training.console)
        logger.debug("DevEvaluator%s: %s", where, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _append_csv(self, folder: Path, epoch: float, steps: int, metrics: dict[str, float]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name or 'dev'}_results.csv"
        new = not path.is_file()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", "steps", *metrics])
            writer.writerow([epoch, steps, *metrics.values()])

    @property
    def description(self) -> str:
        return "Dev evaluation"

    def get_config_dict(self) -> dict[str, Any]:
        return {"datasets": [data.name for data in self.datasets]}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = ["DevEvaluator"]
