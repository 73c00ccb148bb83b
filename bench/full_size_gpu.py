"""Full-size speed and memory on one GPU: Qwen2-VL-2B architecture (random bf16 weights) with the st_unirep head.

Measures, for each attention implementation available (``sdpa``; ``flash_attention_2`` when flash-attn imports):

1. text encode: tokens/s and MFU of ``model.encode`` (bf16 backbone, batch ``--text_batch``);
2. image encode: images/s, visual tokens per image and MFU at the preset's pixel budget (unirep-m: ≤ 1,024 tokens);
3. training (gradient checkpointing, fp32 master weights under bf16 autocast, AdamW): samples/s, MFU and peak
   memory for ``build_loss(task)`` at global batch 64 (plain) and 1,024 (GradCache, ``mini_batch_size``).

FLOPs are counted as 2 · N · T for a forward pass and 6 · N · T for a training step (Kaplan et al.), where T is
the tokens that went through the weights N: the language model's non-embedding parameters for every text or
visual token, the vision tower's for every 14×14 patch (attention's quadratic term and the head are left out, so
MFU is a lower bound). MFU = achieved FLOP/s / ``--peak_tflops`` (790 TFLOP/s: dense bf16 of an H100/H200 SXM as
the issue states).

    python bench/full_size_gpu.py                    # on an H100 / H200 (refuses without CUDA); ~10 min per
    python bench/full_size_gpu.py --attn sdpa        #   attention implementation, so one at a time fits a
    python bench/full_size_gpu.py --attn flash_attention_2   # 10-minute slot
    python bench/full_size_gpu.py --dry-run          # anywhere: parameter split and FLOP plan on the meta device

The weights are random (the config folder has none): speed and memory do not depend on their values. The model is
saved once to a temporary checkpoint (about 4.4 GB) so that ``st_unirep.build_model`` loads it as it would a real
one.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _common

from st_unirep.testing import QWEN2_VL_PROCESSOR_FILES

DEFAULT_CONFIG = _common.SHARED / "models" / "qwen2-vl-2b-config"


# ------------------------------------------------------------------------------------------------ FLOP counting
@dataclass(frozen=True)
class ParamSplit:
    """Parameters by the tokens they process."""

    vision: int  # vision tower (patch embedding, blocks, merger): applied to every 14×14 patch
    language: int  # language model without the token-embedding table: applied to every token
    embedding: int  # token-embedding table: a lookup, no FLOPs

    @property
    def total(self) -> int:
        return self.vision + self.language + self.embedding


def param_split(model) -> ParamSplit:
    """Split a Qwen2-VL model's (``Qwen2VLModel`` or ``...ForConditionalGeneration``) parameters."""
    core = getattr(model, "model", model)
    vision = sum(p.numel() for p in core.visual.parameters())
    embedding = core.get_input_embeddings().weight.numel()
    language = sum(p.numel() for p in core.language_model.parameters()) - embedding
    return ParamSplit(vision=vision, language=language, embedding=embedding)


def forward_flops(params: ParamSplit, tokens: int, patches: int = 0) -> float:
    """2 · N · T: every token through the language model, every patch through the vision tower."""
    return 2.0 * (params.language * tokens + params.vision * patches)


def train_flops(params: ParamSplit, tokens: int, patches: int = 0, vision_trainable: bool = True) -> float:
    """6 · N · T for trained weights; a frozen vision tower runs forward only (2 · N · T)."""
    return 6.0 * params.language * tokens + (6.0 if vision_trainable else 2.0) * params.vision * patches


def mfu(flops: float, seconds: float, peak_tflops: float) -> float:
    """Model FLOP utilisation: achieved FLOP/s over the peak."""
    return flops / seconds / (peak_tflops * 1e12)


# ------------------------------------------------------------------------------------------------ inputs
def long_texts(tokenizer, n: int, tokens: int) -> list[str]:
    """``n`` texts of about ``tokens`` tokens each, made of STS-B dev sentences (or a fixed sentence)."""
    if _common.STSB_DEV.is_file():
        sentences = _common.stsb_sentences(2000)
    else:
        sentences = ["The quick brown fox jumps over the lazy dog while the receipt shows the total amount."]
    pool = itertools.cycle(sentences)
    texts = []
    for _ in range(n):
        text = ""
        while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < tokens:
            text += next(pool) + " "
        texts.append(text.strip())
    return texts


def images(n: int, seed: int = 0) -> list:
    """``n`` images: the dev photos and receipts cycled, or random ones of their sizes without ../shared."""
    folders = [_common.PHOTOS, _common.RECEIPTS]
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())]
    if files:
        return [str(p) for p in itertools.islice(itertools.cycle(files), n)]
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = itertools.cycle([(500, 375), (640, 480), (936, 2283), (463, 1013)])
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for (w, h) in itertools.islice(sizes, n)]


# ------------------------------------------------------------------------------------------------ model
def random_checkpoint(config_dir: Path, out_dir: Path) -> Path:
    """Write a random-weight bf16 Qwen2-VL checkpoint of ``config_dir``'s architecture to ``out_dir``."""
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    for name in QWEN2_VL_PROCESSOR_FILES:
        if (config_dir / name).is_file():
            shutil.copy(config_dir / name, out_dir / name)
    del model
    torch.cuda.empty_cache()
    return out_dir


def attention_implementations() -> list[str]:
    found = ["sdpa"]
    if importlib.util.find_spec("flash_attn") is not None:
        found.append("flash_attention_2")
    return found


@contextlib.contextmanager
def cuda_timer():
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    box = {}
    yield box
    torch.cuda.synchronize()
    box["seconds"] = time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ measurements
def timed_encode(model, inputs: list, batch_size: int, repeats: int) -> float:
    """Median seconds of ``model.encode(inputs)`` over ``repeats`` runs, after one warm-up batch."""
    model.encode(inputs[:batch_size], batch_size=batch_size)
    times = []
    for _ in range(repeats):
        with cuda_timer() as timer:
            model.encode(inputs, batch_size=batch_size)
        times.append(timer["seconds"])
    return _common.median(times)


def measure_encode(args, checkpoint: Path, attn: str, rows: list) -> None:
    import torch

    import st_unirep

    model = st_unirep.build_model(str(checkpoint), args.preset, attn_implementation=attn).to("cuda")
    model[0].to(torch.bfloat16)  # backbone in bf16; the head keeps float32 (pooling softmax, spectral norm)
    params = param_split(model[0].model)
    tokenizer = model[0].tokenizer

    texts = long_texts(tokenizer, args.text_batch * args.text_batches, args.text_tokens)
    tokens = sum(int(model[0].preprocess([t])["attention_mask"].sum()) for t in texts)
    seconds = timed_encode(model, texts, args.text_batch, args.repeats)
    rows.append(
        [
            attn,
            f"text encode, batch {args.text_batch}, ~{args.text_tokens} tokens",
            f"{tokens / seconds:,.0f} tokens/s",
            f"{mfu(forward_flops(params, tokens), seconds, args.peak_tflops):.1%}",
            "",
        ]
    )

    pictures = images(args.image_batch * args.image_batches)
    features = [model[0].preprocess([p]) for p in pictures]
    tokens = sum(int(f["attention_mask"].sum()) for f in features)
    patches = sum(int(f["image_grid_thw"].prod(-1).sum()) for f in features)
    visual = patches // model[0].processor.image_processor.merge_size ** 2
    seconds = timed_encode(model, pictures, args.image_batch, args.repeats)
    rows.append(
        [
            attn,
            f"image encode, batch {args.image_batch}, {visual / len(pictures):.0f} visual tokens / image",
            f"{len(pictures) / seconds:,.1f} images/s",
            f"{mfu(forward_flops(params, tokens, patches), seconds, args.peak_tflops):.1%}",
            "",
        ]
    )


def measure_training(args, checkpoint: Path, attn: str, task: str, batch: int, mini_batch: int | None, rows: list):
    import torch

    import st_unirep
    from st_unirep.losses import build_loss

    torch.manual_seed(0)
    budget = {"max_pixels": args.train_image_tokens * 28 * 28} if task != "instr" else {}
    model = st_unirep.build_model(
        str(checkpoint), args.preset, attn_implementation=attn, gradient_checkpointing=True, **budget
    ).to("cuda")  # float32 master weights; bf16 compute under autocast, as the trainer's bf16=True
    model.train()
    params = param_split(model[0].model)
    vision_trainable = any(p.requires_grad for p in model[0].model.visual.parameters())
    loss_fn = build_loss(model, task, args.preset, mini_batch_size=mini_batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    if task == "instr":
        texts = long_texts(model[0].tokenizer, 2 * batch, args.train_tokens)
        columns = [texts[:batch], texts[batch:]]
    else:  # ocr: caption -> image
        columns = [long_texts(model[0].tokenizer, batch, 32), images(batch)]
    features = [model[0].preprocess(column) for column in columns]
    tokens = sum(int(f["attention_mask"].sum()) for f in features)
    patches = sum(int(f["image_grid_thw"].prod(-1).sum()) for f in features if "image_grid_thw" in f)
    features = [{k: v.to("cuda") if torch.is_tensor(v) else v for k, v in f.items()} for f in features]

    def step() -> None:
        # Backward inside autocast too: GradCache re-embeds its mini-batches in the backward pass, which the trainer
        # runs in bf16 because accelerate wraps the model's forward itself in autocast.
        with torch.autocast("cuda", dtype=torch.bfloat16):
            value = loss_fn([dict(f) for f in features], None)
            value = torch.stack(list(value.values())).sum() if isinstance(value, dict) else value
            value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        step()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.train_steps):
            with cuda_timer() as timer:
                step()
            times.append(timer["seconds"])
        seconds = _common.median(times)
        peak = torch.cuda.max_memory_allocated() / 2**30
        flops = train_flops(params, tokens, patches, vision_trainable)
        how = f"GradCache, mini-batch {mini_batch}" if mini_batch else "plain"
        what = f"≤ {args.train_image_tokens} visual tokens / image, " if task != "instr" else ""
        rows.append(
            [
                attn,
                f"train `{task}`, batch {batch} ({what}{how}), checkpointing",
                f"{batch / seconds:,.1f} samples/s",
                f"{mfu(flops, seconds, args.peak_tflops):.1%}",
                f"{peak:.1f} GiB",
            ]
        )
    except torch.cuda.OutOfMemoryError:
        rows.append([attn, f"train `{task}`, batch {batch}", "out of memory", "", ""])


# ------------------------------------------------------------------------------------------------ entry points
def dry_run(args) -> list[list[str]]:
    """Build the architecture on the meta device and print the parameter split and FLOPs per measured batch."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, Qwen2VLForConditionalGeneration

    config = AutoConfig.from_pretrained(args.config)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration._from_config(config)
    params = param_split(model)
    text_tokens = args.text_batch * args.text_tokens
    rows = [
        [
            "parameters",
            f"{params.total:,} (vision {params.vision:,}, language {params.language:,}, "
            f"embedding {params.embedding:,})",
        ],  # fmt: skip
        ["text encode batch", f"{text_tokens:,} tokens: {forward_flops(params, text_tokens) / 1e12:.2f} TFLOP"],
        [
            "image encode batch",
            f"{args.image_batch} × 1,024 visual tokens (4,096 patches): "
            f"{forward_flops(params, args.image_batch * 1024, args.image_batch * 4096) / 1e12:.2f} TFLOP",
        ],
        [
            "train step, batch 64",
            f"2 × 64 × {args.train_tokens} tokens: {train_flops(params, 128 * args.train_tokens) / 1e12:.2f} TFLOP",
        ],
        ["attention implementations", ", ".join(attention_implementations())],
        ["peak", f"{args.peak_tflops:g} TFLOP/s (bf16, dense)"],
    ]
    tokenizer = AutoTokenizer.from_pretrained(args.config)
    rows.append(["tokenizer", f"{len(tokenizer):,} tokens"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Qwen2-VL config + tokenizer folder")
    parser.add_argument("--preset", default="unirep-m")
    parser.add_argument("--peak_tflops", type=float, default=790.0)
    parser.add_argument("--text_batch", type=int, default=64)
    parser.add_argument("--text_batches", type=int, default=8)
    parser.add_argument("--text_tokens", type=int, default=256)
    parser.add_argument("--image_batch", type=int, default=16)
    parser.add_argument("--image_batches", type=int, default=8)
    parser.add_argument("--train_tokens", type=int, default=128, help="tokens per text in the training pairs")
    parser.add_argument("--train_steps", type=int, default=3)
    parser.add_argument("--tasks", default="instr,ocr", help="training tasks to measure")
    parser.add_argument("--mini_batch", type=int, default=64, help="GradCache mini-batch at global batch 1,024")
    parser.add_argument(
        "--train_image_tokens",
        type=int,
        default=256,
        help="pixel budget of the image training rows (1,024 images at the full 1,024 tokens are 20 GB of pixels)",
    )
    parser.add_argument("--attn", default=None, help="comma-separated attention implementations (default: all found)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="meta device, no GPU")
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if not (args.config / "config.json").is_file():
        raise SystemExit(f"No Qwen2-VL config at {args.config} (pass --config DIR with config.json and tokenizer)")
    for name in ("text_batch", "text_batches", "text_tokens", "image_batch", "image_batches", "train_steps"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name} must be positive, got {getattr(args, name)}")

    import torch

    if args.dry_run:
        rows = dry_run(args)
        print(_common.markdown_table(["", "plan"], rows))
        return
    if not torch.cuda.is_available():
        raise SystemExit(
            "bench/full_size_gpu.py measures an H100/H200 and needs CUDA, which this machine does not have "
            "(torch.cuda.is_available() is False). Run it on the GPU machine; `--dry-run` checks the setup here."
        )
    _common.quiet()
    torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="qwen2-vl-2b-random-") as tmp:
        checkpoint = random_checkpoint(args.config, Path(tmp))
        for attn in args.attn.split(",") if args.attn else attention_implementations():
            measure_encode(args, checkpoint, attn, rows)
            torch.cuda.empty_cache()
            for task in args.tasks.split(","):
                for batch, mini_batch in ((64, None), (1024, args.mini_batch)):
                    measure_training(args, checkpoint, attn, task, batch, mini_batch, rows)
                    torch.cuda.empty_cache()
            print(json.dumps(rows[-6:], indent=1), flush=True)
    table = _common.markdown_table(["attention", "workload", "throughput", "MFU", "peak memory"], rows)
    notes = (
        f"Qwen2-VL-2B architecture from `{args.config}` with random weights, preset `{args.preset}` (vision tower "
        f"frozen in unirep-m), bf16; MFU against {args.peak_tflops:g} TFLOP/s with FLOPs = 2·N·T (forward) and "
        "6·N·T (training; frozen parts 2·N·T), N per token type as the script's docstring says. Median of "
        f"{args.repeats} encodes / {args.train_steps} steps after a warm-up."
    )
    name, title = "full_size_gpu", "Full size on one GPU (Qwen2-VL-2B)"
    if args.attn:  # a run per attention implementation keeps its own section
        name, title = f"{name}-{args.attn.replace(',', '-')}", f"{title}, {args.attn}"
    _common.report(name, title, table, notes, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
