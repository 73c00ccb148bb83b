"""Images per second at batch 1, 4 and 16 on real photos and receipts with the tiny Qwen2-VL, and where time goes.

The inputs are a "mixed folder": the vicaption_vi dev photos (333–640 px a side) and the sroie_receipts dev scans
(up to 4961×7016 px), linked into one temporary folder under uniform names in a shuffled order, given to
``encode`` as paths. Tables:

1. images/s per batch size under each pixel budget (the preset's, 4–1,024 visual tokens per image, and a small
   one of at most 64 tokens, the tiny checkpoint's own), with the ratio to batch 1 (target at batch 16: ≥ 3×);
2. the batching sort key at batch 16: sentence-transformers' own (characters of the path: file-name order) against
   st_unirep's (visual tokens under the budget, ``Backbone.input_length``);
3. where the time goes (seconds per image by stage: decode + checks, processor, vision tower, language model,
   head) at batch 1 and 16.

    python bench/batched_images.py [--photos 32] [--receipts 16] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import _common
import torch
from PIL import Image

import st_unirep
from st_unirep.modules.backbone import Backbone

BUDGETS = {"preset (4–1024 tokens)": None, "small (4–64 tokens)": 64 * 28 * 28}
BATCH_SIZES = (1, 4, 16)


def mixed_folder(photos: int, receipts: int, seed: int = 0) -> list[str]:
    """Symlinks to the dev photos and receipts in one folder, uniform names, shuffled."""
    sources = sorted(_common.PHOTOS.iterdir())[:photos] + sorted(_common.RECEIPTS.iterdir())[:receipts]
    random.Random(seed).shuffle(sources)
    folder = _common.temp_dir("bench-images-")
    paths = []
    for index, source in enumerate(sources):
        link = folder / f"img_{index:04d}{source.suffix.lower()}"
        link.symlink_to(source.resolve())
        paths.append(str(link))
    return paths


def token_stats(backbone: Backbone, paths: list[str]) -> str:
    def tokens(path: str) -> int:
        with Image.open(path) as image:
            return backbone.visual_tokens_per_image(*image.size)

    parts = []
    for name, folder in (("photos", _common.PHOTOS), ("receipts", _common.RECEIPTS)):
        values = [tokens(p) for p in paths if Path(p).resolve().parent == folder.resolve()]
        if values:
            parts.append(f"{name} {min(values)}–{max(values)} (mean {statistics.mean(values):.0f})")
    return "; ".join(parts)


@contextlib.contextmanager
def stage_timers(model):
    """Accumulate seconds per stage by wrapping the stage functions on their instances (restored on exit)."""
    totals: dict[str, float] = defaultdict(float)
    backbone = model[0]
    targets = [
        ("decode + checks", backbone, "_check_input"),
        ("processor (all of preprocess)", backbone, "preprocess"),
        ("vision tower", backbone.model.visual, "forward"),
        ("language model", backbone.model.language_model, "forward"),
        ("head (pooling, projection, normalise)", model[1], "forward"),
        ("head (pooling, projection, normalise)", model[2], "forward"),
        ("head (pooling, projection, normalise)", model[3], "forward"),
    ]

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start

        return timed

    for name, owner, attribute in targets:
        setattr(owner, attribute, wrap(name, getattr(owner, attribute)))
    try:
        yield totals
    finally:
        for _, owner, attribute in targets:
            owner.__dict__.pop(attribute, None)


@contextlib.contextmanager
def sentence_transformers_sort_key(model):
    """Batch with sentence-transformers' own length estimate instead of st_unirep's."""
    key = model.__dict__.pop("_input_length", None)
    try:
        yield
    finally:
        if key is not None:
            model._input_length = key


def stage_row(model, encode: Callable[[int], None], batch_size: int, n: int, budget_name: str) -> list:
    """One row of the stage table: ms per image in each stage of one encode of the ``n`` images at ``batch_size``."""
    with stage_timers(model) as totals:
        start = time.perf_counter()
        encode(batch_size)
        total = time.perf_counter() - start
    processor = totals["processor (all of preprocess)"] - totals["decode + checks"]
    stages = {
        "decode + checks": totals["decode + checks"],
        "processor": processor,
        "vision tower": totals["vision tower"],
        "language model": totals["language model"],
        "head": totals["head (pooling, projection, normalise)"],
    }
    stages["rest (ST encode loop, sorting, copies)"] = total - sum(stages.values())
    return [budget_name, batch_size, *(f"{value / n * 1e3:.1f}" for value in stages.values()), f"{total / n * 1e3:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--receipts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="unirep-m")
    _common.add_thread_arg(parser)
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    _common.setup(args)

    tiny = _common.tiny_qwen2_vl()
    paths = mixed_folder(args.photos, args.receipts)
    n = len(paths)
    rows, key_rows, stage_rows, token_notes = [], [], [], []
    for budget_name, max_pixels in BUDGETS.items():
        options = {"max_pixels": max_pixels} if max_pixels else {}
        torch.manual_seed(0)
        model = st_unirep.build_model(tiny, args.preset, **options)
        token_notes.append(f"{budget_name}: {token_stats(model[0], paths)}")

        def encode(batch_size: int, m=model) -> None:
            m.encode(paths, batch_size=batch_size, show_progress_bar=False)

        runs = {bs: (lambda bs=bs: encode(bs)) for bs in BATCH_SIZES}
        times = _common.interleaved(runs, repeats=args.repeats)
        for bs in BATCH_SIZES:
            seconds = _common.median(times[bs])
            rows.append(
                [
                    budget_name,
                    bs,
                    f"{n / seconds:.2f}",
                    f"{seconds / n * 1e3:.0f}",
                    f"{_common.paired_ratio(times[1], times[bs]):.2f}",
                ]
            )
        print(rows[-len(BATCH_SIZES) :], flush=True)

        def with_st_key(m=model) -> None:
            with sentence_transformers_sort_key(m):
                encode(16, m)

        key_times = _common.interleaved({"st": with_st_key, "unirep": lambda: encode(16)}, repeats=args.repeats)
        for name, label in (("st", "sentence-transformers (path characters)"), ("unirep", "st_unirep (visual tokens)")):
            seconds = _common.median(key_times[name])
            speed_up = _common.paired_ratio(key_times["st"], key_times[name])
            key_rows.append([budget_name, label, f"{n / seconds:.2f}", f"{speed_up:.2f}"])

        stage_rows += [stage_row(model, encode, bs, n, budget_name) for bs in (1, 16)]

    table = _common.markdown_table(["pixel budget", "batch", "images/s", "ms / image", "speed-up vs batch 1"], rows)
    key_table = _common.markdown_table(["pixel budget", "sort key (batch 16)", "images/s", "speed-up"], key_rows)
    stage_table = _common.markdown_table(
        [
            "pixel budget",
            "batch",
            "decode + checks",
            "processor",
            "vision tower",
            "language model",
            "head",
            "rest",
            "total ms / image",
        ],
        stage_rows,
    )
    notes = (
        f"{n} images ({args.photos} photos, {args.receipts} receipts) per encode as paths in one shuffled folder; "
        f"tiny Qwen2-VL, preset `{args.preset}`; median of {args.repeats} interleaved runs, speed-up = median over "
        "rounds of time(batch 1) / time(batch b). Visual tokens per image: "
        + "; ".join(token_notes)
        + f".\n\nBatching sort key at batch 16:\n\n{key_table}\n\nWhere the time goes (ms per image, one run each):"
        f"\n\n{stage_table}"
    )
    title = "Batched image encoding (CPU, tiny Qwen2-VL)"
    _common.report("batched_images", title, table, notes, write=not args.no_write)


if __name__ == "__main__":
    main()
