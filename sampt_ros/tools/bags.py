"""rosbag2 tools without a ROS install: make replayable bags from DAVIS, videos and image folders.

``sampt-bag`` subcommands::

    sampt-bag from-davis ROOT SEQ OUT.bag [--rate 30] [--format sqlite3|mcap] [--prompt mask|points]
    sampt-bag from-video FILE OUT.bag [--rate R] [--points "x,y,label;..." | --mask FILE]
    sampt-bag from-images DIR OUT.bag [--rate 30] [--points "x,y,label;..." | --mask FILE]
    sampt-bag add-prompt BAG OUT.bag [--frame 0] [--points "x,y,label;..." | --mask FILE]
    sampt-bag info BAG

Bags are written and read with ``rosbags`` (pure Python); the package's own messages
(``sampt_ros/msg/PointPrompt`` ...) are registered from the repository's ``msg/*.msg`` text,
so their type hashes equal the ones rosidl generates and the raw CDR can be published with
rclpy unchanged.

What a bag made here holds (all stamps: ``start + i / rate``, the log time equals the stamp):

* ``/camera/image_raw``: ``sensor_msgs/msg/Image`` ``rgb8``, ``frame_id`` ``camera``;
* ``/sampt/prompt``: one ``sampt_ros/msg/PointPrompt`` per object, stamped with the frame it
  belongs to (frame 0); for DAVIS it carries the object's first-frame mask, which the node
  turns into query points exactly as ``sampt-eval davis`` does, so replaying the bag through
  the node reproduces the evaluation (``--prompt points`` samples the points here instead);
* ``/camera/gt_mask`` (DAVIS only): ``sensor_msgs/msg/Image`` ``mono8`` label maps (0 background,
  k = object k) with the stamps of their frames.

Messages read from bags are decoded by the node's own codec (:mod:`sampt_ros.ros.codec`:
images and compressed images, prompts, stamps), so the tools and the node cannot disagree
(``8UC3`` is BGR in both, as cv_bridge reads it). The tools apply no size policy of their own
(:data:`TOOL_LIMITS`): a bag is the user's own data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from sampt_ros.ros import codec
from sampt_ros.tools.cli import parse_size

IMAGE_TOPIC = "/camera/image_raw"
PROMPT_TOPIC = "/sampt/prompt"
GT_TOPIC = "/camera/gt_mask"
DEFAULT_FRAME_ID = "camera"
#: Default stamp of frame 0 (seconds): fixed so that bags made twice are identical, and
#: far from 0, which ROS treats as "time not set".
DEFAULT_START_S = 1_700_000_000.0

IMAGE_TYPE = "sensor_msgs/msg/Image"
PROMPT_TYPE = "sampt_ros/msg/PointPrompt"
TRACKED_TYPE = "sampt_ros/msg/TrackedObjects"
STORAGE_FORMATS = ("sqlite3", "mcap")

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: the codec's limits for reading bags: sizes are not policed (min side 1, no pixel/byte/point bounds)
TOOL_LIMITS = codec.Limits(max_image_pixels=1 << 40, max_image_bytes=1 << 40, min_image_side=1,
                           max_points_per_prompt=1 << 31)

# encoding -> (numpy dtype, channels) of the images the tools write
_ENCODINGS: Dict[str, Tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "8UC1": ("u1", 1), "8UC3": ("u1", 3),
    "mono16": ("u2", 1), "16UC1": ("u2", 1), "32FC1": ("f4", 1),
}


# ---------------------------------------------------------------------------- type store
def find_msg_dir() -> Path:
    """The folder with this package's ``.msg`` files (source tree or installed ``share/``)."""
    here = Path(__file__).resolve().parent
    candidates = [here.parents[1] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.insert(0, Path(get_package_share_directory("sampt_ros")) / "msg")
    except Exception:  # noqa: BLE001 - ament is optional outside ROS installs
        pass
    candidates.append(Path(sys.prefix) / "share" / "sampt_ros" / "msg")
    for c in candidates:
        if (c / "PointPrompt.msg").is_file():
            return c
    raise FileNotFoundError(
        "cannot find sampt_ros' msg/ folder (looked in: " + ", ".join(map(str, candidates)) + ")")


def build_typestore(msg_dir: Optional[os.PathLike | str] = None):
    """A rosbags ``Typestore``: ROS 2 Jazzy's standard types plus ``sampt_ros/msg/*`` from ``msg_dir``."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    types = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"sampt_ros/msg/{path.stem}"))
    if not types:
        raise FileNotFoundError(f"no .msg files in {folder}")
    store.register(types)
    return store


_STORE = None


def typestore():
    """The process-wide type store (built once)."""
    global _STORE
    if _STORE is None:
        _STORE = build_typestore()
    return _STORE


# ---------------------------------------------------------------------------- stamps
def ns_to_stamp(store, stamp_ns: int):
    """Integer nanoseconds -> ``builtin_interfaces/msg/Time``."""
    sec, nanosec = codec.ns_to_sec_nanosec(stamp_ns)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/msg/Time`` or a ``Header`` (rosbags or rclpy) -> integer nanoseconds."""
    return codec.stamp_to_ns(stamp)


def frame_stamps_ns(n: int, rate: float, start_s: float = DEFAULT_START_S) -> List[int]:
    """Stamps of ``n`` frames at ``rate`` Hz from ``start_s`` seconds (integer ns, exact spacing)."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of frames per second, got {rate}")
    if start_s < 0:
        raise ValueError(f"start time must be >= 0 s, got {start_s}")
    start = int(round(start_s * 1e9))
    return [start + int(round(i * 1e9 / rate)) for i in range(n)]


def _header(store, stamp_ns: int, frame_id: str):
    h = store.types["std_msgs/msg/Header"]
    return h(stamp=ns_to_stamp(store, stamp_ns), frame_id=str(frame_id))


# ---------------------------------------------------------------------------- images
def image_to_msg(store, image: np.ndarray, stamp_ns: int, frame_id: str = DEFAULT_FRAME_ID,
                 encoding: Optional[str] = None):
    """An ``HxWx3 uint8`` RGB image (``rgb8``) or ``HxW`` mask/depth -> rosbags ``sensor_msgs/msg/Image``.

    ``encoding`` defaults to ``rgb8`` for 3 channels and ``mono8`` / ``mono16`` / ``32FC1`` for
    ``uint8`` / ``uint16`` / ``float32`` single-channel arrays. ``step`` is ``width * bytes per pixel``.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if encoding is None:
        if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
            encoding = "rgb8"
        elif arr.ndim == 2 and arr.dtype == np.uint8:
            encoding = "mono8"
        elif arr.ndim == 2 and arr.dtype == np.uint16:
            encoding = "mono16"
        elif arr.ndim == 2 and arr.dtype == np.float32:
            encoding = "32FC1"
        else:
            raise ValueError(f"cannot pick an encoding for a {arr.dtype} array of shape {arr.shape}")
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {sorted(_ENCODINGS)}")
    dtype, channels = _ENCODINGS[encoding]
    shape_ok = (arr.ndim == 2 and channels == 1) or (arr.ndim == 3 and arr.shape[2] == channels)
    if not shape_ok or arr.dtype != np.dtype(dtype):
        raise ValueError(f"{encoding} needs a {np.dtype(dtype)} array with {channels} channel(s), "
                         f"got {arr.dtype} {arr.shape}")
    h, w = arr.shape[:2]
    data = np.ascontiguousarray(arr.astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    msg = store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=w * channels * data.dtype.itemsize,
        data=np.frombuffer(data.tobytes(), np.uint8),
    )
    return msg


def image_from_msg(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` (rosbags or rclpy) -> numpy array in its own encoding.

    ``HxWxC`` for colour encodings (channel order as encoded), ``HxW`` for single-channel ones;
    row padding (``step``) and byte order are handled (:func:`sampt_ros.ros.codec.image_array`).
    """
    return codec.image_array(msg, TOOL_LIMITS)


def rgb_from_msg(msg) -> np.ndarray:
    """An ``Image`` or ``CompressedImage`` (rosbags or rclpy) -> ``HxWx3 uint8`` RGB, decoded exactly
    as the node decodes it (:func:`sampt_ros.ros.codec.message_to_rgb`)."""
    return codec.message_to_rgb(msg, TOOL_LIMITS)


# ---------------------------------------------------------------------------- prompts
def prompt_to_msg(store, object_id: int, points: Optional[np.ndarray], labels: Optional[np.ndarray],
                  stamp_ns: int, frame_id: str = DEFAULT_FRAME_ID, action: int = 0,
                  mask: Optional[np.ndarray] = None):
    """``sampt_ros/msg/PointPrompt`` from ``Nx2 float`` (x, y) pixels and ``N int`` labels (1/0),
    or from an ``HxW bool`` mask (sent as ``mono8`` 0/255; then ``points``/``labels`` are None)."""
    from sampt_ros.core.types import as_labels, as_points

    if not 1 <= int(object_id) <= 255:
        raise ValueError(f"object_id must be in 1..255 (the mask topic is mono8), got {object_id}")
    if mask is not None:
        if points is not None and len(points):
            raise ValueError("give points or a mask, not both")
        mask = np.asarray(mask, bool)
        if mask.ndim != 2 or not mask.any():
            raise ValueError(f"a prompt mask must be a non-empty HxW array, got shape {mask.shape}")
        pts, lbl = np.zeros((0, 2)), np.zeros(0, np.int64)
        mask_msg = image_to_msg(store, mask.astype(np.uint8) * np.uint8(255), stamp_ns, frame_id, "mono8")
    else:
        pts = as_points(points)
        lbl = as_labels(labels, len(pts))
        mask_msg = _empty_image(store, stamp_ns, frame_id)
    point_t = store.types["geometry_msgs/msg/Point"]
    msg = store.types[PROMPT_TYPE](
        header=_header(store, stamp_ns, frame_id), object_id=int(object_id), action=int(action),
        points=[point_t(x=float(x), y=float(y), z=0.0) for x, y in pts],
        labels=lbl.astype(np.int8), mask=mask_msg,
    )
    return msg


def _empty_image(store, stamp_ns: int, frame_id: str):
    return store.types[IMAGE_TYPE](header=_header(store, stamp_ns, frame_id), height=0, width=0, encoding="",
                                   is_bigendian=0, step=0, data=np.zeros(0, np.uint8))


def prompt_mask_from_msg(msg) -> Optional[np.ndarray]:
    """The ``HxW bool`` mask a ``PointPrompt`` carries, or None when it carries points."""
    return codec.prompt_mask(msg, TOOL_LIMITS)


def prompt_from_msg(msg) -> Tuple[int, int, np.ndarray, np.ndarray, int]:
    """``PointPrompt`` -> ``(object_id, action, Nx2 float points, N int labels, stamp_ns)`` (unvalidated;
    :func:`sampt_ros.ros.codec.prompt_from_msg` is what the node accepts)."""
    pts, labels = codec.prompt_points(msg)
    return int(msg.object_id), int(msg.action), pts, labels, stamp_to_ns(msg.header.stamp)


def parse_points(text: str) -> Tuple[np.ndarray, np.ndarray]:
    """``"x,y,label;x,y,label"`` (label optional, default 1) -> ``(Nx2 float, N int)``."""
    pts, lbl = [], []
    for item in filter(None, (s.strip() for s in text.split(";"))):
        parts = [p.strip() for p in item.split(",")]
        if len(parts) not in (2, 3):
            raise ValueError(f"point {item!r} must be 'x,y' or 'x,y,label'")
        try:
            x, y = float(parts[0]), float(parts[1])
            label = int(parts[2]) if len(parts) == 3 else 1
        except ValueError:
            raise ValueError(f"point {item!r} must hold numbers") from None
        if label not in (0, 1):
            raise ValueError(f"point {item!r}: label must be 1 (positive) or 0 (negative)")
        pts.append((x, y))
        lbl.append(label)
    if not pts:
        raise ValueError(f"no points in {text!r}")
    if 1 not in lbl:
        raise ValueError("a prompt needs at least one positive point (label 1)")
    return np.array(pts, np.float64), np.array(lbl, np.int64)


# ---------------------------------------------------------------------------- reading images and masks
def read_rgb(path: os.PathLike | str) -> np.ndarray:
    """An image file -> ``HxWx3 uint8`` RGB, decoded exactly as ``sampt-eval`` decodes frames."""
    from sampt_ros.tools.eval import EvalError, read_rgb as _read

    try:
        return _read(path)
    except EvalError as exc:
        raise ValueError(str(exc)) from None


def read_label_map(path: os.PathLike | str) -> np.ndarray:
    """A DAVIS annotation PNG -> ``HxW uint8`` label map (0 background, k = object k), as ``sampt-eval`` reads it.

    DAVIS 2016 masks (grey, 0/255) become 0/1; DAVIS 2017 palette PNGs keep their indices.
    """
    from sampt_ros.tools.eval import EvalError, read_label_map as _read

    try:
        labels = _read(path)
    except EvalError as exc:
        raise ValueError(str(exc)) from None
    if labels.size and int(labels.max()) > 255:
        raise ValueError(f"{path}: object id {int(labels.max())} does not fit a mono8 mask")
    return labels.astype(np.uint8)


def mask_prompts(label_map: np.ndarray) -> List[Tuple[int, None, None, np.ndarray]]:
    """One mask prompt per object of a label map: ``[(object_id, None, None, HxW bool), ...]``."""
    return [(int(oid), None, None, label_map == oid) for oid in np.unique(label_map) if oid != 0]


def sample_prompts(label_map: np.ndarray, image: np.ndarray, sampling_config) -> List[Tuple[int, np.ndarray, np.ndarray, None]]:
    """Query points for every object of a label map, as the engine samples a mask prompt.

    One :class:`~sampt_ros.core.sampling.QuerySampler` is called once per object in ascending
    id order with that object's ``HxW bool`` mask and the ``HxWx3 uint8`` RGB image, exactly as
    ``SamPtEngine`` does for ``set_prompt(id, mask=...)`` prompts given in id order.

    Returns ``[(object_id, Nx2 float points, N int labels, None), ...]``.
    """
    from sampt_ros.core.sampling import QuerySampler

    sampler = QuerySampler(sampling_config)
    out = []
    for oid in sorted(int(v) for v in np.unique(label_map) if v != 0):
        points, labels = sampler.sample(label_map == oid, image)
        out.append((oid, np.asarray(points, np.float64), np.asarray(labels, np.int64), None))
    return out


# ---------------------------------------------------------------------------- bag writing
class BagWriter:
    """Writes rosbags-typed (or raw CDR) messages to a new rosbag2 folder.

    Connections are added on first use of a topic. Use as a context manager::

        with BagWriter("out.bag", storage="mcap") as bag:
            bag.write("/camera/image_raw", image_to_msg(bag.store, img, t), t)
    """

    def __init__(self, path: os.PathLike | str, storage: str = "sqlite3", store=None,
                 overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGE_FORMATS:
            raise ValueError(f"storage must be one of {STORAGE_FORMATS}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists; remove it or pass --overwrite")
            _remove_bag(self.path)
        self.store = store if store is not None else typestore()
        plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: Dict[Tuple[str, str], object] = {}

    def connection(self, topic: str, msgtype: str, msgdef: Optional[str] = None, rihs01: Optional[str] = None):
        """The connection of ``topic`` (added on first use). ``msgdef`` + ``rihs01`` (e.g. copied from
        another bag) describe a type this writer's type store does not know."""
        key = (topic, msgtype)
        if key not in self._connections:
            if msgdef and rihs01:
                conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
            else:
                if msgtype not in self.store.types:
                    raise ValueError(f"cannot write {topic}: type {msgtype} is unknown and the source gives "
                                     "no message definition")
                conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[key] = conn
        return self._connections[key]

    def write(self, topic: str, msg, log_ns: int) -> None:
        """Serialise a rosbags message (its type from ``__msgtype__``) and write it at ``log_ns``."""
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, self.store.serialize_cdr(msg, msgtype), log_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_ns: int,
                  msgdef: Optional[str] = None, rihs01: Optional[str] = None) -> None:
        """Write already-serialised CDR ``data`` (e.g. from an rclpy raw subscription or another bag)."""
        self._writer.write(self.connection(topic, msgtype, msgdef, rihs01), int(log_ns), bytes(data))

    def set_metadata(self, key: str, value) -> None:
        """Store ``value`` (JSON-encoded unless a string) in the bag's ``custom_data``."""
        self._writer.custom_data[key] = value if isinstance(value, str) else json.dumps(value)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def abort(self) -> None:
        """Close and delete a half-written bag."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - we delete it anyway
                pass
            self._writer = None
        _remove_bag(self.path)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _remove_bag(path: Path) -> None:
    import shutil

    if path.is_dir():
        if not (path / "metadata.yaml").exists() and any(path.iterdir()):
            # refuse to wipe a folder that does not look like a bag
            if not any(p.suffix in (".db3", ".mcap") for p in path.iterdir()):
                raise FileExistsError(f"{path} exists and is not a rosbag2 folder; not removing it")
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ---------------------------------------------------------------------------- bag reading
@dataclass
class RawMessage:
    """One message as stored: ``topic``, ``msgtype``, ``log_ns`` (bag time) and CDR ``data``."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes


def read_raw(path: os.PathLike | str, topics: Optional[Iterable[str]] = None) -> Iterator[RawMessage]:
    """Every message of a rosbag2 folder in log-time order (optionally only ``topics``)."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    with Reader(path) as reader:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, log_ns, data in reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, int(log_ns), bytes(data))


def _bag_info(path: os.PathLike | str) -> Dict[str, object]:
    """The ``rosbag2_bagfile_information`` mapping of a bag's ``metadata.yaml``."""
    import yaml

    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        raise FileNotFoundError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    with open(meta, "r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return dict(data.get("rosbag2_bagfile_information") or {})


def add_prompt(src: os.PathLike | str, out: os.PathLike | str, points: Optional[str] = None,
               mask: Optional[str] = None, object_id: int = 1, frame: int = 0, image_topic: str = IMAGE_TOPIC,
               prompt_topic: str = PROMPT_TOPIC, storage: Optional[str] = None,
               overwrite: bool = False) -> Dict[str, int]:
    """Copy a bag (e.g. one ``ros2 bag record`` made) and add a prompt for its frame ``frame``.

    Every message is copied unchanged (types the bag defines are kept with their own
    definitions). The prompt (``--points`` or a ``--mask`` sampled as ``sampt-eval`` samples it)
    carries the stamp of frame ``frame`` of ``image_topic`` and is logged just before that
    frame. Returns ``{"messages": n, "prompts": k}``.
    """
    from rosbags.rosbag2 import Reader

    store = typestore()
    src = Path(src)
    info = _bag_info(src)
    storage = storage or str(info.get("storage_identifier") or "sqlite3")
    if storage not in STORAGE_FORMATS:
        storage = "sqlite3"
    target = None
    with Reader(src) as reader:
        image_conns = [c for c in reader.connections if c.topic == image_topic]
        if not image_conns:
            raise ValueError(f"{src} has no topic {image_topic} (topics: "
                             f"{sorted({c.topic for c in reader.connections})})")
        for k, (conn, log_ns, data) in enumerate(reader.messages(connections=image_conns)):
            if k == frame:
                msg = store.deserialize_cdr(data, conn.msgtype)
                target = (log_ns, stamp_to_ns(msg.header.stamp), msg.header.frame_id, conn.msgtype, msg)
                break
        if target is None:
            raise ValueError(f"{image_topic} has fewer than {frame + 1} frames")
        log_ns, stamp, frame_id, msgtype, msg = target
        image = rgb_from_msg(msg)
        prompts = _prompt_from_args(points, mask, image, object_id)
        if not prompts:
            raise ValueError("give --points or --mask")
        counts = {"messages": 0, "prompts": len(prompts)}
        with BagWriter(out, storage, overwrite=overwrite) as bag:
            written = False
            for conn, t, data in reader.messages():
                if not written and t >= log_ns:
                    _write_prompts(bag, prompts, stamp, frame_id, prompt_topic)
                    # log the prompt just before its frame
                    written = True
                msgdef = conn.msgdef.data if conn.msgdef and conn.msgdef.data else None
                bag.write_raw(conn.topic, conn.msgtype, data, t, msgdef, conn.digest or None)
                counts["messages"] += 1
    return counts


def bag_metadata(path: os.PathLike | str) -> Dict[str, str]:
    """The ``custom_data`` of a bag (values as stored: strings)."""
    return dict(_bag_info(path).get("custom_data") or {})


@dataclass
class BagSequence:
    """A bag's input stream, ready to be replayed and scored.

    Attributes:
        images: ``[(stamp_ns, log_ns, msgtype, cdr bytes)]`` of the image topic, in log order.
        prompts: ``[(stamp_ns, log_ns, cdr bytes)]`` of the prompt topic, in log order.
        gt: ``{stamp_ns: cdr bytes}`` of ground-truth label maps (may be empty).
        topics: the topics the stream came from.
    """

    images: List[Tuple[int, int, str, bytes]] = field(default_factory=list)
    prompts: List[Tuple[int, int, bytes]] = field(default_factory=list)
    gt: Dict[int, bytes] = field(default_factory=dict)
    topics: Dict[str, str] = field(default_factory=dict)
    metadata: Dict[str, str] = field(default_factory=dict)

    def gt_label_map(self, stamp_ns: int, store=None) -> Optional[np.ndarray]:
        """``HxW`` integer label map of the frame stamped ``stamp_ns``, or None."""
        raw = self.gt.get(stamp_ns)
        if raw is None:
            return None
        store = store or typestore()
        return image_from_msg(store.deserialize_cdr(raw, IMAGE_TYPE))

    def image(self, index: int, store=None) -> np.ndarray:
        """Frame ``index`` as ``HxWx3 uint8`` RGB."""
        store = store or typestore()
        _, _, msgtype, raw = self.images[index]
        try:
            return rgb_from_msg(store.deserialize_cdr(raw, msgtype))
        except codec.CodecError as exc:
            raise ValueError(f"frame {index}: {exc}") from None


def _header_stamp_ns(store, data: bytes, msgtype: str) -> int:
    return stamp_to_ns(store.deserialize_cdr(data, msgtype).header.stamp)


def load_sequence(path: os.PathLike | str, image_topic: str = IMAGE_TOPIC, prompt_topic: str = PROMPT_TOPIC,
                  gt_topic: str = GT_TOPIC, store=None) -> BagSequence:
    """Read a bag's images, prompts and ground-truth masks (by header stamp) into memory."""
    store = store or typestore()
    seq = BagSequence(topics={"image": image_topic, "prompt": prompt_topic, "gt": gt_topic})
    for m in read_raw(path, (image_topic, prompt_topic, gt_topic)):
        if m.topic == image_topic:
            if m.msgtype not in (IMAGE_TYPE, "sensor_msgs/msg/CompressedImage"):
                raise ValueError(f"{image_topic} holds {m.msgtype}, expected sensor_msgs Image or CompressedImage")
            seq.images.append((_header_stamp_ns(store, m.data, m.msgtype), m.log_ns, m.msgtype, m.data))
        elif m.topic == prompt_topic:
            if m.msgtype != PROMPT_TYPE:
                raise ValueError(f"{prompt_topic} holds {m.msgtype}, expected {PROMPT_TYPE}")
            seq.prompts.append((_header_stamp_ns(store, m.data, m.msgtype), m.log_ns, m.data))
        elif m.topic == gt_topic and m.msgtype == IMAGE_TYPE:
            seq.gt[_header_stamp_ns(store, m.data, m.msgtype)] = m.data
    if not seq.images:
        raise ValueError(f"{path}: no messages on the image topic {image_topic}")
    seq.metadata = bag_metadata(path)
    return seq


# ---------------------------------------------------------------------------- conversions
def _write_prompts(bag: BagWriter, prompts: Sequence[Tuple[int, Optional[np.ndarray], Optional[np.ndarray],
                                                          Optional[np.ndarray]]],
                   stamp_ns: int, frame_id: str, topic: str) -> None:
    """``prompts``: ``[(object_id, points | None, labels | None, mask | None)]``."""
    for oid, pts, lbl, mask in prompts:
        bag.write(topic, prompt_to_msg(bag.store, oid, pts, lbl, stamp_ns, frame_id, mask=mask), stamp_ns)


def davis_frames(root: os.PathLike | str, seq: str) -> Tuple[List[Path], List[Optional[Path]]]:
    """Frame paths of a DAVIS-layout sequence and the matching annotation paths (None where missing)."""
    img_dir = Path(root) / "JPEGImages" / "480p" / seq
    ann_dir = Path(root) / "Annotations" / "480p" / seq
    if not img_dir.is_dir():
        available = sorted(p.name for p in (Path(root) / "JPEGImages" / "480p").glob("*") if p.is_dir())
        raise FileNotFoundError(f"no sequence {seq!r} under {root} (JPEGImages/480p/{seq}); available: {available}")
    frames = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise FileNotFoundError(f"{img_dir} holds no frames")
    anns = [(ann_dir / (f.stem + ".png")) if (ann_dir / (f.stem + ".png")).is_file() else None for f in frames]
    if anns[0] is None:
        raise FileNotFoundError(f"{seq}: the first frame has no annotation in {ann_dir}")
    return frames, anns


def load_sampling_config(config_files: Optional[Sequence[str]], overrides: Optional[Sequence[str]] = None):
    """The ``sampling`` section of the config exactly as ``sampt-eval`` resolves it.

    ``config/sampt.yaml``, then ``config_files`` (paths or profile names such as ``cpu``) left to
    right, then ``overrides`` (``key=value`` strings, like ``sampt-eval --set``).
    """
    from sampt_ros.tools.eval import EvalError, resolve_config

    try:
        config, _ = resolve_config(list(config_files or []), list(overrides or []))
    except EvalError as exc:
        raise ValueError(str(exc)) from None
    return config.sampling


def davis_to_bag(root: os.PathLike | str, seq: str, out: os.PathLike | str, rate: float = 30.0,
                 storage: str = "sqlite3", config_files: Optional[Sequence[str]] = None,
                 start_s: float = DEFAULT_START_S, frame_id: str = DEFAULT_FRAME_ID,
                 overwrite: bool = False, topics: Optional[Dict[str, str]] = None,
                 overrides: Optional[Sequence[str]] = None, prompt: str = "mask") -> Dict[str, int]:
    """Write DAVIS sequence ``seq`` (images, first-frame prompts, GT label maps) as a bag.

    ``prompt``: ``mask`` sends each object's first-frame mask (the node samples the points, as
    ``sampt-eval`` does); ``points`` sends points sampled here with the config's ``sampling``.
    Returns counts per kind: ``{"images": n, "prompts": k, "gt": m}``.
    """
    if prompt not in ("mask", "points"):
        raise ValueError(f"prompt must be 'mask' or 'points', got {prompt!r}")
    topics = {"image": IMAGE_TOPIC, "prompt": PROMPT_TOPIC, "gt": GT_TOPIC, **(topics or {})}
    frames, anns = davis_frames(root, seq)
    sampling = load_sampling_config(config_files, overrides)
    stamps = frame_stamps_ns(len(frames), rate, start_s)
    first = read_rgb(frames[0])
    first_labels = read_label_map(anns[0])
    if first_labels.shape != first.shape[:2]:
        raise ValueError(f"{seq}: annotation {anns[0].name} is {first_labels.shape[::-1]}, frame is {first.shape[1::-1]}")
    prompts = mask_prompts(first_labels) if prompt == "mask" else sample_prompts(first_labels, first, sampling)
    if not prompts:
        raise ValueError(f"{seq}: the first-frame annotation is empty, nothing to prompt")
    counts = {"images": 0, "prompts": 0, "gt": 0}
    with BagWriter(out, storage, overwrite=overwrite) as bag:
        bag.set_metadata("sampt_ros.source", {"kind": "davis", "root": str(root), "sequence": seq,
                                              "rate": rate, "frames": len(frames)})
        bag.set_metadata("sampt_ros.sampling", dict(vars(sampling)))
        # The prompt goes first: it belongs to frame 0, and a player sends it before the frame.
        _write_prompts(bag, prompts, stamps[0], frame_id, topics["prompt"])
        counts["prompts"] = len(prompts)
        for i, (fpath, apath, stamp) in enumerate(zip(frames, anns, stamps)):
            image = first if i == 0 else read_rgb(fpath)
            bag.write(topics["image"], image_to_msg(bag.store, image, stamp, frame_id), stamp)
            counts["images"] += 1
            if apath is not None:
                labels = first_labels if i == 0 else read_label_map(apath)
                bag.write(topics["gt"], image_to_msg(bag.store, labels, stamp, frame_id, "mono8"), stamp)
                counts["gt"] += 1
    return counts


def _prompt_from_args(points: Optional[str], mask_path: Optional[str], first: np.ndarray, object_id: int
                      ) -> List[Tuple[int, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]]:
    if points and mask_path:
        raise ValueError("give --points or --mask, not both")
    if points:
        pts, lbl = parse_points(points)
        h, w = first.shape[:2]
        if np.any(pts < -0.5) or np.any(pts[:, 0] > w - 0.5) or np.any(pts[:, 1] > h - 0.5):
            raise ValueError(f"--points lie outside the first frame ({w}x{h}): {pts.tolist()}")
        return [(object_id, pts, lbl, None)]
    if mask_path:
        labels = read_label_map(mask_path)
        if labels.shape != first.shape[:2]:
            raise ValueError(f"--mask is {labels.shape[1]}x{labels.shape[0]}, the frames are {first.shape[1]}x{first.shape[0]}")
        if not labels.any():
            raise ValueError(f"--mask {mask_path} is empty")
        if labels.max() == 1:  # a binary mask prompts the chosen object id
            labels = labels * np.uint8(object_id)
        return mask_prompts(labels)
    return []


def frames_to_bag(frames: Iterable[np.ndarray], out: os.PathLike | str, rate: float, storage: str = "sqlite3",
                  prompt_points: Optional[str] = None, prompt_mask: Optional[str] = None, object_id: int = 1,
                  start_s: float = DEFAULT_START_S, frame_id: str = DEFAULT_FRAME_ID, overwrite: bool = False,
                  source: Optional[dict] = None, topics: Optional[Dict[str, str]] = None) -> Dict[str, int]:
    """Write ``HxWx3 uint8`` RGB frames (any iterable) as an image bag, with an optional prompt on frame 0."""
    topics = {"image": IMAGE_TOPIC, "prompt": PROMPT_TOPIC, **(topics or {})}
    if not 1 <= object_id <= 65535:
        raise ValueError(f"--object-id must be in 1..65535, got {object_id}")
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no frames to write") from None
    prompts = _prompt_from_args(prompt_points, prompt_mask, first, object_id)
    start = frame_stamps_ns(1, rate, start_s)[0]
    step = 1e9 / rate
    counts = {"images": 0, "prompts": len(prompts)}
    with BagWriter(out, storage, overwrite=overwrite) as bag:
        if source:
            bag.set_metadata("sampt_ros.source", {**source, "rate": rate})
        _write_prompts(bag, prompts, start, frame_id, topics["prompt"])
        shape = first.shape
        for i, image in enumerate(_chain(first, it)):
            if image.shape != shape:
                raise ValueError(f"frame {i} is {image.shape[1]}x{image.shape[0]}, the first frame is {shape[1]}x{shape[0]}")
            stamp = start + int(round(i * step))
            bag.write(topics["image"], image_to_msg(bag.store, image, stamp, frame_id), stamp)
            counts["images"] += 1
    return counts


def _chain(first, rest):
    yield first
    yield from rest


def video_frames(path: os.PathLike | str, max_frames: Optional[int] = None, start_frame: int = 0,
                 size: Optional[Tuple[int, int]] = None) -> Tuple[Iterator[np.ndarray], float]:
    """``(iterator of HxWx3 uint8 RGB frames, the file's frame rate or 0 when unknown)``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def gen():
        try:
            index = n = 0
            while max_frames is None or n < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                index += 1
                if index <= start_frame:
                    continue
                if size is not None:
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                n += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return gen(), (fps if math.isfinite(fps) and fps > 0 else 0.0)


def image_folder_frames(folder: os.PathLike | str, size: Optional[Tuple[int, int]] = None) -> List[Path]:
    """Image files of ``folder`` in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(_IMAGE_EXTENSIONS)})")
    return files


# ---------------------------------------------------------------------------- info
@dataclass
class TopicSummary:
    topic: str
    msgtype: str
    count: int
    first_ns: int
    last_ns: int

    @property
    def rate_hz(self) -> float:
        """Mean message rate over the topic's own time span (0 for fewer than 2 messages)."""
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


def summarize(path: os.PathLike | str) -> Tuple[Dict[str, object], List[TopicSummary]]:
    """``(bag-level facts, per-topic summaries)`` of a rosbag2 folder."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    topics: Dict[Tuple[str, str], TopicSummary] = {}
    info = _bag_info(path)
    with Reader(path) as reader:
        facts = {
            "path": str(path),
            "storage": info.get("storage_identifier", "?"),
            "messages": reader.message_count,
            "start_s": reader.start_time / 1e9 if reader.message_count else 0.0,
            "duration_s": reader.duration / 1e9 if reader.message_count else 0.0,
            "custom_data": dict(info.get("custom_data") or {}),
        }
        for conn in reader.connections:
            topics.setdefault((conn.topic, conn.msgtype), TopicSummary(conn.topic, conn.msgtype, 0, 0, 0))
        for conn, log_ns, _ in reader.messages():
            s = topics[(conn.topic, conn.msgtype)]
            s.first_ns = log_ns if s.count == 0 else min(s.first_ns, log_ns)
            s.last_ns = max(s.last_ns, log_ns)
            s.count += 1
    return facts, sorted(topics.values(), key=lambda s: s.topic)


def format_info(facts: Dict[str, object], topics: List[TopicSummary]) -> str:
    lines = [
        f"bag:      {facts['path']}",
        f"storage:  {facts['storage']}",
        f"messages: {facts['messages']}",
        f"start:    {facts['start_s']:.3f} s",
        f"duration: {facts['duration_s']:.3f} s",
    ]
    for key, value in sorted(facts.get("custom_data", {}).items()):
        lines.append(f"{key}: {value}")
    w_topic = max([len("topic")] + [len(t.topic) for t in topics])
    w_type = max([len("type")] + [len(t.msgtype) for t in topics])
    lines.append("")
    lines.append(f"{'topic':<{w_topic}}  {'type':<{w_type}}  {'count':>6}  {'rate Hz':>8}")
    for t in topics:
        lines.append(f"{t.topic:<{w_topic}}  {t.msgtype:<{w_type}}  {t.count:>6}  {t.rate_hz:>8.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def _common(p: argparse.ArgumentParser, rate_default: Optional[float] = 30.0) -> None:
    p.add_argument("--rate", type=float, default=rate_default,
                   help="frames per second of the stamps" + (f" (default {rate_default:g})" if rate_default else ""))
    p.add_argument("--format", dest="storage", choices=STORAGE_FORMATS, default="sqlite3",
                   help="rosbag2 storage (default sqlite3)")
    p.add_argument("--start-time", type=float, default=DEFAULT_START_S,
                   help=f"stamp of frame 0 in seconds (default {DEFAULT_START_S:.0f})")
    p.add_argument("--frame-id", default=DEFAULT_FRAME_ID, help="header frame_id (default camera)")
    p.add_argument("--image-topic", default=IMAGE_TOPIC)
    p.add_argument("--prompt-topic", default=PROMPT_TOPIC)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", help="prompt on frame 0: 'x,y,label;x,y,label' (label 1 positive, 0 negative)")
    p.add_argument("--mask", help="prompt on frame 0: a mask/label PNG the size of the frames (the node samples "
                                  "the query points from it)")
    p.add_argument("--object-id", type=int, default=1, help="object id of --points or a binary --mask (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sampt-bag", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("from-davis", help="a DAVIS-layout sequence -> bag (images, prompt, GT masks)")
    p.add_argument("root", help="DAVIS root (holds JPEGImages/480p and Annotations/480p)")
    p.add_argument("seq", help="sequence name")
    p.add_argument("out", help="output bag folder")
    _common(p)
    p.add_argument("--gt-topic", default=GT_TOPIC)
    p.add_argument("--prompt", choices=("mask", "points"), default="mask",
                   help="send each object's first-frame mask (default; the node samples the points, as "
                        "sampt-eval does) or points sampled here with the config's sampling section")
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="with --prompt points: config file or profile laid over config/sampt.yaml whose "
                        "'sampling' section turns the masks into points (as sampt-eval --config)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="with --prompt points: override one config key, as sampt-eval --set")

    p = sub.add_parser("from-video", help="a video file -> image bag")
    p.add_argument("file")
    p.add_argument("out")
    _common(p, rate_default=None)
    _prompt_args(p)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--start-frame", type=int, default=0, help="skip this many frames first")
    p.add_argument("--resize", default=None, help="WxH, e.g. 640x480")

    p = sub.add_parser("from-images", help="a folder of images (name order) -> image bag")
    p.add_argument("dir")
    p.add_argument("out")
    _common(p)
    _prompt_args(p)
    p.add_argument("--resize", default=None, help="WxH, e.g. 640x480")

    p = sub.add_parser("add-prompt", help="copy a bag (e.g. from ros2 bag record) and add a prompt")
    p.add_argument("bag")
    p.add_argument("out")
    p.add_argument("--frame", type=int, default=0, help="index of the image the prompt belongs to (default 0)")
    p.add_argument("--image-topic", default=IMAGE_TOPIC)
    p.add_argument("--prompt-topic", default=PROMPT_TOPIC)
    p.add_argument("--format", dest="storage", choices=STORAGE_FORMATS, default=None,
                   help="storage of the copy (default: as the source)")
    p.add_argument("--overwrite", action="store_true")
    _prompt_args(p)

    p = sub.add_parser("info", help="topics, types, counts and rates of a bag")
    p.add_argument("bag")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            facts, topics = summarize(args.bag)
            if args.json:
                print(json.dumps({**facts, "topics": [dict(vars(t), rate_hz=t.rate_hz) for t in topics]}, indent=2))
            else:
                print(format_info(facts, topics))
            return 0
        if args.command == "add-prompt":
            if args.frame < 0:
                raise ValueError(f"--frame must be >= 0, got {args.frame}")
            counts = add_prompt(args.bag, args.out, args.points, args.mask, args.object_id, args.frame,
                                args.image_topic, args.prompt_topic, args.storage, args.overwrite)
            print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
            return 0
        topics = {"image": args.image_topic, "prompt": args.prompt_topic}
        if args.command == "from-davis":
            topics["gt"] = args.gt_topic
            counts = davis_to_bag(args.root, args.seq, args.out, rate=args.rate, storage=args.storage,
                                  config_files=args.config, start_s=args.start_time, frame_id=args.frame_id,
                                  overwrite=args.overwrite, topics=topics, overrides=args.set,
                                  prompt=args.prompt)
        elif args.command == "from-video":
            size = parse_size(args.resize, "--resize") if args.resize else None
            frames, fps = video_frames(args.file, args.max_frames, args.start_frame, size)
            rate = args.rate or fps
            if not rate:
                raise ValueError(f"{args.file} does not state its frame rate; pass --rate")
            counts = frames_to_bag(frames, args.out, rate, args.storage, args.points, args.mask, args.object_id,
                                   args.start_time, args.frame_id, args.overwrite,
                                   source={"kind": "video", "file": str(args.file)}, topics=topics)
        else:  # from-images
            import cv2

            size = parse_size(args.resize, "--resize") if args.resize else None
            files = image_folder_frames(args.dir)

            def frames():
                for f in files:
                    img = read_rgb(f)
                    yield cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size else img

            counts = frames_to_bag(frames(), args.out, args.rate, args.storage, args.points, args.mask,
                                   args.object_id, args.start_time, args.frame_id, args.overwrite,
                                   source={"kind": "images", "dir": str(args.dir)}, topics=topics)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"sampt-bag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
