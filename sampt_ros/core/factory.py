"""Builds the engine and its pluggable pieces from a :class:`~sampt_ros.core.config.Config`.

Trackers, segmenters and appearance memories come from :mod:`sampt_ros.core.registry`; their
builders import what they need, so the weight-free pipeline (Lucas-Kanade + the classic
segmenter + the colour memory) never imports torch.
"""

from __future__ import annotations

from . import registry
from .config import Config
from .engine import SamPtEngine


def _build(family: str, kind: str, config: Config):
    backend = registry.get(family, kind)
    try:
        return backend.build(config)
    except ImportError as exc:
        needs = ", ".join(backend.requires) or "its dependencies"
        raise ImportError(f"{family} {kind!r} needs {needs}: {exc}") from exc


def build_tracker(config: Config):
    """The configured :class:`~sampt_ros.core.types.PointTracker` (``tracker.kind``)."""
    return _build("tracker", config.tracker.kind, config)


def build_segmenter(config: Config):
    """The configured :class:`~sampt_ros.core.types.Segmenter` (``segmenter.kind``)."""
    return _build("segmenter", config.segmenter.kind, config)


def build_memory(config: Config):
    """The configured :class:`~sampt_ros.core.types.AppearanceMemory`, or None (``reid.kind: none``)."""
    if config.reid.kind == "none":
        return None
    return _build("memory", config.reid.kind, config)


def build_sampler(config: Config):
    """The query-point sampler used for mask prompts, re-initialisation and re-detection."""
    from .sampling import QuerySampler

    return QuerySampler(config.sampling)


def build_engine(config: Config) -> SamPtEngine:
    """A ready engine: loads the models the config names (this is the slow part)."""
    return SamPtEngine(config, build_tracker(config), build_segmenter(config), build_sampler(config),
                       build_memory(config))


def describe(config: Config) -> str:
    """One line naming the models, for logs, diagnostics and reports."""
    trk = config.tracker.kind
    seg = config.segmenter.kind
    section = getattr(config.segmenter, seg, None)
    model = getattr(section, "model_type", None)
    if model:
        seg = f"{seg} {model}"
    reinit = f"re-init every {config.engine.reinit_horizon}" if config.engine.reinit_horizon else "no re-init"
    reid = "no re-detection" if config.reid.kind == "none" else f"{config.reid.kind} re-detection"
    return f"{config.profile}: {trk} + {seg}, {reinit}, {reid}"
