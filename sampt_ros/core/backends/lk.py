"""Pyramidal Lucas-Kanade with a forward-backward check: the weight-free tracker of the cpu profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, check, setting


@dataclass
class LkConfig(Section):
    """Pyramidal Lucas-Kanade tracker with a forward-backward check (weight-free)."""

    path: ClassVar[str] = "tracker.lk"
    win_size: int = setting(21, "side of the LK search window in pixels (odd)", range=(5, 101))
    max_level: int = setting(3, "pyramid levels above the base", range=(0, 8))
    fb_threshold: float = setting(2.0, "forward-backward error (px) at which a point's visibility is 0.5",
                                  range=(0.01, 1000.0))
    max_error: float = setting(30.0, "mean patch error above which a point counts occluded", range=(0.01, 1000.0))
    iterations: int = setting(20, "LK iterations per pyramid level", range=(1, 100))

    def validate(self) -> None:
        check(self.win_size % 2 == 1, f"tracker.lk.win_size must be odd, got {self.win_size}")


@register("tracker", "lk", LkConfig, "Lucas-Kanade + forward-backward check (OpenCV, no weights)")
def build(config):
    from ..lk_tracker import LucasKanadeTracker

    return LucasKanadeTracker(config.tracker.lk, window=config.tracker.window)
