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


def top_singular_vectors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unit vectors :math:`u, v` with :math:`W v = \sigma_{max} u` (float32, no graph), from one ``eigh``.

    With them, :math:`\sigma_{max} = u^\top W v` holds exactly and, for fixed :math:`u, v`, has the exact gradient
    :math:`\partial \sigma_{max} / \partial W = u v^\top` (the gradient of the eigenvalue that
    :func:`spectral_normalize` differentiates), so a differentiable :math:`W / (u^\top W v)` costs two
    mat-vecs once ``u, v`` are known for the current weights.
    """
    with torch.no_grad(), torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.detach().float()  # (out, in)
        if w.shape[0] <= w.shape[1]:
            u = torch.linalg.eigh(w @ w.T)[1][:, -1]  # (out,), top eigenvector of W W^T
            v = w.T @ u  # (in,), = sigma v
            v = v / v.norm().clamp_min(1e-12)
        else:
            v = torch.linalg.eigh(w.T @ w)[1][:, -1]  # (in,), top eigenvector of W^T W
            u = w @ v  # (out,), = sigma u
            u = u / u.norm().clamp_min(1e-12)
    return u, v


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

    **Fast path.** :math:`\sigma_{max}` changes only when the weights do (once per optimizer step), so the
    singular vectors :math:`u, v` of each weight are computed once per weight version (one ``eigh``) and
    :math:`\sigma_{max} = u^\top W v` is rebuilt differentiably from them in every forward, with the same
    value and gradient as :func:`spectral_normalize` (parity-tested to 1e-5). Before each use the cached
    vectors are checked against the current weights (they must be a fixed point of one power-iteration step,
    two mat-vecs), so any change of the weights (optimizer steps, loading, ``param.data`` writes) triggers a
    fresh ``eigh``. An earlier cache keyed on the tensor's version counter served stale vectors after
    optimizer steps, whose in-place updates did not bump it (saved model ≠ model in memory). The cache is
    dropped by ``.to()``/``.half()``, deep copies and pickling.

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
        # name -> (key, u, v, weight reference, normalised weight or None); see the class docstring
        self._spectral_cache: dict[str, tuple] = {}

    def clear_spectral_cache(self) -> None:
        """Forget the cached singular vectors (needed only after changing weights through ``param.data``)."""
        self._spectral_cache = {}

    @staticmethod
    def _still_top(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tolerance: float = 1e-6) -> bool:
        r"""Whether cached :math:`u, v` are still the top singular vectors of ``weight``: they are a fixed point of
        one power-iteration step (:math:`W^\top u \parallel v` and :math:`W v \parallel u`). Two mat-vecs."""
        with torch.no_grad(), torch.autocast(device_type=weight.device.type, enabled=False):
            w = weight.detach().float()  # (out, in)
            v_next = w.T @ u  # (in,)
            u_next = w @ v  # (out,)
            cos_v = (v_next @ v) / v_next.norm().clamp_min(1e-12)
            cos_u = (u_next @ u) / u_next.norm().clamp_min(1e-12)
            return bool(torch.minimum(cos_v, cos_u) > 1 - tolerance)

    def _normalized(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        r""":math:`W / \sigma_{max}(W)` for ``fc1``/``fc2``, equal to ``spectral_normalize(weight)``, from the cache."""
        if weight.is_inference():  # created under inference_mode: cannot serve a later training step
            return spectral_normalize(weight)
        # Not keyed on the version counter: optimizer steps (torch.optim under no_grad) leave ``_version``
        # unchanged here, which served stale vectors after training. Validity is checked on the values instead.
        key = (weight.data_ptr(), weight.dtype, weight.device, tuple(weight.shape))
        entry = self._spectral_cache.get(name)
        if entry is None or entry[0] != key or not self._still_top(weight, entry[1], entry[2]):
            # Normal (non-inference) tensors, so a cache filled inside encode()'s inference_mode serves training.
            with torch.inference_mode(False):
                u, v = top_singular_vectors(weight)
            # The weight reference keeps its storage alive, so a new tensor can never reuse its address.
            entry = (key, u, v, weight.detach())
            self._spectral_cache[name] = entry
        _, u, v, _ = entry
        w = weight.float()  # (out, in)
        with torch.autocast(device_type=w.device.type, enabled=False):
            sigma = (u @ (w @ v)).clamp_min(1e-6)  # sigma_max, differentiable, d sigma / dW = u v^T
        return (w / sigma).to(weight.dtype)

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(), .cuda(): new tensors, new singular vectors
        self._spectral_cache = {}
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:  # deep copies and pickles start with an empty cache
        state = self.__dict__.copy()
        state["_spectral_cache"] = {}
        return state

    @torch.no_grad()
    def reset_to_identity(self, shift: float = 3.0) -> None:
        r"""Start as (nearly) the identity, so a pretrained encoder's geometry survives the new head at step 0.

        ``linear_layernorm``: :math:`W = I`, so :math:`\mathbf{p} = \operatorname{LayerNorm}(\mathbf{c})` (cosines
        become Pearson correlations of the components). ``mlp``: :math:`W_1 = W_2 = I` (:math:`\sigma_{max} = 1`,
        unchanged by the spectral norm), :math:`b_1 = s\mathbf{1}`, :math:`b_2 = -s\mathbf{1}`, so
        :math:`\mathbf{p} = \operatorname{GELU}(\mathbf{c} + s) - s \approx \mathbf{c}`:
        the error :math:`(c_i + s)(1 - \Phi(c_i + s))` is below 0.046 for :math:`c_i \ge 2 - s` and at most 0.0041
        for :math:`c_i \ge 0` at :math:`s = 3`. Needs ``in_features == out_features``
        (and ``hidden_features`` too in ``mlp`` mode).
        """
        sizes = {self.in_features, self.out_features} | ({self.hidden_features} if self.mode == "mlp" else set())
        if len(sizes) != 1:
            raise ValueError(
                f"reset_to_identity needs in_features == out_features (== hidden_features), got {self.in_features}, "
                f"{self.out_features}" + (f", {self.hidden_features}" if self.mode == "mlp" else "")
            )
        eye = torch.eye(self.in_features)
        if self.mode == "linear_layernorm":
            self.linear.weight.copy_(eye)
        else:
            self.fc1.weight.copy_(eye)
            self.fc1.bias.fill_(shift)
            self.fc2.weight.copy_(eye)
            self.fc2.bias.fill_(-shift)
        self._spectral_cache = {}

    def spectral_weights(self) -> list[torch.Tensor]:
        """The spectrally-normalised weights (empty in ``linear_layernorm`` mode)."""
        if self.mode != "mlp":
            return []
        return [self._normalized("fc1", self.fc1.weight), self._normalized("fc2", self.fc2.weight)]

    def orthogonality_penalty(self) -> torch.Tensor:
        r""":math:`\lVert W W^\top - I \rVert_F^2` of the last layer (0 in ``linear_layernorm`` mode)."""
        if self.mode != "mlp":
            return torch.zeros((), device=self.linear.weight.device)
        weight = self._normalized("fc2", self.fc2.weight)  # (D_out, D_hidden)
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
            w1, w2 = self._normalized("fc1", self.fc1.weight), self._normalized("fc2", self.fc2.weight)
            hidden = self.act(F.linear(pooled, w1, self.fc1.bias))  # (batch, D_h)
            projected = F.linear(hidden, w2, self.fc2.bias)  # (batch, D_out)
        return {**features, "sentence_embedding": projected}

    def get_embedding_dimension(self) -> int:
        return self.out_features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> StableProjection:
        return load_module_with_weights(cls, model_name_or_path, subfolder, **kwargs)
