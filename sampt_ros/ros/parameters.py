"""The node's ROS parameters: every core setting plus the node's own ``node.*`` keys.

Names are the core's dotted names (``tracker.kind``, ``segmenter.sam.checkpoint``,
``engine.reinit_horizon``; :meth:`sampt_ros.core.config.Config.flat`) so one YAML file
configures both the node and the offline tools. Each parameter is declared with a
``ParameterDescriptor``: the description and integer / floating-point range that the setting
declares where it is defined (``setting(...)``, the same range the core validates), and
``read_only`` where a change needs the models rebuilt (all core settings, and node keys that
shape subscriptions).

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

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from sampt_ros.core.config import (
    Config,
    Section,
    build_section,
    config_dir,
    config_from_dict,
    describe,
    flatten,
    load_yaml_tree,
    setting,
)

# ---------------------------------------------------------------------------- node settings
_QOS = ("sensor_data", "reliable")


@dataclass
class NodeSettings(Section):
    """The node's own settings (``node.*`` parameters), validated at construction."""

    path: ClassVar[str] = "node"
    autostart: bool = setting(True, "configure + activate at start, so `ros2 run` needs no lifecycle manager")
    mode: str = setting("live", "live (newest frame wins, drops counted) | lockstep (every frame, in order)",
                        choices=("live", "lockstep"))
    queue_size: int = setting(1000, "lockstep: frames that may wait for the model (~0.9 MB each at 640x480)",
                              range=(1, 100000))
    image_qos: str = setting("sensor_data", "live mode's QoS of image/depth/camera_info: sensor_data (best effort) "
                                            "| reliable; lockstep always subscribes reliable, keep-all (override "
                                            "either with qos_overrides.<topic>.subscription.*)", choices=_QOS)
    output_qos: str = setting("reliable", "QoS of mask/tracked_objects/overlay/markers: reliable | sensor_data",
                              choices=_QOS)
    qos_depth: int = setting(10, "history depth of the subscriptions and publishers", range=(1, 1000))
    compressed: bool = setting(False, "subscribe image/compressed (sensor_msgs/CompressedImage) instead of image")
    use_depth: bool = setting(False, "also subscribe depth (16UC1 mm / 32FC1 m) + camera_info; publish 3-D "
                                     "points and markers")
    sync_slop: float = setting(0.05, "seconds: largest stamp difference between image, depth and camera_info",
                               range=(0.0, 10.0))
    sync_queue_size: int = setting(10, "messages kept per input while matching image/depth/camera_info",
                                   range=(1, 1000))
    publish_overlay: bool = setting(False, "always publish the overlay image (otherwise only while someone "
                                           "subscribes)")
    click_object_id: int = setting(1, "object that clicks on clicked_point prompt", range=(1, 255))
    click_label: int = setting(1, "label of the next clicks: 1 positive, 0 negative", range=(0, 1))
    diagnostics_period: float = setting(1.0, "seconds between diagnostics messages", range=(0.05, 3600.0))
    marker_scale: float = setting(0.02, "metres: size of the 3-D point markers", range=(0.0, 10.0))
    max_image_pixels: int = setting(4096 * 4096, "largest width x height of an input image (raw, compressed: read "
                                                 "from its header before decoding) or prompt mask; larger ones are "
                                                 "rejected", range=(64, 1 << 31))
    max_image_bytes: int = setting(128 * 1024 * 1024, "largest payload in bytes of an input image, compressed "
                                                      "image or prompt mask", range=(64, 1 << 32))
    max_points_per_prompt: int = setting(256, "most points in one prompt (and clicked points per object); "
                                              "more are rejected", range=(1, 100000))
    warmup_frames: int = setting(2, "on a GPU, synthetic frames run through the engine at configure, so that "
                                    "first-call costs (CUDA, cuDNN, torch.compile) are not paid on the first camera "
                                    "frame; 0: off", range=(0, 100))

    def validate(self) -> None:
        if self.marker_scale <= 0.0:
            raise ValueError(f"node.marker_scale must be > 0 metres, got {self.marker_scale}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "NodeSettings":
        """From ``{key: value}`` (keys without the ``node.`` prefix); unknown keys are errors."""
        return build_section(cls, values, "node")


#: node keys that can change while the node runs; the others need deactivate/cleanup/configure
#: (they shape subscriptions, the queue or the timer) and are read-only
LIVE_NODE_KEYS = ("publish_overlay", "click_object_id", "click_label")


def core_defaults() -> Dict[str, Any]:
    """The core's own defaults, flat (``node`` excluded)."""
    return {k: v for k, v in Config().flat().items() if not k.startswith("node.") and k != "node"}


def parameter_specs() -> Dict[str, Dict[str, Any]]:
    """Every parameter the node declares: ``name -> {default, description, range, read_only}``.

    Descriptions and ranges come from the settings' own declarations (``setting(...)`` in
    :mod:`sampt_ros.core.config` and :class:`NodeSettings`): one place for both.
    """
    specs: Dict[str, Dict[str, Any]] = {}
    for name, d in {**describe(Config()), **describe(NodeSettings())}.items():
        rng = d["range"]
        if rng is not None:
            rng = (rng[0], rng[1], 0.0 if isinstance(d["default"], float) else 1)
        doc = d["doc"] + (f" (one of: {', '.join(map(str, d['choices']))})" if d["choices"] else "")
        live = name.startswith("node.") and name[len("node."):] in LIVE_NODE_KEYS
        specs[name] = dict(default=d["default"], description=doc, range=rng, read_only=not live)
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
