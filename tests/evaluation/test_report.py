"""The report's plots, and the pieces a comparison of several runs reuses: the threshold table and the side-by-side
reliability plot."""

from __future__ import annotations

import numpy as np
import pytest

from st_unirep.evaluation import metrics
from st_unirep.evaluation.report import (
    matryoshka_plot,
    reliability_comparison_plot,
    reliability_plot,
    threshold_section,
    threshold_table,
)

PNG = b"\x89PNG\r\n\x1a\n"

ROWS = [
    {"threshold": 0.5, "precision": 0.6, "recall": 0.9, "f1": 0.72, "selected": 30},
    {"threshold": 0.75, "precision": 0.9, "recall": 0.45, "f1": 0.6, "selected": 10},
]


def _results(ece: float, with_profile: bool) -> dict:
    curve = [[0.25, 0.2, 5], [0.75, 0.7, 5]]
    artifacts = {"stsb_en": {"reliability": curve, "thresholds": ROWS}}
    metrics = {"ece": ece}
    if with_profile:
        artifacts["stsb_en"]["reliability@sts"] = curve
        metrics["ece@sts"] = ece / 2
    return {"_meta": {"artifacts": artifacts}, "stsb_en": metrics}


def test_threshold_table_and_section():
    assert threshold_table(ROWS) == [
        "| score ≥ | precision | recall | F1 | selected |",
        "|---|---|---|---|---|",
        "| 0.50 | 0.600 | 0.900 | 0.720 | 30 |",
        "| 0.75 | 0.900 | 0.450 | 0.600 | 10 |",
    ]
    results = _results(0.1, with_profile=False)
    assert threshold_section(results, "stsb_en", "STS-B") == ["**STS-B**", "", *threshold_table(ROWS), ""]
    assert threshold_section(results, "stsb_en", "STS-B", "thresholds@sts") == []
    assert threshold_section(results, "sick_en", "SICK") == []


def test_reliability_comparison_plot_writes_one_png(tmp_path):
    runs = {"minilm untuned": _results(0.2, with_profile=False), "minilm st_unirep": _results(0.1, with_profile=True)}
    path = tmp_path / "reliability.png"
    reliability_comparison_plot(runs, path, {"stsb_en": "sts", "sick_en": "relatedness"}, profiled={"minilm st_unirep"})
    assert path.read_bytes()[:8] == PNG


def test_reliability_ece_is_calibrations_ece():
    rng = np.random.default_rng(0)
    predicted, target = rng.uniform(size=200), rng.uniform(size=200)
    curve = metrics.reliability_curve(predicted, target)
    assert metrics.reliability_ece(curve) == pytest.approx(metrics.calibration(predicted, target)["ece"])
    assert metrics.reliability_ece([(0.25, 0.25, 3), (0.75, 0.75, 1)]) == 0.0  # on the diagonal
    assert metrics.reliability_ece([(0.9, 0.5, 3), (0.5, 0.5, 1)]) == pytest.approx(0.3)  # 3/4 * 0.4


def test_reliability_plot_names_each_curves_ece_and_counts_the_bins(tmp_path):
    rng = np.random.default_rng(1)
    predicted, target = rng.uniform(size=300), rng.uniform(size=300)
    curve = metrics.reliability_curve(predicted, target)
    artifacts = {"stsb_en": {"reliability": curve, "reliability@sts": curve[:4]}, "vnpara_vi": {"thresholds": ROWS}}
    path = tmp_path / "reliability.png"
    fig = reliability_plot(artifacts, path)
    assert path.read_bytes()[:8] == PNG
    diagram, counts = fig.axes  # one graded dataset: its diagram, and the histogram beneath it
    labels = [text.get_text() for text in diagram.get_legend().get_texts()]
    ece = metrics.calibration(predicted, target)["ece"]
    assert labels == [
        "perfect calibration",
        f"(cos+1)/2 (ECE {ece:.3f})",
        f"profile sts (ECE {metrics.reliability_ece(curve[:4]):.3f})",
    ]
    assert [round(bar.get_height()) for bar in counts.patches] == [n for *_, n in curve] + [n for *_, n in curve[:4]]
    assert counts.get_position().y1 < diagram.get_position().y0  # beneath


def _matryoshka_results() -> dict:
    def row(key: str, value: float) -> dict:
        return {key: value, "dim_64": {key: value - 0.1}, "dim_128": {key: value - 0.05}}

    return {
        "_meta": {"width": 256, "dims": [64, 128]},
        "stsb_en": row("spearman", 0.8),
        "sick_en": row("spearman", 0.7),
        "vnpara_vi": row("ap", 0.9),
        "viquad_vi": row("r@1", 0.5) | {"r@5": 0.8},
    }


def test_matryoshka_plot_has_one_panel_per_metric_with_the_widths_as_ticks(tmp_path):
    path = tmp_path / "matryoshka.png"
    fig = matryoshka_plot(_matryoshka_results(), path)
    assert path.read_bytes()[:8] == PNG
    assert len(fig.axes) == 3
    panels = [("Spearman", ["stsb_en", "sick_en"]), ("average precision", ["vnpara_vi"]), ("R@1", ["viquad_vi"])]
    for ax, (metric, datasets) in zip(fig.axes, panels, strict=True):
        assert metric in ax.get_ylabel()
        assert [text.get_text() for text in ax.get_legend().get_texts()] == datasets
        assert [label.get_text() for label in ax.get_xticklabels()] == ["64", "128", "256"]
        assert not ax.xaxis.get_minorticklocs().size
        low, high = ax.get_ylim()
        assert high - low >= 0.1 - 1e-9 and high <= 1.02  # small changes look small; no room far above 1
