"""Score calibration: named monotone maps from cosine to relevance, fit on labelled pairs, saved with the model."""

from st_unirep.calibration.calibration_profile import CalibrationProfile
from st_unirep.calibration.fitting import attach_profiles, find_calibration, fit_profiles, load_calibration

__all__ = ["CalibrationProfile", "attach_profiles", "find_calibration", "fit_profiles", "load_calibration"]
