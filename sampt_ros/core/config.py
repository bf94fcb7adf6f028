"""The one configuration tree of sampt_ros, validated at construction.

The same YAML files configure the core (``sampt-eval``, benchmarks) and the ROS node:
a file may hold the tree directly or wrapped in ROS 2's parameter-file form
(``<node or /**>: {ros__parameters: {...}}``); nested keys map to dotted ROS parameter
names (``tracker.kind``). Several files merge left to right, so a profile file
(``config/cpu.yaml``) can be laid over the node's defaults (``config/sampt.yaml``).
Keys the core does not know but ROS does (topic names, QoS, ...) live under ``node``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

_DEVICES = ("auto", "cpu", "cuda")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    _check(value in choices, f"{name} must be one of {list(choices)}, got {value!r}")


def _expand(path: str) -> str:
    """Checkpoint paths may use ``~`` and ``$VARS`` (e.g. ``$SAMPT_WEIGHTS/sam_vit_h_4b8939.pth``)."""
    return os.path.expanduser(os.path.expandvars(path)) if path else path


def _check_device(name: str, value: str) -> None:
    _check(
        value in _DEVICES or value.startswith("cuda:"),
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
                _check(rng[0] <= value <= rng[1], f"{name} must be in {rng[0]}..{rng[1]}, got {value}")
            choices = f.metadata.get("choices")
            if choices is not None:
                _check_choice(name, value, choices)
        self.validate()

    def validate(self) -> None:
        """Rules that a range or a list of choices cannot say (odd sizes, open bounds, devices)."""


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


@dataclass
class PipsConfig(Section):
    """PIPS point tracker (Harley et al. 2022) as SAM-PT runs it."""

    path: ClassVar[str] = "tracker.pips"
    checkpoint: str = setting("", "path to the official PIPS model-000200000.pth (~ and $VARS expand)")
    allow_random_weights: bool = setting(False, "run with random weights when no checkpoint is given (tests, benchmarks)")
    stride: int = setting(4, "feature stride in pixels (SAM-PT: 4)", choices=(4, 8))
    iters: int = setting(6, "PIPS refinement iterations per window", range=(1, 32))
    visibility_threshold: float = setting(0.9, "a point is visible when sigmoid(visibility logit) > this",
                                          range=(0.0, 0.999))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    half: bool = setting(False, "run the network in float16 on CUDA")

    def validate(self) -> None:
        self.checkpoint = _expand(self.checkpoint)
        _check_device("tracker.pips.device", self.device)


@dataclass
class LkConfig(Section):
    """Pyramidal Lucas-Kanade tracker with a forward-backward check (weight-free)."""

    path: ClassVar[str] = "tracker.lk"
    win_size: int = setting(21, "side of the LK search window in pixels (odd)", range=(5, 101))
    max_level: int = setting(3, "pyramid levels above the base", range=(0, 8))
    fb_threshold: float = setting(2.0, "forward-backward error (px) above which a point counts occluded",
                                  range=(0.01, 1000.0))
    max_error: float = setting(30.0, "mean patch error above which a point counts occluded", range=(0.01, 1000.0))
    iterations: int = setting(20, "LK iterations per pyramid level", range=(1, 100))

    def validate(self) -> None:
        _check(self.win_size % 2 == 1, f"tracker.lk.win_size must be odd, got {self.win_size}")


@dataclass
class TrackerConfig(Section):
    path: ClassVar[str] = "tracker"
    kind: str = setting("pips", "point tracker: pips, or lk (Lucas-Kanade, weight-free)", choices=("pips", "lk"))
    window: int = setting(8, "frames per tracking window (PIPS' S); also the frame buffer size", range=(2, 64))
    pips: PipsConfig = field(default_factory=PipsConfig)
    lk: LkConfig = field(default_factory=LkConfig)

    def validate(self) -> None:
        _check(self.window == 8 or self.kind != "pips", f"tracker.window must be 8 for PIPS, got {self.window}")


@dataclass
class SamConfig(Section):
    """Segment Anything prompted with tracked points."""

    path: ClassVar[str] = "segmenter.sam"
    model_type: str = setting("vit_h", "vit_h, vit_l, vit_b (official checkpoints) or tiny (tests only)",
                              choices=("vit_h", "vit_l", "vit_b", "tiny"))
    checkpoint: str = setting("", "path to the official sam_vit_*.pth (~ and $VARS expand)")
    allow_random_weights: bool = setting(False, "run with random weights when no checkpoint is given (tests, benchmarks)")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    refinement_iters: int = setting(12, "extra pass-2 iterations after the first two passes", range=(0, 64))
    refinement_box: bool = setting(True, "give the current mask's bounding box in refinement passes")

    def validate(self) -> None:
        self.checkpoint = _expand(self.checkpoint)
        _check_device("segmenter.sam.device", self.device)


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


@dataclass
class SegmenterConfig(Section):
    path: ClassVar[str] = "segmenter"
    kind: str = setting("sam", "segmenter: sam, or classic (weight-free)", choices=("sam", "classic"))
    sam: SamConfig = field(default_factory=SamConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)


_SAMPLING_METHODS = ("kmedoids", "shi_tomasi", "random", "mixed")


@dataclass
class SamplingConfig(Section):
    """Query points sampled from a mask (first-frame masks and re-initialisation)."""

    path: ClassVar[str] = "sampling"
    positive_method: str = setting("kmedoids", "positive points: kmedoids, shi_tomasi, random or mixed",
                                   choices=_SAMPLING_METHODS)
    n_positive: int = setting(8, "positive query points sampled per object", range=(1, 256))
    negative_method: str = setting("mixed", "negative points on the background: kmedoids, shi_tomasi, random or mixed",
                                   choices=_SAMPLING_METHODS)
    n_negative: int = setting(1, "negative query points sampled per object", range=(0, 256))
    max_pixels: int = setting(1500, "mask pixels subsampled for K-Medoids", range=(10, 20000))
    seed: int = setting(0, "seed of the samplers (the same mask gives the same points)",
                        range=(-(2**31), 2**31 - 1))


@dataclass
class EngineConfig(Section):
    """The online SAM-PT engine."""

    path: ClassVar[str] = "engine"
    reinit_horizon: int = setting(0, "re-sample query points from the newest mask every h frames (0 = off)",
                                  range=(0, 64))
    max_objects: int = setting(32, "most objects tracked at once (the mask topic is a mono8 label image)",
                               range=(1, 255))

    def validate(self) -> None:
        _check(self.reinit_horizon != 1, "engine.reinit_horizon must be 0 (off) or in 2..64, got 1")


@dataclass
class Config(Section):
    """The whole tree. ``node`` holds the ROS node's own settings, validated by the node."""

    profile: str = setting("custom", "profile name, shown in reports; the node loads config/<profile>.yaml "
                                     "(or a YAML path) as its defaults when given")
    engine: EngineConfig = field(default_factory=EngineConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    node: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.tracker.kind == "pips":
            _check(
                self.engine.reinit_horizon <= self.tracker.window,
                f"engine.reinit_horizon ({self.engine.reinit_horizon}) cannot exceed the PIPS window "
                f"({self.tracker.window})",
            )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> Dict[str, Any]:
        """Dotted-name view (``tracker.pips.iters``), the names the ROS node declares."""
        return flatten(self.to_dict())


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """Turn ``{"a.b": 1}`` into ``{"a": {"b": 1}}`` (nested dicts pass through)."""
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"config key {key!r} clashes with a value at {p!r}")
        if isinstance(value, Mapping):
            node.setdefault(parts[-1], {})
            _deep_merge(node[parts[-1]], unflatten(value))
        else:
            node[parts[-1]] = value
    return out


def _deep_merge(dst: Dict[str, Any], src: Mapping[str, Any]) -> Dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = dict(v) if isinstance(v, Mapping) else v
    return dst


def _unwrap_ros(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept ROS 2 parameter files: ``{<node>: {ros__parameters: {...}}}``."""
    if isinstance(tree, Mapping) and len(tree) >= 1:
        inner = [v for v in tree.values() if isinstance(v, Mapping) and "ros__parameters" in v]
        if inner and len(inner) == len(tree):
            merged: Dict[str, Any] = {}
            for v in inner:
                _deep_merge(merged, unflatten(v["ros__parameters"] or {}))
            return merged
    return tree


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
        ftype = fields[key].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
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


_DATACLASSES = {
    c.__name__: c
    for c in (PipsConfig, LkConfig, TrackerConfig, SamConfig, ClassicConfig, SegmenterConfig,
              SamplingConfig, EngineConfig)
}


def config_from_dict(data: Optional[Mapping[str, Any]] = None) -> Config:
    """Build and validate a :class:`Config` from a (possibly ROS-wrapped, possibly dotted) mapping."""
    tree = unflatten(_unwrap_ros(data or {}))
    return build_section(Config, tree, "")


def load_yaml_tree(paths: Iterable[str]) -> Dict[str, Any]:
    """Merge YAML files left to right into one plain tree (ROS wrappers removed)."""
    import yaml

    merged: Dict[str, Any] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, "r", encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: the top level must be a mapping")
        _deep_merge(merged, unflatten(_unwrap_ros(data)))
    return merged


def load_config(paths: Sequence[str] | str, overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Load, merge and validate config files, then apply dotted ``overrides``.

    Errors name the file set and the offending key.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [str(paths)]
    tree = load_yaml_tree(paths)
    if overrides:
        _deep_merge(tree, unflatten(overrides))
    try:
        return build_section(Config, tree, "")
    except ValueError as exc:
        raise ValueError(f"{', '.join(map(str, paths))}: {exc}") from None


def config_dir() -> str:
    """The folder with the shipped YAML profiles (source tree or installed share/)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "..", "..", "config"),
        os.path.join(here, "..", "..", "..", "..", "..", "share", "sampt_ros", "config"),
    ]
    try:
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.insert(0, os.path.join(get_package_share_directory("sampt_ros"), "config"))
    except Exception:  # noqa: BLE001 - ament is optional outside ROS installs
        pass
    for c in candidates:
        if os.path.isfile(os.path.join(c, "sampt.yaml")):
            return os.path.abspath(c)
    raise FileNotFoundError("cannot find sampt_ros' config/ folder; pass config files explicitly")


def profile_path(name_or_path: str) -> str:
    """A profile name (``cpu``) or a path to a YAML file -> the file's path."""
    if os.path.isfile(name_or_path):
        return name_or_path
    path = os.path.join(config_dir(), f"{name_or_path}.yaml")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(config_dir()) if f.endswith(".yaml"))
        raise FileNotFoundError(f"no profile {name_or_path!r}; known profiles: {known}")
    return path


PROFILES: List[str] = ["paper", "paper_reinit", "fast_gpu", "cpu", "random_weights"]
