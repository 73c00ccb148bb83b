"""Search fixtures: a small deterministic corpus and a tiny model whose vectors are spread out.

The tiny random Qwen2-VL embeds everything within cosine 0.99 of everything else, so rankings would be decided by
float noise. ``search_model`` appends a whitening ``Dense`` (fitted on this corpus) to the tiny ``unirep-m``
model: the same encoding pipeline, vectors with cosines in about [-0.4, 0.4], and prefixes that rank differently
from the full vectors (so the funnel has something to fix).
"""

from __future__ import annotations

import copy
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense

from st_unirep.modules.matryoshka_normalize import MatryoshkaNormalize

TEXTS = {
    "notes/ball.txt": "a red ball on a white table",
    "notes/invoice.md": "# Hóa đơn tháng 3\n\nTổng tiền: 9.00 RM",
    "notes/total.txt": "the total is 9.00",
    "man.txt": "Một người đàn ông đang đứng trên đỉnh núi tuyết",
    "square.md": "a blue square",
    "shop.txt": "receipt from the corner shop, cash bill",
    "paris.txt": "Paris nằm ở điểm gặp nhau của các hành trình thương mại",
    "misc.txt": "x y z",
}
N_IMAGES = 10


def write_corpus(folder: Path) -> list[str]:
    """Write the corpus (10 noise images of different sizes, 8 text files); return the item ids, sorted."""
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        pixels = (rng.random((56 + 8 * i, 84, 3)) * 255).astype(np.uint8)
        suffix = (".png", ".jpg", ".webp")[i % 3]
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / "images" / f"{i:02d}{suffix}")
    for name, text in TEXTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def write_png_bomb(path: Path, side: int = 20_000) -> None:
    """A valid 1-bit PNG of side × side pixels (400 M for 20000) that is a ~50 kB file: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((side + 7) // 8)  # filter byte 0, then side 1-bit pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def corpus_dir(tmp_path) -> tuple[Path, list[str]]:
    folder = tmp_path / "corpus"
    return folder, write_corpus(folder)


@pytest.fixture(scope="session")
def _search_model(_tiny_models, tmp_path_factory) -> tuple[SentenceTransformer, str]:
    base = copy.deepcopy(_tiny_models["unirep-m"])
    modules = list(base)[:-1]  # Backbone, AttentionPooling, StableProjection (without the normalisation)
    folder = tmp_path_factory.mktemp("fit-corpus")
    ids = write_corpus(folder)
    inputs = [
        {"image": str(folder / i)} if i.startswith("images/") else {"text": (folder / i).read_text()} for i in ids
    ]
    raw = SentenceTransformer(modules=modules).encode(inputs).astype(np.float64)  # (n, 64)
    mean = raw.mean(0)
    centred = raw - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(raw))
    whiten = eigenvectors @ np.diag(1 / np.sqrt(eigenvalues + 1e-2 * eigenvalues.max())) @ eigenvectors.T
    dense = Dense(
        raw.shape[1],
        raw.shape[1],
        activation_function=torch.nn.Identity(),
        init_weight=torch.tensor(whiten, dtype=torch.float32),
        init_bias=torch.tensor(-(whiten @ mean), dtype=torch.float32),
    )
    model = SentenceTransformer(modules=[*modules, dense, MatryoshkaNormalize()])
    path = tmp_path_factory.mktemp("search-model") / "model"
    model.save(str(path))
    return model, str(path)


@pytest.fixture
def search_model(_search_model) -> SentenceTransformer:
    """The tiny whitened model (64-d, prefix 16-d), deep-copied."""
    return copy.deepcopy(_search_model[0])


@pytest.fixture(scope="session")
def search_model_path(_search_model) -> str:
    """The same model saved to a folder (for the CLI and subprocesses)."""
    return _search_model[1]
