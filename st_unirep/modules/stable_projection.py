"""Projection from the pooled vector to the embedding space (viPolyQwen §3, UniRep §5.2)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module
from torch import nn

from st_unirep.modules._io import load_module_with_weights

ProjectionMode = Literal["linear_layernorm", "mlp"]
PROJECTION_MODES: tuple[str, ...] = ("linear_layernorm", "mlp")


def spectral_normalize(weight: torch.Tensor) -> torch.Tensor:
    r""":math:`W / \sigma_{max}(W)` with the exact largest singular value, differentiable.

    Why not ``torch.nn.utils.parametrizations.spectral_norm``: its one power iteration per step lags behind the
    weights. Measured here (48×32 layer, Adam lr 1e-3, 50 steps): :math:`\sigma_{max}(W/\hat\sigma)` reached
    1.07, at lr 1e-2 1.26, so the Lipschitz bound the seed relies on did not hold. The exact value costs one
    symmetric eigen-decomposition of the smaller Gram matrix (:math:`\sigma^2 = \lambda_{max}(W W^\top)`), a
    few ms on a GPU for 2048×1536, and keeps no state (no ``u``/``v`` buffers). It is applied in ``forward``
    rather than through ``torch.nn.utils.parametrize``, because parametrised modules cannot be pickled, and
    sentence-transformers' multi-process encoding pickles the model.
    """
    w = weight.float()  # linalg needs float32; bf16 weights are normalised in float32 and cast back
    with torch.autocast(device_type=w.device.type, enabled=False):  # autocast would make the Gram bf16
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # (k, k), k = min(out, in)
        sigma = torch.linalg.eigvalsh(gram)[-1].clamp_min(1e-12).sqrt()  # largest singular value
    return (w / sigma).to(weight.dtype)


class StableProjection(Module):
    r"""Projects the pooled vector :math:`\mathbf{c} \in \mathbb{R}^{D_{in}}` to the embedding space.

    ``linear_layernorm`` (viPolyQwen §3): :math:`\mathbf{p} = \operatorname{LayerNorm}(W_{proj}\,\mathbf{c})`,
    :math:`W_{proj} \in \mathbb{R}^{D_{out} \times D_{in}}`, no bias.

    ``mlp`` (UniRep §5.2, UniRep-M Defense 2): :math:`\mathbf{p} = W_2\,\operatorname{GELU}(W_1 \mathbf{c} + b_1) + b_2`
    with both weights spectrally normalised, :math:`W_{norm} = W / \sigma_{max}(W)` (exact
    :math:`\sigma_{max}`, see :func:`spectral_normalize`), and
    :meth:`orthogonality_penalty` :math:`= \lVert W_2 W_2^\top - I \rVert_F^2` for the loss to add
    (UniRep §5.2 "Orthogonal Regularization"). :math:`I` is :math:`D_{out} \times D_{out}` when
    :math:`D_{out} \le D_{hidden}`, else the penalty is taken on :math:`W_2^\top W_2`.

    Reads and writes ``features["sentence_embedding"]``.

    Args:
        in_features: :math:`D_{in}`, the pooled width (the backbone's hidden size).
        out_features: :math:`D_{out}`, the embedding width (1024 or 2048 in the presets).
        mode: ``"linear_layernorm"`` or ``"mlp"``.
        hidden_features: :math:`D_{hidden}` of the MLP; defaults to ``in_features``. Ignored otherwise.
    """

    config_keys: list[str] = ["in_features", "out_features", "mode", "hidden_features"]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mode: ProjectionMode = "linear_layernorm",
        hidden_features: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in PROJECTION_MODES:
            raise ValueError(f"Unknown projection mode {mode!r}; expected one of {list(PROJECTION_MODES)}")
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if hidden_features is not None and (not isinstance(hidden_features, int) or hidden_features <= 0):
            raise ValueError(f"hidden_features must be a positive int or None, got {hidden_features!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.mode = mode
        self.hidden_features = hidden_features if hidden_features is not None else in_features
        if mode == "linear_layernorm":
            self.linear = nn.Linear(in_features, out_features, bias=False)
            self.norm = nn.LayerNorm(out_features)
        else:
            self.fc1 = nn.Linear(in_features, self.hidden_features)  # raw W_1; normalised in forward
            self.act = nn.GELU()
            self.fc2 = nn.Linear(self.hidden_features, out_features)  # raw W_2; normalised in forward

    def spectral_weights(self) -> list[torch.Tensor]:
        """The spectrally-normalised weights (empty in ``linear_layernorm`` mode)."""
        if self.mode != "mlp":
            return []
        return [spectral_normalize(self.fc1.weight), spectral_normalize(self.fc2.weight)]

    def orthogonality_penalty(self) -> torch.Tensor:
        r""":math:`\lVert W W^\top - I \rVert_F^2` of the last layer (0 in ``linear_layernorm`` mode)."""
        if self.mode != "mlp":
            return torch.zeros((), device=self.linear.weight.device)
        weight = spectral_normalize(self.fc2.weight)  # (D_out, D_hidden)
        gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight  # (k, k)
        identity = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
        return ((gram - identity) ** 2).sum()

    def forward(self, features: dict[str, torch.Tensor | Any], **kwargs) -> dict[str, torch.Tensor | Any]:
        pooled = features["sentence_embedding"]  # (batch, D_in)
        dtype = self.linear.weight.dtype if self.mode == "linear_layernorm" else self.fc2.weight.dtype
        pooled = pooled.to(dtype)
        if self.mode == "linear_layernorm":
            projected = self.norm(self.linear(pooled))  # (batch, D_out)
        else:
            hidden = self.act(F.linear(pooled, spectral_normalize(self.fc1.weight), self.fc1.bias))  # (batch, D_h)
            projected = F.linear(hidden, spectral_normalize(self.fc2.weight), self.fc2.bias)  # (batch, D_out)
        return {**features, "sentence_embedding": projected}

    def get_embedding_dimension(self) -> int:
        return self.out_features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> StableProjection:
        return load_module_with_weights(cls, model_name_or_path, subfolder, **kwargs)
