"""Conversions between ROS messages and the core's numpy types.

Inputs (validated; a malformed message raises :class:`ImageError` / :class:`PromptError`, both
``ValueError`` subclasses whose text names the reason):

* ``sensor_msgs/Image`` -> ``HxWx3 uint8`` RGB (:func:`image_to_rgb`): rgb8, bgr8, rgba8,
  bgra8, mono8, mono16, 8UC1/8UC3/8UC4, rgb16/bgr16/rgba16/bgra16, yuv422 (UYVY),
  yuv422_yuy2 (YUYV) and the four 8-bit Bayer patterns. Row padding (``step``) and
  ``is_bigendian`` are honoured. cv_bridge is used to decode where it is importable and
  passes a self-test; otherwise (as on the build machines) numpy + OpenCV do it.
* ``sensor_msgs/CompressedImage`` (jpeg/png) -> ``HxWx3 uint8`` RGB (:func:`compressed_to_rgb`).
* depth ``sensor_msgs/Image`` 16UC1 (millimetres) or 32FC1 (metres) -> ``HxW float32`` metres,
  NaN where unknown (:func:`depth_to_metres`).
* ``sensor_msgs/CameraInfo`` -> :class:`~sampt_ros.ros.geometry.Intrinsics`.
* ``sampt_ros/PointPrompt`` -> :class:`~sampt_ros.ros.worker.Prompt` (:func:`prompt_from_msg`).

Outputs are built with ``bytes`` payloads: assigning a numpy array to ``msg.data`` makes
rclpy copy it element by element (84 ms for 640x480 rgb8), ``arr.tobytes()`` takes 0.5 ms.
"""

from __future__ import annotations

import array
import math
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from sampt_ros.core.types import FrameResult, ObjectResult

from .geometry import Intrinsics, object_geometry
from .worker import ACTION_REMOVE, ACTION_SET, Prompt


class ImageError(ValueError):
    """A malformed or unsupported image message."""


class PromptError(ValueError):
    """A malformed prompt message."""


# encoding -> (channels, numpy dtype name, OpenCV conversion to RGB or a special tag)
_COLOUR: Dict[str, Tuple[int, str, object]] = {
    "rgb8": (3, "u1", None),
    "bgr8": (3, "u1", cv2.COLOR_BGR2RGB),
    "rgba8": (4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": (4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": (1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC1": (1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC3": (3, "u1", cv2.COLOR_BGR2RGB),  # OpenCV's default channel order, as cv_bridge assumes
    "8UC4": (4, "u1", cv2.COLOR_BGRA2RGB),
    "mono16": (1, "u2", cv2.COLOR_GRAY2RGB),
    "rgb16": (3, "u2", None),
    "bgr16": (3, "u2", cv2.COLOR_BGR2RGB),
    "rgba16": (4, "u2", cv2.COLOR_RGBA2RGB),
    "bgra16": (4, "u2", cv2.COLOR_BGRA2RGB),
    "yuv422": (2, "u1", cv2.COLOR_YUV2RGB_UYVY),  # ROS' yuv422 is UYVY byte order
    "uyvy": (2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    # OpenCV names a Bayer pattern by the second row's first two pixels, ROS by the first row's
    "bayer_rggb8": (1, "u1", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, "u1", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, "u1", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, "u1", cv2.COLOR_BayerGB2RGB),
}
_DEPTH: Dict[str, Tuple[int, str]] = {"16UC1": (1, "u2"), "mono16": (1, "u2"), "32FC1": (1, "f4")}
_DEPTH_LIKE = ("16UC1", "32FC1", "16SC1", "32SC1", "64FC1")

SUPPORTED_ENCODINGS = tuple(_COLOUR)
SUPPORTED_DEPTH_ENCODINGS = tuple(_DEPTH)


# ---------------------------------------------------------------------------- raw image layout
def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_to_ns(header) -> int:
    """``std_msgs/Header`` stamp -> int nanoseconds."""
    return _stamp_ns(header)


def _image_view(msg, channels: int, dtype: str) -> np.ndarray:
    """``HxWxC`` view of an Image's payload, honouring ``step`` padding and endianness.

    Raises :class:`ImageError` for an empty image, a too-small ``step`` or a payload whose size
    is not ``step * height``.
    """
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image ({w}x{h})")
    dt = np.dtype(dtype)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(">" if msg.is_bigendian else "<")
    row = w * channels * dt.itemsize
    if step < row:
        raise ImageError(f"step {step} is smaller than a row of {w} x {channels} x {dt.itemsize} bytes ({row})")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size != step * h:
        raise ImageError(f"data has {buf.size} bytes but step x height is {step} x {h} = {step * h}")
    # strided view: no copy, any step (including odd steps for 16-bit data)
    return np.ndarray((h, w, channels), dtype=dt, buffer=buf, strides=(step, channels * dt.itemsize, dt.itemsize))


_BRIDGE = None  # cv_bridge.CvBridge instance, False once found unusable


def _cv_bridge():
    """A working ``cv_bridge.CvBridge`` or ``None``.

    A ROS 2 install ships a working cv_bridge; PyPI's ``cv-bridge`` is ROS 1's and breaks with
    numpy 2 / OpenCV 5, so it must pass a round trip before it is trusted.
    """
    global _BRIDGE
    if _BRIDGE is None:
        try:
            from cv_bridge import CvBridge  # type: ignore
            from sensor_msgs.msg import Image

            bridge = CvBridge()
            probe = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
            msg = Image(height=2, width=3, encoding="bgr8", is_bigendian=0, step=9, data=probe.tobytes())
            back = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            if not np.array_equal(np.asarray(back), probe[:, :, ::-1]):
                raise RuntimeError("cv_bridge round trip mismatch")
            _BRIDGE = bridge
        except Exception:  # noqa: BLE001 - any failure means: do it ourselves
            _BRIDGE = False
    return _BRIDGE or None


def image_to_rgb(msg, use_cv_bridge: Optional[bool] = None) -> np.ndarray:
    """A colour or mono ``sensor_msgs/Image`` -> a new ``HxWx3 uint8`` RGB array.

    16-bit encodings keep their high byte. Raises :class:`ImageError` (naming the reason) for
    unsupported encodings (including depth encodings such as 16UC1/32FC1) and malformed
    layouts. ``use_cv_bridge`` None = use it where it works.
    """
    enc = str(msg.encoding)
    spec = _COLOUR.get(enc)
    if spec is None:
        hint = " (a depth encoding: send depth on the depth topic)" if enc in _DEPTH_LIKE else ""
        raise ImageError(f"unsupported image encoding {enc!r}{hint}; supported: {', '.join(_COLOUR)}")
    channels, dtype, code = spec
    view = _image_view(msg, channels, dtype)  # validates the layout in every case
    if (use_cv_bridge or use_cv_bridge is None) and enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
        bridge = _cv_bridge()
        if bridge is not None:
            return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    if view.dtype.itemsize == 2:
        view = (view >> 8).astype(np.uint8)  # high byte; also fixes the byte order
    if code is None:
        return np.array(view, dtype=np.uint8, order="C")  # copy: callers own the frame
    src = np.ascontiguousarray(view)
    if channels == 1:
        src = src[:, :, 0]
    return cv2.cvtColor(src, code)


def compressed_to_rgb(msg) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg, png, ...) -> ``HxWx3 uint8`` RGB.

    Raises :class:`ImageError` for compressed depth, an empty payload or undecodable data.
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ImageError(f"compressed depth ({msg.format!r}) is not a colour image")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size == 0:
        raise ImageError("compressed image has no data")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageError(f"cannot decode the compressed image (format {msg.format!r}, {buf.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def depth_to_metres(msg) -> np.ndarray:
    """Depth ``sensor_msgs/Image`` -> ``HxW float32`` metres, NaN where unknown.

    16UC1/mono16 hold millimetres (0 = unknown), 32FC1 metres (NaN/inf/<= 0 = unknown), as
    REP 118 specifies.
    """
    enc = str(msg.encoding)
    spec = _DEPTH.get(enc)
    if spec is None:
        raise ImageError(f"unsupported depth encoding {enc!r}; supported: {', '.join(_DEPTH)}")
    view = _image_view(msg, *spec)[:, :, 0]
    if spec[1] == "u2":
        out = view.astype(np.float32) * np.float32(0.001)
        out[view == 0] = np.nan
        return out
    out = view.astype(np.float32)  # native byte order, a copy
    out[~(out > 0) | ~np.isfinite(out)] = np.nan
    return out


def intrinsics_from_camera_info(msg) -> Intrinsics:
    """``sensor_msgs/CameraInfo`` -> :class:`Intrinsics` (``K`` and the calibration size)."""
    try:
        return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))
    except ValueError as exc:
        raise ImageError(f"unusable camera_info: {exc}") from None


# ---------------------------------------------------------------------------- prompts
def prompt_from_msg(msg, max_object_id: int = 255) -> Prompt:
    """``sampt_ros/PointPrompt`` -> a validated :class:`Prompt`.

    Checks what can be checked without the image: the action, ``object_id`` in
    ``1..max_object_id`` (the mask topic is a mono8 label image, so ids stop at 255), one
    label (0/1) per point, finite coordinates, at least one point and one positive for
    ``ACTION_SET``. Whether the points lie inside the image is checked against the frame the
    prompt lands on. Raises :class:`PromptError` naming the reason.
    """
    oid = int(msg.object_id)
    action = int(msg.action)
    if action not in (ACTION_SET, ACTION_REMOVE):
        raise PromptError(f"unknown action {action} (ACTION_SET={ACTION_SET}, ACTION_REMOVE={ACTION_REMOVE})")
    if not 1 <= oid <= max_object_id:
        raise PromptError(f"object_id must be in 1..{max_object_id}, got {oid}")
    stamp = _stamp_ns(msg.header)
    if action == ACTION_REMOVE:
        return Prompt(oid, ACTION_REMOVE, np.zeros((0, 2)), np.zeros(0, np.int64), stamp)
    n = len(msg.points)
    if msg.mask.width and msg.mask.height:
        if n or len(msg.labels):
            raise PromptError(f"object {oid}: give points or a mask, not both")
        if msg.mask.encoding not in ("mono8", "8UC1"):
            raise PromptError(f"object {oid}: the mask must be mono8, got {msg.mask.encoding!r}")
        try:
            mask = _image_view(msg.mask, 1, "uint8")[..., 0] != 0
        except ImageError as exc:
            raise PromptError(f"object {oid}: unusable mask: {exc}") from None
        if not mask.any():
            raise PromptError(f"object {oid}: the mask is empty")
        return Prompt(oid, ACTION_SET, np.zeros((0, 2)), np.zeros(0, np.int64), stamp, mask=mask)
    if n == 0:
        raise PromptError(f"object {oid}: the prompt has no points (and no mask)")
    if len(msg.labels) != n:
        raise PromptError(f"object {oid}: {n} points but {len(msg.labels)} labels (one label per point)")
    pts = np.array([(p.x, p.y) for p in msg.points], dtype=np.float64)
    if not np.all(np.isfinite(pts)):
        raise PromptError(f"object {oid}: points contain NaN or infinite coordinates")
    labels = np.asarray(list(msg.labels), dtype=np.int64)
    if not np.all((labels == 0) | (labels == 1)):
        raise PromptError(f"object {oid}: labels must be 1 (positive) or 0 (negative), got {sorted(set(labels.tolist()))}")
    if not np.any(labels == 1):
        raise PromptError(f"object {oid}: the prompt needs at least one positive point")
    return Prompt(oid, ACTION_SET, pts, labels, stamp)


# ---------------------------------------------------------------------------- outputs
def make_image_msg(array_: np.ndarray, header, encoding: str):
    """``HxW`` / ``HxWxC`` contiguous array -> ``sensor_msgs/Image`` (payload set as bytes)."""
    from sensor_msgs.msg import Image

    arr = np.ascontiguousarray(array_)
    h, w = arr.shape[:2]
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(h), int(w)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()  # never the ndarray itself (see the module docstring)
    return msg


def rgb_to_image_msg(rgb: np.ndarray, header):
    """``HxWx3 uint8`` RGB -> rgb8 ``sensor_msgs/Image``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return make_image_msg(rgb, header, "rgb8")


def label_image_to_msg(labels: np.ndarray, header):
    """``HxW`` label map (0 background, k = object id <= 255) -> mono8 ``sensor_msgs/Image``."""
    if labels.ndim != 2:
        raise ValueError(f"expected an HxW label image, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and int(labels.max()) > 255:
            raise ValueError("object ids above 255 do not fit a mono8 label image")
        labels = labels.astype(np.uint8)
    return make_image_msg(labels, header, "mono8")


def label_image(result: FrameResult, shape: Tuple[int, int]) -> np.ndarray:
    """``HxW uint8`` label map of a result (0 background, the higher id wins on overlap)."""
    out = np.zeros(shape, np.uint8)
    for oid in sorted(result.objects):
        mask = result.objects[oid].mask
        if mask.shape == tuple(shape):
            out[mask] = oid
    return out


def _points(xy: np.ndarray, z: Optional[np.ndarray] = None):
    from geometry_msgs.msg import Point

    if z is None:
        return [Point(x=float(x), y=float(y), z=0.0) for x, y in xy]
    return [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in z]


def tracked_object_msg(obj: ObjectResult, depth: Optional[np.ndarray] = None,
                       intrinsics: Optional[Intrinsics] = None):
    """One :class:`~sampt_ros.core.types.ObjectResult` -> ``sampt_ros/TrackedObject``.

    With ``depth`` (``HxW float32`` metres, registered to the colour image) and ``intrinsics``
    the 3-D fields are filled (camera frame, metres, NaN where depth is unknown).
    """
    from geometry_msgs.msg import Point
    from sampt_ros.msg import TrackedObject

    pts = np.asarray(obj.points, dtype=np.float64).reshape(-1, 2)
    (cx, cy), pts3, c3 = object_geometry(pts, obj.mask, depth, intrinsics)
    m = TrackedObject()
    m.object_id = int(obj.object_id)
    m.state = int(obj.state)
    m.score = float(obj.score)
    m.points = _points(pts)
    m.labels = array.array("b", np.asarray(obj.labels, dtype=np.int8).tobytes())
    m.visible = [bool(v) for v in np.asarray(obj.visible).reshape(-1)]
    vis = getattr(obj, "visibility", None)
    if vis is None:
        vis = np.asarray(obj.visible, dtype=np.float32)
    m.visibility = array.array("f", np.asarray(vis, dtype=np.float32).reshape(-1).tobytes())
    m.centroid = Point(x=cx, y=cy, z=0.0)
    m.has_3d = pts3 is not None
    if pts3 is not None:
        m.points_3d = _points(pts, pts3)
        m.centroid_3d = Point(x=float(c3[0]), y=float(c3[1]), z=float(c3[2]))
    else:
        nan = float("nan")
        m.centroid_3d = Point(x=nan, y=nan, z=nan)
    return m


def tracked_objects_msg(result: FrameResult, header, depth: Optional[np.ndarray] = None,
                        intrinsics: Optional[Intrinsics] = None):
    """A :class:`FrameResult` -> ``sampt_ros/TrackedObjects`` carrying the input's ``header``."""
    from sampt_ros.msg import TrackedObjects

    msg = TrackedObjects()
    msg.header = header
    msg.frame_index = int(result.frame_index) & 0xFFFFFFFF
    msg.objects = [tracked_object_msg(result.objects[k], depth, intrinsics) for k in sorted(result.objects)]
    return msg


def markers_msg(objects_msg, header, scale: float = 0.02):
    """``sampt_ros/TrackedObjects`` with 3-D fields -> ``visualization_msgs/MarkerArray``.

    Per object: its valid 3-D points (SPHERE_LIST, namespace ``points``), its 3-D centroid
    (SPHERE, ``centroid``) and its id as text (``label``), coloured as in the overlay. The
    array starts with DELETEALL so removed objects disappear from RViz.
    """
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    from sampt_ros.core.visualization import palette

    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for obj in objects_msg.objects:
        if not obj.has_3d:
            continue
        r, g, b = palette(int(obj.object_id))
        colour = ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
        valid = [p for p in obj.points_3d if math.isfinite(p.x) and math.isfinite(p.y) and math.isfinite(p.z)]
        if valid:
            pts = Marker(header=header, ns="points", id=int(obj.object_id), type=Marker.SPHERE_LIST,
                         action=Marker.ADD)
            pts.pose.orientation.w = 1.0
            pts.scale.x = pts.scale.y = pts.scale.z = float(scale)
            pts.color = colour
            pts.points = [Point(x=p.x, y=p.y, z=p.z) for p in valid]
            out.markers.append(pts)
        c = obj.centroid_3d
        if math.isfinite(c.x) and math.isfinite(c.y) and math.isfinite(c.z):
            for ns, mtype in (("centroid", Marker.SPHERE), ("label", Marker.TEXT_VIEW_FACING)):
                m = Marker(header=header, ns=ns, id=int(obj.object_id), type=mtype, action=Marker.ADD)
                m.pose.position = Point(x=c.x, y=c.y - (3 * scale if ns == "label" else 0.0), z=c.z)
                m.pose.orientation.w = 1.0
                m.scale.x = m.scale.y = m.scale.z = float(scale * 2.5)
                m.color = colour
                if ns == "label":
                    m.text = str(int(obj.object_id))
                out.markers.append(m)
    return out


def header_copy(header):
    """A new ``std_msgs/Header`` equal to ``header`` (outputs must not share input objects)."""
    from std_msgs.msg import Header

    h = Header()
    h.stamp.sec = int(header.stamp.sec)
    h.stamp.nanosec = int(header.stamp.nanosec)
    h.frame_id = str(header.frame_id)
    return h

