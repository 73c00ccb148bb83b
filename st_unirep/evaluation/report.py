"""The report of an evaluation run (``results.json``, ``report.md`` and two PNG plots), and the pieces a comparison
of several runs reuses: the threshold table of a calibrated score and the side-by-side reliability plot."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator  # noqa: E402

from st_unirep.evaluation import metrics  # noqa: E402

# The one metric per dataset kind that the summary table and the Matryoshka curve show.
HEADLINE = ("spearman", "ap", "r@1", "t2i_r@1")
COLUMNS = [
    "spearman",
    "pearson",
    "ece",
    "brier",
    "ap",
    "roc_auc",
    "r@1",
    "r@5",
    "r@10",
    "mrr@10",
    "ndcg@10",
    "t2i_r@1",
    "t2i_r@10",
    "i2t_r@1",
    "i2t_r@10",
]


def _headline(metrics: dict[str, Any]) -> str | None:
    return next((key for key in HEADLINE if key in metrics), None)


# How each headline metric is named on the y axis of its Matryoshka panel.
METRIC_LABELS = {
    "spearman": "Spearman ρ (cosine vs gold)",
    "ap": "average precision (cosine)",
    "r@1": "R@1 (text retrieval)",
    "t2i_r@1": "R@1 (text → image)",
}

# The least y range of a Matryoshka panel, so that small differences look small.
MIN_METRIC_SPAN = 0.1


def _reliability_curves(artifact: dict[str, Any]) -> list[tuple[str, list[list[float]]]]:
    """A dataset's reliability curves: the seeds' (cos+1)/2 first, then each calibration profile's."""
    curves = [("(cos+1)/2", artifact["reliability"])] if artifact.get("reliability") else []
    profiles = sorted(key for key in artifact if key.startswith("reliability@") and artifact[key])
    return curves + [(f"profile {key.split('@', 1)[1]}", artifact[key]) for key in profiles]


def _reliability_panel(ax: Any, counts_ax: Any, dataset: str, curves: list[tuple[str, list[list[float]]]]) -> None:
    """One dataset's diagram on ``ax`` (a curve per score, its ECE in the legend) and the pairs per bin beneath."""
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    width = 0.08 / len(curves)
    for i, (label, curve) in enumerate(curves):
        xs, ys, counts = zip(*curve, strict=True)
        ece = metrics.reliability_ece(curve)
        (line,) = ax.plot(xs, ys, "o-" if i == 0 else "s--", markersize=4, label=f"{label} (ECE {ece:.3f})")
        offset = (i - (len(curves) - 1) / 2) * width
        counts_ax.bar([x + offset for x in xs], counts, width=width, color=line.get_color())
    ax.set_title(f"{dataset}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    counts_ax.set_yscale("log")
    counts_ax.set_xlabel("score (bin mean)")


def reliability_plot(artifacts: dict[str, Any], path: Path) -> Figure:
    """Reliability diagrams of the graded datasets' scores, one column per dataset, written to ``path`` (PNG).

    Each column: the bin mean of the gold score (mapped to [0, 1]) against the bin mean of each score, the seeds'
    (cos+1)/2 and every calibration profile's, with its ECE (:func:`st_unirep.evaluation.metrics.reliability_ece`,
    10 equal-width bins) in the legend; beneath, the pairs in each bin (log scale), one bar per score under its
    point. Returns the figure (closed).
    """
    panels = {name: curves for name, artifact in artifacts.items() if (curves := _reliability_curves(artifact))}
    columns = max(len(panels), 1)
    fig, axes = plt.subplots(
        2, columns, figsize=(4.6 * columns, 6), squeeze=False, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for column, (name, curves) in enumerate(panels.items()):
        _reliability_panel(axes[0, column], axes[1, column], name, curves)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no graded dataset", ha="center", va="center")
    axes[0, 0].set_ylabel("gold score mapped to [0, 1] (bin mean)")
    axes[1, 0].set_ylabel("pairs per bin")
    fig.suptitle("Reliability of the calibrated scores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def matryoshka_plot(results: dict[str, Any], path: Path) -> Figure:
    """Each dataset's headline metric by Matryoshka truncation width, one panel per metric (named on its y axis),
    the widths as the x tick labels; written to ``path`` (PNG). Returns the figure (closed)."""
    width, dims = results["_meta"]["width"], results["_meta"]["dims"]
    xs = [*dims, width]
    by_metric: dict[str, list[str]] = {}
    for name, metrics_ in results.items():
        key = None if name == "_meta" else _headline(metrics_)
        if key is not None:
            by_metric.setdefault(key, []).append(name)
    panels = sorted(by_metric, key=HEADLINE.index)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=False):
        for name in by_metric[key]:
            ys = [results[name][f"dim_{d}"][key] for d in dims] + [results[name][key]]
            ax.plot(xs, ys, "o-", markersize=4, label=name)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_major_formatter(FixedFormatter([str(x) for x in xs]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("embedding dimensions")
        ax.set_ylabel(METRIC_LABELS.get(key, key))
        low, high = ax.get_ylim()
        if high - low < MIN_METRIC_SPAN:  # a 0.01 change should not fill the panel
            top = min((low + high + MIN_METRIC_SPAN) / 2, 1.0 + MIN_METRIC_SPAN / 10)  # no room far above 1
            ax.set_ylim(top - MIN_METRIC_SPAN, top)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Quality by Matryoshka truncation width")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def threshold_table(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of a threshold sweep of a score (``evaluate``'s ``thresholds`` artifacts): precision,
    recall, F1 and the number of pairs selected at each cut."""
    lines = ["| score ≥ | precision | recall | F1 | selected |", "|---|---|---|---|---|"]
    return lines + [
        f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['selected']} |"
        for r in rows
    ]


def threshold_section(results: dict[str, Any], dataset: str, title: str, key: str = "thresholds") -> list[str]:
    """``**title**`` over the threshold table ``key`` of ``dataset`` in a run's results (its artifacts under
    ``results["_meta"]["artifacts"]``, as ``eval/compare.py`` keeps them), then a blank line; nothing when the run
    has no such table."""
    rows = results["_meta"]["artifacts"].get(dataset, {}).get(key)
    if not rows:
        return []
    return [f"**{title}**", "", *threshold_table(rows), ""]


def reliability_comparison_plot(
    runs: dict[str, dict[str, Any]], path: Path, profiles: dict[str, str], profiled: Collection[str] = ()
) -> Figure:
    """Reliability curves of several runs, one panel per graded dataset (the keys of ``profiles``): the seeds'
    (cos+1)/2 for every run, and the dataset's calibration profile ``profiles[dataset]`` for the runs named in
    ``profiled``. ``runs`` maps a label to a run's results, with its artifacts under ``results["_meta"]["artifacts"]``.
    Returns the figure (closed).
    """
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 5), sharey=True)
    for ax, (dataset, profile) in zip(axes, profiles.items(), strict=True):
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for run, results in runs.items():
            artifacts = results["_meta"]["artifacts"].get(dataset, {})
            curves = [("reliability", "ece", "(cos+1)/2", "o-")]
            if run in profiled:
                curves.append((f"reliability@{profile}", f"ece@{profile}", f"profile {profile}", "s--"))
            for key, metric, label, style in curves:
                curve = artifacts.get(key)
                if curve:
                    ax.plot(
                        [p for p, _, _ in curve],
                        [t for _, t, _ in curve],
                        style,
                        markersize=3,
                        label=f"{run}, {label} (ECE {results[dataset][metric]:.3f})",
                    )
        ax.set_title(f"{dataset} dev")
        ax.set_xlabel("score")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("gold score mapped to [0, 1] (bin mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def write_report(results: dict[str, Any], artifacts: dict[str, Any], output: str | Path, model_name: str) -> Path:
    """Write ``results.json``, ``reliability.png``, ``matryoshka.png`` and ``report.md`` into ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    reliability_plot(artifacts, output / "reliability.png")
    matryoshka_plot(results, output / "matryoshka.png")
    meta = results["_meta"]
    names = [n for n in results if n != "_meta"]
    used = [c for c in COLUMNS if any(c in results[n] for n in names)]
    failed = meta.get("failed") or {}
    lines = [
        f"# Evaluation of `{model_name}`",
        "",
        f"Split `{meta['split']}`, width {meta['width']}, truncations {meta['dims']}, {meta['seconds']} s."
        + (f" **{len(failed)} dataset(s) failed** (see Failed datasets below)." if failed else ""),
        "",
        "| dataset | " + " | ".join(used) + " |",
        "|---|" + "---|" * len(used),
    ]
    for name in names:
        cells = [f"{results[name][c]:.3f}" if c in results[name] else "" for c in used]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    profiled = sorted({k for n in names for k in results[n] if k.startswith("ece@")})
    if profiled:
        lines += ["", "Calibrated scores of the model's profiles (ECE, 10 bins; seed = (cos+1)/2):", ""]
        lines += ["| dataset | ECE seed | " + " | ".join(profiled) + " |", "|---|---|" + "---|" * len(profiled)]
        for name in names:
            cells = [f"{results[name][k]:.3f}" if k in results[name] else "" for k in ["ece", *profiled]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "ECE: 10 equal-width bins of the score against the gold score mapped to [0, 1] (binary and retrieval sets:",
        "against the 0/1 label of every pair); seed: (cos+1)/2, `ece@p`: the model's calibration profile p.",
        "brier: mean squared difference of the same. r@k: share of queries with a relevant item in the top k.",
        "",
        "## Matryoshka",
        "",
        "| dataset | metric | " + " | ".join(str(d) for d in meta["dims"]) + f" | {meta['width']} |",
        "|---|---|" + "---|" * (len(meta["dims"]) + 1),
    ]
    for name in names:
        key = _headline(results[name])
        if key:
            values = [results[name][f"dim_{d}"][key] for d in meta["dims"]] + [results[name][key]]
            lines.append(f"| {name} | {key} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", "![Matryoshka](matryoshka.png)", "", "## Calibration", "", "![Reliability](reliability.png)", ""]
    for name, artifact in artifacts.items():
        for key in sorted(k for k in artifact if k.startswith("thresholds")):
            score = "(cos+1)/2" if key == "thresholds" else f"profile {key.split('@', 1)[1]!r}"
            lines += [f"### Calibrated-score thresholds on {name}: {score}", "", *threshold_table(artifact[key]), ""]
    lines += [
        "## Embedding health",
        "",
        "| dataset | std | sim p50 | sim p95 | positive−negative gap |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        health = results[name].get("health")
        if health:
            lines.append(
                f"| {name} | {health['std']:.4f} | {health['sim_p50']:.3f} | {health['sim_p95']:.3f} | "
                f"{health['pos_neg_gap']:.3f} |"
            )
    lines += failures_section(meta.get("failed") or {})
    (output / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return output / "report.md"


def failures_section(failed: dict[str, str]) -> list[str]:
    """The report's list of the datasets that could not be evaluated and why (nothing when none failed)."""
    if not failed:
        return []
    lines = ["", "## Failed datasets", "", f"{len(failed)} dataset(s) could not be evaluated; the tables above leave"]
    lines += ["them out.", "", "| dataset | error |", "|---|---|"]
    for name, error in failed.items():
        cell = " ".join(error.split()).replace("|", "\\|")
        lines.append(f"| {name} | {cell[:500]} |")
    return lines
