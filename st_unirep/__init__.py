"""st_unirep: one vision-language embedding model that embeds and reranks, as a sentence-transformers plugin."""

from __future__ import annotations

from st_unirep.model import build_model, calibrated_similarity, load_model

__version__ = "0.1.0"
__all__ = ["build_model", "calibrated_similarity", "load_model"]
