"""End-to-end behaviour of build_model's SentenceTransformer on the tiny offline Qwen2-VL."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from st_unirep import build_model, calibrated_similarity
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
