"""The backbone: sentence-transformers' multimodal ``Transformer`` around Qwen2-VL (or any text encoder)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from sentence_transformers.base.modules import Transformer
from transformers import AutoConfig, AutoProcessor

from st_unirep import _compat
from st_unirep.modules.inputs import (
    InputError,
    estimate_length,
    fit_to_budget,
    image_size,
    is_messages,
    load_image,
    parse_input,
    prepend_to_user_turn,
    visual_tokens,
)
from st_unirep.modules.processor import _HUB_KEYS, Qwen2VLImageTextProcessor

logger = logging.getLogger(__name__)


VISION_MODEL_TYPES = frozenset({"qwen2_vl"})


class _ProcessorLoader:
    """Stands in for ``AutoProcessor`` while ``Transformer.__init__`` loads the processor.

    A real Qwen2-VL checkpoint's ``preprocessor_config.json`` names ``Qwen2VLProcessor``, whose loading builds a
    torchvision-only video processor and fails on CPU torch; ``AutoProcessor`` honours that name over any
    registration by config type. ST's ``Transformer`` loads its processor inline in ``__init__`` with no hook,
    so :class:`Backbone` swaps this loader in for the duration of that call
    (:func:`st_unirep._compat.st_transformer_processor_loader`). Qwen2-VL folders get
    :class:`Qwen2VLImageTextProcessor`; everything else goes to the real ``AutoProcessor``.
    """

    @staticmethod
    def from_pretrained(path: str, **kwargs: Any) -> Any:
        hub_kwargs = {key: kwargs[key] for key in _HUB_KEYS if key in kwargs}
        config = AutoConfig.from_pretrained(path, **hub_kwargs)
        if config.model_type in VISION_MODEL_TYPES:
            return Qwen2VLImageTextProcessor.from_checkpoint(path, **kwargs)
        return AutoProcessor.from_pretrained(path, **kwargs)


def resolve_attn_implementation(requested: str | None) -> str:
    """``flash_attention_2`` when requested or (for ``None``/``"auto"``) when flash-attn and CUDA exist, else sdpa."""
    if requested not in (None, "auto"):
        return requested
    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        return "flash_attention_2"
    return "sdpa"


class Backbone(Transformer):
    r"""The VLM (Qwen2-VL) or text encoder that turns inputs into token embeddings :math:`H = [h_1, \dots, h_N]`.

    A thin subclass of sentence-transformers 6.2's multimodal ``Transformer``, which already does the input
    handling (text, images, ``{"text", "image"}`` dicts, several images per input, chat messages through the
    chat template). It adds what the seeds need:

    * **Torchvision-free Qwen2-VL.** The processor is :class:`Qwen2VLImageTextProcessor` for Qwen2-VL
      checkpoints (real ones included), and loading fails loudly if a vision model ends up with a processor that
      cannot make pixels, the silent failure in which every image became one ``<|image_pad|>`` token.
    * **Task prefix tokens** (viPolyQwen/UniRep): ``prefix_tokens`` are added as single special tokens and the
      embedding matrix grows if (and only if) the new ids do not fit; they are saved with the tokenizer.
    * ``freeze_vision`` (UniRep-M: vision tower frozen, language model trainable), ``attn_implementation``
      (``None`` = flash_attention_2 when installed on CUDA, else sdpa), the pixel budget ``min_pixels`` /
      ``max_pixels`` (pixels per image after resizing; each 28×28 block is one visual token), and
      ``gradient_checkpointing``.
    * **Input checks** before anything reaches the processor: each bad input raises a ``ValueError`` naming it.
      A one-line string ending in an image extension (spaces allowed) is read as an image path and must exist
      (wrap text such as ``"photo.jpg"`` as ``{"text": "photo.jpg"}`` to embed it as text); ``pathlib.Path`` is
      always an image; ``data:image/...;base64,`` URIs are decoded and checked like files; image URLs are refused
      (nothing is downloaded); grayscale, palette, CMYK and 16-bit images become RGB, transparent ones are
      composited on white (the input kinds and their checks: :mod:`st_unirep.modules.inputs`).

    Args:
        model_name_or_path: A Qwen2-VL checkpoint folder or hub id, or any model ST's ``Transformer`` loads.
        prefix_tokens: Special tokens to add (``TASK_PREFIX_TOKENS`` in the prefix presets, ``[]`` for none).
        freeze_vision: Freeze the vision tower (VLMs only).
        attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"`` or ``None`` for automatic.
        min_pixels: Lower pixel budget per image (VLMs only); ``None`` keeps the checkpoint's.
        max_pixels: Upper pixel budget per image (VLMs only); ``None`` keeps the checkpoint's.
        gradient_checkpointing: Enable non-reentrant gradient checkpointing in the backbone.
        **kwargs: Passed to sentence-transformers' ``Transformer`` (``model_kwargs``, ``max_seq_length``, ...).
    """

    config_keys: list[str] = [
        *Transformer.config_keys,
        "prefix_tokens",
        "freeze_vision",
        "attn_implementation",
        "min_pixels",
        "max_pixels",
        "gradient_checkpointing",
    ]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        prefix_tokens: Sequence[str] = (),
        freeze_vision: bool = False,
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        gradient_checkpointing: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        prefix_tokens = list(prefix_tokens or [])
        for token in prefix_tokens:
            if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
                raise ValueError(f"prefix_tokens must be non-empty strings without whitespace, got {token!r}")

        model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
        model_kwargs.setdefault("attn_implementation", resolve_attn_implementation(attn_implementation))
        processor_kwargs = dict(kwargs.pop("processor_kwargs", None) or {})
        if min_pixels is not None:
            processor_kwargs["min_pixels"] = min_pixels
        if max_pixels is not None:
            processor_kwargs["max_pixels"] = max_pixels

        with _compat.st_transformer_processor_loader(_ProcessorLoader):
            super().__init__(model_name_or_path, model_kwargs=model_kwargs, processor_kwargs=processor_kwargs, **kwargs)

        self.prefix_tokens = prefix_tokens
        self.freeze_vision = freeze_vision
        self.attn_implementation = attn_implementation
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.gradient_checkpointing = gradient_checkpointing

        self.is_vision_model = getattr(self.config, "vision_config", None) is not None
        if self.is_vision_model:
            self._check_processor_makes_pixels()
            if self.config.model_type in VISION_MODEL_TYPES:
                # Qwen2-VL's mrope positions break when padded sequences are concatenated (ST docs say so too).
                self.unpad_inputs = False
        elif min_pixels is not None or max_pixels is not None:
            raise ValueError(f"min_pixels/max_pixels apply to vision-language models; {model_name_or_path} has none")
        if freeze_vision:
            visual = getattr(self.model, "visual", None)
            if visual is None:
                raise ValueError(f"freeze_vision=True but {model_name_or_path} has no vision tower")
            visual.requires_grad_(False)
        if prefix_tokens:
            self._add_prefix_tokens(prefix_tokens)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # ------------------------------------------------------------------ construction helpers
    def _check_processor_makes_pixels(self) -> None:
        image_processor = getattr(self.processor, "image_processor", None)
        if image_processor is None:
            raise ValueError(
                f"The backbone is a vision-language model ({self.config.model_type}) but its processor "
                f"({type(self.processor).__name__}) has no image processor: images would be embedded as a bare "
                "placeholder token without pixels. Load it through st_unirep (build_model, or "
                "st_unirep.model.load_model(path)) so Qwen2VLImageTextProcessor is used."
            )

    def _add_prefix_tokens(self, tokens: list[str]) -> None:
        tokenizer = self.tokenizer
        missing = [token for token in tokens if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
        embeddings = self.model.get_input_embeddings()
        if len(tokenizer) > embeddings.num_embeddings:
            # Grow to a multiple of 64 (tensor-core friendly); Qwen2-VL's 151,936 rows already have room. The new
            # rows start from the old rows' mean and covariance (mean_resizing=True, transformers' default, chosen
            # here on purpose: a prefix token starts inside the distribution of the embeddings it is added to), so
            # transformers' notice about it is not logged on every build.
            with _compat.transformers_quiet_mean_resizing():
                self.model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=True)
        for token in tokens:
            ids = tokenizer(token, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise RuntimeError(f"Prefix token {token!r} tokenises to {ids}, expected a single id")

    def prefix_token_ids(self) -> dict[str, int]:
        """The id of each prefix token."""
        return {token: self.tokenizer.convert_tokens_to_ids(token) for token in self.prefix_tokens}

    # ------------------------------------------------------------------ inputs
    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        checked = [self._check_input(item) for item in inputs]
        is_message = [is_messages(item) for item in checked]
        if any(is_message) and not all(is_message):
            # Work around sentence-transformers 6.2: in a batch that mixes chat messages with other inputs,
            # InputFormatter.parse_inputs wraps each conversation as {"type": "message"} content, which the chat
            # template drops, so the conversation silently embeds as an empty user turn (measured: the same
            # conversation moved by 0.06 depending on its batch-mates). Converting the other inputs to messages
            # first, exactly as ST converts them when alone, keeps the batch all-"message" and batch-invariant.
            checked = [
                item if message else _compat.st_render_as_messages(self, item)
                for item, message in zip(checked, is_message, strict=True)
            ]
        if prompt and "message" in self.modality_config:
            # A task prefix goes at the start of the user's turn, as viPolyQwen prepends it to the input. ST would
            # put it in a system message, replacing the chat template's default system prompt: training inputs
            # would then differ from the prefix-free inference inputs in more than the prefix.
            checked = [
                prepend_to_user_turn(item if is_messages(item) else _compat.st_render_as_messages(self, item), prompt)
                for item in checked
            ]
            prompt = None
        return super().preprocess(checked, prompt=prompt, **kwargs)

    def _check_input(self, item: Any) -> Any:
        """Validate one input and load its images (RGB, within the pixel budget); raise an
        :class:`~st_unirep.modules.inputs.InputError` (a ValueError) naming the input and carrying it, so that
        ``encode`` can add its position (:mod:`~st_unirep.modules.encode_guard`).

        The checks and the input kinds are :func:`~st_unirep.modules.inputs.parse_input`'s.
        """
        try:
            parsed = parse_input(item, vision=self.is_vision_model)
            return parsed.rebuild([self._load(image, parsed.original) for image in parsed.images])
        except InputError:
            raise
        except ValueError as error:
            raise InputError(item, str(error)) from error.__cause__

    def _load(self, image: Any, original: Any) -> Image.Image:
        """:func:`~st_unirep.modules.inputs.load_image`, then down to the pixel budget (:meth:`_fit_to_budget`)."""
        return self._fit_to_budget(load_image(image, original))

    def _fit_to_budget(self, image: Image.Image) -> Image.Image:
        """Resize an image larger than the pixel budget to the size the image processor would give it, now.

        The processor resizes every image to the ``smart_resize`` size of the budget with PIL and its own filter,
        ``image.resize((w, h), resample)``; doing exactly that here gives identical pixels (the processor's own
        resize of an image already at that size is a copy; tested bit for bit), but a batch then holds images of the
        budget's size rather than the decoded originals: a 4961×7016 scan is 104 MB as RGB, ~2.4 MB at 1,024 visual
        tokens. Peak memory of a batch no longer grows with the size of its photos, and the processor no longer
        converts full-size images to arrays and back. See :func:`~st_unirep.modules.inputs.fit_to_budget`.
        """
        if not self.is_vision_model:
            return image
        return fit_to_budget(image, getattr(self.processor, "image_processor", None))

    # ------------------------------------------------------------------ batching
    def on_model_ready(self, model: Any) -> None:
        """Give the owning model :meth:`input_length` as its batching sort key (see there)."""
        super().on_model_ready(model)
        if self.is_vision_model:
            _compat.install_input_length(model, self.input_length)

    def input_length(self, item: Any) -> int:
        """The sort key sentence-transformers' ``encode`` batches by: text characters + 4 × visual tokens.

        ``encode`` sorts its inputs by an estimated length so that each batch pads little. Its own estimate
        counts an image path's *characters* and ignores the images of chat messages, so a folder of mixed photos
        and receipts batches in file-name order and pads every photo (~240 visual tokens) to the receipts'
        1,024. This key counts each image's visual tokens under the pixel budget (from the file header; nothing
        is decoded) at about 4 characters per token. Unreadable images count 0 here and fail with their own
        error when the batch is built; so do the inputs :meth:`_check_input` rejects, which get sentence-transformers'
        own estimate here (as tensors, arrays and text pairs do). Installed on the model by :meth:`on_model_ready`
        for vision backbones.
        """
        try:
            parsed = parse_input(item, vision=self.is_vision_model)
        except ValueError:
            return _compat.st_input_length(item)
        return estimate_length(parsed, self._image_tokens)

    def _image_tokens(self, image: Any) -> int:
        """Visual tokens of an image or image path under the pixel budget; 0 if it cannot be read (a missing or
        corrupt file, a 0×0 image, one over PIL's decompression-bomb limit, a URL): its own error comes when the
        batch is built."""
        try:
            return self.visual_tokens_per_image(*image_size(image))
        except (
            OSError,
            ValueError,
            TypeError,
            AttributeError,
            ZeroDivisionError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
        ):
            return 0

    # ------------------------------------------------------------------ info
    def visual_tokens_per_image(self, width: int, height: int) -> int:
        """Visual tokens an image of this size costs under the current pixel budget (Qwen2-VL)."""
        return visual_tokens(width, height, self.processor.image_processor)

    def __repr__(self) -> str:
        return f"Backbone({dict(self.get_config_dict(), architecture=self.model.__class__.__name__)})"
