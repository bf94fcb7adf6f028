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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

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


@dataclass
class PipsConfig:
    """PIPS point tracker (Harley et al. 2022) as SAM-PT runs it."""

    checkpoint: str = ""  #: path to the official model-000200000.pth
    allow_random_weights: bool = False  #: run with random weights when no checkpoint (tests, benchmarks)
    stride: int = 4
    iters: int = 6
    visibility_threshold: float = 0.9  #: a point is visible when sigmoid(logit) > this
    device: str = "auto"
    half: bool = False  #: run the network in float16 on CUDA

    def __post_init__(self) -> None:
        self.checkpoint = _expand(self.checkpoint)
        _check(self.stride in (4, 8), f"tracker.pips.stride must be 4 or 8, got {self.stride}")
        _check(1 <= self.iters <= 32, f"tracker.pips.iters must be in 1..32, got {self.iters}")
        _check(
            0.0 <= self.visibility_threshold < 1.0,
            f"tracker.pips.visibility_threshold must be in [0, 1), got {self.visibility_threshold}",
        )
        _check_device("tracker.pips.device", self.device)


@dataclass
class LkConfig:
    """Pyramidal Lucas-Kanade tracker with a forward-backward check (weight-free)."""

    win_size: int = 21  #: side of the search window in pixels (odd)
    max_level: int = 3  #: pyramid levels above the base
    fb_threshold: float = 2.0  #: forward-backward error (px) above which a point counts occluded
    max_error: float = 30.0  #: mean patch error above which a point counts occluded
    iterations: int = 20  #: LK iterations per pyramid level
    ncc_threshold: float = 0.0  #: a visible point must still match its query patch (NCC >= this; 0 = off)
    ncc_patch: int = 11  #: side (px) of the query patch for the NCC check (odd)

    def __post_init__(self) -> None:
        _check(self.win_size >= 5 and self.win_size % 2 == 1, f"tracker.lk.win_size must be odd and >= 5, got {self.win_size}")
        _check(0 <= self.max_level <= 8, f"tracker.lk.max_level must be in 0..8, got {self.max_level}")
        _check(self.fb_threshold > 0, f"tracker.lk.fb_threshold must be > 0, got {self.fb_threshold}")
        _check(self.max_error > 0, f"tracker.lk.max_error must be > 0, got {self.max_error}")
        _check(1 <= self.iterations <= 100, f"tracker.lk.iterations must be in 1..100, got {self.iterations}")
        _check(0.0 <= self.ncc_threshold < 1.0, f"tracker.lk.ncc_threshold must be in [0, 1), got {self.ncc_threshold}")
        _check(self.ncc_patch >= 3 and self.ncc_patch % 2 == 1, f"tracker.lk.ncc_patch must be odd and >= 3, got {self.ncc_patch}")


@dataclass
class TrackerConfig:
    kind: str = "pips"  #: "pips" or "lk"
    window: int = 8  #: frames per tracking window (PIPS' S); also the frame buffer size
    pips: PipsConfig = field(default_factory=PipsConfig)
    lk: LkConfig = field(default_factory=LkConfig)

    def __post_init__(self) -> None:
        _check_choice("tracker.kind", self.kind, ("pips", "lk"))
        _check(self.window == 8 or self.kind != "pips", f"tracker.window must be 8 for PIPS, got {self.window}")
        _check(2 <= self.window <= 64, f"tracker.window must be in 2..64, got {self.window}")


@dataclass
class SamConfig:
    """Segment Anything prompted with tracked points."""

    model_type: str = "vit_h"  #: vit_h, vit_l, vit_b (official checkpoints) or tiny (tests only)
    checkpoint: str = ""  #: path to the official sam_vit_*.pth
    allow_random_weights: bool = False  #: run with random weights when no checkpoint (tests, benchmarks)
    device: str = "auto"
    refinement_iters: int = 12  #: extra pass-2 iterations after the first two passes
    refinement_box: bool = True  #: give the current mask's bounding box in refinement passes

    def __post_init__(self) -> None:
        self.checkpoint = _expand(self.checkpoint)
        _check_choice("segmenter.sam.model_type", self.model_type, ("vit_h", "vit_l", "vit_b", "tiny"))
        _check(0 <= self.refinement_iters <= 64, f"segmenter.sam.refinement_iters must be in 0..64, got {self.refinement_iters}")
        _check_device("segmenter.sam.device", self.device)


@dataclass
class ClassicConfig:
    """The weight-free segmenter (colour models + graph cut around the motion prior)."""

    work_size: int = 320  #: long side (px) of the working resolution
    band: float = 0.15  #: uncertain band around the prior, as a fraction of the object's size
    iters: int = 2  #: graph-cut (GrabCut) iterations per frame
    seed_radius: int = 3  #: radius (working px) of the definite label disk around each point
    box_grow: float = 0.5  #: points only: the box around the positives grows by this x their spread
    smooth: bool = True  #: edge-preserving smoothing of the working image (cleaner colour models)
    flow: str = "fast"  #: dense flow (DIS preset) that moves the previous mask: off, ultrafast, fast, medium
    match_iou: float = 0.2  #: a previous mask moved by flow replaces the prior when their IoU exceeds this

    def __post_init__(self) -> None:
        _check(64 <= self.work_size <= 4096, f"segmenter.classic.work_size must be in 64..4096, got {self.work_size}")
        _check(0.0 < self.band <= 2.0, f"segmenter.classic.band must be in (0, 2], got {self.band}")
        _check(1 <= self.iters <= 20, f"segmenter.classic.iters must be in 1..20, got {self.iters}")
        _check(0 <= self.seed_radius <= 50, f"segmenter.classic.seed_radius must be in 0..50, got {self.seed_radius}")
        _check(0.0 <= self.box_grow <= 5.0, f"segmenter.classic.box_grow must be in [0, 5], got {self.box_grow}")
        _check_choice("segmenter.classic.flow", self.flow, ("off", "ultrafast", "fast", "medium"))
        _check(0.0 <= self.match_iou < 1.0, f"segmenter.classic.match_iou must be in [0, 1), got {self.match_iou}")


@dataclass
class SegmenterConfig:
    kind: str = "sam"  #: "sam" or "classic" (weight-free)
    sam: SamConfig = field(default_factory=SamConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)

    def __post_init__(self) -> None:
        _check_choice("segmenter.kind", self.kind, ("sam", "classic"))


@dataclass
class SamplingConfig:
    """Query points sampled from a mask (first-frame masks and re-initialisation)."""

    positive_method: str = "kmedoids"  #: kmedoids, shi_tomasi, random or mixed
    n_positive: int = 8
    negative_method: str = "mixed"
    n_negative: int = 1
    max_pixels: int = 1500  #: mask pixels subsampled for K-Medoids
    seed: int = 0

    def __post_init__(self) -> None:
        methods = ("kmedoids", "shi_tomasi", "random", "mixed")
        _check_choice("sampling.positive_method", self.positive_method, methods)
        _check_choice("sampling.negative_method", self.negative_method, methods)
        _check(1 <= self.n_positive <= 256, f"sampling.n_positive must be in 1..256, got {self.n_positive}")
        _check(0 <= self.n_negative <= 256, f"sampling.n_negative must be in 0..256, got {self.n_negative}")
        _check(10 <= self.max_pixels <= 100000, f"sampling.max_pixels must be in 10..100000, got {self.max_pixels}")


@dataclass
class EngineConfig:
    """The online SAM-PT engine."""

    reinit_horizon: int = 0  #: re-sample query points from the mask every h frames (0 = off)
    max_objects: int = 32

    def __post_init__(self) -> None:
        _check(self.reinit_horizon == 0 or 2 <= self.reinit_horizon <= 64,
               f"engine.reinit_horizon must be 0 (off) or in 2..64, got {self.reinit_horizon}")
        _check(1 <= self.max_objects <= 255, f"engine.max_objects must be in 1..255, got {self.max_objects}")


@dataclass
class Config:
    """The whole tree. ``node`` holds the ROS node's own settings, untouched by the core."""

    profile: str = "custom"  #: a name for reports
    engine: EngineConfig = field(default_factory=EngineConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    node: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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


def _build(cls, data: Mapping[str, Any], path: str):
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
            kwargs[key] = _build(sub, value or {}, name)
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
    return _build(Config, tree, "")


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
        return _build(Config, tree, "")
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
