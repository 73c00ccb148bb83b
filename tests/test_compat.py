"""One test per shim of ``st_unirep._compat``: each fails when the library internal it relies on moves or changes."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import sentence_transformers.base.modules.transformer as st_transformer
from packaging.specifiers import SpecifierSet
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modality import InputFormatter
from sentence_transformers.base.model import BaseModel
from sentence_transformers.base.modules import Transformer

from st_unirep import _compat
from st_unirep.modules.processor import Qwen2VLImageTextProcessor
from tests.conftest import make_image

TEXTS = ["a short one", "a somewhat longer sentence here", "mid length text"]


# ---------------------------------------------------------------------------------------------- the checks
def test_installed_versions_are_in_the_supported_ranges():
    with warnings.catch_warnings():
        warnings.simplefilter("error", _compat.CompatWarning)
        _compat.check_versions()


def test_a_version_outside_the_range_warns(monkeypatch):
    monkeypatch.setitem(_compat.SUPPORTED, "transformers", SpecifierSet(">=99"))
    with pytest.warns(_compat.CompatWarning, match=r"written for transformers >=99; transformers 5\."):
        _compat.check_versions()


def test_a_missing_private_name_fails_loudly_naming_library_version_and_shim():
    version = _compat.installed_version("sentence-transformers")
    with pytest.raises(_compat.CompatError) as raised:
        _compat._private("sentence-transformers", "sentence_transformers.base.model", "_gone", "install_input_length")
    message = str(raised.value)
    assert "sentence-transformers" in message and str(version) in message and "install_input_length" in message
    with pytest.raises(_compat.CompatError, match="the parameter"):
        _compat._require_parameters("sentence-transformers", len, frozenset({"truncate_dim"}), "encode")


# ---------------------------------------------------------------------------------------------- sentence-transformers
def test_st_transformer_loads_its_processor_through_the_module_global(tiny_qwen2_vl_path):
    """st_transformer_processor_loader: Transformer.__init__ calls the module's ``AutoProcessor.from_pretrained``."""
    assert "AutoProcessor.from_pretrained(" in inspect.getsource(Transformer.__init__)
    original, calls = st_transformer.AutoProcessor, []

    class Loader:
        @staticmethod
        def from_pretrained(path, **kwargs):
            calls.append(path)
            return Qwen2VLImageTextProcessor.from_checkpoint(path, **kwargs)

    with _compat.st_transformer_processor_loader(Loader):
        transformer = Transformer(tiny_qwen2_vl_path)
    assert calls == [tiny_qwen2_vl_path]
    assert isinstance(transformer.processor, Qwen2VLImageTextProcessor)
    assert st_transformer.AutoProcessor is original  # restored on exit


def test_encode_sorts_by_the_instance_input_length(tiny_model):
    """install_input_length: ``encode`` asks ``self._input_length`` (a staticmethod an instance attribute shadows)."""
    assert isinstance(inspect.getattr_static(BaseModel, "_input_length"), staticmethod)
    assert "self._input_length(" in inspect.getsource(inspect.getmodule(SentenceTransformer))
    asked = []

    def key(item):
        asked.append(item)
        return len(item)

    _compat.install_input_length(tiny_model, key)
    tiny_model.encode(TEXTS, batch_size=2)
    assert sorted(asked) == sorted(TEXTS)
    assert _compat.st_input_length("four") == 4 and _compat.st_input_length(np.zeros((2, 3))) == 6


def test_st_truncates_after_the_pipeline_and_renormalises_only_when_asked(tiny_model):
    """install_unit_norm_encode: ``encode`` still has the parameters the wrapper binds, and ST itself still returns
    raw (non-unit) prefixes unless ``normalize_embeddings=True`` (when it does so by default, the shim can go)."""
    parameters = set(inspect.signature(SentenceTransformer.encode).parameters)
    assert _compat.ENCODE_PARAMETERS <= parameters
    raw = SentenceTransformer.encode(tiny_model, TEXTS, truncate_dim=16)
    assert raw.shape == (3, 16) and not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    fixed = SentenceTransformer.encode(tiny_model, TEXTS, truncate_dim=16, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(fixed, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiny_model.encode(TEXTS, truncate_dim=16), fixed, atol=1e-6)
    installed = tiny_model.encode
    _compat.install_unit_norm_encode(tiny_model)  # idempotent
    assert tiny_model.encode is installed and isinstance(installed, _compat._UnitNormEncode)


def test_the_encode_guard_sees_the_inputs_the_output_value_and_the_result(tiny_model):
    """install_unit_norm_encode(model, guard): the guard gets the model, the caller's inputs and ``output_value``,
    and a ``run`` that is the real ``encode``; a second install keeps the wrapper and swaps the guard; pickles keep
    the guard."""
    import pickle

    from st_unirep.modules.encode_guard import guard_encode

    assert pickle.loads(pickle.dumps(tiny_model)).encode._guard is guard_encode  # as MatryoshkaNormalize installs it
    seen = []

    def guard(model, inputs, output_value, run):
        seen.append((model, inputs, output_value))
        return run()

    installed = tiny_model.encode
    _compat.install_unit_norm_encode(tiny_model, guard)
    assert tiny_model.encode is installed
    out = tiny_model.encode(TEXTS, truncate_dim=16)
    assert seen == [(tiny_model, TEXTS, "sentence_embedding")] and out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_st_loads_listed_module_classes_without_the_flag_and_gates_the_rest(tiny_model, tmp_path):
    """st_load_with_module_classes: ``BaseModel._load_with_module_classes`` takes the listed ``modules.json`` types
    from the mapping with ``trust_remote_code=False``, and any other type outside sentence_transformers still meets
    ST's gate."""
    assert "self._module_classes.get(class_ref)" in inspect.getsource(BaseModel._load_module_class_from_ref)
    tiny_model.save(str(tmp_path))
    classes = {f"{type(m).__module__}.{type(m).__qualname__}": type(m) for m in tiny_model}
    loaded = _compat.st_load_with_module_classes(SentenceTransformer, str(tmp_path), classes)
    assert [type(m) for m in loaded] == [type(m) for m in tiny_model] and not loaded.trust_remote_code
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny_model.encode(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        _compat.st_load_with_module_classes(SentenceTransformer, str(tmp_path), {})


def test_st_renders_one_input_as_messages_and_still_drops_conversations_in_mixed_batches(tiny_model):
    """st_render_as_messages: ``input_formatter.parse_inputs`` / ``batch_to_message`` render one input as ST does;
    and the ST 6.2 bug ``Backbone.preprocess`` works around is still there (when this fails, the workaround can go)."""
    backbone = tiny_model[0]
    assert isinstance(backbone.input_formatter, InputFormatter)
    assert _compat.st_render_as_messages(backbone, "hello") == [
        {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    ]
    conversation = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert _compat.st_render_as_messages(backbone, conversation) == conversation
    modality, inputs, _ = backbone.input_formatter.parse_inputs([conversation, "text"])
    assert modality == "message"
    assert inputs["message"][0][0]["content"][0]["type"] == "message"  # the conversation, wrapped: dropped


# ---------------------------------------------------------------------------------------------- transformers
def test_smart_resize_and_the_pil_image_processor_agree_on_the_budget():
    """smart_resize / Qwen2VLImageProcessorPil: the v5 module path, min/max pixels kept as ``size`` edges, and the
    processor's grid is ``smart_resize``'s size in 14-pixel patches."""
    processor = _compat.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    assert processor.size == {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    assert processor.patch_size * processor.merge_size == 28
    height, width = _compat.smart_resize(200, 300, factor=28, min_pixels=56 * 56, max_pixels=112 * 112)
    assert (height, width) == (84, 112)  # 3 x 4 blocks of 28: 9,408 <= 12,544 pixels
    grid = processor(images=[make_image((300, 200))], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, height // 14, width // 14]]
    resized = make_image((300, 200)).resize((width, height), resample=processor.resample)
    assert processor(images=[resized], return_tensors="pt")["image_grid_thw"].tolist() == grid.tolist()


def test_optional_hub_file_is_none_for_a_missing_file_only(tmp_path):
    """optional_hub_file: ``cached_file``'s private flag turns a missing file (and only that) into ``None``."""
    from transformers.utils import cached_file

    (tmp_path / "present.json").write_text("{}")
    assert _compat.optional_hub_file(str(tmp_path), "present.json") == str(tmp_path / "present.json")
    assert _compat.optional_hub_file(str(tmp_path), "absent.json") is None
    with pytest.raises(OSError):
        cached_file(str(tmp_path), "absent.json")  # without the flag: an error


# ---------------------------------------------------------------------------------------------- mteb
def test_mteb_retrieval_split_has_the_keys_mteb_reads():
    """mteb_retrieval_split: ``RetrievalSplitData`` is still that module's TypedDict of these four keys."""
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    assert set(RetrievalSplitData.__annotations__) == {"corpus", "queries", "relevant_docs", "top_ranked"}
    split = _compat.mteb_retrieval_split(corpus="c", queries="q", relevant_docs={"q1": {"d1": 1}})
    assert split == {"corpus": "c", "queries": "q", "relevant_docs": {"q1": {"d1": 1}}, "top_ranked": None}


def test_mteb_reads_the_modalities_from_the_wrapper_meta(tiny_model):
    """mteb_declare_model_meta: the wrapper's default meta says text only; ``mteb.evaluate`` reads the attribute."""
    import sys

    import mteb  # noqa: F401  (loads mteb.evaluate, the module that the function of the same name shadows)
    from mteb.models import SentenceTransformerEncoderWrapper

    assert "model.mteb_model_meta" in inspect.getsource(sys.modules["mteb.evaluate"])
    wrapper = SentenceTransformerEncoderWrapper(tiny_model)
    assert list(wrapper.mteb_model_meta.modalities) == ["text"]
    assert _compat.mteb_declare_model_meta(wrapper, modalities=["text", "image"]) is wrapper
    assert list(wrapper.mteb_model_meta.modalities) == ["text", "image"]


def test_mteb_files_results_under_the_declared_model_name(tiny_model, tmp_path):
    """mteb_declare_model_meta(name=...): mteb's result cache files a model's results under its meta's name (the
    placeholder ``no_model_name/available`` when the model card has none, so nameless models share one folder)."""
    import mteb
    from mteb.models import SentenceTransformerEncoderWrapper

    tiny_model.model_card_data.model_name = None  # a card filled by an earlier test (save) names the model
    wrapper = SentenceTransformerEncoderWrapper(tiny_model)
    assert wrapper.mteb_model_meta.name == "no_model_name/available"
    _compat.mteb_declare_model_meta(wrapper, name="runs/first")
    path = mteb.ResultCache(tmp_path).get_task_result_path("stsb_en", wrapper.mteb_model_meta)
    assert path.relative_to(tmp_path / "results").parts[0] == "runs__first"


def _resize_a_tiny_bert(caplog) -> list[str]:
    """Grow a tiny BERT's embeddings with mean_resizing=True; the transformers messages logged meanwhile."""
    import logging

    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2))
    logging.Logger.warning_once.cache_clear()  # transformers logs the notice once per process
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        model.resize_token_embeddings(20, mean_resizing=True)
    return [(r.name, r.getMessage()) for r in caplog.records]


def test_transformers_mean_resizing_notice_is_dropped_and_only_it(caplog, monkeypatch):
    """transformers_quiet_mean_resizing: transformers still logs its notice, on the logger and with the text the
    filter matches; inside the block it is dropped while other records pass."""
    import logging

    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    logged = _resize_a_tiny_bert(caplog)
    assert any(
        name == _compat.TRANSFORMERS_MEAN_RESIZING_LOGGER and _compat.TRANSFORMERS_MEAN_RESIZING_NOTICE in message
        for name, message in logged
    ), logged
    with _compat.transformers_quiet_mean_resizing():
        assert not any(_compat.TRANSFORMERS_MEAN_RESIZING_NOTICE in m for _, m in _resize_a_tiny_bert(caplog))
        logger = logging.getLogger(_compat.TRANSFORMERS_MEAN_RESIZING_LOGGER)
        with caplog.at_level(logging.WARNING, logger="transformers"):
            logger.warning("another warning")
        assert "another warning" in caplog.text
    assert not logger.filters
