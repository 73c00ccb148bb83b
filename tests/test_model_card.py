"""The README.md a saved st_unirep model carries (``st_unirep.model_card``): its snippet loads the model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml

from st_unirep import build_model
from st_unirep.model_card import MODEL_ID_PLACEHOLDER, UniRepModelCardData, fill_model_card
from tests.conftest import TINY_OUTPUT_DIM

TEXTS = ["a red ellipse", "the cat", "Which planet is known as the Red Planet?"]


def _saved_card(model, folder: Path) -> str:
    model.save(str(folder))
    return (folder / "README.md").read_text(encoding="utf-8")


def _run_first_python_block(card: str, folder: Path) -> dict:
    """Execute the card's first ```python block with the folder in place of the model id placeholder."""
    block = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    assert MODEL_ID_PLACEHOLDER in block
    namespace: dict = {}
    exec(block.replace(MODEL_ID_PLACEHOLDER, str(folder)), namespace)  # noqa: S102 - the card's own snippet
    return namespace


def _front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_the_cards_snippet_loads_the_model(tiny_model, tmp_path):
    card = _saved_card(tiny_model, tmp_path / "model")
    namespace = _run_first_python_block(card, tmp_path / "model")
    loaded = namespace["model"]
    np.testing.assert_array_equal(loaded.encode(TEXTS), tiny_model.encode(TEXTS))
    np.testing.assert_array_equal(namespace["query_embeddings"], tiny_model.encode_query([TEXTS[2]]))
    assert namespace["scores"].shape == (1, 2)
    assert "pip install st-unirep" in card and "from st_unirep import" in card
    assert "sentence_transformers_model_id" not in card


def test_the_card_names_base_model_preset_width_and_matryoshka_dims(tiny_qwen2_vl_path, tmp_path):
    model = build_model(tiny_qwen2_vl_path, "unirep-m", output_dim=TINY_OUTPUT_DIM)
    card = _saved_card(model, tmp_path / "model")
    assert f"**Base model:** `{tiny_qwen2_vl_path}`" in card
    assert "**Preset:** `unirep-m`" in card
    assert f"**Output width:** {TINY_OUTPUT_DIM} dimensions" in card
    assert "**Matryoshka dims:** 16, 24, 32, 64" in card  # unirep-m's 512/768/1024/2048 scaled to 64
    assert "truncate_dim=16" in card
    assert "# st_unirep unirep-m on qwen2-vl" in card
    assert "Inference is prefix-free" in card and "<ocr>" in card
    assert {"st_unirep", "st_unirep-unirep-m"} <= set(_front_matter(card)["tags"])


def test_a_hub_backbone_becomes_the_cards_base_model_offline(tiny_model, tmp_path):
    card_data = fill_model_card(tiny_model, preset="unirep", backbone="Qwen/Qwen2-VL-2B-Instruct")
    assert card_data.local_files_only  # the card never asks the hub
    card = _saved_card(tiny_model, tmp_path / "model")
    assert _front_matter(card)["base_model"] == "Qwen/Qwen2-VL-2B-Instruct"
    assert "finetuned from [Qwen/Qwen2-VL-2B-Instruct]" in card


def test_training_data_and_evaluation_numbers_are_stated(tiny_model, tmp_path):
    fill_model_card(
        tiny_model,
        preset="unirep",
        backbone="Qwen/Qwen2-VL-2B-Instruct",
        train_datasets=["viquad_vi", {"name": "stsb_en"}],
        eval_results={"viquad_vi": {"r@1": 0.5, "ndcg@10": 0.625}},
    )
    card = _saved_card(tiny_model, tmp_path / "model")
    assert "#### Training data\n`viquad_vi`, `stsb_en`" in card
    assert "| dataset | ndcg@10 | r@1 |" in card and "| viquad_vi | 0.6250 | 0.5000 |" in card


def test_a_second_fill_keeps_the_card_and_replaces_what_is_passed(tiny_model):
    first = tiny_model.model_card_data
    assert isinstance(first, UniRepModelCardData)
    again = fill_model_card(tiny_model, preset="unirep", backbone="b", eval_results={"x": {"r@1": 1.0}})
    assert again is first and again.backbone == "b" and again.evaluation == {"x": {"r@1": 1.0}}
    assert tiny_model.model_card_data.model is tiny_model


def test_the_snippet_uses_the_models_calibration_profiles(tiny_model, tmp_path):
    from st_unirep.calibration import CalibrationProfile, attach_profiles

    x = np.linspace(-1, 1, 201)
    profiles = [CalibrationProfile.fit(name, {TINY_OUTPUT_DIM: x}, (x + 1) / 2, "graded") for name in ("sts", "qa")]
    attach_profiles(tiny_model, profiles)
    card = _saved_card(tiny_model, tmp_path / "model")
    assert 'model=model, profile="qa"' in card and "profiles `qa`, `sts`" in card
    namespace = _run_first_python_block(card, tmp_path / "model")
    assert float(namespace["scores"].min()) >= 0.0 and float(namespace["scores"].max()) <= 1.0
