"""A Qwen2-VL processor for images and text only, so that CPU installs without torchvision work.

transformers' stock ``Qwen2VLProcessor`` declares a ``video_processor`` attribute and loading it builds a
``Qwen2VLVideoProcessor``, which imports torchvision. torchvision does not import beside a CPU-only torch build
(``operator torchvision::nms does not exist``), so the stock processor cannot be loaded there at all. Embedding
needs no video, so this subclass drops the attribute: ``ProcessorMixin`` finds its sub-processors from the
``__init__`` signature, and this signature has only ``image_processor`` and ``tokenizer``.
"""

from __future__ import annotations

import logging
import os

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen2VLConfig, Qwen2VLProcessor

logger = logging.getLogger(__name__)

_HUB_KEYS = ("subfolder", "token", "cache_dir", "revision", "local_files_only", "trust_remote_code")


class Qwen2VLImageTextProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without the (torchvision-only) video processor.

    Behaves exactly like the stock processor for text, images, several images per sample and chat messages;
    passing ``videos=`` raises a ``ValueError``. Registered with ``AutoProcessor`` for ``Qwen2VLConfig`` when
    ``st_unirep`` is imported, and :meth:`from_checkpoint` loads it from any Qwen2-VL checkpoint folder,
    including real ones whose ``preprocessor_config.json`` names ``Qwen2VLProcessor``.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError(
                "Qwen2VLImageTextProcessor embeds text and images only; got `videos`. "
                "Pass video frames as several images instead."
            )
        return super().__call__(images=images, text=text, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> Qwen2VLImageTextProcessor:
        """Build the processor from a checkpoint folder's tokenizer, image-processor config and chat template.

        Unlike ``AutoProcessor.from_pretrained``, this does not consult the ``processor_class`` named in the
        folder, so a real Qwen2-VL checkpoint (which names the stock ``Qwen2VLProcessor``) loads without
        torchvision. ``kwargs`` go to the image processor (e.g. ``min_pixels``, ``max_pixels``) and tokenizer.
        """
        image_kwargs = {k: kwargs.pop(k) for k in ("min_pixels", "max_pixels") if k in kwargs}
        hub_kwargs = {k: kwargs[k] for k in _HUB_KEYS if k in kwargs}  # where to load from: both need them
        # backend="pil": the default "torchvision" backend of the image processor needs torchvision too.
        image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", **image_kwargs, **hub_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        chat_template = getattr(tokenizer, "chat_template", None)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


AutoProcessor.register(Qwen2VLConfig, Qwen2VLImageTextProcessor, exist_ok=True)
