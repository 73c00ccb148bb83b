"""``CalibrationProfile``: a monotone map from cosine to a relevance in [0, 1], fit on labelled pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TARGETS = ("graded", "binary")
# Share of the seed mapping (cos + 1) / 2 blended into every map: makes the calibrated score *strictly* increasing
# in the cosine (the isotonic fit has flat steps), so it ranks exactly as the cosine. Its effect on any ECE is
# at most this value.
STRICTNESS = 1e-3


@dataclass(frozen=True)
class CalibrationProfile:
    r"""A named monotone map :math:`g_d(\cos)` from the cosine of two width-``d`` embeddings to a relevance in [0, 1].

    :math:`g_d(c) = (1 - \delta)\,\mathrm{iso}_d(c) + \delta\,(c + 1)/2` with :math:`\delta` = ``STRICTNESS``
    (1e-3): :math:`\mathrm{iso}_d` is the isotonic regression of the gold relevance on the cosine of the fitting
    pairs (pool-adjacent-violators, scikit-learn's ``IsotonicRegression``), stored as its knots and applied by
    linear interpolation, clipped to the end knots outside the fitted range. Strictly increasing, so the
    calibrated score orders any two pairs exactly as their cosines do: calibration costs no ranking.

    Why a map and not ``(cos + 1) / 2`` (the seeds' calibrated score, kept as ``calibrated_similarity(a, b)``
    without a model): reading half of a graded set's pairs as "score < 0.5" needs negative cosines for them, and
    many vectors on a sphere cannot be mutually negative (the mean pairwise cosine of n vectors is
    ≥ −1/(n − 1)); a 1-D monotone map fit on train pairs is calibrated on new pairs of the same kind (README,
    Real quality). Label scales differ between sets (STS-B "similarity" vs SICK "relatedness", P(paraphrase),
    P(relevant passage)), hence one profile per kind of question.

    Args:
        name: The profile's name (``"sts"``, ``"qa"``, ``"default"``, ...).
        target: ``"graded"`` (gold relevance in [0, 1], e.g. an STS score mapped from 0–5) or ``"binary"`` (0/1
            labels: the map gives P(relevant)).
        maps: ``{width: (knots_x, knots_y)}``: one map per embedding width (each Matryoshka prefix has its own
            cosine distribution); ``knots_x`` strictly increasing cosines, ``knots_y`` non-decreasing in [0, 1].
        fit_on: Where the fitting pairs came from (file paths, for the model card and the reader).
        pairs: Number of fitting pairs.
    """

    name: str
    target: str
    maps: dict[int, tuple[tuple[float, ...], tuple[float, ...]]]
    fit_on: tuple[str, ...] = ()
    pairs: int = 0
    method: str = "isotonic"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (e.g. the fitting set's base rate)

    def __post_init__(self) -> None:
        where = f"calibration profile {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A calibration profile needs a non-empty string name, got {self.name!r}")
        if self.target not in TARGETS:
            raise ValueError(f"{where}: target must be one of {list(TARGETS)}, got {self.target!r}")
        if self.method != "isotonic":
            raise ValueError(f"{where}: method must be 'isotonic', got {self.method!r}")
        if not self.maps:
            raise ValueError(f"{where}: needs at least one map (width -> knots), got none")
        for width, (xs, ys) in self.maps.items():
            x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
            if not isinstance(width, int) or width <= 0:
                raise ValueError(f"{where}: map widths must be positive ints, got {width!r}")
            if x.ndim != 1 or x.shape != y.shape or x.size < 1:
                raise ValueError(f"{where}, width {width}: knots_x and knots_y must be equal-length 1-D lists")
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise ValueError(f"{where}, width {width}: knots must be finite numbers")
            if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                raise ValueError(f"{where}, width {width}: knots_x must increase strictly and knots_y never decrease")
            if y.min() < 0 or y.max() > 1:
                raise ValueError(f"{where}, width {width}: knots_y must lie in [0, 1], got [{y.min()}, {y.max()}]")

    @property
    def widths(self) -> list[int]:
        return sorted(self.maps)

    def __call__(self, cosines: np.ndarray, width: int) -> np.ndarray:
        """The calibrated relevance of ``cosines`` (any shape) between width-``width`` embeddings."""
        if width not in self.maps:
            raise ValueError(
                f"Calibration profile {self.name!r} has maps for embedding widths {self.widths}, not {width}: "
                f"fit one for this width (python -m st_unirep.calibrate ... --dims {width})"
            )
        xs, ys = self.maps[width]
        cosines = np.asarray(cosines, dtype=np.float64)
        isotonic = np.interp(cosines, xs, ys)  # clipped to the end knots outside [xs[0], xs[-1]]
        return np.clip((1 - STRICTNESS) * isotonic + STRICTNESS * (cosines + 1) / 2, 0.0, 1.0)

    def cosine_threshold(self, score: float, width: int) -> float:
        """The smallest cosine whose calibrated score is ≥ ``score`` (for a vector database's score threshold).

        Exact for the piecewise-linear map: the map is strictly increasing, so the pre-image of ``[score, 1]`` is
        ``[c*, 1]``; found by bisection to 1e-9 (the map has no closed-form inverse across its clipped ends).
        Returns a value above 1 when no cosine reaches ``score``.
        """
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"A calibrated score threshold must be in [0, 1], got {score!r}")
        lo, hi = -1.0, 1.0
        if float(self(np.array(hi), width)) < score:
            return 1.0 + 1e-6
        if float(self(np.array(lo), width)) >= score:
            return lo
        for _ in range(60):  # 2 / 2**60: far below float32 resolution
            mid = (lo + hi) / 2
            if float(self(np.array(mid), width)) >= score:
                hi = mid
            else:
                lo = mid
        return hi

    @classmethod
    def fit(
        cls,
        name: str,
        cosines: dict[int, np.ndarray],
        target_values: np.ndarray,
        target: str,
        fit_on: tuple[str, ...] = (),
    ) -> CalibrationProfile:
        """Fit one isotonic map per width from ``cosines[width]`` (``(n,)``) against ``target_values`` (``(n,)``).

        ``target_values`` are gold relevances in [0, 1] (``target="graded"``) or 0/1 labels (``"binary"``).
        """
        from sklearn.isotonic import IsotonicRegression

        y = np.asarray(target_values, dtype=np.float64)
        if y.ndim != 1 or y.size < 2:
            raise ValueError(f"Fitting profile {name!r} needs at least 2 labelled pairs, got {y.size}")
        if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
            raise ValueError(f"Fitting profile {name!r}: targets must be finite and in [0, 1]")
        if target == "binary" and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"Fitting binary profile {name!r}: labels must be 0 or 1")
        if target == "binary" and y.min() == y.max():
            raise ValueError(f"Fitting binary profile {name!r} needs both labels, got only {int(y[0])}")
        maps = {}
        for width, values in cosines.items():
            x = np.asarray(values, dtype=np.float64)
            if x.shape != y.shape or not np.isfinite(x).all():
                raise ValueError(f"Fitting profile {name!r}, width {width}: {x.shape} finite cosines for {y.shape}")
            isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
            maps[int(width)] = (
                tuple(float(v) for v in isotonic.X_thresholds_),
                tuple(float(v) for v in isotonic.y_thresholds_),
            )
        extra = {"mean_target": float(y.mean())}
        return cls(name, target, maps, tuple(fit_on), int(y.size), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "method": self.method,
            "fit_on": list(self.fit_on),
            "pairs": self.pairs,
            "extra": dict(self.extra),
            "maps": {str(width): {"x": list(xs), "y": list(ys)} for width, (xs, ys) in sorted(self.maps.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationProfile:
        """The inverse of :meth:`to_dict`; a malformed entry raises a ValueError naming the profile and field."""
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("maps"), dict):
            raise ValueError(f"Calibration profile {name!r}: expected a mapping with 'maps', got {data!r}"[:300])
        maps = {}
        for width, knots in data["maps"].items():
            if not str(width).isdigit() or not isinstance(knots, dict) or {"x", "y"} - set(knots):
                raise ValueError(f"Calibration profile {name!r}: maps[{width!r}] must be {{'x': [...], 'y': [...]}}")
            maps[int(width)] = (tuple(knots["x"]), tuple(knots["y"]))
        return cls(
            name=name,
            target=data.get("target"),
            maps=maps,
            fit_on=tuple(data.get("fit_on", ())),
            pairs=int(data.get("pairs", 0)),
            method=data.get("method", "isotonic"),
            extra=dict(data.get("extra", {})),
        )
