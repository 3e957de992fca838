"""What every engine shares: the cancel token and the progress event.

Engines (NST refinement, feed-forward networks, CycleGAN) check a :class:`CancelToken` once per
iteration or tile and report :class:`Progress` through a plain callback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image


@dataclass
class Progress:
    """One step of a run: ``iteration`` of ``total``; ``preview`` when the step carries an image."""

    iteration: int
    total: int
    losses: dict[str, float]
    stage: str
    eta_s: float | None
    preview: Image.Image | None = None

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.iteration / self.total))


ProgressCallback = Callable[[Progress], None]


class Cancelled(Exception):
    """The run was cancelled through its :class:`CancelToken`."""


class CancelToken:
    """Thread-safe cancellation flag, checked by the engines once per iteration (or tile)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def check_cancel(token: CancelToken | None) -> None:
    if token is not None and token.cancelled:
        raise Cancelled("cancelled")
