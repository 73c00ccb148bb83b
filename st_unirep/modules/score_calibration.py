"""``ScoreCalibration``: the model's named calibration profiles, saved and loaded with it (identity in forward)."""

from __future__ import annotations

from typing import Any

from sentence_transformers.base.modules import Module

from st_unirep.calibration.calibration_profile import CalibrationProfile

DEFAULT_PROFILE = "default"


class ScoreCalibration(Module):
    """Holds a model's :class:`~st_unirep.calibration.CalibrationProfile` s; passes features through unchanged.

    A module (the last of the pipeline) rather than a side file, so the profiles travel with the model the way
    everything else of a sentence-transformers model does: ``model.save`` writes them
    (``<n>_ScoreCalibration/config.json``, plain JSON: no code, no pickle) and ``st_unirep.model.load_model(path)``
    loads them. Any sentence-transformers model can carry one
    (``python -m st_unirep.calibrate`` appends it), so baselines are calibrated the same way.

    ``model.similarity`` stays the cosine: the map is strictly increasing, so every ranking (mteb, ST's evaluators,
    the losses, a vector database) is the cosine's, and which profile applies is a question only the caller can
    answer. The calibrated score is ``st_unirep.calibrated_similarity(a, b, model=model, profile=...)``.

    Args:
        profiles: ``{name: CalibrationProfile.to_dict()}`` (as saved).
    """

    config_keys = ["profiles"]

    def __init__(self, profiles: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._profiles: dict[str, CalibrationProfile] = {}
        for name, data in (profiles or {}).items():
            profile = CalibrationProfile.from_dict(data)
            if profile.name != name:
                raise ValueError(f"Calibration profile saved under {name!r} is named {profile.name!r}")
            self._profiles[name] = profile

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return {name: profile.to_dict() for name, profile in sorted(self._profiles.items())}

    @property
    def names(self) -> list[str]:
        return sorted(self._profiles)

    def add(self, profile: CalibrationProfile) -> None:
        """Add or replace the profile called ``profile.name``."""
        self._profiles[profile.name] = profile

    def get(self, name: str | None = None) -> CalibrationProfile:
        """The profile ``name`` (``"default"`` when None); an unknown name raises a ValueError listing the known."""
        name = DEFAULT_PROFILE if name is None else name
        if name not in self._profiles:
            raise ValueError(
                f"Unknown calibration profile {name!r}; this model has {self.names or 'none'}. Fit one with "
                f"python -m st_unirep.calibrate --model MODEL --data PAIRS.jsonl --profile {name}"
            )
        return self._profiles[name]

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)

    def __repr__(self) -> str:
        return f"ScoreCalibration(profiles={self.names})"
