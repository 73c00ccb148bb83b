"""What st_unirep adds around ``SentenceTransformer.encode``: bad inputs named by their position, no NaN vectors.

Installed by :class:`~st_unirep.modules.matryoshka_normalize.MatryoshkaNormalize` on the model's instance-level
``encode`` (:func:`st_unirep._compat.install_unit_norm_encode`), the one place that sees the user's inputs in their
order and the embeddings that come back for them (sentence-transformers sorts inputs by length before batching, so no
module sees an input's position).

- An :class:`~st_unirep.modules.inputs.InputError` raised while a batch is built gets the input's position:
  ``inputs[3]: Input 'my photo.jpg': ...``.
- Non-finite sentence embeddings (corrupt weights, fp16 overflow) raise a ValueError naming each such input by
  position and a short description, instead of NaN vectors that make every later score NaN. One
  ``isfinite(...).all()`` over the result; the per-row scan runs only when it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from st_unirep.modules.inputs import InputError, describe

MAX_NAMED = 5  # inputs named in a non-finite-embedding error


def guard_encode(model: Any, inputs: Any, output_value: str | None, run: Callable[[], Any]) -> Any:
    """``run()`` (the model's ``encode`` with its bound arguments), with input errors located and NaN refused.

    Args:
        model: The ``SentenceTransformer`` (for ``is_singular_input``).
        inputs: The ``inputs`` argument of ``encode`` as the user gave it.
        output_value: ``encode``'s ``output_value``; only ``"sentence_embedding"`` results are checked for NaN.
        run: Calls the real ``encode``.
    """
    single = model.is_singular_input(inputs)
    items = [inputs] if single else inputs if isinstance(inputs, (list, tuple)) else None
    try:
        output = run()
    except InputError as error:
        index = None if single or items is None else position(items, error.item)
        if index is None:
            raise
        raise error.at(index) from error.__cause__
    if output_value == "sentence_embedding":
        check_finite(output, items, single=single)
    return output


def position(items: Sequence[Any], item: Any) -> int | None:
    """The index of ``item`` in ``items``: the same object, else (strings copied on the way) an equal string."""
    found = next((i for i, candidate in enumerate(items) if candidate is item), None)
    if found is None and isinstance(item, str):
        found = next((i for i, candidate in enumerate(items) if candidate == item), None)
    return found


def check_finite(output: Any, items: Sequence[Any] | None, *, single: bool = False) -> None:
    """Raise a ValueError naming the inputs whose embeddings hold NaN or inf.

    Args:
        output: What ``encode`` returned: an array, a tensor, a list of tensors, or one vector for a single input.
        items: The inputs in order (None when they cannot be indexed: they are then named by position only).
        single: The input was one example, not a list (it is named without a position).
    """
    rows = _rows(output)
    if rows is None or bool(torch.isfinite(rows).all()):
        return
    bad = torch.nonzero(~torch.isfinite(rows).all(dim=-1)).flatten().tolist()
    named = [_name(index, items, single) for index in bad[:MAX_NAMED]]
    more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    raise ValueError(
        f"encode produced non-finite (NaN or inf) embeddings for {len(bad)} of {rows.shape[0]} input(s): "
        f"{'; '.join(named)}{more}. The model computes NaN/inf for them: check its weights for NaN/inf (a corrupt "
        "or half-written checkpoint) and its dtype (float16 overflow; try float32 or bfloat16)"
    )


def _rows(output: Any) -> torch.Tensor | None:
    """The embeddings as a floating ``(n, d)`` tensor (no copy for arrays and tensors), or None if not floating."""
    if isinstance(output, list):
        if not output:
            return None
        output = torch.stack([torch.as_tensor(row) for row in output])
    if isinstance(output, np.ndarray) and output.dtype.kind != "f":
        return None
    rows = torch.as_tensor(output)
    if not rows.is_floating_point() or rows.numel() == 0:
        return None
    return rows.reshape(1, -1) if rows.ndim == 1 else rows.reshape(rows.shape[0], -1)


def _name(index: int, items: Sequence[Any] | None, single: bool) -> str:
    if items is None:
        return f"inputs[{index}]"
    return f"the input {describe(items[0])}" if single else f"inputs[{index}] {describe(items[index])}"
