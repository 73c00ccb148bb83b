from __future__ import annotations

import copy
import pickle

import pytest
import torch

from st_unirep.modules.stable_projection import StableProjection, spectral_normalize


def test_exact_spectral_norm_hand_computed():
    # W = diag(3, 1): sigma_max = 3, W / sigma = diag(1, 1/3)
    projection = StableProjection(2, 2, mode="mlp")
    with torch.no_grad():
        projection.fc2.weight.copy_(torch.diag(torch.tensor([3.0, 1.0])))
    torch.testing.assert_close(projection.spectral_weights()[1], torch.diag(torch.tensor([1.0, 1 / 3])))


@pytest.mark.parametrize("shape", [(32, 64), (64, 16), (1536, 1024), (1536, 2048)])
def test_spectral_norm_bounds_largest_singular_value(shape):
    torch.manual_seed(0)
    projection = StableProjection(*shape, mode="mlp").eval()
    for weight in projection.spectral_weights():
        sigma = torch.linalg.matrix_norm(weight.detach().double(), ord=2).item()
        assert sigma <= 1 + 1e-3, sigma
        assert sigma >= 0.99, sigma  # normalised, not merely shrunk


def test_spectral_norm_holds_after_training_steps():
    torch.manual_seed(0)
    projection = StableProjection(32, 48, mode="mlp")
    optimizer = torch.optim.SGD(projection.parameters(), lr=0.1)
    x, target = torch.randn(16, 32), 10 * torch.randn(16, 48)  # a target far outside the unit ball pulls W up
    for _ in range(50):
        out = projection({"sentence_embedding": x})["sentence_embedding"]
        torch.nn.functional.mse_loss(out, target).backward()
        optimizer.step()
        optimizer.zero_grad()
    projection.eval()
    for weight in projection.spectral_weights():
        assert torch.linalg.matrix_norm(weight.detach(), ord=2).item() <= 1 + 1e-3


def test_orthogonality_penalty_hand_computed():
    projection = StableProjection(3, 2, mode="mlp", hidden_features=3)
    with torch.no_grad():
        # fc2.weight is W / sigma_max; set W with orthonormal rows: penalty 0.
        projection.fc2.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    assert projection.orthogonality_penalty().item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        # rows (1, 0, 0) and (0.5, 0, 0): sigma_max = sqrt(1.25); W/sigma: rows a=(1/s,0,0), b=(0.5/s,0,0)
        projection.fc2.weight.copy_(torch.tensor([[1.0, 0, 0], [0.5, 0, 0]]))
    s2 = 1.25
    gram = torch.tensor([[1 / s2, 0.5 / s2], [0.5 / s2, 0.25 / s2]])
    expected = ((gram - torch.eye(2)) ** 2).sum().item()
    assert projection.orthogonality_penalty().item() == pytest.approx(expected, rel=1e-4)


def test_orthogonality_penalty_zero_for_linear_layernorm():
    assert StableProjection(8, 4, mode="linear_layernorm").orthogonality_penalty().item() == 0.0


def test_linear_layernorm_matches_formula():
    torch.manual_seed(0)
    projection = StableProjection(8, 4, mode="linear_layernorm")
    c = torch.randn(3, 8)
    expected = torch.nn.functional.layer_norm(c @ projection.linear.weight.T, (4,))
    torch.testing.assert_close(projection({"sentence_embedding": c})["sentence_embedding"], expected)
    assert projection.linear.bias is None


def test_bad_options():
    with pytest.raises(ValueError, match="Unknown projection mode 'conv'"):
        StableProjection(8, 4, mode="conv")
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        StableProjection(8, 0)


@pytest.mark.parametrize("mode", ["linear_layernorm", "mlp"])
def test_save_load_restores_weights(tmp_path, mode):
    projection = StableProjection(8, 6, mode=mode).eval()
    projection.save(str(tmp_path))
    loaded = StableProjection.load(str(tmp_path)).eval()
    x = {"sentence_embedding": torch.randn(4, 8)}
    assert torch.equal(projection(x)["sentence_embedding"], loaded(x)["sentence_embedding"])


def test_spectral_norm_is_exact_under_bf16_autocast():
    torch.manual_seed(0)
    projection = StableProjection(64, 48, mode="mlp")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = projection.spectral_weights()
    for weight in weights:
        assert weight.dtype == torch.float32
        assert torch.linalg.matrix_norm(weight.detach(), ord=2).item() == pytest.approx(1.0, abs=1e-5)


def _reference_forward(projection: StableProjection, x: torch.Tensor) -> torch.Tensor:
    """The unoptimised formula: exact spectral norm (eigvalsh) of both weights in every call."""
    F = torch.nn.functional
    hidden = F.gelu(F.linear(x, spectral_normalize(projection.fc1.weight), projection.fc1.bias))
    return F.linear(hidden, spectral_normalize(projection.fc2.weight), projection.fc2.bias)


def _reference_orthogonality(projection: StableProjection) -> torch.Tensor:
    weight = spectral_normalize(projection.fc2.weight)
    gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight
    return ((gram - torch.eye(gram.shape[0])) ** 2).sum()


@pytest.mark.parametrize("in_features, out_features, hidden", [(8, 6, None), (16, 64, 24), (48, 32, 96)])
def test_cached_spectral_norm_matches_reference_values_and_gradients(in_features, out_features, hidden):
    torch.manual_seed(0)
    projection = StableProjection(in_features, out_features, mode="mlp", hidden_features=hidden)
    optimizer = torch.optim.AdamW(projection.parameters(), lr=1e-2)
    x = torch.randn(5, in_features, requires_grad=True)
    for _ in range(3):  # across optimizer steps: the cache must follow the weights
        out = projection({"sentence_embedding": x})["sentence_embedding"]
        loss = (out**2).sum() + projection.orthogonality_penalty()
        grads = torch.autograd.grad(loss, [x, *projection.parameters()])
        ref_out = _reference_forward(projection, x)
        ref_loss = (ref_out**2).sum() + _reference_orthogonality(projection)
        ref_grads = torch.autograd.grad(ref_loss, [x, *projection.parameters()])
        torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
        for grad, ref_grad in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)
        with torch.inference_mode():  # the no-grad fast path (encode)
            fast = projection({"sentence_embedding": x.detach()})["sentence_embedding"]
        torch.testing.assert_close(fast, ref_out.detach(), atol=1e-5, rtol=1e-5)
        for param, grad in zip(projection.parameters(), grads[1:], strict=True):
            param.grad = grad
        optimizer.step()


def test_cache_is_refreshed_by_in_place_updates_copies_and_dtype_moves():
    torch.manual_seed(0)
    projection = StableProjection(12, 10, mode="mlp").eval()
    c = torch.randn(3, 12)
    x = {"sentence_embedding": c}
    with torch.no_grad():
        projection(x)  # fill the cache
        projection.fc1.weight.mul_(3.0)  # in-place: version bump
        torch.testing.assert_close(projection(x)["sentence_embedding"], _reference_forward(projection, c))
        projection.load_state_dict({k: v * 0.5 for k, v in projection.state_dict().items()})
        torch.testing.assert_close(projection(x)["sentence_embedding"], _reference_forward(projection, c))
    copied = copy.deepcopy(projection)
    assert copied._spectral_cache == {}
    with torch.no_grad():
        copied.fc2.weight.add_(1.0)
        assert not torch.allclose(copied(x)["sentence_embedding"], projection(x)["sentence_embedding"])
    restored = pickle.loads(pickle.dumps(projection))
    assert restored._spectral_cache == {}
    projection.double()
    assert projection._spectral_cache == {}
    y = {"sentence_embedding": x["sentence_embedding"].double()}
    with torch.no_grad():
        assert projection(y)["sentence_embedding"].dtype == torch.float64


def test_cache_filled_in_inference_mode_serves_a_training_step():
    torch.manual_seed(0)
    projection = StableProjection(8, 6, mode="mlp")
    x = {"sentence_embedding": torch.randn(4, 8)}
    with torch.inference_mode():
        projection(x)
    out = projection(x)["sentence_embedding"]
    out.sum().backward()  # would raise if the cached singular vectors were inference tensors
    assert projection.fc1.weight.grad is not None and torch.isfinite(projection.fc1.weight.grad).all()


def test_reset_to_identity():
    x = torch.tensor([[0.5, -1.0, 2.0, 0.0], [3.0, -0.5, 0.25, 1.0]])
    projection = StableProjection(4, 4, mode="linear_layernorm")
    projection.reset_to_identity()
    out = projection({"sentence_embedding": x})["sentence_embedding"]
    torch.testing.assert_close(out, torch.nn.functional.layer_norm(x, (4,)))  # LayerNorm(I c)
    projection = StableProjection(4, 4, mode="mlp")
    projection.reset_to_identity(shift=3.0)
    out = projection({"sentence_embedding": x})["sentence_embedding"]
    torch.testing.assert_close(out, torch.nn.functional.gelu(x + 3.0) - 3.0)  # sigma_max(I) = 1: W / sigma = I
    assert (out - x).abs().max() < 0.046  # GELU(c + 3) - 3 = c within (c + 3)(1 - Phi(c + 3)): 0.0455 at c = -1
    assert (out - x)[x >= 0].abs().max() < 0.0041  # 3 (1 - Phi(3)) = 0.00405 at c = 0
    with pytest.raises(ValueError, match="in_features == out_features"):
        StableProjection(4, 3, mode="mlp").reset_to_identity()


def test_cache_follows_weight_changes_that_do_not_bump_the_version_counter():
    """Regression: optimizer steps left ``_version`` unchanged, and a version-keyed cache served stale vectors."""
    torch.manual_seed(0)
    projection = StableProjection(12, 8, mode="mlp")
    x = torch.randn(5, 12)
    projection({"sentence_embedding": x})  # fills the cache
    with torch.no_grad():
        projection.fc1.weight.data.add_(0.3 * torch.randn_like(projection.fc1.weight))  # bypasses the counter
        projection.fc2.weight.data.mul_(torch.linspace(0.5, 2.0, 12))
    out = projection({"sentence_embedding": x})["sentence_embedding"]
    w1 = spectral_normalize(projection.fc1.weight.detach())
    w2 = spectral_normalize(projection.fc2.weight.detach())
    expected = torch.nn.functional.linear(
        torch.nn.functional.gelu(torch.nn.functional.linear(x, w1, projection.fc1.bias)), w2, projection.fc2.bias
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
