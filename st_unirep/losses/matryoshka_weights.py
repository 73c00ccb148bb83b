"""Quadratic Matryoshka weights (UniRep-M §6)."""

from __future__ import annotations

from collections.abc import Sequence


def quadratic_matryoshka_weights(dims: Sequence[int]) -> tuple[float, ...]:
    r"""Weights :math:`w_d = (d / D_{max})^2 / \sum_k (k / D_{max})^2` for ``MatryoshkaLoss(matryoshka_weights=...)``.

    For (512, 768, 1024, 2048) this gives (0.0430, 0.0968, 0.1720, 0.6882). UniRep-M prints
    (0.049, 0.110, 0.196, 0.645) for the same formula: its first three follow the d² ratios but its last does not
    (0.645 / 0.196 = 3.3, not (2048 / 1024)² = 4), so the printed values are an arithmetic slip; we follow the
    formula the seed states, "(d/2048)²", normalised to sum to 1.

    Args:
        dims: Positive Matryoshka widths, any order.

    Returns:
        One weight per entry of ``dims``, in the same order, summing to 1.
    """
    if not dims:
        raise ValueError("dims must contain at least one Matryoshka width")
    if any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims):
        raise ValueError(f"Matryoshka dims must be positive ints, got {list(dims)}")
    largest = max(dims)
    squares = [(d / largest) ** 2 for d in dims]
    total = sum(squares)
    return tuple(s / total for s in squares)
