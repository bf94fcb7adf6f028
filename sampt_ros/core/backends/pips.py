"""PIPS (Harley et al. 2022), online over an 8-frame ring buffer: the tracker of the model profiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, check_device, expand_path, setting


@dataclass
class PipsConfig(Section):
    """PIPS point tracker as SAM-PT runs it."""

    path: ClassVar[str] = "tracker.pips"
    checkpoint: str = setting("", "path to the official PIPS model-000200000.pth (~ and $VARS expand)")
    allow_random_weights: bool = setting(False, "run with random weights when no checkpoint is given (tests, benchmarks)")
    stride: int = setting(4, "feature stride in pixels (SAM-PT: 4)", choices=(4, 8))
    iters: int = setting(6, "PIPS refinement iterations per window", range=(1, 32))
    next_window_visibility: float = setting(
        0.9, "each point's next window starts at the last frame of its full window where its visibility "
             "exceeds this (SAM-PT: 0.9), lowered by next_window_step until a frame qualifies; "
             "1.0: always the window's last frame", range=(0.0, 1.0))
    next_window_step: float = setting(0.02, "how much next_window_visibility is lowered per search round (SAM-PT: 0.02)",
                                      range=(0.001, 1.0))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    half: bool = setting(False, "run the network in float16 on CUDA")

    def validate(self) -> None:
        self.checkpoint = expand_path(self.checkpoint)
        check_device("tracker.pips.device", self.device)


@register("tracker", "pips", PipsConfig, "PIPS (28.7 M parameters, official checkpoint), 8-frame windows",
          requires=("torch",))
def build(config):
    from ..pips_tracker import OnlinePipsTracker

    return OnlinePipsTracker(config.tracker.pips, window=config.tracker.window)
