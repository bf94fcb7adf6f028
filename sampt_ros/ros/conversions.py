"""Conversions between rclpy messages and the core's numpy types.

Decoding (images, compressed images, depth, prompts, stamps) and the size policy of the message
boundary live in :mod:`sampt_ros.ros.codec`, shared with the bag and replay tools; they are
re-exported here. Every decoder raises :class:`ImageError` / :class:`PromptError` (``ValueError``
subclasses of :class:`~sampt_ros.ros.codec.CodecError` whose text names the reason) and nothing
else for a bad message:

* ``sensor_msgs/Image`` -> ``HxWx3 uint8`` RGB (:func:`image_to_rgb`): rgb8, bgr8, rgba8,
  bgra8, mono8, mono16, 8UC1/8UC3/8UC4 (8UC3 is BGR, as cv_bridge reads it),
  rgb16/bgr16/rgba16/bgra16, yuv422 (UYVY), yuv422_yuy2 (YUYV) and the four 8-bit Bayer
  patterns. Row padding (``step``) and ``is_bigendian`` are honoured.
* ``sensor_msgs/CompressedImage`` (PNG/JPEG, size read from the header first) -> RGB
  (:func:`compressed_to_rgb`).
* depth ``sensor_msgs/Image`` 16UC1 (millimetres) or 32FC1 (metres) -> ``HxW float32`` metres,
  NaN where unknown (:func:`depth_to_metres`).
* ``sensor_msgs/CameraInfo`` -> :class:`~sampt_ros.ros.geometry.Intrinsics`.
* ``sampt_ros/PointPrompt`` -> :class:`~sampt_ros.ros.worker.Prompt` (:func:`prompt_from_msg`).

Outputs are built here with ``bytes`` payloads: assigning a numpy array to ``msg.data`` makes
rclpy copy it element by element (84 ms for 640x480 rgb8), ``arr.tobytes()`` takes 0.5 ms.
"""

from __future__ import annotations

import array
import math
from typing import Optional, Tuple

import numpy as np

from sampt_ros.core.types import FrameResult, ObjectResult

from .codec import (  # noqa: F401 - re-exported: the node and older callers import them from here
    DEFAULT_LIMITS,
    SUPPORTED_DEPTH_ENCODINGS,
    SUPPORTED_ENCODINGS,
    CodecError,
    ImageError,
    Limits,
    PromptError,
    compressed_to_rgb,
    depth_to_metres,
    fill_image,
    image_to_rgb,
    message_to_rgb,
    object_visibility,
    prompt_from_msg,
    stamp_to_ns,
)
from .geometry import Intrinsics, object_geometry


def intrinsics_from_camera_info(msg) -> Intrinsics:
    """``sensor_msgs/CameraInfo`` -> :class:`Intrinsics` (``K`` and the calibration size)."""
    try:
        return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))
    except (TypeError, ValueError) as exc:
        raise ImageError(f"unusable camera_info: {exc}", "camera_info") from None


# ---------------------------------------------------------------------------- outputs
def make_image_msg(array_: np.ndarray, header, encoding: str):
    """``HxW`` / ``HxWxC`` contiguous array -> ``sensor_msgs/Image`` (payload set as bytes)."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    return fill_image(msg, array_, encoding)


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
    m.visibility = array.array("f", object_visibility(obj).tobytes())
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

