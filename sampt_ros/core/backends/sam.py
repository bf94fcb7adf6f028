"""Segment Anything 1 (``segment_anything`` 1.0: ViT-H/L/B), prompted the way SAM-PT prompts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, check_device, expand_path, setting


@dataclass
class SamConfig(Section):
    """Segment Anything 1 model and checkpoint."""

    path: ClassVar[str] = "segmenter.sam"
    model_type: str = setting("vit_h", "vit_h, vit_l, vit_b (official checkpoints) or tiny (tests only)",
                              choices=("vit_h", "vit_l", "vit_b", "tiny"))
    checkpoint: str = setting("", "path to the official sam_vit_*.pth (~ and $VARS expand)")
    allow_random_weights: bool = setting(False, "run with random weights when no checkpoint is given (tests, benchmarks)")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")

    def validate(self) -> None:
        self.checkpoint = expand_path(self.checkpoint)
        check_device("segmenter.sam.device", self.device)


@register("segmenter", "sam", SamConfig, "Segment Anything 1 (ViT-H/L/B)", requires=("torch", "segment_anything"))
def build(config):
    from ..sam_segmenter import SamSegmenter

    return SamSegmenter(config)
