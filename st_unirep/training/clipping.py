"""Component-wise gradient clipping (UniRep-M Defense 3, ViUniEmbed Defense 4)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

DEFAULT_MAX_NORMS = {"backbone": 1.0, "pooling": 5.0, "projection": 5.0}


def component_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters of an st_unirep model by component: module 0 is the backbone, then the pooling, then
    the projection (any further module with parameters counts as projection)."""
    model = getattr(model, "module", model)  # DDP
    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "pooling": [], "projection": []}
    names = list(groups)
    for index, module in enumerate(model.children()):
        group = names[min(index, 2)]
        groups[group] += [p for p in module.parameters() if p.requires_grad]
    return groups


def clip_components(groups: dict[str, Iterable[nn.Parameter]], max_norms: dict[str, float]) -> dict[str, float]:
    """Clip each group's gradient to its own max-norm (``torch.nn.utils.clip_grad_norm_``); return the norms
    before clipping. A group whose norm is under its threshold is left untouched."""
    norms = {}
    for name, params in groups.items():
        params = [p for p in params if p.grad is not None]
        if not params or name not in max_norms:
            continue
        norms[name] = float(torch.nn.utils.clip_grad_norm_(params, max_norms[name]))
    return norms


class ComponentClippingCallback(TrainerCallback):
    """Clips backbone / pooling / projection gradients separately, right before the optimizer step.

    Runs in ``on_pre_optimizer_step``: after the gradients of every accumulation micro-step are summed and after
    DDP has all-reduced them, so each rank clips the same gradients. The trainer's own global clipping should be
    off (``max_grad_norm=0``; ``st_unirep.training.run`` does that). fp16 with a loss scaler would clip scaled
    gradients here, so ``run`` refuses fp16: use bf16.

    The pre-clip norms are added to the next log line as ``grad_norm/backbone`` etc.
    """

    def __init__(self, max_norms: dict[str, float] | None = None) -> None:
        self.max_norms = dict(DEFAULT_MAX_NORMS if max_norms is None else max_norms)
        for name, value in self.max_norms.items():
            if name not in DEFAULT_MAX_NORMS or not value > 0:
                raise ValueError(f"max_norms must map {list(DEFAULT_MAX_NORMS)} to numbers > 0, got {name}={value!r}")
        self.last_norms: dict[str, float] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.last_norms = clip_components(component_parameters(model), self.max_norms)

    def add_metrics(self, state, logs: dict[str, float]) -> None:
        """The last step's gradient norms as ``grad_norm/<component>`` (called by ``UniRepTrainer.log``)."""
        logs.update({f"grad_norm/{name}": norm for name, norm in self.last_norms.items()})
