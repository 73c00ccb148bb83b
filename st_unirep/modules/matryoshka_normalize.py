"""L2 normalisation whose Matryoshka prefixes stay unit-norm under ``truncate_dim``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sentence_transformers.base.modules import Normalize

from st_unirep import _compat
from st_unirep.modules.encode_guard import guard_encode

if TYPE_CHECKING:
    from sentence_transformers.base.model import BaseModel


class MatryoshkaNormalize(Normalize):
    r"""sentence-transformers' ``Normalize`` (:math:`e / \lVert e \rVert_2`) for Matryoshka embeddings.

    Identical to ``Normalize`` in the forward pass. When the model is built or loaded it also makes
    ``model.encode`` re-normalise after truncation, so ``truncate_dim=k`` (constructor, context manager or
    ``encode`` argument) returns :math:`e_{1:k} / \lVert e_{1:k} \rVert_2`, the unit-norm prefix the
    Matryoshka loss trained, instead of ST's raw slice. ST truncates after the module pipeline, so this needs an
    instance-level ``encode``: :func:`st_unirep._compat.install_unit_norm_encode` says why and how. The same
    ``encode`` names a bad input by its position and refuses non-finite embeddings
    (:func:`~st_unirep.modules.encode_guard.guard_encode`).
    """

    def on_model_ready(self, model: BaseModel) -> None:
        _compat.install_unit_norm_encode(model, guard_encode)
