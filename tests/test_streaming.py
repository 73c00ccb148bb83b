"""encode_to_disk: chunked encoding to a .npy file equals one encode call."""

from __future__ import annotations

import numpy as np
import pytest

from st_unirep.streaming import encode_to_disk
from tests.conftest import TINY_OUTPUT_DIM, make_image


def _inputs(tmp_path):
    paths = []
    for index, (size, colour) in enumerate([((56, 56), "red"), ((200, 120), "blue"), ((90, 300), "green")]):
        paths.append(str(tmp_path / f"img_{index}.png"))
        make_image(size, colour).save(paths[-1])
    both = {"text": "blue", "image": paths[1]}
    return ["a red ellipse", paths[0], "một hình tròn", both, paths[2], "x " * 30, paths[1]]


@pytest.mark.parametrize("chunk_size, batch_size", [(1, 1), (3, 2), (100, 4)])
def test_chunks_written_to_disk_equal_one_encode_call(tiny_model, tmp_path, chunk_size, batch_size):
    inputs = _inputs(tmp_path)
    expected = tiny_model.encode(inputs, batch_size=batch_size)
    out = tmp_path / "sub" / "embeddings.npy"
    streamed = encode_to_disk(tiny_model, iter(inputs), out, batch_size=batch_size, chunk_size=chunk_size)
    assert isinstance(streamed, np.memmap) and streamed.shape == (len(inputs), TINY_OUTPUT_DIM)
    np.testing.assert_allclose(streamed, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.load(out), streamed)


def test_float16_truncation_and_empty_input(tiny_model, tmp_path):
    inputs = _inputs(tmp_path)[:4]
    half = encode_to_disk(tiny_model, inputs, tmp_path / "half.npy", dtype="float16", truncate_dim=16)
    assert half.dtype == np.float16 and half.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(half.astype(np.float32), axis=1), 1.0, atol=2e-3)  # re-normalised prefix
    empty = encode_to_disk(tiny_model, iter([]), tmp_path / "empty.npy")
    assert empty.shape == (0, TINY_OUTPUT_DIM) and np.load(tmp_path / "empty.npy").shape == (0, TINY_OUTPUT_DIM)


def test_bad_arguments(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        encode_to_disk(tiny_model, ["a"], tmp_path / "x.npy", chunk_size=0)
    with pytest.raises(ValueError, match="'convert_to_tensor' cannot be set"):
        encode_to_disk(tiny_model, ["a"], tmp_path / "x.npy", convert_to_tensor=True)
    with pytest.raises(ValueError, match="does not exist"):  # a bad input names itself, as in encode
        encode_to_disk(tiny_model, ["a", str(tmp_path / "missing.png")], tmp_path / "x.npy")
