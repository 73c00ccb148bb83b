"""CalibrationProfile: analytic fits, strict monotonicity (ranking kept), round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from st_unirep.calibration import CalibrationProfile
from st_unirep.calibration.calibration_profile import STRICTNESS
from st_unirep.evaluation import metrics


def _grid(n=2001):
    return np.linspace(-1, 1, n)


def test_fit_of_a_monotone_truth_reproduces_it():
    x = _grid()
    truth = np.clip(2 * x - 0.5, 0, 1)  # a hinge: 0 below 0.25, 1 above 0.75
    profile = CalibrationProfile.fit("t", {8: x}, truth, "graded")
    fitted = profile(x, 8)
    np.testing.assert_allclose(fitted, (1 - STRICTNESS) * truth + STRICTNESS * (x + 1) / 2, atol=1e-9)
    assert metrics.calibration(fitted, truth)["ece"] < 2 * STRICTNESS


def test_seed_mapping_is_a_fixed_point():
    x = _grid()
    profile = CalibrationProfile.fit("seed", {4: x}, (x + 1) / 2, "graded")
    np.testing.assert_allclose(profile(np.array([-0.5, 0.0, 0.3]), 4), [0.25, 0.5, 0.65], atol=1e-9)


def test_binary_step():
    x = _grid(400)
    labels = (x > 0.5).astype(float)
    profile = CalibrationProfile.fit("p", {4: x}, labels, "binary")
    assert profile(np.array(0.0), 4) < 0.01 and profile(np.array(0.9), 4) > 0.99
    assert profile.extra["mean_target"] == pytest.approx(labels.mean())


def test_strictly_increasing_so_rankings_equal_the_cosine():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 500)
    noisy = (rng.uniform(size=500) < (x + 1) / 2).astype(float)  # isotonic fit has many flat steps
    profile = CalibrationProfile.fit("b", {16: x}, noisy, "binary")
    query = np.sort(rng.uniform(-1, 1, 1000))  # the whole cosine range, beyond the fitted points
    scores = profile(query, 16)
    assert np.all(np.diff(scores) > 0)
    assert scores.min() >= 0 and scores.max() <= 1


def test_round_trip_and_width_selection():
    x = _grid(50)
    profile = CalibrationProfile.fit("sts", {8: x, 4: x * 0.5}, (x + 1) / 2, "graded", fit_on=("a.jsonl",))
    again = CalibrationProfile.from_dict(profile.to_dict())
    assert again == profile
    assert again.widths == [4, 8]
    with pytest.raises(ValueError, match=r"widths \[4, 8\], not 16.*--dims 16"):
        profile(np.array(0.1), 16)


@pytest.mark.parametrize(
    "maps, match",
    [
        ({"8": {"x": [0.0, 0.5], "y": [0.6, 0.4]}}, "never decrease"),
        ({"8": {"x": [0.5, 0.0], "y": [0.1, 0.4]}}, "increase strictly"),
        ({"8": {"x": [0.0, 0.5], "y": [0.1, 1.4]}}, r"in \[0, 1\]"),
        ({"8": {"x": [0.0]}}, "must be"),
        ({}, "at least one map"),
    ],
)
def test_malformed_profiles_are_refused(maps, match):
    with pytest.raises(ValueError, match=match):
        CalibrationProfile.from_dict({"name": "bad", "target": "graded", "maps": maps})


def test_fit_refuses_bad_targets():
    x = _grid(10)
    with pytest.raises(ValueError, match="0 or 1"):
        CalibrationProfile.fit("b", {4: x}, np.full(10, 0.5), "binary")
    with pytest.raises(ValueError, match="both labels"):
        CalibrationProfile.fit("b", {4: x}, np.ones(10), "binary")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        CalibrationProfile.fit("g", {4: x}, np.full(10, 3.0), "graded")


def test_cosine_threshold_inverts_the_map():
    x = _grid()
    profile = CalibrationProfile.fit("t", {8: x}, np.clip(x, 0, 1), "graded")
    for score in (0.1, 0.5, 0.9):
        c = profile.cosine_threshold(score, 8)
        assert profile(np.array(c), 8) >= score > profile(np.array(c - 1e-6), 8)
    assert profile.cosine_threshold(0.0, 8) == -1.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        profile.cosine_threshold(1.5, 8)
