"""Builds the engine's pluggable pieces from a :class:`~sampt_ros.core.config.Config`.

Imports are lazy so that the weight-free pipeline (Lucas-Kanade + classic segmenter) never
imports torch.
"""

from __future__ import annotations

from .config import Config
from .engine import SamPtEngine


def build_tracker(config: Config):
    """The configured :class:`~sampt_ros.core.types.PointTracker`."""
    if config.tracker.kind == "pips":
        from .pips_tracker import OnlinePipsTracker

        return OnlinePipsTracker(config.tracker.pips, window=config.tracker.window)
    from .lk_tracker import LucasKanadeTracker

    return LucasKanadeTracker(config.tracker.lk, window=config.tracker.window)


def build_segmenter(config: Config):
    """The configured :class:`~sampt_ros.core.types.Segmenter`."""
    if config.segmenter.kind == "sam":
        from .sam_segmenter import SamSegmenter

        return SamSegmenter(config.segmenter.sam)
    from .classic_segmenter import ClassicSegmenter

    return ClassicSegmenter(config.segmenter.classic)


def build_sampler(config: Config):
    """The query-point sampler used for mask prompts and re-initialisation."""
    from .sampling import QuerySampler

    return QuerySampler(config.sampling)


def build_engine(config: Config) -> SamPtEngine:
    """A ready engine: loads the models the config names (this is the slow part)."""
    return SamPtEngine(config, build_tracker(config), build_segmenter(config), build_sampler(config))


def describe(config: Config) -> str:
    """One line naming the models, for logs, diagnostics and reports."""
    trk = "PIPS" if config.tracker.kind == "pips" else "Lucas-Kanade"
    seg = f"SAM {config.segmenter.sam.model_type}" if config.segmenter.kind == "sam" else "classic (weight-free)"
    reinit = f"re-init every {config.engine.reinit_horizon}" if config.engine.reinit_horizon else "no re-init"
    return f"{config.profile}: {trk} + {seg}, {reinit}"
