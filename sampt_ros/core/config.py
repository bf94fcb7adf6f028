"""The one configuration tree of sampt_ros, validated at construction.

The same YAML files configure the core (``sampt-eval``, benchmarks) and the ROS node:
a file may hold the tree directly or wrapped in ROS 2's parameter-file form
(``<node or /**>: {ros__parameters: {...}}``); nested keys map to dotted ROS parameter
names (``tracker.kind``). Several files merge left to right, so a profile file
(``config/cpu.yaml``) can be laid over the node's defaults (``config/sampt.yaml``).
Keys the core does not know but ROS does (topic names, QoS, ...) live under ``node``.

The tree::

    profile
    engine      the online loop: re-initialisation, processing resolution, overlap rule
    prompting   how tracked points become prompts (visibility, border rule, negatives)
    tracker     kind + one section per registered tracker (pips, lk) + window
    segmenter   kind + one section per registered segmenter (sam, sam_hq, sam2, classic)
                + decoder (SAM-PT's prompt passes, shared by the SAM family)
    sampling    query points sampled from masks
    reid        appearance memory and re-detection: kind (none or a registered memory) + its section
    node        the ROS node's own settings (validated by the node)

The ``tracker``, ``segmenter`` and ``reid`` sections are assembled from
:mod:`sampt_ros.core.registry`: a backend module brings its own section.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, make_dataclass
from typing import Any, ClassVar, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from . import registry
from .settings import (  # noqa: F401 - the vocabulary of the tree, re-exported for its users
    Section,
    build_section,
    check,
    describe,
    setting,
    subsection,
)

_SAMPLING_METHODS = ("kmedoids", "shi_tomasi", "random", "mixed")


@dataclass
class EngineConfig(Section):
    """The online SAM-PT loop."""

    path: ClassVar[str] = "engine"
    reinit_horizon: int = setting(0, "re-sample query points from the newest mask every h frames (0 = off)",
                                  range=(0, 64))
    reinit_resegment: bool = setting(False, "segment the re-initialisation frame again from the new points and "
                                            "publish that mask (SAM-PT does)")
    max_objects: int = setting(32, "most objects tracked at once (the mask topic is a mono8 label image)",
                               range=(1, 255))
    processing_long_side: int = setting(0, "resize every frame so its long side is this many pixels before tracking "
                                           "and segmenting (SAM-PT: 1024); outputs return to the input size; "
                                           "0: the input size", range=(0, 8192))
    overlap: str = setting("confidence", "where masks overlap: confidence (the highest logit wins, background at 0, "
                                         "as SAM-PT) or id (the higher object id wins)",
                           choices=("confidence", "id"))

    def validate(self) -> None:
        check(self.reinit_horizon != 1, "engine.reinit_horizon must be 0 (off) or in 2..64, got 1")
        check(self.processing_long_side == 0 or self.processing_long_side >= 64,
              f"engine.processing_long_side must be 0 or >= 64, got {self.processing_long_side}")


@dataclass
class PromptingConfig(Section):
    """How tracked points become segmenter prompts, for every segmenter (SAM-PT's rules)."""

    path: ClassVar[str] = "prompting"
    visibility_threshold: float = setting(0.5, "a tracked point is visible when the tracker's visibility score "
                                               "exceeds this (SAM-PT: 0.5)", range=(0.0, 0.999))
    border_margin: float = setting(0.01, "a point within this fraction of the width/height of the image border "
                                         "(or outside) is not visible (SAM-PT: 0.01); 0: such points are clipped "
                                         "into the image and kept", range=(0.0, 0.25))
    others_as_negatives: bool = setting(True, "other objects' visible positive points are negative points of "
                                              "each object (SAM-PT: true)")
    max_borrowed_negatives: int = setting(0, "most of the other objects' positive points added to one object's "
                                             "prompt (evenly spread over them); 0: all (SAM-PT's DAVIS setting). "
                                             "Caps the decoder's work per object when many objects are tracked",
                                          range=(0, 100000))
    require_own_positive: bool = setting(False, "an object with no visible positive point of its own gets no mask; "
                                                "false: it is still prompted while any prompt point is visible "
                                                "(SAM-PT)")


@dataclass
class DecoderConfig(Section):
    """SAM-PT's prompt passes on one image embedding (the SAM family: sam, sam_hq, sam2)."""

    path: ClassVar[str] = "segmenter.decoder"
    refinement_iters: int = setting(12, "extra pass-2 iterations after the first two passes (SAM-PT: 12)",
                                    range=(0, 64))
    refinement_box: bool = setting(True, "give the current mask's bounding box in refinement passes (SAM-PT)")
    box_source: str = setting("full", "where the refinement box and the stop rule come from: full (the upsampled "
                                      "logits, as SAM-PT) or low_res (the 256x256 logits mapped to input pixels; "
                                      "faster)", choices=("full", "low_res"))
    iou_threshold: float = setting(0.7, "a mask whose last pass predicts an IoU below this is emptied "
                                        "(SAM-PT: 0.7; 0 = off)", range=(0.0, 1.0))
    batching: str = setting("exact", "objects per decoder call: exact (one call per prompt length: identical to "
                                     "one object at a time) or padded (every object in one call, prompts padded "
                                     "with SAM's not-a-point label)", choices=("exact", "padded"))


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
    seed: int = setting(0, "seed of the samplers; each object and each re-sampling draws its own stream",
                        range=(-(2**31), 2**31 - 1))


def _family_section(family: str, default_kind: str, doc: str, extra: Sequence[Tuple[str, type, Any]] = (),
                    optional: bool = False, validate=None) -> type:
    """The section of one component family: ``kind`` (a registered backend, or ``none``), the
    family's own settings (``extra``) and one sub-section per registered backend."""
    known = registry.backends(family)
    section = registry.FAMILIES[family]
    choices = (("none",) if optional else ()) + tuple(known)
    names = ", ".join(f"{n} ({b.doc})" for n, b in known.items())
    fields = [("kind", str, setting(default_kind, f"{doc}: {'none, ' if optional else ''}{names}", choices=choices))]
    fields += list(extra)
    fields += [(name, b.config, subsection(b.config)) for name, b in known.items()]
    namespace = {"path": section, "__doc__": f"The {section} section: {doc}."}
    if validate is not None:
        namespace["validate"] = validate
    return make_dataclass(f"{section.title()}Config", fields, bases=(Section,), namespace=namespace)


def _tracker_validate(self) -> None:
    check(self.window == 8 or self.kind != "pips", f"tracker.window must be 8 for PIPS, got {self.window}")


TrackerConfig = _family_section(
    "tracker", "pips", "point tracker",
    extra=[("window", int, setting(8, "frames per tracking window (PIPS' S); also the frame buffer size",
                                   range=(2, 64)))],
    validate=_tracker_validate)

SegmenterConfig = _family_section(
    "segmenter", "sam", "segmenter", extra=[("decoder", DecoderConfig, subsection(DecoderConfig))])

ReidConfig = _family_section(
    "memory", "none", "appearance memory that confirms masks and re-detects lost objects", optional=True,
    extra=[
        ("lost_after", int, setting(10, "frames an object stays OCCLUDED (no trusted mask) before it is LOST",
                                    range=(0, 100000))),
        ("min_score", float, setting(0.25, "an object's score (segmenter confidence x agreement with its memory) "
                                          "below this: the mask is not trusted and not published", range=(0.0, 1.0))),
        ("update_score", float, setting(0.6, "the memory learns only from masks scoring at least this",
                                        range=(0.0, 1.0))),
        ("entries", int, setting(8, "appearance entries remembered per object (the oldest non-anchor entry "
                                    "is replaced: memory stays bounded)", range=(1, 256))),
        ("accept", float, setting(0.6, "re-detection: a candidate is accepted when its score reaches this",
                                  range=(0.0, 1.0))),
        ("candidates", int, setting(3, "candidate locations tried per lost object per search", range=(1, 64))),
        ("objects_per_frame", int, setting(2, "lost objects searched per frame (round robin; bounds the cost)",
                                           range=(1, 255))),
        ("search_every", int, setting(1, "search for lost objects every n-th frame", range=(1, 1000))),
        ("min_area_ratio", float, setting(0.2, "a mask smaller than this x the remembered area has collapsed",
                                          range=(0.0, 1.0))),
        ("max_area_ratio", float, setting(4.0, "a mask larger than this x the remembered area has leaked",
                                          range=(1.0, 1000.0))),
        ("search_radius", float, setting(2.0, "a re-detection candidate's score is weighed by a Gaussian of its "
                                              "distance to where the object was last seen, of this many object "
                                              "sizes (sqrt of the remembered area), widening by 20% each frame the "
                                              "object stays hidden; 0: position does not count",
                                         range=(0.0, 1000.0))),
        ("learn_every", int, setting(1, "the memory learns from an object at most every n frames (the prompt "
                                         "always), so its entries span a longer stretch of the object's history",
                                     range=(1, 10000))),
        ("confirm_frames", int, setting(3, "the memory learns from an object only after this many trusted frames "
                                           "in a row (a wrong re-detection is not learnt at once)",
                                        range=(1, 1000))),
        ("regrow_ratio", float, setting(0.6, "a trusted mask smaller than this x the remembered area is regrown: "
                                             "the memory proposes the whole object around it (an object coming "
                                             "out from behind something or into the view); 0: off",
                                        range=(0.0, 1.0))),
    ])


@dataclass
class Config(Section):
    """The whole tree. ``node`` holds the ROS node's own settings, validated by the node."""

    profile: str = setting("custom", "profile name, shown in reports; the node loads config/<profile>.yaml "
                                     "(or a YAML path) as its defaults when given")
    engine: EngineConfig = subsection(EngineConfig)
    prompting: PromptingConfig = subsection(PromptingConfig)
    tracker: TrackerConfig = subsection(TrackerConfig)  # type: ignore[valid-type]
    segmenter: SegmenterConfig = subsection(SegmenterConfig)  # type: ignore[valid-type]
    sampling: SamplingConfig = subsection(SamplingConfig)
    reid: ReidConfig = subsection(ReidConfig)  # type: ignore[valid-type]
    node: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.tracker.kind == "pips":
            check(
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


