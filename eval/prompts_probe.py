"""Retrieval with and without query / document prompts: ``python eval/prompts_probe.py [--models NAME=PATH ...]
[--data ROOT] [--datasets viquad_vi stsb_en>=4 ...] [--max_queries N] [--max_pairs N]``.

For each model and each retrieval dev set, R@1 / nDCG@10 under five prompt settings: none; E5's asymmetric
``"query: "`` / ``"passage: "``; ``"query: "`` on both sides; ``"query: "`` on queries only (what
sentence-transformers' ``encode_document`` gave an E5 model saved with ``"document": ""``); and what the model's own
``encode_query`` / ``encode_document`` use now (``model.prompts``, as sentence-transformers resolves them). The sets:
the QA sets, and pair sets read as retrieval (``stsb_en>=4``: each of the first ``--max_pairs`` pairs scoring at
least 4 is a query whose answer is its second sentence, among all their second sentences). Prints a Markdown table:
the numbers behind st_unirep's query / document prompts (``st_unirep.model``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from checkout import data_root  # noqa: E402
from st_unirep.evaluation import metrics  # noqa: E402
from st_unirep.evaluation.datasets import PairData, RetrievalData, dataset_reader  # noqa: E402
from st_unirep.model import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = [
    f"e5-small={REPO / 'models/e5-small'}",
    f"e5-small st_unirep={REPO / 'compare/e5-small/st_unirep/model'}",
    f"minilm st_unirep={REPO / 'compare/minilm/st_unirep/model'}",
]
SETTINGS = {
    "none": ("", ""),
    "query:/passage:": ("query: ", "passage: "),
    "query:/query:": ("query: ", "query: "),
    "query:/none": ("query: ", ""),
}


def pairs_as_retrieval(data: PairData, threshold: float) -> RetrievalData:
    """Each pair whose gold score is at least ``threshold`` as a query (its first sentence) whose one relevant
    item is its second sentence, among the second sentences of every pair (deduplicated)."""
    corpus = list(dict.fromkeys(data.sentences2))
    index = {text: i for i, text in enumerate(corpus)}
    kept = [(a, b) for a, b, gold in zip(data.sentences1, data.sentences2, data.gold, strict=True) if gold >= threshold]
    return RetrievalData(f"{data.name}>={threshold:g}", [a for a, _ in kept], corpus, [{index[b]} for _, b in kept])


def read(root: Path, spec: str, max_pairs: int) -> RetrievalData:
    """A dev set by folder name; ``NAME>=T`` turns the first ``max_pairs`` pairs (0: all) of a pair set into
    retrieval (:func:`pairs_as_retrieval`)."""
    name, _, threshold = spec.partition(">=")
    data = dataset_reader(root / name, "dev")()
    if not threshold:
        return data
    if max_pairs:
        data.sentences1, data.sentences2, data.gold = (
            x[:max_pairs] for x in (data.sentences1, data.sentences2, data.gold)
        )
    return pairs_as_retrieval(data, float(threshold))


def own_prompts(model) -> tuple[str, str]:
    """The prompt strings ``encode_query`` / ``encode_document`` prepend (sentence-transformers 6.2's lookup)."""
    prompts = model.prompts or {}
    document = next((prompts[name] for name in ("document", "passage", "corpus") if name in prompts), "")
    return prompts.get("query") or "", document or ""


def scores(model, data: RetrievalData, query_prompt: str, document_prompt: str, cache: dict) -> dict[str, float]:
    """R@1 and nDCG@10 of ``data`` with the two prompts prepended (``""``: none); encodings are cached by prompt."""

    def embed(side: str, texts: list[str], prompt: str):
        key = (data.name, side, prompt)
        if key not in cache:
            cache[key] = model.encode(
                texts, prompt=prompt or None, normalize_embeddings=True, show_progress_bar=False, batch_size=32
            )
        return cache[key]

    q, c = embed("queries", data.queries, query_prompt), embed("corpus", data.corpus, document_prompt)
    found = metrics.retrieval(q @ c.T, data.relevant)
    return {"r@1": found["r@1"], "ndcg@10": found["ndcg@10"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="NAME=PATH of each model")
    parser.add_argument("--data", default=str(data_root()), help="root of the shared data layout")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["viquad_vi", "viqa_regwiki_vi", "stsb_en>=4", "vnpara_vi>=1"],
        help="dev sets; NAME>=T: the pairs of a pair set scoring at least T, as retrieval among all second sentences",
    )
    parser.add_argument("--max_queries", type=int, default=0, help="keep the first N queries (0: all)")
    parser.add_argument("--max_pairs", type=int, default=600, help="NAME>=T sets: read the first N pairs (0: all)")
    args = parser.parse_args(argv)
    sets = []
    for name in args.datasets:
        data = read(Path(args.data), name, args.max_pairs)
        if args.max_queries:
            data.queries, data.relevant = data.queries[: args.max_queries], data.relevant[: args.max_queries]
        sets.append(data)
        print(f"{name}: {len(data.queries)} queries, {len(data.corpus)} passages (dev)")
    header = "| model | prompts (query / document) | " + " | ".join(f"{d.name} R@1 | nDCG@10" for d in sets) + " |"
    rows = [header, "|" + "---|" * (2 + 2 * len(sets))]
    start = time.time()
    for spec in args.models:
        label, path = spec.split("=", 1)
        model, cache = load_model(path), {}
        own = own_prompts(model)
        settings = dict(SETTINGS, **{f"own: {own[0]!r} / {own[1]!r}": own})
        for setting, (query_prompt, document_prompt) in settings.items():
            cells = []
            for data in sets:
                found = scores(model, data, query_prompt, document_prompt, cache)
                cells += [f"{found['r@1']:.3f}", f"{found['ndcg@10']:.3f}"]
            rows.append(f"| {label} | {setting} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
