"""The registry of pluggable components: point trackers, segmenters and appearance memories.

Each backend is one module in :mod:`sampt_ros.core.backends` that registers a builder and its
own config section, the way segment-anything's ``sam_model_registry`` maps a model name to a
builder::

    @register("segmenter", "sam2", Sam2Config, "SAM 2.1 image predictor", requires=("sam2",))
    def build(config):            # the whole validated Config
        ...

The config tree (``tracker.kind``'s choices and one ``tracker.<name>`` section per tracker,
likewise ``segmenter`` and ``reid``), the ROS node's parameter descriptors and
``sampt-benchmark`` all read this registry, so adding a backend is a one-module change.
Backend modules import only light modules at import time; the heavy ones (torch, the model
packages) are imported by their builder, so the weight-free pipeline never imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

#: the component families and the config section each lives under
FAMILIES = {"tracker": "tracker", "segmenter": "segmenter", "memory": "reid"}


@dataclass(frozen=True)
class Backend:
    """One registered component.

    Attributes:
        family: ``tracker``, ``segmenter`` or ``memory``.
        name: the value of ``<section>.kind`` that selects it (``pips``, ``sam_hq``, ...).
        config: its settings section (a :class:`~sampt_ros.core.settings.Section` whose
            ``path`` is ``<section>.<name>``).
        build: ``config (the whole validated Config) -> component``.
        doc: one line for ``--help``, the README and parameter descriptions.
        requires: Python packages it imports (for error messages and the README).
    """

    family: str
    name: str
    config: type
    build: Callable
    doc: str
    requires: Tuple[str, ...] = ()


_REGISTRY: Dict[str, Dict[str, Backend]] = {family: {} for family in FAMILIES}
_discovered = False


def register(family: str, name: str, config: type, doc: str, requires: Tuple[str, ...] = ()):
    """Decorator registering ``build(config)`` as backend ``name`` of ``family``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown component family {family!r}; known: {sorted(FAMILIES)}")
    expected = f"{FAMILIES[family]}.{name}"
    if getattr(config, "path", None) != expected:
        raise ValueError(f"{config.__name__}.path must be {expected!r}, got {getattr(config, 'path', None)!r}")

    def deco(build: Callable) -> Callable:
        existing = _REGISTRY[family].get(name)
        if existing is not None and existing.build.__module__ != build.__module__:
            raise ValueError(f"{family} backend {name!r} is registered twice "
                             f"({existing.build.__module__} and {build.__module__})")
        _REGISTRY[family][name] = Backend(family, name, config, build, doc, tuple(requires))
        return build

    return deco


def discover() -> None:
    """Import every module of :mod:`sampt_ros.core.backends` once (they register themselves)."""
    global _discovered
    if _discovered:
        return
    from . import backends

    for info in sorted(pkgutil.iter_modules(backends.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{backends.__name__}.{info.name}")
    _discovered = True


def backends(family: str) -> Dict[str, Backend]:
    """The registered backends of ``family``, by name (in registration order)."""
    discover()
    return dict(_REGISTRY[family])


def get(family: str, name: str) -> Backend:
    """Backend ``name`` of ``family``; ``ValueError`` listing the known ones otherwise."""
    known = backends(family)
    if name not in known:
        raise ValueError(f"unknown {family} {name!r}; known: {sorted(known)}")
    return known[name]
