"""The node's ROS parameters: every core setting plus the node's own ``node.*`` keys.

Names are the core's dotted names (``tracker.kind``, ``segmenter.sam.checkpoint``,
``engine.reinit_horizon``; :meth:`sampt_ros.core.config.Config.flat`) so one YAML file
configures both the node and the offline tools. Each parameter is declared with a
``ParameterDescriptor``: a description (the core's own ``#:`` field comment), the integer /
floating-point range wherever the core validates both bounds, and ``read_only`` where a change
needs the models rebuilt (all core settings, and node keys that shape subscriptions).

Validation lives in one place, the core: the declared values are handed to
:func:`sampt_ros.core.config.config_from_dict`; its ``ValueError`` makes the node refuse to
configure with that reason. A value that ROS itself refuses at start-up (wrong type, out of
range) does not crash the node either: it is recorded and reported the same way.

Defaults, weakest first: the core dataclasses; ``config/sampt.yaml`` of the installed package;
the profile file named by the ``profile`` parameter (``cpu`` -> ``config/cpu.yaml``), when one
exists. Parameter files and ``-p`` overrides given to the node win over all of these, so a
launch file that passes ``sampt.yaml`` + a profile behaves exactly like ``-p profile:=cpu``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sampt_ros.core.config import (
    Config,
    config_dir,
    config_from_dict,
    flatten,
    load_yaml_tree,
)

# ---------------------------------------------------------------------------- node settings
_QOS = ("sensor_data", "reliable")
_MODES = ("live", "lockstep")


@dataclass
class NodeSettings:
    """The node's own settings (``node.*`` parameters), validated at construction."""

    autostart: bool = True  #: configure + activate at start, so `ros2 run` needs no lifecycle manager
    mode: str = "live"  #: live (newest frame wins, drops counted) | lockstep (every frame, in order)
    queue_size: int = 1000  #: lockstep: frames that may wait for the model (~0.9 MB each at 640x480)
    image_qos: str = "sensor_data"  #: QoS of image/depth/camera_info: sensor_data (best effort) | reliable
    output_qos: str = "reliable"  #: QoS of mask/tracked_objects/overlay/markers: reliable | sensor_data
    qos_depth: int = 10  #: history depth of the subscriptions and publishers
    compressed: bool = False  #: subscribe image/compressed (sensor_msgs/CompressedImage) instead of image
    use_depth: bool = False  #: also subscribe depth (16UC1 mm / 32FC1 m) + camera_info; publish 3-D points and markers
    sync_slop: float = 0.05  #: seconds: largest stamp difference between image, depth and camera_info
    sync_queue_size: int = 10  #: messages kept per input while matching image/depth/camera_info
    publish_overlay: bool = False  #: always publish the overlay image (otherwise only while someone subscribes)
    click_object_id: int = 1  #: object that clicks on clicked_point prompt (1..255)
    click_label: int = 1  #: label of the next clicks: 1 positive, 0 negative
    diagnostics_period: float = 1.0  #: seconds between diagnostics messages
    marker_scale: float = 0.02  #: metres: size of the 3-D point markers

    def __post_init__(self) -> None:
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        check(self.mode in _MODES, f"node.mode must be one of {list(_MODES)}, got {self.mode!r}")
        check(self.image_qos in _QOS, f"node.image_qos must be one of {list(_QOS)}, got {self.image_qos!r}")
        check(self.output_qos in _QOS, f"node.output_qos must be one of {list(_QOS)}, got {self.output_qos!r}")
        check(1 <= self.queue_size <= 100000, f"node.queue_size must be in 1..100000, got {self.queue_size}")
        check(1 <= self.qos_depth <= 1000, f"node.qos_depth must be in 1..1000, got {self.qos_depth}")
        check(0.0 <= self.sync_slop <= 10.0, f"node.sync_slop must be in [0, 10] seconds, got {self.sync_slop}")
        check(1 <= self.sync_queue_size <= 1000, f"node.sync_queue_size must be in 1..1000, got {self.sync_queue_size}")
        check(1 <= self.click_object_id <= 255, f"node.click_object_id must be in 1..255, got {self.click_object_id}")
        check(self.click_label in (0, 1), f"node.click_label must be 1 (positive) or 0 (negative), got {self.click_label}")
        check(0.05 <= self.diagnostics_period <= 3600.0,
              f"node.diagnostics_period must be in [0.05, 3600] seconds, got {self.diagnostics_period}")
        check(0.0 < self.marker_scale <= 10.0, f"node.marker_scale must be in (0, 10] metres, got {self.marker_scale}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "NodeSettings":
        """From ``{key: value}`` (keys without the ``node.`` prefix); unknown keys are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                raise ValueError(f"unknown parameter 'node.{key}'; known: {sorted('node.' + k for k in fields)}")
            default = fields[key].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"node.{key} must be true or false, got {value!r}")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"node.{key} must be an integer, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"node.{key} must be a number, got {value!r}")
                value = float(value)
            elif isinstance(default, str) and not isinstance(value, str):
                raise ValueError(f"node.{key} must be a string, got {value!r}")
            kwargs[key] = value
        return cls(**kwargs)


#: node keys that can change while the node runs; the others need deactivate/cleanup/configure
#: (they shape subscriptions, the queue or the timer) and are read-only
LIVE_NODE_KEYS = ("publish_overlay", "click_object_id", "click_label")

# ---------------------------------------------------------------------------- ranges
#: ``name -> (from, to, step)`` wherever the core checks both bounds (the core stays the judge:
#: a range cannot say "0 or 2..64" or "odd", the core's check does)
RANGES: Dict[str, Tuple[float, float, float]] = {
    "engine.reinit_horizon": (0, 64, 1),
    "engine.max_objects": (1, 255, 1),
    "tracker.window": (2, 64, 1),
    "tracker.pips.stride": (4, 8, 4),
    "tracker.pips.iters": (1, 32, 1),
    "tracker.pips.visibility_threshold": (0.0, 1.0, 0.0),
    "tracker.lk.max_level": (0, 8, 1),
    "tracker.lk.iterations": (1, 100, 1),
    "tracker.lk.ncc_threshold": (0.0, 1.0, 0.0),
    "segmenter.sam.refinement_iters": (0, 64, 1),
    "segmenter.classic.work_size": (64, 4096, 1),
    "segmenter.classic.band": (0.0, 2.0, 0.0),
    "segmenter.classic.iters": (1, 20, 1),
    "segmenter.classic.seed_radius": (0, 50, 1),
    "segmenter.classic.box_grow": (0.0, 5.0, 0.0),
    "sampling.n_positive": (1, 256, 1),
    "sampling.n_negative": (0, 256, 1),
    "sampling.max_pixels": (10, 100000, 1),
    "node.queue_size": (1, 100000, 1),
    "node.qos_depth": (1, 1000, 1),
    "node.sync_slop": (0.0, 10.0, 0.0),
    "node.sync_queue_size": (1, 1000, 1),
    "node.click_object_id": (1, 255, 1),
    "node.click_label": (0, 1, 1),
    "node.diagnostics_period": (0.05, 3600.0, 0.0),
    "node.marker_scale": (0.0, 10.0, 0.0),
}

#: descriptions for core fields whose dataclass has no ``#:`` comment
_EXTRA_DESCRIPTIONS = {
    "tracker.pips.stride": "PIPS feature stride in pixels: 4 or 8",
    "tracker.pips.iters": "PIPS refinement iterations per window",
    "tracker.pips.device": "auto, cpu, cuda or cuda:N",
    "segmenter.sam.device": "auto, cpu, cuda or cuda:N",
    "sampling.n_positive": "positive query points sampled per object",
    "sampling.negative_method": "kmedoids, shi_tomasi, random or mixed",
    "sampling.n_negative": "negative query points sampled per object",
    "sampling.seed": "random seed of the samplers",
    "engine.max_objects": "most objects tracked at once (1..255: the mask topic is a mono8 label image)",
    "profile": "profile name; a shipped profile (cpu, paper, paper_reinit, fast_gpu) or a YAML path "
               "is loaded as defaults when given",
}

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^=#]*=[^#]*#:\s*(.+?)\s*$")


def _field_comments(cls) -> Dict[str, str]:
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2) for m in map(_COMMENT.match, src.splitlines()) if m}


def _describe_tree(obj, prefix: str = "") -> Dict[str, str]:
    """``dotted name -> description`` for every leaf of a config dataclass instance."""
    out: Dict[str, str] = {}
    comments = _field_comments(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.update(_describe_tree(value, name + "."))
        elif not isinstance(value, dict):
            out[name] = _EXTRA_DESCRIPTIONS.get(name) or comments.get(f.name) or \
                f"{name} (see sampt_ros.core.config.{type(obj).__name__})"
    return out


def core_defaults() -> Dict[str, Any]:
    """The core's own defaults, flat (``node`` excluded)."""
    return {k: v for k, v in Config().flat().items() if not k.startswith("node.") and k != "node"}


def node_defaults() -> Dict[str, Any]:
    """``node.*`` defaults, flat."""
    return {f"node.{f.name}": f.default for f in dataclasses.fields(NodeSettings)}


def parameter_specs() -> Dict[str, Dict[str, Any]]:
    """Every parameter the node declares: ``name -> {default, description, range, read_only}``."""
    specs: Dict[str, Dict[str, Any]] = {}
    core_desc = _describe_tree(Config())
    for name, default in core_defaults().items():
        specs[name] = dict(default=default, description=core_desc.get(name, name),
                           range=RANGES.get(name), read_only=True)
    node_desc = _field_comments(NodeSettings)
    for name, default in node_defaults().items():
        key = name[len("node."):]
        specs[name] = dict(default=default, description=node_desc.get(key, name), range=RANGES.get(name),
                           read_only=key not in LIVE_NODE_KEYS)
    return specs


def shipped_defaults(profile: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
    """Flat defaults from the package's ``config/sampt.yaml`` (+ the profile file, if any).

    Returns ``(values, notes)``; missing files are not errors (a bare install still runs on
    the core defaults), notes say what was loaded.
    """
    notes: List[str] = []
    try:
        cdir = config_dir()
    except FileNotFoundError:
        return {}, ["no package config/ folder found: using the core defaults"]
    paths = [os.path.join(cdir, "sampt.yaml")]
    if profile:
        candidate = profile if profile.endswith((".yaml", ".yml")) else os.path.join(cdir, f"{profile}.yaml")
        if os.path.isfile(candidate) and os.path.abspath(candidate) != os.path.abspath(paths[0]):
            paths.append(candidate)
        elif profile.endswith((".yaml", ".yml")):
            raise FileNotFoundError(f"profile file not found: {profile}")
        else:
            notes.append(f"profile {profile!r} names no file in {cdir}: it is used as a name only")
    tree = load_yaml_tree(paths)
    notes.append("defaults from " + " + ".join(paths))
    return flatten(tree), notes


# ---------------------------------------------------------------------------- declaration
class NodeParameters:
    """Declares every parameter on ``node`` and turns the values into a validated config.

    Never raises for bad values: problems are collected in :attr:`errors` and reported by
    :meth:`build` (the node then refuses to configure).
    """

    def __init__(self, node) -> None:
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
        from rclpy.exceptions import (
            InvalidParameterTypeException,
            InvalidParameterValueException,
            ParameterAlreadyDeclaredException,
        )

        self._node = node
        self.errors: List[str] = []
        self.notes: List[str] = []
        self.specs = parameter_specs()

        # `profile` first: it picks which files supply the other defaults
        profile_spec = self.specs["profile"]
        base, _ = self._safe_shipped(None)
        profile_default = base.get("profile", profile_spec["default"])
        if not isinstance(profile_default, str):
            profile_default = str(profile_default)
        self._declare("profile", profile_default, profile_spec, ParameterDescriptor, IntegerRange,
                      FloatingPointRange, (InvalidParameterTypeException, InvalidParameterValueException))
        profile = node.get_parameter("profile").value
        files, notes = self._safe_shipped(profile if isinstance(profile, str) else None)
        self.notes.extend(notes)

        for name, spec in self.specs.items():
            if name == "profile":
                continue
            default = spec["default"]
            if name in files:
                default = self._coerce_default(name, files[name], spec["default"])
            try:
                self._declare(name, default, spec, ParameterDescriptor, IntegerRange, FloatingPointRange,
                              (InvalidParameterTypeException, InvalidParameterValueException))
            except ParameterAlreadyDeclaredException:
                pass
        self.unknown_overrides = self._unknown_overrides()

    def _safe_shipped(self, profile: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
        try:
            return shipped_defaults(profile)
        except (OSError, ValueError) as exc:
            self.errors.append(f"cannot load the shipped configuration: {exc}")
            return {}, []

    def _coerce_default(self, name: str, value: Any, core_default: Any) -> Any:
        if isinstance(core_default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if type(value) is not type(core_default):
            self.errors.append(f"{name}: the shipped configuration gives {value!r}, expected a {type(core_default).__name__}")
            return core_default
        return value

    def _declare(self, name, default, spec, ParameterDescriptor, IntegerRange, FloatingPointRange, errors) -> None:
        desc = ParameterDescriptor(description=str(spec["description"]), read_only=bool(spec["read_only"]))
        rng = spec["range"]
        if isinstance(default, float):
            # a YAML `1` for a float setting is fine: the core accepts ints where it wants a number
            desc.dynamic_typing = True
            if rng is not None:
                desc.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]),
                                                                step=float(rng[2]))]
        elif isinstance(default, int) and not isinstance(default, bool) and rng is not None:
            desc.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=int(rng[2]))]
        if rng is not None:
            desc.additional_constraints = f"range {rng[0]}..{rng[1]}; validated by sampt_ros.core.config"
        try:
            self._node.declare_parameter(name, default, desc)
        except errors as exc:
            self.errors.append(f"parameter {name}: {exc}")
            self._node.declare_parameter(name, default, desc, ignore_override=True)

    def _unknown_overrides(self) -> List[str]:
        # rclpy keeps the parameter-file / -p values here; an override nobody declares is a typo
        overrides = getattr(self._node, "_parameter_overrides", {}) or {}
        return sorted(n for n in overrides
                      if not self._node.has_parameter(n) and not n.startswith("qos_overrides."))

    # ------------------------------------------------------------------ values
    def values(self, changes: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Flat ``name -> value`` of every declared setting, with ``changes`` applied."""
        out = {name: self._node.get_parameter(name).value for name in self.specs}
        out.update(changes or {})
        return out

    def build(self, changes: Optional[Mapping[str, Any]] = None) -> Tuple[Config, NodeSettings]:
        """The validated core :class:`Config` and :class:`NodeSettings`; ``ValueError`` says why not."""
        if self.errors:
            raise ValueError("; ".join(self.errors))
        flat = self.values(changes)
        config = config_from_dict(flat)
        settings = NodeSettings.from_dict(config.node)
        return config, settings
