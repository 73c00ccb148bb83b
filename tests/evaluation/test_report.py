"""The report pieces a comparison of several runs reuses: the threshold table and the side-by-side reliability plot."""

from __future__ import annotations

from st_unirep.evaluation.report import reliability_comparison_plot, threshold_section, threshold_table

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
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
