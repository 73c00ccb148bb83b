"""What a training schedule may change on a loss: three small interfaces instead of attributes found by name.

They sit in one file (against "one class per file") because they are one contract, read together: the schedules of
:mod:`st_unirep.training.schedules` call exactly these methods and nothing else on a loss. The loss wrappers
(:class:`~st_unirep.losses.RegularizedLoss`, :class:`~st_unirep.losses.MatryoshkaLoss`,
:class:`~st_unirep.losses.CachedLoss`) pass the first two down to the loss they wrap, so a schedule talks to the
outermost loss of a stack only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class TemperatureScheduled(Protocol):
    """A loss with a softmax temperature :math:`\\tau` that a cooling schedule sets (ViUniEmbed Defense 2)."""

    def set_temperature(self, temperature: float) -> None:
        """Use ``temperature`` (> 0) from now on."""


@runtime_checkable
class WeightScheduled(Protocol):
    """A loss whose terms' weights a warm-up scales, from 0 to the weights it was built with."""

    def scheduled_weights(self) -> dict[str, float]:
        """The configured (full) weight of every term a warm-up may scale, by term name (``mse``, ``triplet``, …)."""

    def set_weight_scale(self, scales: Mapping[str, float]) -> None:
        """Weight term ``name`` by ``scales[name]`` × its configured weight (1: as built); unknown names raise."""


@runtime_checkable
class TaskWeighted(Protocol):
    """A loss whose task term a dynamic task-weighting schedule multiplies (DWA), reading back each task loss."""

    last_task_loss: Tensor | None  # the detached, unweighted task term of the latest forward
    task_loss_count: int  # forwards so far: a schedule tells a new task loss from one it has already read

    def set_task_weight(self, weight: float) -> None:
        """Multiply the task term by ``weight`` (>= 0) from now on."""
