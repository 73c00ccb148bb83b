"""Shared load helper for st_unirep's weight-bearing modules (config + safetensors, like ST's ``Dense``)."""

from __future__ import annotations

from typing import Any

_HUB_KEYS = ("token", "cache_folder", "revision", "local_files_only")


def load_module_with_weights(cls: Any, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> Any:
    """Build ``cls`` from its saved config and restore its weights; extra ST loading kwargs are ignored."""
    hub_kwargs = {key: kwargs[key] for key in _HUB_KEYS if key in kwargs}
    config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
    module = cls(**config)
    return cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub_kwargs)
