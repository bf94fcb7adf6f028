"""Appearance memory on the segmenter's image embedding (the SAM family's re-identification)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, setting


@dataclass
class EmbeddingMemoryConfig(Section):
    """Mean image-embedding features under each object's mask and around it (PerSAM-style)."""

    path: ClassVar[str] = "reid.embedding"
    temperature: float = setting(0.05, "cosine-margin scale of the similarity's sigmoid", range=(0.001, 10.0))
    min_margin: float = setting(0.05, "how much closer (cosine) to the object's features than to its background's "
                                      "a mask or a candidate cell must be to count as the object (similarity 0.5)",
                                range=(-2.0, 2.0))
    max_drop: float = setting(0.3, "a mask or candidate must be within this cosine of how alike the object's own "
                                   "remembered features are (absolute look-alike floor)", range=(0.0, 2.0))


@register("memory", "embedding", EmbeddingMemoryConfig, "the segmenter's image embedding under the mask "
          "(no extra encoder pass)")
def build(config):
    from ..appearance import EmbeddingMemory

    return EmbeddingMemory(config.reid.embedding, entries=config.reid.entries)
