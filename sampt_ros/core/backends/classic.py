"""The weight-free segmenter: a dense-flow-moved prior weighed against colour and motion (cpu profile)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import Section, setting


@dataclass
class ClassicConfig(Section):
    """The weight-free segmenter: a dense-flow-moved prior weighed against colour and motion."""

    path: ClassVar[str] = "segmenter.classic"
    work_size: int = setting(427, "long side (px) of the working resolution", range=(64, 4096))
    band: float = setting(0.2, "width of the uncertain band around the prior, as a fraction of the object's size",
                          range=(0.01, 2.0))
    graph_cut: bool = setting(False, "settle uncertain pixels with GrabCut (slower); off: the posterior's sign")
    iters: int = setting(1, "GrabCut iterations (with graph_cut, and for point-only prompts)", range=(1, 20))
    seed_radius: int = setting(3, "radius (working px) of the certain disk around each prompt point", range=(0, 50))
    box_grow: float = setting(0.5, "points only: the box around the positives grows by this x their spread",
                              range=(0.0, 5.0))
    flow: str = setting("ultrafast", "dense flow (DIS preset) that moves the previous mask: off, ultrafast, fast, medium",
                        choices=("off", "ultrafast", "fast", "medium"))
    flow_finest_scale: int = setting(0, "DIS finest pyramid level (0: full working resolution; finer, slower)",
                                     range=(0, 4))
    match_iou: float = setting(0.2, "a previous mask moved by flow replaces the prior when their IoU exceeds this",
                               range=(0.0, 0.99))
    colour_bins: int = setting(16, "Lab histogram bins per channel", range=(4, 64))
    colour_weight: float = setting(0.5, "weight of the colour log-likelihood ratio in the posterior", range=(0.0, 10.0))
    prior_weight: float = setting(3.0, "the prior's logit deep inside (+) / far outside (-) the moved mask",
                                  range=(0.0, 50.0))
    point_prior_weight: float = setting(0.0, "share of the engine's point-moved mask in the prior (rest: flow-moved)",
                                        range=(0.0, 1.0))
    prior_softness: float = setting(0.5, "distance (fraction of the band) over which the prior's logit saturates",
                                    range=(0.01, 10.0))
    motion_weight: float = setting(0.5, "weight of the motion log-likelihood ratio (object vs surroundings; 0 = off)",
                                   range=(0.0, 10.0))
    motion_max_gain: float = setting(0.0, "cap of the motion evidence for the object (against is capped at 5)",
                                     range=(0.0, 5.0))
    motion_sigma: float = setting(1.0, "least flow noise (working px) in the motion likelihoods", range=(0.01, 100.0))
    memory: float = setting(0.03, "update rate of an object's colour histograms per frame (1 = no memory)",
                            range=(0.001, 1.0))
    point_gate: float = setting(1.0, "positives further outside the moved mask than this x band are ignored",
                                range=(0.0, 100.0))
    certain_logit: float = setting(3.0, "|posterior logit| above which a pixel is definite for the graph cut",
                                   range=(0.01, 100.0))
    seed: int = setting(0, "seed of GrabCut's k-means (OpenCV's RNG), for repeatable masks", range=(0, 2**31 - 1))


@register("segmenter", "classic", ClassicConfig, "weight-free: flow-moved prior + colour/motion posterior (OpenCV)")
def build(config):
    from ..classic_segmenter import ClassicSegmenter

    return ClassicSegmenter(config.segmenter.classic)
