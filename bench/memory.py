"""Peak resident memory while encoding 1,000 images at batch 16 stays flat: RSS after every k batches, and the slope.

Two runs on the tiny Qwen2-VL, each over 1,000 image paths made by cycling the dev photos and receipts:

* ``model.encode(paths, batch_size=16)``: one call, embeddings gathered in memory (1,000 × dim floats);
* ``st_unirep.streaming.encode_to_disk(model, paths, "embeddings.npy")``: chunks of 256, written to a ``.npy``.

RSS (``VmRSS``) is sampled after every batch; the table shows it every k batches, the peak (``VmHWM``) and the
least-squares slope of RSS against batches over the second half of the run (after allocator warm-up), in MB per
100 batches. Flat means a slope near 0: memory does not grow with the number of batches.

    python bench/memory.py [--images 1000] [--batch_size 16] [--every 8] [--max_tokens 256] [--ablation_images 160]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from pathlib import Path

import _common
import numpy as np
import torch

import st_unirep
from st_unirep.modules.backbone import Backbone
from st_unirep.streaming import encode_to_disk


def status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class RssSampler:
    """Records RSS after every forward pass of the model (one per batch)."""

    def __init__(self, model) -> None:
        self.samples: list[float] = []
        self.handle = model.register_forward_hook(lambda *_: self.samples.append(status_mb("VmRSS")))

    def remove(self) -> None:
        self.handle.remove()


def slope_per_100(samples: list[float]) -> float:
    """Least-squares slope of RSS (MB) against batch index over the second half, per 100 batches."""
    tail = np.asarray(samples[len(samples) // 2 :])
    if len(tail) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(tail)), tail, 1)[0] * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--every", type=int, default=8, help="show RSS every this many batches")
    parser.add_argument("--max_tokens", type=int, default=256, help="pixel budget: visual tokens per image at most")
    parser.add_argument("--preset", default="unirep-m")
    parser.add_argument("--ablation_images", type=int, default=160, help="largest images for the load-resize ablation")
    _common.add_thread_arg(parser)
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    _common.setup(args)

    sources = sorted(_common.PHOTOS.iterdir()) + sorted(_common.RECEIPTS.iterdir())
    paths = [str(p) for p in itertools.islice(itertools.cycle(sources), args.images)]
    torch.manual_seed(0)
    model = st_unirep.build_model(_common.tiny_qwen2_vl(), args.preset, max_pixels=args.max_tokens * 28 * 28)
    model.encode(paths[: args.batch_size], batch_size=args.batch_size)  # first-call allocations out of the way

    runs = {}
    out_dir = _common.temp_dir("bench-memory-")
    for name in ("model.encode", "encode_to_disk"):
        gc.collect()
        reset_peak()
        start_rss = status_mb("VmRSS")
        sampler = RssSampler(model)
        start = time.perf_counter()
        if name == "model.encode":
            embeddings = model.encode(paths, batch_size=args.batch_size)
        else:
            embeddings = encode_to_disk(model, paths, out_dir / "embeddings.npy", batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        sampler.remove()
        assert embeddings.shape == (len(paths), model.get_embedding_dimension())
        runs[name] = (start_rss, sampler.samples, status_mb("VmHWM"), seconds)
        del embeddings
        print(name, f"{seconds:.0f} s", f"peak {runs[name][2]:.0f} MB", flush=True)

    # Ablation: the batches of the largest images, with and without shrinking each image to the budget on load.
    largest = sorted(paths, key=model._input_length, reverse=True)[: args.ablation_images]
    peaks = {}
    for name, fit in (("shrunk on load (st_unirep)", None), ("originals until the processor", lambda self, im: im)):
        gc.collect()
        reset_peak()
        before = status_mb("VmRSS")
        if fit is not None:
            Backbone._fit_to_budget, original = fit, Backbone._fit_to_budget
        try:
            model.encode(largest, batch_size=args.batch_size)
        finally:
            if fit is not None:
                Backbone._fit_to_budget = original
        peaks[name] = (before, status_mb("VmHWM"))
        print(name, f"peak {peaks[name][1]:.0f} MB", flush=True)

    batches = len(next(iter(runs.values()))[1])
    shown = sorted(set(range(args.every - 1, batches, args.every)) | {0, batches - 1})
    header = ["after batch", *(f"{name} RSS MB" for name in runs)]
    rows = [[index + 1, *(f"{runs[name][1][index]:.0f}" for name in runs)] for index in shown]
    rows.append(["peak (VmHWM)", *(f"{runs[name][2]:.0f}" for name in runs)])
    rows.append(["RSS before the run", *(f"{runs[name][0]:.0f}" for name in runs)])
    rows.append(["slope, MB / 100 batches (2nd half)", *(f"{slope_per_100(runs[name][1]):+.1f}" for name in runs)])
    rows.append(["seconds", *(f"{runs[name][3]:.0f}" for name in runs)])
    table = _common.markdown_table(header, rows)
    ablation = _common.markdown_table(
        ["images", "RSS before MB", "peak MB", "peak - before MB"],
        [[name, f"{b:.0f}", f"{p:.0f}", f"{p - b:.0f}"] for name, (b, p) in peaks.items()],
    )
    notes = (
        f"{len(paths)} images (the {len(sources)} dev photos and receipts, cycled) as paths, batch {args.batch_size}, "
        f"tiny Qwen2-VL, preset `{args.preset}` with at most {args.max_tokens} visual tokens per image; RSS sampled "
        "after every batch's forward pass. The embeddings themselves are "
        f"{len(paths) * model.get_embedding_dimension() * 4 / 2**20:.1f} MB.\n\n"
        f"Peak while encoding the {len(largest)} largest of these images (batch {args.batch_size}), with each image "
        "resized to the pixel budget as it is loaded (the pixels the processor would make, bit for bit) against "
        f"keeping the decoded originals until the processor resizes them:\n\n{ablation}"
    )
    _common.report("memory", "Memory while encoding 1,000 images (CPU)", table, notes, write=not args.no_write)


if __name__ == "__main__":
    main()
