from __future__ import annotations

import numpy as np
import pytest
import torch

from st_unirep.modules.encode_guard import check_finite, position
from st_unirep.modules.inputs import InputError


def test_finite_embeddings_pass_in_every_output_form():
    rows = np.eye(3, dtype=np.float32)
    for output in (rows, torch.from_numpy(rows), list(torch.from_numpy(rows)), rows[0], np.zeros((0, 3))):
        check_finite(output, ["a", "b", "c"])
    check_finite(np.full((2, 3), 7, dtype=np.int8), ["a", "b"])  # quantised output: nothing to check


@pytest.mark.parametrize("form", ["numpy", "tensor", "list"])
def test_non_finite_rows_are_named_by_position_and_description(form):
    rows = np.ones((4, 3), dtype=np.float32)
    rows[1, 0], rows[3, 2] = np.nan, np.inf
    output = {"numpy": rows, "tensor": torch.from_numpy(rows), "list": list(torch.from_numpy(rows))}[form]
    with pytest.raises(ValueError) as raised:
        check_finite(output, ["fine", "a photo.png", "also fine", {"text": "x"}])
    message = str(raised.value)
    assert message.startswith(
        "encode produced non-finite (NaN or inf) embeddings for 2 of 4 input(s): inputs[1] 'a photo.png'; "
        "inputs[3] {'text': 'x'}. "
    )
    assert "check its weights for NaN/inf" in message


def test_a_single_input_is_named_without_a_position_and_long_lists_are_cut():
    with pytest.raises(ValueError, match=r"for 1 of 1 input\(s\): the input 'hello'\. "):
        check_finite(np.array([np.nan, 1.0]), ["hello"], single=True)
    with pytest.raises(ValueError, match=r"for 8 of 8 input\(s\): inputs\[0\] 0; .* inputs\[4\] 4 and 3 more\. "):
        check_finite(np.full((8, 2), np.nan), list(range(8)))


def test_input_errors_find_their_position_by_identity_then_by_equal_string():
    image, conversation = object(), [{"role": "user", "content": "hi"}]
    items = ["text", image, conversation, [{"role": "user", "content": "hi"}]]
    assert position(items, conversation) == 2  # not 3: the same object, not an equal one
    assert position(items, image) == 1
    assert position(items, "te" + "xt") == 0
    assert position(items, object()) is None
    assert str(InputError(image, "Input x: bad").at(1)) == "inputs[1]: Input x: bad"
