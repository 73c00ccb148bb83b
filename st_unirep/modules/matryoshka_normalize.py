"""L2 normalisation whose Matryoshka prefixes stay unit-norm under ``truncate_dim``."""

from __future__ import annotations

import inspect
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.modules import Normalize

if TYPE_CHECKING:
    from sentence_transformers.base.model import BaseModel


class _UnitNormEncode:
    """Instance-level ``encode`` for st_unirep models (installed by :class:`MatryoshkaNormalize`).

    Why a wrapper and not a module: sentence-transformers truncates ``sentence_embedding`` *after* the
    module pipeline has run (``SentenceTransformer._inference``), so a ``Normalize`` module can never see the
    truncated vector and plain ST returns prefixes with norms < 1. ST does re-normalise after truncating when
    ``normalize_embeddings=True``; this wrapper turns that on whenever a truncation is in effect (the
    ``truncate_dim`` argument or the model's own ``truncate_dim``), and returns a ``(0, dim)`` array for an
    empty input list instead of ST's shapeless ``np.array([])``. Everything else is ``SentenceTransformer.encode``.
    """

    def __init__(self, model: BaseModel) -> None:
        self._model = weakref.ref(model)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model = self._model()
        encode = type(model).encode
        bound = inspect.signature(encode).bind(model, *args, **kwargs)
        arguments = bound.arguments
        inputs = arguments.get("inputs")
        output_value = arguments.get("output_value", "sentence_embedding")
        truncate_dim = arguments.get("truncate_dim") or model.truncate_dim
        if output_value == "sentence_embedding":
            if truncate_dim is not None:
                arguments["normalize_embeddings"] = True
            if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
                width = model.get_embedding_dimension()
                width = min(width, truncate_dim) if truncate_dim else width
                if arguments.get("convert_to_tensor", False):
                    return torch.zeros((0, width), device=model.device)
                if arguments.get("convert_to_numpy", True):
                    return np.zeros((0, width), dtype=np.float32)
                return []
        return encode(*bound.args, **bound.kwargs)

    def __reduce__(self):  # picklable for ST's multi-process pools: rebuilt from the model on the other side
        return (_UnitNormEncode, (self._model(),))


class MatryoshkaNormalize(Normalize):
    r"""sentence-transformers' ``Normalize`` (:math:`e / \lVert e \rVert_2`) for Matryoshka embeddings.

    Identical to ``Normalize`` in the forward pass. When the model is built or loaded it also makes
    ``model.encode`` re-normalise after truncation, so ``truncate_dim=k`` (constructor, context manager or
    ``encode`` argument) returns :math:`e_{1:k} / \lVert e_{1:k} \rVert_2`, the unit-norm prefix the
    Matryoshka loss trained, instead of ST's raw slice. See :class:`_UnitNormEncode` for why this needs a hook.
    """

    def on_model_ready(self, model: BaseModel) -> None:
        if hasattr(type(model), "encode") and not isinstance(model.__dict__.get("encode"), _UnitNormEncode):
            model.encode = _UnitNormEncode(model)
