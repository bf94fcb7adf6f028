"""Weight-free appearance memory on colour (the cpu profile's re-identification)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, setting


@dataclass
class ColourMemoryConfig(Section):
    """Colour histograms of each object and of its surroundings (CIE-Lab, quantised)."""

    path: ClassVar[str] = "reid.colour"
    bins: int = setting(16, "Lab histogram bins per channel", range=(4, 32))
    work_size: int = setting(214, "long side (px) at which colours are read and searched", range=(32, 2048))
    ring: float = setting(0.5, "width of the surroundings ring, as a fraction of the object's size",
                          range=(0.05, 5.0))
    share_weight: float = setting(1.0, "exponent of the share of object-like pixels in a mask's similarity",
                                  range=(0.0, 10.0))
    overlap_weight: float = setting(1.0, "exponent of the histogram overlap (Bhattacharyya) in a mask's similarity",
                                    range=(0.0, 10.0))
    min_share: float = setting(0.3, "a candidate needs this share of object-like pixels in a window of the "
                                    "object's size", range=(0.0, 1.0))


@register("memory", "colour", ColourMemoryConfig, "colour histograms of the object and its surroundings (no weights)")
def build(config):
    from ..appearance import ColourMemory

    return ColourMemory(config.reid.colour, entries=config.reid.entries)
