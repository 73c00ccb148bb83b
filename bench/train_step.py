"""Seconds per optimizer step: st_unirep's full loss stack against sentence-transformers' MNRL, same model and batch.

A step is forward + backward + ``AdamW.step()`` + ``zero_grad()`` on already-tokenised features (the collator's
work is the same for both losses and is left out). For each case the *same* st_unirep model (preset head) is
trained with

* baseline: ``MultipleNegativesRankingLoss`` (in-batch InfoNCE, scale 20);
* st_unirep: ``build_loss(model, task, preset)``: the task loss (InfoNCE + cosine for ``instr``, InfoNCE +
  hardest-negative triplet for ``ocr``) inside ``MatryoshkaLoss`` (the preset's dims, quadratic weights) inside
  ``RegularizedLoss`` (uniformity, anti-collapse, orthogonality of the projection).

Cases: all-MiniLM-L6-v2 on STS-B pairs (task ``instr``), the tiny Qwen2-VL on the same text pairs, and the tiny
Qwen2-VL on caption → photo pairs (task ``ocr``, at most 64 visual tokens per image to keep the CPU run short).
Runs alternate between the two losses; ratio = median over rounds of time(st_unirep) / time(MNRL). Target ≤ 1.10.

    python bench/train_step.py [--preset unirep-m] [--batch_size 32] [--repeats 21] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json

import _common
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

import st_unirep
from st_unirep.losses import build_loss


def text_pairs(n: int) -> tuple[list[str], list[str]]:
    first, second = [], []
    with _common.STSB_DEV.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            first.append(row["sentence1"])
            second.append(row["sentence2"])
            if len(first) == n:
                break
    return first, second


def caption_image_pairs(n: int) -> tuple[list[str], list[str]]:
    captions, images, seen = [], [], set()
    folder = _common.PHOTOS.parent
    with (folder / "captions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["image"] in seen:
                continue
            seen.add(row["image"])
            captions.append(row["caption"])
            images.append(str(folder / row["image"]))
            if len(captions) == n:
                break
    return captions, images


class Step:
    """One optimizer step of ``loss`` on fixed features; its own copy of the model and its own AdamW."""

    def __init__(self, model, make_loss, columns) -> None:
        self.model = copy.deepcopy(model).train()
        self.loss = make_loss(self.model)
        self.features = [self.model.preprocess(column) for column in columns]
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=1e-5)

    def __call__(self) -> None:
        features = [dict(f) for f in self.features]
        value = self.loss(features, None)
        if isinstance(value, dict):  # RegularizedLoss returns its weighted components; the trainer sums them
            value = torch.stack(list(value.values())).sum()
        value.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="unirep-m")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=21)
    _common.add_thread_arg(parser)
    parser.add_argument("--no_write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    _common.setup(args)

    tiny = _common.tiny_qwen2_vl()
    texts = text_pairs(args.batch_size)
    cases = [
        ("all-MiniLM-L6-v2", _common.require_minilm(), "instr", texts, {"freeze_vision": False}),
        ("tiny Qwen2-VL", tiny, "instr", texts, {}),
        ("tiny Qwen2-VL", tiny, "ocr", caption_image_pairs(args.image_batch_size), {"max_pixels": 64 * 28 * 28}),
    ]
    rows = []
    for label, path, task, columns, options in cases:
        torch.manual_seed(0)
        model = st_unirep.build_model(path, args.preset, **options)
        steps = {
            "MNRL": Step(model, MultipleNegativesRankingLoss, columns),
            "st_unirep": Step(model, lambda m, task=task: build_loss(m, task, args.preset), columns),
        }
        times = _common.interleaved(steps, repeats=args.repeats, warmup=2)
        kind = "text → text" if task == "instr" else "caption → image"
        for name, values in times.items():
            loss_name = "MultipleNegativesRankingLoss" if name == "MNRL" else f"build_loss('{task}')"
            rows.append(
                [
                    label,
                    f"{kind}, batch {len(columns[0])}",
                    loss_name,
                    f"{_common.median(values) * 1e3:.0f}",
                    f"{_common.paired_ratio(values, times['MNRL']):.3f}",
                ]
            )
        print(rows[-2:], flush=True)
    table = _common.markdown_table(["backbone", "batch", "loss", "median ms / step", "ratio vs MNRL"], rows)
    notes = (
        f"Preset `{args.preset}` (Matryoshka dims 512/768/1024/2048, quadratic weights; uniformity 0.1, "
        "anti-collapse 1.0, orthogonality 1e-4); AdamW over every trainable parameter; median of "
        f"{args.repeats} interleaved steps after 2 warm-up steps. Target: ≤ 1.10."
    )
    _common.report("train_step", "Training step: loss stack vs MNRL (CPU)", table, notes, write=not args.no_write)


if __name__ == "__main__":
    main()
