"""Encode throughput of the st_unirep head (attention pooling + stable projection) against mean pooling.

For each backbone (the tiny random Qwen2-VL of ``st_unirep.testing`` and the real all-MiniLM-L6-v2) three models
share one and the same ``Backbone`` module, so only the head differs:

* baseline: sentence-transformers' ``Pooling(mean)`` → ``Normalize``;
* ``pooling_mode="mean"``: ``build_model``'s ablation (mean ``Pooling`` → ``StableProjection`` → normalise);
* st_unirep: the preset's ``AttentionPooling`` → ``StableProjection`` → ``MatryoshkaNormalize``.

The same STS-B dev sentences are encoded with the same batch size; runs alternate between the models and the
ratio is the median over rounds of time(model) / time(baseline). Target: st_unirep / baseline ≤ 1.03.

    python bench/head_overhead.py [--preset unirep-m] [--sentences 256] [--batch_size 32] [--repeats 15] [--seconds 8]
"""

from __future__ import annotations

import argparse

import _common
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

import st_unirep


def models_for(backbone_path: str, preset: str) -> dict[str, SentenceTransformer]:
    torch.manual_seed(0)
    from transformers import AutoConfig

    # A text encoder has no vision tower to freeze (unirep-m freezes it).
    text_only = getattr(AutoConfig.from_pretrained(backbone_path), "vision_config", None) is None
    options = {"freeze_vision": False} if text_only else {}
    full = st_unirep.build_model(backbone_path, preset, **options)
    backbone = full[0]
    hidden = backbone.get_embedding_dimension()
    baseline = SentenceTransformer(modules=[backbone, Pooling(hidden, pooling_mode="mean"), Normalize()])
    ablation = st_unirep.build_model(backbone_path, preset, pooling_mode="mean", **options)
    ablation = SentenceTransformer(modules=[backbone, ablation[1], ablation[2], ablation[3]])  # same backbone object
    return {"mean Pooling + Normalize (baseline)": baseline, 'pooling_mode="mean"': ablation, "st_unirep": full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="unirep-m")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds at least")
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per model at least (more rounds if fast)")
    _common.add_thread_arg(parser)
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    _common.setup(args)

    sentences = _common.stsb_sentences(args.sentences)
    rows = []
    for label, path in (("tiny Qwen2-VL", _common.tiny_qwen2_vl()), ("all-MiniLM-L6-v2", _common.require_minilm())):
        models = models_for(path, args.preset)
        runs = {
            name: (lambda m=model: m.encode(sentences, batch_size=args.batch_size, show_progress_bar=False))
            for name, model in models.items()
        }
        # Fast models get more rounds: at least --seconds of timing per model, so a ~1 % effect stands out of the noise.
        once = _common.timed(next(iter(runs.values())))
        repeats = max(args.repeats, min(101, int(args.seconds / once)))
        times = _common.interleaved(runs, repeats=repeats)
        base = next(iter(times))
        for name, values in times.items():
            seconds = _common.median(values)
            rows.append(
                [
                    f"{label} ({repeats} rounds)",
                    name,
                    models[name].get_embedding_dimension(),
                    f"{seconds * 1e3:.0f}",
                    f"{len(sentences) / seconds:.0f}",
                    f"{_common.paired_ratio(values, times[base]):.3f}",
                ]
            )
        print(rows[-3:], flush=True)
    table = _common.markdown_table(
        ["backbone", "head", "dim", "median ms / encode", "sentences/s", "ratio vs baseline"], rows
    )
    notes = (
        f"{len(sentences)} STS-B dev sentences per encode, batch {args.batch_size}, preset `{args.preset}`, "
        "median of interleaved runs (rounds per backbone in the table); ratio = median over rounds of time / "
        "baseline time in the same round. Target: st_unirep ≤ 1.03."
    )
    _common.report("head_overhead", "Head overhead (encode, CPU)", table, notes, write=not args.no_write)


if __name__ == "__main__":
    main()
