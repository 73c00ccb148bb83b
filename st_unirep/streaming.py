"""Encode an iterable of any length straight to a ``.npy`` file, with memory bounded by one chunk."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_HEADER_BYTES = 128  # fixed .npy (v1.0) header size, so the final shape can be written over the provisional one


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version-1.0 ``.npy`` header of exactly ``_HEADER_BYTES`` bytes (NumPy allows space padding)."""
    fields = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    text = repr(fields).encode("latin1")
    prefix = np.lib.format.MAGIC_PREFIX + bytes([1, 0])
    room = _HEADER_BYTES - len(prefix) - 2 - 1  # 2 bytes of header length, 1 newline
    if len(text) > room:
        raise ValueError(f"embedding shape {shape} does not fit the fixed .npy header")
    body = text + b" " * (room - len(text)) + b"\n"
    return prefix + len(body).to_bytes(2, "little") + body


def encode_to_disk(
    model: Any,
    inputs: Iterable[Any],
    path: str | os.PathLike,
    *,
    batch_size: int = 16,
    chunk_size: int | None = None,
    dtype: str | np.dtype = "float32",
    show_progress_bar: bool = False,
    **encode_kwargs: Any,
) -> np.ndarray:
    """Encode ``inputs`` chunk by chunk with ``model.encode`` and write the embeddings to a ``.npy`` file.

    Memory stays bounded by one chunk whatever the number of inputs: ``inputs`` may be a generator (of image
    paths, texts, dicts, conversations: anything ``encode`` takes) and is read ``chunk_size`` items at a time;
    each chunk's ``(n, dim)`` embeddings are appended to ``path`` and freed. Within a chunk ``encode`` batches by
    length as usual (st_unirep models sort images by visual tokens), so a larger chunk pads less; rows come out in
    input order. The result is identical to ``model.encode(list(inputs), batch_size=batch_size)`` up to the
    length grouping of batches (within 1e-5 for st_unirep models, tested).

    Args:
        model: A ``SentenceTransformer`` (any; st_unirep or not).
        inputs: An iterable of inputs; need not have a length.
        path: The ``.npy`` file to write (parent folders are created; an existing file is replaced).
        batch_size: ``encode``'s batch size.
        chunk_size: Inputs per ``encode`` call; defaults to ``16 * batch_size``.
        dtype: Stored dtype (``"float32"`` or ``"float16"`` to halve the file).
        show_progress_bar: A tqdm bar over chunks.
        **encode_kwargs: Passed to ``model.encode`` (``truncate_dim``, ``prompt``, ...).

    Returns:
        The embeddings, ``(len(inputs), dim)``, as a read-only ``np.memmap`` of the file (a plain empty array for
        no inputs, which cannot be memory-mapped). ``np.load(path, mmap_mode="r")`` opens the file again later.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    chunk_size = 16 * batch_size if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    for key in ("convert_to_tensor", "convert_to_numpy", "output_value"):
        if key in encode_kwargs:
            raise ValueError(f"encode_to_disk writes sentence embeddings as numpy; {key!r} cannot be set")
    dtype = np.dtype(dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    truncate_dim = encode_kwargs.get("truncate_dim") or getattr(model, "truncate_dim", None)
    width = model.get_embedding_dimension()
    width = min(width, truncate_dim) if truncate_dim else width
    iterator = iter(inputs)
    rows = 0
    progress = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(desc="Encoding to disk", unit="input")
    try:
        with path.open("wb") as handle:
            handle.write(_npy_header((0, width), dtype))  # provisional; the final row count is written at the end
            while chunk := list(itertools.islice(iterator, chunk_size)):
                embeddings = model.encode(chunk, batch_size=batch_size, convert_to_numpy=True, **encode_kwargs)
                embeddings = np.ascontiguousarray(embeddings, dtype=dtype)
                if embeddings.shape != (len(chunk), width):
                    raise ValueError(f"expected embeddings of shape {(len(chunk), width)}, got {embeddings.shape}")
                handle.write(embeddings.tobytes())
                rows += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
            handle.seek(0)
            handle.write(_npy_header((rows, width), dtype))
    finally:
        if progress is not None:
            progress.close()
    logger.info("Wrote %d embeddings of width %d to %s", rows, width, path)
    if rows == 0:  # np.memmap cannot map zero bytes
        return np.load(path)
    return np.load(path, mmap_mode="r")


__all__ = ["encode_to_disk"]
