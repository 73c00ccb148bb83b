"""Every reach of st_unirep into a private or version-specific API of sentence-transformers, transformers or mteb.

Nothing else in the package patches, rebinds or imports a library's internals: each use goes through a shim here,
with why it is needed and the versions it was written against, and ``tests/test_compat.py`` holds one test per shim
that fails when the library moves.

At import this module checks the installed versions against :data:`SUPPORTED` (a ``CompatWarning`` outside the
range: the shims may still work) and resolves every private name the sentence-transformers and transformers shims
need; a missing one raises :class:`CompatError` naming the library, its version and the shim, so that a moved
internal stops st_unirep instead of silently switching a behaviour off (e.g. the re-normalisation under
``truncate_dim``). mteb's names are resolved on first use (importing mteb costs seconds and only the evaluation
needs it), with the same error.

Shims (library, private name, written against):

- :func:`st_transformer_processor_loader` — sentence-transformers, the module global
  ``sentence_transformers.base.modules.transformer.AutoProcessor`` (6.2).
- :func:`install_input_length` / :func:`st_input_length` — sentence-transformers, ``BaseModel._input_length``, the
  sort key ``encode`` batches by (6.2).
- :func:`install_unit_norm_encode` — sentence-transformers, the parameter names of ``SentenceTransformer.encode``,
  bound by an instance-level ``encode`` (6.2).
- :func:`st_load_with_module_classes` — sentence-transformers, ``BaseModel._load_with_module_classes``, loading a
  saved model with given classes for its ``modules.json`` types (6.2).
- :func:`st_render_as_messages` — sentence-transformers, ``Transformer.input_formatter`` and its ``InputFormatter``
  methods ``parse_inputs`` / ``batch_to_message`` (6.2).
- :func:`smart_resize` / :data:`Qwen2VLImageProcessorPil` — transformers 5's module path
  ``transformers.models.qwen2_vl.image_processing_pil_qwen2_vl`` (5.x; 4.x had no PIL-backend class).
- :func:`optional_hub_file` — transformers, ``cached_file(..., _raise_exceptions_for_missing_entries=False)`` (5.x).
- :func:`mteb_retrieval_split` / :func:`mteb_declare_model_meta` — mteb,
  ``mteb.abstasks.retrieval_dataset_loaders.RetrievalSplitData`` and the wrapper's ``mteb_model_meta`` (2.x).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import inspect
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if TYPE_CHECKING:
    from sentence_transformers.base.model import BaseModel

# The version ranges the shims were written and tested against (the pyproject ranges; tested on ST 6.2.0,
# transformers 5.24.0, mteb 2.26.24).
SUPPORTED = {
    "sentence-transformers": SpecifierSet(">=6.2,<7"),
    "transformers": SpecifierSet(">=5,<6"),
    "mteb": SpecifierSet(">=2,<3"),
}


class CompatError(ImportError):
    """A private name a shim of ``st_unirep._compat`` needs is missing from the installed library."""


class CompatWarning(UserWarning):
    """An installed library is outside the version range the shims of ``st_unirep._compat`` were written for."""


def installed_version(library: str) -> Version | None:
    """The installed version of ``library`` (a distribution name), or ``None`` if it is not installed."""
    try:
        return Version(importlib.metadata.version(library))
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions() -> None:
    """Warn (``CompatWarning``) for each installed library outside :data:`SUPPORTED`."""
    for library, specifier in SUPPORTED.items():
        version = installed_version(library)
        if version is not None and version not in specifier:
            warnings.warn(
                f"st_unirep's compatibility shims (st_unirep/_compat.py) were written for {library} {specifier}; "
                f"{library} {version} is installed. Each shim checks the private names it needs, but behaviour may "
                "differ: run tests/test_compat.py.",
                CompatWarning,
                stacklevel=2,
            )


def _fail(library: str, shim: str, needed: str, error: BaseException | str) -> CompatError:
    return CompatError(
        f"st_unirep's shim {shim!r} (st_unirep/_compat.py) needs {needed} from {library}, which {library} "
        f"{installed_version(library)} does not provide ({error}). The shim was written for {library} "
        f"{SUPPORTED[library]}: install a version in that range, or update the shim."
    )


def _module(library: str, module: str, shim: str) -> Any:
    """The module ``module``, or a :class:`CompatError` naming the library, its version and the shim that needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise _fail(library, shim, f"the module {module}", error) from error


def _private(library: str, module: str, name: str, shim: str) -> Any:
    """``module.name``, or a :class:`CompatError` naming the library, its version and the shim that needs it."""
    try:
        return getattr(_module(library, module, shim), name)
    except AttributeError as error:
        raise _fail(library, shim, f"{module}.{name}", error) from error


def _require_attributes(library: str, owner: type, names: tuple[str, ...], shim: str) -> None:
    """Raise :class:`CompatError` unless ``owner`` still has every attribute in ``names``."""
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise _fail(library, shim, f"{owner.__qualname__}.{'/'.join(missing)}", "missing")


def _require_parameters(library: str, function: Callable[..., Any], names: frozenset[str], shim: str) -> None:
    """Raise :class:`CompatError` unless ``function`` still takes every parameter in ``names``."""
    missing = names - set(inspect.signature(function).parameters)
    if missing:
        raise _fail(library, shim, f"the parameter(s) {sorted(missing)} of {function.__qualname__}", "missing")


check_versions()

# ---------------------------------------------------------------------------------- sentence-transformers
_ST = "sentence-transformers"
_st_transformer = _module(_ST, "sentence_transformers.base.modules.transformer", "st_transformer_processor_loader")
_private(_ST, _st_transformer.__name__, "AutoProcessor", "st_transformer_processor_loader")
_BaseModel = _private(_ST, "sentence_transformers.base.model", "BaseModel", "install_input_length")
if not isinstance(inspect.getattr_static(_BaseModel, "_input_length", None), staticmethod):
    raise _fail(_ST, "install_input_length", "the staticmethod BaseModel._input_length", "missing or not static")
# The parameters of ``SentenceTransformer.encode`` that _UnitNormEncode reads or sets by name.
ENCODE_PARAMETERS = frozenset(
    {"inputs", "output_value", "convert_to_numpy", "convert_to_tensor", "normalize_embeddings", "truncate_dim"}
)
_SentenceTransformer = _private(_ST, "sentence_transformers", "SentenceTransformer", "install_unit_norm_encode")
_require_parameters(_ST, _SentenceTransformer.encode, ENCODE_PARAMETERS, "install_unit_norm_encode")
_require_attributes(_ST, _BaseModel, ("_load_with_module_classes", "is_singular_input"), "st_load_with_module_classes")
_InputFormatter = _private(_ST, "sentence_transformers.base.modality", "InputFormatter", "st_render_as_messages")
_require_attributes(_ST, _InputFormatter, ("parse_inputs", "batch_to_message"), "st_render_as_messages")


@contextlib.contextmanager
def st_transformer_processor_loader(loader: Any) -> Iterator[None]:
    """Inside the block, ST's ``Transformer.__init__`` loads its processor with ``loader.from_pretrained``.

    Why: ``Transformer.__init__`` (ST 6.2) calls ``AutoProcessor.from_pretrained`` inline, through its module's
    global, with no hook or argument to choose the class; a real Qwen2-VL checkpoint names ``Qwen2VLProcessor``,
    whose loading needs torchvision (``st_unirep.modules.processor``). ``unittest.mock.patch.object`` swaps the
    module global for the block and restores it on exit (not thread-safe: do not build two backbones at once).
    Private name: ``sentence_transformers.base.modules.transformer.AutoProcessor``.
    """
    with mock.patch.object(_st_transformer, "AutoProcessor", loader):
        yield


def st_input_length(item: Any) -> int:
    """sentence-transformers' own length estimate of one input (``BaseModel._input_length``, ST 6.2)."""
    return _BaseModel._input_length(item)


def install_input_length(model: BaseModel, key: Callable[[Any], int]) -> None:
    """Make ``key`` the sort key ``model.encode`` batches its inputs by.

    Why: ``encode`` (ST 6.2) sorts its inputs by ``self._input_length(item)`` so that batches pad little; there is
    no public way to give it a better estimate for images (see ``Backbone.input_length``). An instance attribute
    shadows the staticmethod for this model only. Private name: ``BaseModel._input_length``.
    """
    model._input_length = key


# guard(model, inputs, output_value, run) -> output: runs ``run()`` (the real encode) and checks around it.
EncodeGuard = Callable[[Any, Any, Any, Callable[[], Any]], Any]


class _UnitNormEncode:
    """Instance-level ``encode`` for st_unirep models (installed by :func:`install_unit_norm_encode`).

    Why a wrapper and not a module: sentence-transformers truncates ``sentence_embedding`` *after* the
    module pipeline has run (``SentenceTransformer._inference``), so a ``Normalize`` module can never see the
    truncated vector and plain ST returns prefixes with norms < 1. ST does re-normalise after truncating when
    ``normalize_embeddings=True``; this wrapper turns that on whenever a truncation is in effect (the
    ``truncate_dim`` argument or the model's own ``truncate_dim``), and returns a ``(0, dim)`` array for an
    empty input list instead of ST's shapeless ``np.array([])``. Everything else is ``SentenceTransformer.encode``,
    run through ``guard`` when one is given (st_unirep's input and NaN checks,
    :func:`st_unirep.modules.encode_guard.guard_encode`: the one place that sees the inputs in the user's order and
    the embeddings that come back). It binds the arguments by ``encode``'s parameter names
    (:data:`ENCODE_PARAMETERS`, checked at import).
    """

    def __init__(self, model: BaseModel, guard: EncodeGuard | None = None) -> None:
        self._model = weakref.ref(model)
        self._guard = guard

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model = self._model()
        encode = type(model).encode
        bound = inspect.signature(encode).bind(model, *args, **kwargs)
        arguments = bound.arguments
        inputs = arguments.get("inputs")
        output_value = arguments.get("output_value", "sentence_embedding")
        truncate_dim = arguments.get("truncate_dim") or model.truncate_dim
        if output_value == "sentence_embedding":
            if truncate_dim is not None:
                arguments["normalize_embeddings"] = True
            if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
                width = model.get_embedding_dimension()
                width = min(width, truncate_dim) if truncate_dim else width
                if arguments.get("convert_to_tensor", False):
                    return torch.zeros((0, width), device=model.device)
                if arguments.get("convert_to_numpy", True):
                    return np.zeros((0, width), dtype=np.float32)
                return []
        run = functools.partial(encode, *bound.args, **bound.kwargs)
        return run() if self._guard is None else self._guard(model, inputs, output_value, run)

    def __reduce__(self):  # picklable for ST's multi-process pools: rebuilt from the model on the other side
        return (_UnitNormEncode, (self._model(), self._guard))


def install_unit_norm_encode(model: BaseModel, guard: EncodeGuard | None = None) -> None:
    """Make ``model.encode`` re-normalise truncated embeddings (see :class:`_UnitNormEncode`), run through
    ``guard`` if given; idempotent (a second call only sets a new ``guard``).

    Why: ST 6.2 has no hook between its truncation and its output; an instance attribute shadows the method for
    this model only. Private API: the parameter names of ``SentenceTransformer.encode`` (checked at import).
    """
    installed = model.__dict__.get("encode")
    if isinstance(installed, _UnitNormEncode):
        if guard is not None:
            installed._guard = guard
    elif hasattr(type(model), "encode"):
        model.encode = _UnitNormEncode(model, guard)


def st_load_with_module_classes(
    model_class: type[BaseModel], path: str, module_classes: dict[str, type], **kwargs: Any
) -> BaseModel:
    """Load the saved model at ``path``, taking the ``modules.json`` types in ``module_classes`` from there.

    Why: ST 6 imports a ``modules.json`` class outside ``sentence_transformers.*`` only with
    ``trust_remote_code=True``, and that flag also lets the folder's own ``*.py`` files run (a ``modules.json`` that
    names ``evil.Evil`` beside an ``evil.py``). st_unirep's own classes are installed code the user already imported,
    so they are handed over as classes; every other type still goes through ST's ``trust_remote_code`` gate.
    ``_load_with_module_classes`` is the loader ST's trainer uses for its checkpoints for the same reason.
    Private API: ``BaseModel._load_with_module_classes`` (6.2).
    """
    return model_class._load_with_module_classes(path, module_classes, **kwargs)


def st_render_as_messages(transformer: Any, item: Any) -> list[dict[str, Any]]:
    """The chat messages ST's ``Transformer`` renders for ``item`` when it is preprocessed on its own.

    Why: ``Backbone.preprocess`` converts the other inputs of a batch that holds a conversation to messages exactly
    as ST would (ST 6.2 wraps a conversation in a mixed batch as ``{"type": "message"}`` content, which the chat
    template drops). Private API: ``Transformer.input_formatter`` and ``InputFormatter.parse_inputs`` /
    ``batch_to_message``.
    """
    formatter = getattr(transformer, "input_formatter", None)
    if not isinstance(formatter, _InputFormatter):
        raise _fail(_ST, "st_render_as_messages", "Transformer.input_formatter (an InputFormatter)", repr(formatter))
    modality, processor_inputs, _ = formatter.parse_inputs([item])
    if modality != "message":
        modality, processor_inputs = formatter.batch_to_message(modality, processor_inputs)
    return processor_inputs["message"][0]


# ---------------------------------------------------------------------------------- transformers
_TF = "transformers"
_QWEN2_VL_PIL = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
# Qwen2-VL's image-budget arithmetic, ``smart_resize(height, width, factor, min_pixels, max_pixels) -> (h, w)``,
# and the PIL-backend image processor (no torchvision): transformers 5 module path (4.x: image_processing_qwen2_vl,
# with no PIL-backend class). Not exported from the top level.
smart_resize: Callable[..., tuple[int, int]] = _private(_TF, _QWEN2_VL_PIL, "smart_resize", "smart_resize")
Qwen2VLImageProcessorPil: type = _private(_TF, _QWEN2_VL_PIL, "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorPil")
_cached_file = _private(_TF, "transformers.utils", "cached_file", "optional_hub_file")
_require_parameters(
    _TF,
    _private(_TF, "transformers.utils.hub", "cached_files", "optional_hub_file"),
    frozenset({"_raise_exceptions_for_missing_entries"}),
    "optional_hub_file",
)


def optional_hub_file(path_or_repo_id: str, filename: str) -> str | None:
    """The local path of ``filename`` in a model folder or hub repo, or ``None`` if the repo has no such file.

    Why: transformers' ``cached_file`` is the resolver every ``from_pretrained`` uses (local folder, cache, hub,
    offline mode); only its private flag ``_raise_exceptions_for_missing_entries=False`` makes a missing file
    ``None`` rather than an error that cannot be told apart from a missing repo (transformers 5.x).
    """
    return _cached_file(path_or_repo_id, filename, _raise_exceptions_for_missing_entries=False)


# ---------------------------------------------------------------------------------- mteb (resolved on first use)
_MTEB = "mteb"


@functools.cache
def _retrieval_split_data() -> type:
    return _private(_MTEB, "mteb.abstasks.retrieval_dataset_loaders", "RetrievalSplitData", "mteb_retrieval_split")


def mteb_retrieval_split(corpus: Any, queries: Any, relevant_docs: dict[str, dict[str, int]]) -> Any:
    """One split of a retrieval task's data as mteb's ``AbsTaskRetrieval`` reads it (no top-ranked lists).

    Why: a task that loads local files must fill ``self.dataset`` with ``{subset: {split: RetrievalSplitData}}``;
    mteb 2.x defines that TypedDict in ``mteb.abstasks.retrieval_dataset_loaders`` and exports it nowhere else.
    """
    return _retrieval_split_data()(corpus=corpus, queries=queries, relevant_docs=relevant_docs, top_ranked=None)


def mteb_declare_model_meta(wrapper: Any, **update: Any) -> Any:
    """``wrapper`` with its ``mteb_model_meta`` replaced by a copy carrying ``update`` (e.g. ``modalities``).

    Why: mteb 2.x builds a model object's ``ModelMeta`` with ``modalities=["text"]`` and no argument to set them;
    ``mteb.evaluate`` reads the wrapper's ``mteb_model_meta`` attribute, so the copy is bound on the instance.
    """
    meta = getattr(wrapper, "mteb_model_meta", None)
    if meta is None or not hasattr(meta, "model_copy"):
        raise _fail(_MTEB, "mteb_declare_model_meta", "a pydantic ModelMeta as wrapper.mteb_model_meta", repr(meta))
    wrapper.mteb_model_meta = meta.model_copy(update=update)
    return wrapper


# ------------------------------------------------------------------------------ transformers (a logged notice)
# The logger and message of the notice transformers logs whenever resize_token_embeddings(mean_resizing=True) grows
# the embedding matrix (transformers 5.x, ``PreTrainedModel._get_resized_embeddings``).
TRANSFORMERS_MEAN_RESIZING_LOGGER = "transformers.modeling_utils"
TRANSFORMERS_MEAN_RESIZING_NOTICE = "To disable this, use `mean_resizing=False`"


class _DropMeanResizingNotice:
    """A ``logging`` filter that drops the mean-resizing notice and lets every other record through."""

    def filter(self, record: Any) -> bool:
        return TRANSFORMERS_MEAN_RESIZING_NOTICE not in record.getMessage()


@contextlib.contextmanager
def transformers_quiet_mean_resizing() -> Iterator[None]:
    """Inside the block, transformers does not log its ``mean_resizing`` notice; every other record still passes.

    Why: ``resize_token_embeddings(..., mean_resizing=True)`` (the default, and the initialisation st_unirep wants
    for its prefix tokens: the old rows' mean and covariance) logs "The new embeddings will be initialized from a
    multivariate normal distribution ... To disable this, use `mean_resizing=False`" even when the caller passes
    ``mean_resizing=True`` on purpose; transformers has no argument to say so. The notice is matched by its text on
    the ``transformers.modeling_utils`` logger (transformers 5.x); ``tests/test_compat.py`` checks both.
    """
    import logging  # here, not at the top: this section is appended to the shims above

    logger = logging.getLogger(TRANSFORMERS_MEAN_RESIZING_LOGGER)
    quiet = _DropMeanResizingNotice()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
