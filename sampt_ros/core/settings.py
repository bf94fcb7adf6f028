"""The vocabulary of validated settings: :func:`setting`, :class:`Section` and their readers.

A configuration section is a dataclass deriving from :class:`Section` whose fields are
declared with :func:`setting` (default, documentation, range, choices). The section checks
every field at construction and raises ``ValueError`` naming the dotted key; the ROS node
turns the same declarations into parameter descriptors. The tree itself
(:mod:`sampt_ros.core.config`) and every backend's own section
(:mod:`sampt_ros.core.backends`) are built from these pieces.

This module imports nothing heavy (no torch, no ROS).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import field
from typing import Any, ClassVar, Dict, Mapping, Optional, Sequence, Tuple

DEVICES = ("auto", "cpu", "cuda")


def check(cond: bool, msg: str) -> None:
    """Raise ``ValueError(msg)`` unless ``cond``."""
    if not cond:
        raise ValueError(msg)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    check(value in choices, f"{name} must be one of {list(choices)}, got {value!r}")


def expand_path(path: str) -> str:
    """Checkpoint paths may use ``~`` and ``$VARS`` (e.g. ``$SAMPT_WEIGHTS/sam_vit_h_4b8939.pth``)."""
    return os.path.expanduser(os.path.expandvars(path)) if path else path


def check_device(name: str, value: str) -> None:
    check(
        value in DEVICES or value.startswith("cuda:"),
        f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}",
    )


def setting(default: Any, doc: str, *, range: Optional[Tuple[float, float]] = None,
            choices: Optional[Sequence[Any]] = None):
    """A config field with its documentation and valid values.

    The one place a setting's bounds live: :class:`Section` checks them at construction and
    the ROS node turns them into parameter descriptors (description, integer/float range).
    ``range`` is inclusive; rules a range cannot say go in :meth:`Section.validate`.
    """
    meta: Dict[str, Any] = {"doc": doc}
    if range is not None:
        meta["range"] = tuple(range)
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


def subsection(cls):
    """A field holding a nested :class:`Section` (built from its defaults when not given)."""
    return field(default_factory=cls)


class Section:
    """Base of the config dataclasses: validates every field's declared range and choices."""

    #: the section's dotted name in the tree, used in error messages (``tracker.pips``)
    path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            name = f"{self.path}.{f.name}" if self.path else f.name
            rng = f.metadata.get("range")
            if rng is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                check(rng[0] <= value <= rng[1], f"{name} must be in {rng[0]}..{rng[1]}, got {value}")
            choices = f.metadata.get("choices")
            if choices is not None:
                check_choice(name, value, choices)
        self.validate()

    def validate(self) -> None:
        """Rules that a range or a list of choices cannot say (odd sizes, open bounds, devices)."""


def section_type(f: dataclasses.Field) -> Optional[type]:
    """The :class:`Section` class a field nests, or None for a leaf setting."""
    factory = f.default_factory
    if isinstance(factory, type) and issubclass(factory, Section):
        return factory
    return None


def describe(section: Section, prefix: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """Every leaf setting of a section tree: ``dotted name -> {default, doc, range, choices}``.

    ``default`` is the value in ``section`` (so a loaded config describes its own values).
    """
    prefix = section.path if prefix is None else prefix
    out: Dict[str, Dict[str, Any]] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        if isinstance(value, Section):
            out.update(describe(value, name))
        elif f.metadata:
            out[name] = {"default": value, "doc": f.metadata.get("doc", name),
                         "range": f.metadata.get("range"), "choices": f.metadata.get("choices")}
    return out


def build_section(cls, data: Mapping[str, Any], path: str):
    """Construct dataclass ``cls`` from a mapping, rejecting unknown keys with their full name."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f"{path}.{key}" if path else key
        if key not in fields:
            raise ValueError(f"unknown config key {name!r}; known keys here: {sorted(fields)}")
        sub = section_type(fields[key])
        if sub is not None:
            kwargs[key] = build_section(sub, value or {}, name)
        elif key == "node":
            kwargs[key] = dict(value or {})
        else:
            kwargs[key] = _coerce(name, value, fields[key])
    return cls(**kwargs)


def _coerce(name: str, value: Any, f: dataclasses.Field) -> Any:
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value
