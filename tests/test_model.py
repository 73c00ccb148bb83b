"""End-to-end behaviour of build_model's SentenceTransformer on the tiny offline Qwen2-VL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers import SentenceTransformer

from st_unirep import build_model, calibrated_similarity, load_model
from st_unirep.presets import PRESETS
from tests.conftest import REPO, TINY_OUTPUT_DIM, make_image

TEXTS = ["A man plays the guitar.", "Một người đàn ông chơi đàn.", "一个男人在弹吉他。", "short", "x " * 40]
IMAGES = [
    make_image((96, 64), "red"),
    make_image((200, 120), "blue", "rectangle"),
    make_image((56, 56), "green"),
    make_image((150, 300), "black"),
]


def _mixed_inputs():
    return [
        TEXTS[0],
        IMAGES[0],
        {"text": "a red ellipse", "image": IMAGES[0]},
        {"text": "two images", "image": [IMAGES[1], IMAGES[2]]},
        [
            {"role": "user", "content": [{"type": "image", "image": IMAGES[3]}, {"type": "text", "text": "colour?"}]},
            {"role": "assistant", "content": "black"},
            {"role": "user", "content": "and the shape?"},
        ],
    ]


def test_every_input_kind_gives_a_unit_vector(preset_model):
    name, model = preset_model
    embeddings = model.encode(_mixed_inputs())
    assert embeddings.shape == (5, TINY_OUTPUT_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert len({row.tobytes() for row in embeddings}) == 5, name


def test_image_embedding_depends_on_pixels(tiny_model):
    red, also_red, blue = tiny_model.encode(
        [make_image(colour="red"), make_image(colour="red"), make_image(colour="blue")]
    )
    assert np.array_equal(red, also_red)
    assert not np.allclose(red, blue, atol=1e-6)
    one_pixel = np.array(make_image(colour="red"))
    one_pixel[0, 0] = [0, 0, 0]
    from PIL import Image

    changed = tiny_model.encode(Image.fromarray(one_pixel))
    assert not np.array_equal(red, changed)


def test_different_images_never_embed_identically(tiny_model):
    embeddings = tiny_model.encode(IMAGES + [make_image(colour=c) for c in ("yellow", "purple", "gray")])
    distinct = {row.tobytes() for row in embeddings}
    assert len(distinct) == len(embeddings)


@pytest.mark.parametrize("kind", ["texts", "images", "mixed"])
def test_batch_size_invariance(tiny_model, kind):
    inputs = {"texts": TEXTS, "images": IMAGES, "mixed": _mixed_inputs()}[kind]
    one = tiny_model.encode(inputs, batch_size=1)
    eight = tiny_model.encode(inputs, batch_size=8)
    np.testing.assert_allclose(one, eight, atol=1e-5, rtol=0)


def test_truncate_dim_is_unit_norm_renormalised_prefix(tiny_qwen2_vl_path, tiny_model):
    full = tiny_model.encode(_mixed_inputs())
    k = TINY_OUTPUT_DIM // 4
    expected = full[:, :k] / np.linalg.norm(full[:, :k], axis=1, keepdims=True)
    by_argument = tiny_model.encode(_mixed_inputs(), truncate_dim=k)
    with tiny_model.truncate_sentence_embeddings(k):
        by_context = tiny_model.encode(_mixed_inputs())
    for truncated in (by_argument, by_context):
        assert truncated.shape == (5, k)
        np.testing.assert_allclose(np.linalg.norm(truncated, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(truncated, expected, atol=1e-6)
    as_tensor = tiny_model.encode(TEXTS, truncate_dim=k, convert_to_tensor=True)
    torch.testing.assert_close(as_tensor.norm(dim=1), torch.ones(len(TEXTS)))


def test_truncate_dim_in_constructor_after_reload(tiny_model, tmp_path):
    tiny_model.save(str(tmp_path))
    model = SentenceTransformer(str(tmp_path), trust_remote_code=True, truncate_dim=16)
    embeddings = model.encode(TEXTS)
    assert embeddings.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_empty_input_gives_empty_array_of_the_right_width(tiny_model):
    assert tiny_model.encode([]).shape == (0, TINY_OUTPUT_DIM)
    assert tiny_model.encode([], truncate_dim=16).shape == (0, 16)
    assert tuple(tiny_model.encode([], convert_to_tensor=True).shape) == (0, TINY_OUTPUT_DIM)


def test_inference_needs_no_prefix_and_prefixes_change_the_vector(tiny_model):
    plain, prefixed = tiny_model.encode(["a red ellipse", "<ocr>a red ellipse"])
    assert not np.allclose(plain, prefixed)


_RELOAD_SCRIPT = """
import json, sys, torch
from sentence_transformers import SentenceTransformer
sys.path.insert(0, {repo!r})
from tests.test_model import _mixed_inputs
out = {{}}
for name, path in json.loads(sys.argv[1]).items():
    model = SentenceTransformer(path, trust_remote_code=True)
    out[name] = model.encode(_mixed_inputs(), convert_to_tensor=True)
torch.save(out, sys.argv[2])
"""


def test_save_then_load_in_fresh_process_is_bit_identical(_tiny_models, tmp_path):
    paths, expected = {}, {}
    for name in PRESETS:
        model = _tiny_models[name]
        expected[name] = model.encode(_mixed_inputs(), convert_to_tensor=True)
        paths[name] = str(tmp_path / name)
        model.save(paths[name])
    script = _RELOAD_SCRIPT.format(repo=str(REPO))
    result = tmp_path / "reloaded.pt"
    subprocess.run([sys.executable, "-c", script, json.dumps(paths), str(result)], check=True, cwd=tmp_path)
    reloaded = torch.load(result)
    for name in PRESETS:
        assert torch.equal(expected[name], reloaded[name]), name


def test_loading_without_trust_remote_code_says_why(tiny_model, tmp_path):
    tiny_model.save(str(tmp_path))
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(str(tmp_path))


def test_real_checkpoint_layout_builds_and_sees_pixels(real_layout_path):
    """A folder shaped like the real checkpoint (preprocessor_config names Qwen2VLProcessor) works on CPU
    without torchvision, with the real tokenizer, and two different images embed differently."""
    model = build_model(real_layout_path, "unirep-m", output_dim=64, max_pixels=112 * 112)
    red, blue, text = model.encode([make_image(colour="red"), make_image(colour="blue"), "What is 2 plus 2?"])
    assert not np.allclose(red, blue)
    features = model.preprocess([make_image((640, 480))])
    assert int((features["input_ids"] == 151655).sum()) == int(features["image_grid_thw"].prod()) // 4 > 1


def test_text_only_backbone(tmp_path):
    from tests.test_presets import build_tiny_bert

    model = build_model(build_tiny_bert(tmp_path / "bert"), "vipolyqwen", output_dim=16, prefix_tokens=["<instr>"])
    embeddings = model.encode(["hello world", "the cat", "hello world"])
    assert embeddings.shape == (3, 16)
    np.testing.assert_array_equal(embeddings[0], embeddings[2])
    with pytest.raises(ValueError, match="(text-only|not supported)"):
        model.encode([make_image()])


# ------------------------------------------------------------------------------------ calibrated_similarity
def test_calibrated_similarity_analytic():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    matrix = calibrated_similarity(a, a)
    expected = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    torch.testing.assert_close(matrix, expected)
    torch.testing.assert_close(calibrated_similarity(a, a.flip(0), pairwise=True), torch.tensor([0.0, 1.0, 0.0]))
    assert calibrated_similarity(np.array([1.0, 1.0]), np.array([1.0, 0.0])).item() == pytest.approx(
        (1 / np.sqrt(2) + 1) / 2
    )
    assert calibrated_similarity(a[:2], a).shape == (2, 3)


def test_calibrated_similarity_bad_shapes():
    with pytest.raises(ValueError, match="same d"):
        calibrated_similarity(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="same number of rows"):
        calibrated_similarity(torch.ones(2, 3), torch.ones(3, 3), pairwise=True)


def test_conversation_is_not_dropped_in_a_mixed_batch(tiny_model):
    """sentence-transformers 6.2 renders a conversation batched with non-message inputs as an empty turn."""
    conversation = _mixed_inputs()[4]
    alone = tiny_model.preprocess([conversation])
    mixed = tiny_model.preprocess([conversation, TEXTS[0], IMAGES[0]])
    length = int(alone["attention_mask"].sum())
    assert torch.equal(mixed["input_ids"][0, :length], alone["input_ids"][0])
    assert (
        int((mixed["input_ids"][0] == tiny_model[0].processor.image_token_id).sum())
        == int((alone["input_ids"][0] == tiny_model[0].processor.image_token_id).sum())
        > 0
    )


def test_encode_hook_follows_copies_and_pickles(tiny_model):
    """The unit-norm truncation hook must point at the copy, not at the model it was copied from."""
    import copy
    import pickle

    duplicate = copy.deepcopy(tiny_model)
    assert duplicate.encode._model() is duplicate
    restored = pickle.loads(pickle.dumps(tiny_model))
    assert restored.encode._model() is restored
    np.testing.assert_array_equal(restored.encode(TEXTS[:2]), tiny_model.encode(TEXTS[:2]))


def test_batches_group_images_by_visual_tokens_and_match_one_by_one(tiny_model, tmp_path):
    """Length-grouped batching (Backbone.input_length as encode's sort key) against one-by-one encoding."""
    sizes = [(56, 56), (300, 200), (60, 60), (280, 210), (56, 64), (310, 190)]
    paths = []
    for index, size in enumerate(sizes):  # names of equal length: sentence-transformers' own key ties them all
        paths.append(str(tmp_path / f"img_{index}.png"))
        make_image(size, ("red", "blue", "green")[index % 3]).save(paths[-1])
    assert tiny_model._input_length.__self__ is tiny_model[0]
    backbone = tiny_model[0]
    batches = []
    preprocess = backbone.preprocess

    def spy(inputs, *args, **kwargs):
        batches.append(sorted(backbone.input_length(item) for item in inputs))
        return preprocess(inputs, *args, **kwargs)

    backbone.preprocess = spy
    grouped = tiny_model.encode(paths, batch_size=3)
    del backbone.preprocess
    small = sorted(backbone.input_length(p) for p in paths[0::2])
    large = sorted(backbone.input_length(p) for p in paths[1::2])
    assert batches == [large, small]
    one_by_one = np.stack([tiny_model.encode([path], batch_size=1)[0] for path in paths])
    np.testing.assert_allclose(grouped, one_by_one, atol=1e-5, rtol=0)


def test_identity_head_starts_as_the_pretrained_mean_pooled_encoder(tmp_path):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from tests.test_presets import build_tiny_bert

    bert = build_tiny_bert(tmp_path / "bert")
    plain = SentenceTransformer(bert)  # transformers folder: ST adds mean pooling
    texts = ["hello world", "the cat", "a dog", "the dog the cat"]
    reference = plain.encode(texts)
    model = build_model(bert, "viuniembed", output_dim=32, head_init="identity")
    ours = model.encode(texts)
    cosines = (ours * reference).sum(1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.99  # GELU(c + 3) - 3 ~ c on mean-pooled components
    with pytest.raises(ValueError, match=r"needs output_dim == the backbone width \(32\), got 16"):
        build_model(bert, "viuniembed", output_dim=16, head_init="identity")
    with pytest.raises(ValueError, match="head_init must be 'random' or 'identity'"):
        build_model(bert, "viuniembed", output_dim=32, head_init="zeros")


# ------------------------------------------------------------------------------------ faults and bad inputs in encode
def _corrupt(folder, marker: str) -> None:
    """Overwrite the weights of ``folder``'s model.safetensors whose name contains ``marker`` with NaN."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    weights = load_file(path)
    names = [name for name in weights if marker in name]
    assert names, sorted(weights)[:10]
    for name in names:
        weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, path, metadata={"format": "pt"})


def test_corrupt_weights_make_encode_refuse_naming_the_inputs(tiny_model, tmp_path):
    """A checkpoint whose vision tower holds NaN loads without a word; encode must not hand back NaN vectors."""
    from st_unirep.model import load_model

    tiny_model.save(str(tmp_path))
    _corrupt(tmp_path, "patch_embed")
    model = load_model(tmp_path)
    assert np.isfinite(model.encode(TEXTS[:2])).all()  # text never reaches the vision tower
    for kwargs in ({}, {"convert_to_tensor": True}, {"convert_to_numpy": False}, {"batch_size": 1}):
        with pytest.raises(ValueError) as raised:
            model.encode([TEXTS[0], IMAGES[0], TEXTS[1], {"text": "a caption", "image": IMAGES[1]}], **kwargs)
        message = str(raised.value)
        assert message.startswith(
            "encode produced non-finite (NaN or inf) embeddings for 2 of 4 input(s): "
            "inputs[1] <PIL.Image.Image image mode=RGB size=96x64 at "
        ), message
        assert "; inputs[3] {'text': 'a caption', 'image': <PIL.Image.Image" in message
        assert "check its weights for NaN/inf (a corrupt or half-written checkpoint)" in message
    with pytest.raises(
        ValueError, match=r"for 1 of 1 input\(s\): the input <PIL.Image.Image image mode=RGB size=96x64"
    ):
        model.encode(IMAGES[0])
    with pytest.raises(ValueError, match=r"Embeddings must be finite; non-finite rows: a \[0\], b \[\]"):
        calibrated_similarity(np.array([[np.nan, 1.0]]), np.array([[1.0, 0.0]]))


def _bad_input_cases(tmp_path):
    from tests.modules.test_inputs import png_header

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))
    unreadable = tmp_path / "my photo.jpg"
    unreadable.write_bytes(b"not a jpeg")
    return [
        (
            Image.new("RGB", (0, 0)),
            r"Input <PIL.Image.Image image mode=RGB size=0x0 at .*>: image has zero size \(0x0\); "
            r"expected at least 1x1 pixels",
        ),
        (
            str(bomb),
            r"Input '.*: image file '.*bomb.png' has 400,000,000 pixels, above the limit "
            r"89,478,485 \(PIL decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS\); resize it first",
        ),
        (str(unreadable), r"Input '.*: cannot read image file '.*my photo.jpg'"),
        (str(tmp_path / "missing photo.png"), r"Input '.*: image file '.*missing photo.png' does not exist"),
        ([{"role": "robot", "content": "hi"}], r"Message 0 of input .*: field 'role' is 'robot'; expected one of"),
        (
            [{"role": "assistant", "content": "hi"}],
            r"Input .*: the conversation has no 'user' turn \(roles \['assistant'\]\)",
        ),
        ("\u200b\u200b", r"Input '\\u200b\\u200b' is empty after removing invisible format characters"),
    ]


def test_bad_inputs_raise_value_errors_naming_their_position(tiny_model, tmp_path):
    for bad, message in _bad_input_cases(tmp_path):
        for batch_size in (1, 8):  # encode sorts inputs by length: the position must be the caller's
            with pytest.raises(ValueError, match=rf"^inputs\[2\]: {message}"):
                tiny_model.encode(["fine text", IMAGES[0], bad, "more text"], batch_size=batch_size)
    with pytest.raises(ValueError, match=r"^Input <PIL.Image.Image image mode=RGB size=0x0"):
        tiny_model.encode(Image.new("RGB", (0, 0)))  # a single input has no position


def test_image_paths_with_spaces_get_the_image_checks_and_load(tiny_model, tmp_path):
    path = tmp_path / "my photo.png"
    IMAGES[1].save(path)
    np.testing.assert_allclose(tiny_model.encode([str(path)]), tiny_model.encode([IMAGES[1]]), atol=1e-6)


def test_encode_makes_no_network_request_for_urls(tiny_model, monkeypatch):
    """Strings that look like URLs are never fetched: image URLs are refused, other URLs are text."""
    import socket
    import urllib.request

    requests: list = []

    def refuse(*args, **kwargs):
        requests.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for image_url in ("http://127.0.0.1:9/x.png?size=2", "https://example.com/cat.jpg"):
        for item in (image_url, {"text": "a cat", "image": image_url}):
            with pytest.raises(ValueError, match=r"is an image URL; st_unirep never downloads .* local file path"):
                tiny_model.encode(["fine text", item])
    texts = ["https://example.com/about", "https://www.youtube.com/watch?v=abc", "http://127.0.0.1:9/clip.mp4"]
    np.testing.assert_allclose(tiny_model.encode(texts), tiny_model.encode([{"text": t} for t in texts]), atol=1e-6)
    assert requests == []


def test_data_uris_are_decoded_and_checked_like_files(tiny_model):
    import base64
    import io

    from tests.modules.test_inputs import png_header

    buffer = io.BytesIO()
    IMAGES[0].save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    np.testing.assert_allclose(tiny_model.encode([uri]), tiny_model.encode([IMAGES[0]]), atol=1e-6)
    bomb = "data:image/png;base64," + base64.b64encode(png_header(20000, 20000)).decode()
    with pytest.raises(
        ValueError, match=r"^inputs\[1\]: Input 'data:image/png;base64,.*: data URI has 400,000,000 pixels"
    ):
        tiny_model.encode(["fine text", bomb])


# ------------------------------------------------------------------------------------ loading without remote code
def _evil_folder(folder, marker, modules: list | None = None):
    """A model folder whose modules.json names ``evil.Evil``, defined in the folder's evil.py, which writes
    ``marker`` when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n"
        "from sentence_transformers.base.modules import Module\n\n\nclass Evil(Module):\n    pass\n"
    )
    modules = list(modules or [])
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "evil", "type": "evil.Evil"})
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def test_load_model_loads_st_unirep_models_without_trust_remote_code(tiny_model, tmp_path):
    from st_unirep.model import load_model

    tiny_model.save(str(tmp_path))
    model = load_model(tmp_path, truncate_dim=16)
    assert not model.trust_remote_code
    np.testing.assert_allclose(model.encode(TEXTS), tiny_model.encode(TEXTS, truncate_dim=16), atol=1e-6)


def test_code_in_the_model_folder_never_runs_without_trust_remote_code(tiny_model, tmp_path):
    from st_unirep.model import load_model

    marker = tmp_path / "evil-ran"
    tiny_model.save(str(tmp_path / "model"))
    ours = json.loads((tmp_path / "model" / "modules.json").read_text())
    for folder in (_evil_folder(tmp_path / "evil", marker), _evil_folder(tmp_path / "model", marker, ours)):
        with pytest.raises(ValueError, match=r"(?s)references the module class .evil.Evil.*trust_remote_code=True"):
            load_model(folder)
        assert not marker.exists()


# ------------------------------------------------------------------ build_model on a trained model (issue 17)
def test_build_model_refuses_a_saved_st_unirep_model(tiny_model, tmp_path):
    """Building on a saved st_unirep model would put a random head on its backbone: it is refused, naming the
    folder and load_model."""
    folder = tmp_path / "trained"
    tiny_model.save(str(folder))
    with pytest.raises(ValueError, match=r"saved st_unirep model.*st_unirep\.load_model\(") as raised:
        build_model(str(folder), "unirep", output_dim=TINY_OUTPUT_DIM)
    assert str(folder) in str(raised.value)


def test_build_model_logs_no_mean_resizing_notice(tiny_qwen2_vl_path, caplog, monkeypatch):
    """Adding the prefix tokens grows the tiny model's embeddings (mean_resizing=True); transformers' notice about it
    is not logged (its warning_once cache is cleared so that an earlier build cannot hide it)."""
    import logging

    from st_unirep import _compat

    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        model = build_model(tiny_qwen2_vl_path, "unirep", output_dim=TINY_OUTPUT_DIM)
    tokenizer = model[0].tokenizer
    assert model[0].model.get_input_embeddings().num_embeddings >= len(tokenizer)
    assert not [r for r in caplog.records if _compat.TRANSFORMERS_MEAN_RESIZING_NOTICE in r.getMessage()]


# ------------------------------------------------------------------ query / document prompts (issue 17)
def test_prefix_free_models_encode_queries_and_documents_alike(tiny_model, tmp_path):
    """A Qwen2-VL st_unirep model has no prompts: encode_query, encode_document and encode are the same map, also
    after save / load."""
    assert not any(tiny_model.prompts.values())
    texts = ["a red ellipse", "the cat"]
    plain = tiny_model.encode(texts)
    np.testing.assert_array_equal(tiny_model.encode_query(texts), plain)
    np.testing.assert_array_equal(tiny_model.encode_document(texts), plain)
    tiny_model.save(str(tmp_path / "m"))
    loaded = load_model(tmp_path / "m")
    assert loaded.prompts == tiny_model.prompts
    np.testing.assert_array_equal(loaded.encode_query(texts), plain)


QUERY_PROMPT, PASSAGE_PROMPT = "dog ", "a cat "  # of different token counts: the tiny BERT reads words as [UNK]


def _e5_style_backbone(tmp_path) -> str:
    """A tiny BERT saved with prompts laid out as sentence-transformers writes E5's (``"document": ""`` included);
    the prompts differ in length (``"query: "`` and ``"passage: "`` would both be [UNK] [UNK])."""
    from tests.test_presets import build_tiny_bert

    path = build_tiny_bert(tmp_path / "bert")
    prompts = {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": ""}
    config = {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (Path(path) / "config_sentence_transformers.json").write_text(json.dumps(config))
    return path


def test_an_encoders_prompts_are_kept_and_documents_get_the_passage_prompt(tmp_path):
    """E5-style prompts: encode_query prepends the query prompt, encode_document the passage prompt (as training and
    evaluation do), and both survive save / load_model."""
    model = build_model(_e5_style_backbone(tmp_path), "viuniembed", output_dim=16)
    assert model.prompts == {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT}
    texts = ["hello world", "the cat"]
    query, document = model.encode_query(texts), model.encode_document(texts)
    np.testing.assert_allclose(query, model.encode([QUERY_PROMPT + t for t in texts]), atol=1e-6)
    np.testing.assert_allclose(document, model.encode([PASSAGE_PROMPT + t for t in texts]), atol=1e-6)
    assert not np.allclose(query, document)
    model.save(str(tmp_path / "m"))
    loaded = load_model(tmp_path / "m")
    assert loaded.prompts == model.prompts
    np.testing.assert_allclose(loaded.encode_document(texts), document, atol=1e-6)


def test_load_model_gives_an_old_saved_empty_document_prompt_the_passage_prompt(tmp_path):
    """A model saved before this rule (``"document": ""`` beside ``"passage": "passage: "``) loads with it."""
    model = build_model(_e5_style_backbone(tmp_path), "viuniembed", output_dim=16)
    model.prompts = {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": ""}
    model.save(str(tmp_path / "old"))
    assert load_model(tmp_path / "old").prompts["document"] == PASSAGE_PROMPT


def test_load_model_of_a_training_run_folder_loads_its_model(tmp_path, tiny_model):
    tiny_model.save(str(tmp_path / "run" / "model"))
    loaded = load_model(tmp_path / "run")
    expected = tiny_model.encode(["Hóa đơn tháng 3"])
    np.testing.assert_allclose(loaded.encode(["Hóa đơn tháng 3"]), expected, atol=1e-5)
