"""The one message codec of the node and the tools: images, compressed images, prompts, tracked
objects and stamps, with the size policy of the message boundary.

It works on any object with the message's fields (duck typing): rclpy messages in the node,
rosbags' message dataclasses in :mod:`sampt_ros.tools.bags` and the replay tools. It never
imports rclpy at module level, so the tools run without ROS.

**The boundary's contract.** Every decoder here either returns a valid value or raises
:class:`CodecError` (a ``ValueError``; :class:`ImageError` / :class:`PromptError`) whose text
names the reason and whose :attr:`CodecError.reason` is a short key for the diagnostics
counters. No other exception type leaves a decoder (OpenCV's ``cv2.error`` included), so a
callback that catches ``CodecError`` cannot be crashed by a message.

**The size policy** (:class:`Limits`) is checked *before* anything is decoded or allocated:
an image's width x height (read from the fields of a raw image, from the PNG ``IHDR`` chunk or
the JPEG ``SOFn`` marker of a compressed one; other compressed formats are refused), its payload
in bytes, sides of at least ``min_image_side`` pixels, and the number of points of a prompt. A
prompt's mask is bounded like an image.

**Channel order.** ``8UC3`` / ``8UC4`` carry no colour information; this codec follows
cv_bridge (and OpenCV): they are BGR / BGRA. (``rosbags-image`` passes them through unchanged,
i.e. reads 8UC3 as RGB; its conversions of the named encodings agree with these and are checked
against it in the tests, but it ignores ``step`` padding and the size policy, so the pixels are
laid out here.) 16-bit colour encodings keep their high byte.
"""

from __future__ import annotations

import array
import dataclasses
import math
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .worker import ACTION_REMOVE, ACTION_SET, Prompt

#: how long a rejection reason may be in a log line or a diagnostics value
MAX_REASON_CHARS = 200


class CodecError(ValueError):
    """A message that cannot be accepted. ``reason`` is a short key (``too_large``, ...)."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class ImageError(CodecError):
    """A malformed, unsupported or oversized image message."""


class PromptError(CodecError):
    """A malformed or oversized prompt message."""


def bounded(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (``...`` and the length when cut)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} chars)"
    return text[: max(0, limit - len(tail))] + tail


# ---------------------------------------------------------------------------- the size policy
@dataclass(frozen=True)
class Limits:
    """What the message boundary accepts.

    Attributes:
        max_image_pixels: width x height of an image (raw, compressed or a prompt's mask).
        max_image_bytes: payload bytes of an image message (raw data, compressed data, mask).
        min_image_side: the smallest width and height of a frame (the engine's minimum).
        max_points_per_prompt: points in one prompt (and clicks accumulated for one object).
        max_object_id: object ids are ``1..max_object_id`` (the mask topic is mono8).
    """

    max_image_pixels: int = 4096 * 4096
    max_image_bytes: int = 128 * 1024 * 1024
    min_image_side: int = 8
    max_points_per_prompt: int = 256
    max_object_id: int = 255


DEFAULT_LIMITS = Limits()


def check_image_size(width: int, height: int, limits: Limits = DEFAULT_LIMITS, what: str = "image",
                     min_side: Optional[int] = None) -> None:
    """Raise :class:`ImageError` unless ``width x height`` is within ``limits``."""
    min_side = limits.min_image_side if min_side is None else min_side
    if width <= 0 or height <= 0:
        raise ImageError(f"empty {what} ({width}x{height})", "empty")
    if width < min_side or height < min_side:
        raise ImageError(f"{what} is too small: {width}x{height} (at least {min_side} px each way)", "too_small")
    if width * height > limits.max_image_pixels:
        raise ImageError(f"{what} is too large: {width}x{height} = {width * height} pixels "
                         f"(node.max_image_pixels is {limits.max_image_pixels})", "too_large")


def _payload(data, limits: Limits, what: str) -> np.ndarray:
    """The payload as a ``uint8`` array view, after checking its length against the limit."""
    try:
        n = len(data)
    except TypeError:
        raise ImageError(f"{what} data is not a byte sequence ({type(data).__name__})", "malformed") from None
    if n > limits.max_image_bytes:
        raise ImageError(f"{what} payload is {n} bytes (node.max_image_bytes is {limits.max_image_bytes})",
                         "too_large")
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.view(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            return np.asarray(list(data), dtype=np.uint8)
        except (TypeError, ValueError, OverflowError):
            raise ImageError(f"{what} data is not a byte sequence", "malformed") from None


# ---------------------------------------------------------------------------- stamps
def stamp_to_ns(header_or_stamp) -> int:
    """``std_msgs/Header`` or ``builtin_interfaces/Time`` (rclpy or rosbags) -> int nanoseconds."""
    stamp = getattr(header_or_stamp, "stamp", header_or_stamp)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> Tuple[int, int]:
    """Integer nanoseconds (>= 0) -> ``(sec, nanosec)`` of a ``builtin_interfaces/Time``."""
    if stamp_ns < 0:
        raise ValueError(f"stamps must be >= 0, got {stamp_ns} ns")
    return int(stamp_ns // 1_000_000_000), int(stamp_ns % 1_000_000_000)


# ---------------------------------------------------------------------------- raw images
# encoding -> (channels, numpy dtype name, OpenCV conversion to RGB or None)
COLOUR_ENCODINGS: Dict[str, Tuple[int, str, Optional[int]]] = {
    "rgb8": (3, "u1", None),
    "bgr8": (3, "u1", cv2.COLOR_BGR2RGB),
    "rgba8": (4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": (4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": (1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC1": (1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC3": (3, "u1", cv2.COLOR_BGR2RGB),  # OpenCV's channel order, as cv_bridge assumes
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
#: packed 4:2:2 encodings: two pixels share one chroma pair, so the width must be even
_PAIRED = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
#: single-channel encodings read natively (depth, label maps) -> dtype
ARRAY_ENCODINGS: Dict[str, Tuple[int, str]] = {
    **{k: (v[0], v[1]) for k, v in COLOUR_ENCODINGS.items()},
    "16UC1": (1, "u2"), "32FC1": (1, "f4"),
}
DEPTH_ENCODINGS: Dict[str, Tuple[int, str]] = {"16UC1": (1, "u2"), "mono16": (1, "u2"), "32FC1": (1, "f4")}
_DEPTH_LIKE = ("16UC1", "32FC1", "16SC1", "32SC1", "64FC1")

SUPPORTED_ENCODINGS = tuple(COLOUR_ENCODINGS)
SUPPORTED_DEPTH_ENCODINGS = tuple(DEPTH_ENCODINGS)


def image_view(msg, channels: int, dtype: str, limits: Limits = DEFAULT_LIMITS, what: str = "image",
               min_side: Optional[int] = None) -> np.ndarray:
    """``HxWxC`` view (no copy) of an Image's payload, honouring ``step`` padding and endianness.

    Checks, in this order, before touching the pixels: the size policy (width, height, pixels),
    the payload length, ``step`` >= one row, payload == ``step * height``.
    """
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ImageError(f"{what}: unusable height/width/step ({exc})", "malformed") from None
    if h <= 0 or w <= 0:
        raise ImageError(f"empty {what} ({w}x{h})", "empty")
    check_image_size(w, h, limits, what, min_side)
    buf = _payload(msg.data, limits, what)
    dt = np.dtype(dtype)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(">" if msg.is_bigendian else "<")
    row = w * channels * dt.itemsize
    if step < row:
        raise ImageError(f"step {step} is smaller than a row of {w} x {channels} x {dt.itemsize} bytes ({row})",
                         "layout")
    if buf.size != step * h:
        raise ImageError(f"data has {buf.size} bytes but step x height is {step} x {h} = {step * h}", "layout")
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


def _is_rclpy_image(msg) -> bool:
    return type(msg).__module__.startswith("sensor_msgs.msg")


def image_to_rgb(msg, limits: Limits = DEFAULT_LIMITS, use_cv_bridge: Optional[bool] = None) -> np.ndarray:
    """A colour or mono ``sensor_msgs/Image`` -> a new ``HxWx3 uint8`` RGB array.

    Raises :class:`ImageError` (naming the reason) for unsupported encodings (including depth
    encodings such as 16UC1/32FC1), images outside ``limits``, malformed layouts and anything
    OpenCV refuses. ``use_cv_bridge`` None = use a working cv_bridge for the plain 8-bit
    encodings of rclpy messages.
    """
    enc = str(getattr(msg, "encoding", ""))
    spec = COLOUR_ENCODINGS.get(enc)
    if spec is None:
        hint = " (a depth encoding: send depth on the depth topic)" if enc in _DEPTH_LIKE else ""
        raise ImageError(f"unsupported image encoding {bounded(repr(enc), 60)}{hint}; supported: "
                         f"{', '.join(COLOUR_ENCODINGS)}", "encoding")
    channels, dtype, code = spec
    view = image_view(msg, channels, dtype, limits)  # the size policy and the layout, in every case
    if enc in _PAIRED and view.shape[1] % 2:
        raise ImageError(f"{enc} packs two pixels per chroma pair: the width must be even, got {view.shape[1]}",
                         "layout")
    try:
        if (use_cv_bridge or use_cv_bridge is None) and enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8") \
                and _is_rclpy_image(msg):
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
        out = cv2.cvtColor(src, code)
    except cv2.error as exc:
        raise ImageError(f"cannot convert the {enc} image: {bounded(str(exc), 120)}", "decode") from None
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
        raise ImageError(f"converting {enc} gave a {out.dtype} {out.shape} array", "decode")
    return out


def image_array(msg, limits: Limits = DEFAULT_LIMITS, min_side: int = 1) -> np.ndarray:
    """An Image in its own encoding: ``HxWxC`` (channel order as encoded) or ``HxW`` for one
    channel, native byte order, a new contiguous array (label maps, depth, colour)."""
    enc = str(getattr(msg, "encoding", ""))
    spec = ARRAY_ENCODINGS.get(enc)
    if spec is None:
        raise ImageError(f"unsupported image encoding {bounded(repr(enc), 60)}; supported: "
                         f"{', '.join(sorted(ARRAY_ENCODINGS))}", "encoding")
    view = image_view(msg, spec[0], spec[1], limits, min_side=min_side)
    arr = view.astype(view.dtype.newbyteorder("="), copy=True)
    return np.ascontiguousarray(arr[:, :, 0] if spec[0] == 1 else arr)


def depth_to_metres(msg, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Depth ``sensor_msgs/Image`` -> ``HxW float32`` metres, NaN where unknown.

    16UC1/mono16 hold millimetres (0 = unknown), 32FC1 metres (NaN/inf/<= 0 = unknown), as
    REP 118 specifies.
    """
    enc = str(getattr(msg, "encoding", ""))
    spec = DEPTH_ENCODINGS.get(enc)
    if spec is None:
        raise ImageError(f"unsupported depth encoding {bounded(repr(enc), 60)}; supported: "
                         f"{', '.join(DEPTH_ENCODINGS)}", "encoding")
    view = image_view(msg, *spec, limits=limits, what="depth image", min_side=1)[:, :, 0]
    if spec[1] == "u2":
        out = view.astype(np.float32) * np.float32(0.001)
        out[view == 0] = np.nan
        return out
    out = view.astype(np.float32)  # native byte order, a copy
    out[~(out > 0) | ~np.isfinite(out)] = np.nan
    return out


# ---------------------------------------------------------------------------- compressed images
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic): not
#: DHT (C4), JPG (C8) or DAC (CC)
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
#: how far into a JPEG the frame header is looked for (APPn segments are at most 64 KiB each)
JPEG_HEADER_SCAN_BYTES = 1 << 20


def compressed_image_size(data) -> Tuple[str, int, int]:
    """``(kind, width, height)`` of a PNG or JPEG from its header bytes, without decoding it.

    PNG: the ``IHDR`` chunk that must follow the signature. JPEG: the first ``SOFn`` marker
    segment. Anything else (other formats, truncated or inconsistent headers) raises
    :class:`ImageError`: OpenCV would decode more formats, but only these two have their size
    checked before decoding.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    head = buf[:32].tobytes()
    if head[:8] == _PNG_MAGIC:
        if len(head) < 24 or head[12:16] != b"IHDR" or struct.unpack(">I", head[8:12])[0] != 13:
            raise ImageError("PNG without a valid IHDR header chunk", "format")
        w, h = struct.unpack(">II", head[16:24])
        return "png", int(w), int(h)
    if head[:2] == b"\xff\xd8":
        scan = buf[:JPEG_HEADER_SCAN_BYTES].tobytes()
        i, n = 2, len(scan)
        while i < n:
            if scan[i] != 0xFF:
                raise ImageError(f"JPEG: expected a marker at byte {i}", "format")
            while i < n and scan[i] == 0xFF:  # fill bytes
                i += 1
            if i >= n:
                break
            marker = scan[i]
            i += 1
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers
                continue
            if marker in (0xD9, 0xDA):
                raise ImageError("JPEG: no frame header (SOFn) before the image data", "format")
            if i + 2 > n:
                break
            length = (scan[i] << 8) | scan[i + 1]
            if length < 2:
                raise ImageError(f"JPEG: segment length {length} at byte {i}", "format")
            if marker in _SOF:
                if i + 7 > n or length < 8:
                    break
                h = (scan[i + 3] << 8) | scan[i + 4]
                w = (scan[i + 5] << 8) | scan[i + 6]
                return "jpeg", int(w), int(h)
            i += length
        raise ImageError(f"JPEG: no frame header (SOFn) in the first {min(n, JPEG_HEADER_SCAN_BYTES)} bytes",
                         "format")
    raise ImageError(f"compressed image is neither PNG nor JPEG (starts with {head[:8].hex() or 'nothing'}); "
                     "only those two are accepted", "format")


def compressed_to_rgb(msg, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (PNG or JPEG) -> ``HxWx3 uint8`` RGB.

    The size is read from the header and checked against ``limits`` before decoding (a small
    PNG that decodes to 12000x12000 is refused without allocating it); the decoded image must
    have the header's size. Raises :class:`ImageError` for compressed depth, an empty or
    oversized payload, other formats and undecodable data.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower():
        raise ImageError(f"compressed depth ({bounded(repr(fmt), 60)}) is not a colour image", "encoding")
    buf = _payload(msg.data, limits, "compressed image")
    if buf.size == 0:
        raise ImageError("compressed image has no data", "empty")
    kind, w, h = compressed_image_size(buf)
    check_image_size(w, h, limits, f"compressed image ({kind})")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise ImageError(f"cannot decode the compressed image ({kind}): {bounded(str(exc), 120)}", "decode") from None
    if bgr is None or bgr.size == 0:
        raise ImageError(f"cannot decode the compressed image (format {bounded(repr(fmt), 60)}, {kind}, "
                         f"{buf.size} bytes)", "decode")
    if bgr.shape[:2] != (h, w) or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageError(f"the {kind} decoded to {bgr.shape[1]}x{bgr.shape[0]}, its header says {w}x{h}", "decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """An Image or CompressedImage (told apart by its ``format`` field) -> ``HxWx3 uint8`` RGB."""
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, limits)
    return image_to_rgb(msg, limits)


# ---------------------------------------------------------------------------- prompts
def _finite_int(value, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise PromptError(f"{what} must be an integer, got {bounded(repr(value), 40)}", "malformed") from None


def prompt_points(msg) -> Tuple[np.ndarray, np.ndarray]:
    """``(Nx2 float64 points, N int64 labels)`` of a PointPrompt, unvalidated (tools)."""
    pts = np.array([(float(p.x), float(p.y)) for p in msg.points], dtype=np.float64).reshape(-1, 2)
    return pts, np.asarray(list(msg.labels), dtype=np.int64).reshape(-1)


def prompt_mask(msg, limits: Limits = DEFAULT_LIMITS) -> Optional[np.ndarray]:
    """The ``HxW bool`` mask a PointPrompt carries (None when it carries none), bounded by ``limits``."""
    m = msg.mask
    if not (int(m.width) and int(m.height)):
        return None
    enc = str(m.encoding)
    if enc not in ("mono8", "8UC1"):
        raise PromptError(f"the mask must be mono8, got {bounded(repr(enc), 40)}", "mask")
    try:
        return image_view(m, 1, "uint8", limits, what="mask", min_side=1)[..., 0] != 0
    except ImageError as exc:
        raise PromptError(f"unusable mask: {exc}", "too_large" if exc.reason == "too_large" else "mask") from None


def prompt_from_msg(msg, limits: Limits = DEFAULT_LIMITS, max_object_id: Optional[int] = None) -> Prompt:
    """``sampt_ros/PointPrompt`` -> a validated :class:`~sampt_ros.ros.worker.Prompt`.

    Checks what can be checked without the image: the action, ``object_id`` in
    ``1..max_object_id`` (the mask topic is a mono8 label image, so ids stop at 255), at most
    ``limits.max_points_per_prompt`` points (counted before anything is converted), one label
    (0/1) per point, finite coordinates, at least one point and one positive for ``ACTION_SET``;
    a mask instead of points is bounded like an image. Whether the points lie inside the image
    is checked against the frame the prompt lands on. Raises :class:`PromptError` naming the
    reason.
    """
    max_object_id = limits.max_object_id if max_object_id is None else max_object_id
    oid = _finite_int(msg.object_id, "object_id")
    action = _finite_int(msg.action, "action")
    if action not in (ACTION_SET, ACTION_REMOVE):
        raise PromptError(f"unknown action {action} (ACTION_SET={ACTION_SET}, ACTION_REMOVE={ACTION_REMOVE})",
                          "action")
    if not 1 <= oid <= max_object_id:
        raise PromptError(f"object_id must be in 1..{max_object_id}, got {oid}", "object_id")
    try:
        stamp = stamp_to_ns(msg.header)
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise PromptError(f"object {oid}: unusable header stamp", "malformed") from None
    if action == ACTION_REMOVE:
        return Prompt(oid, ACTION_REMOVE, np.zeros((0, 2)), np.zeros(0, np.int64), stamp)
    n, n_labels = len(msg.points), len(msg.labels)
    limit = limits.max_points_per_prompt
    if n > limit or n_labels > limit:
        raise PromptError(f"object {oid}: {max(n, n_labels)} points/labels, more than "
                          f"node.max_points_per_prompt ({limit})", "too_many_points")
    if int(msg.mask.width) and int(msg.mask.height):
        if n or n_labels:
            raise PromptError(f"object {oid}: give points or a mask, not both", "mask")
        try:
            mask = prompt_mask(msg, limits)
        except PromptError as exc:
            raise PromptError(f"object {oid}: {exc}", exc.reason) from None
        if not mask.any():
            raise PromptError(f"object {oid}: the mask is empty", "mask")
        return Prompt(oid, ACTION_SET, np.zeros((0, 2)), np.zeros(0, np.int64), stamp, mask=mask)
    if n == 0:
        raise PromptError(f"object {oid}: the prompt has no points (and no mask)", "no_points")
    if n_labels != n:
        raise PromptError(f"object {oid}: {n} points but {n_labels} labels (one label per point)", "labels")
    try:
        pts = np.array([(p.x, p.y) for p in msg.points], dtype=np.float64).reshape(n, 2)
    except (TypeError, ValueError, OverflowError):
        raise PromptError(f"object {oid}: points are not numbers", "malformed") from None
    if not np.all(np.isfinite(pts)):
        raise PromptError(f"object {oid}: points contain NaN or infinite coordinates", "nonfinite")
    try:
        labels = np.asarray(list(msg.labels), dtype=np.int64).reshape(n)
    except (TypeError, ValueError, OverflowError):
        raise PromptError(f"object {oid}: labels are not integers", "labels") from None
    if not np.all((labels == 0) | (labels == 1)):
        bad = sorted(set(labels.tolist()))
        raise PromptError(f"object {oid}: labels must be 1 (positive) or 0 (negative), got "
                          f"{bounded(str(bad[:8]), 80)}", "labels")
    if not np.any(labels == 1):
        raise PromptError(f"object {oid}: the prompt needs at least one positive point", "labels")
    return Prompt(oid, ACTION_SET, pts, labels, stamp)


def describe_points(points: np.ndarray, limit: int = 4) -> str:
    """A short text of some points: the first ``limit`` rounded, and how many there are."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    shown = pts[:limit].round(1).tolist()
    more = f" and {len(pts) - limit} more" if len(pts) > limit else ""
    return f"{shown}{more}"


# ---------------------------------------------------------------------------- outputs
def is_rosbags_message(msg) -> bool:
    """rosbags' messages are dataclasses whose uint8[] fields hold numpy arrays."""
    return dataclasses.is_dataclass(msg) and not isinstance(msg, type)


def fill_image(msg, array_: np.ndarray, encoding: str):
    """Set an Image's ``height/width/encoding/is_bigendian/step/data`` from a contiguous array.

    rclpy gets ``bytes`` (assigning an ndarray costs 84 ms for 640x480 rgb8), rosbags a
    ``uint8`` array. Returns ``msg``.
    """
    arr = np.ascontiguousarray(array_)
    if arr.dtype.itemsize > 1 and arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    h, w = arr.shape[:2]
    msg.height, msg.width = int(h), int(w)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0]) if h else int(arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1) * w)
    raw = arr.tobytes()
    msg.data = np.frombuffer(raw, np.uint8) if is_rosbags_message(msg) else raw
    return msg


@dataclass
class TrackedObjectData:
    """One ``sampt_ros/TrackedObject`` as numpy values (decoded from rclpy or rosbags)."""

    object_id: int
    state: int
    score: float
    points: np.ndarray  # Nx2 float64
    labels: np.ndarray  # N int64
    visible: np.ndarray  # N bool
    visibility: np.ndarray  # N float32
    centroid: Tuple[float, float]
    has_3d: bool = False
    points_3d: Optional[np.ndarray] = None  # Nx3 float64
    centroid_3d: Tuple[float, float, float] = (math.nan, math.nan, math.nan)


def _uint8_like(values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (bytes, bytearray)):
        return np.frombuffer(values, np.int8)
    if isinstance(values, array.array):
        return np.asarray(values)
    return np.asarray(list(values))


def tracked_objects_from_msg(msg) -> Tuple[int, int, List[TrackedObjectData]]:
    """``sampt_ros/TrackedObjects`` -> ``(stamp_ns, frame_index, [TrackedObjectData])``."""
    out = []
    for o in msg.objects:
        pts = np.array([(p.x, p.y) for p in o.points], np.float64).reshape(-1, 2)
        p3 = np.array([(p.x, p.y, p.z) for p in o.points_3d], np.float64).reshape(-1, 3) if o.has_3d else None
        out.append(TrackedObjectData(
            object_id=int(o.object_id), state=int(o.state), score=float(o.score), points=pts,
            labels=_uint8_like(o.labels).astype(np.int64).reshape(-1),
            visible=np.asarray([bool(v) for v in o.visible], bool),
            visibility=_uint8_like(o.visibility).astype(np.float32).reshape(-1),
            centroid=(float(o.centroid.x), float(o.centroid.y)), has_3d=bool(o.has_3d), points_3d=p3,
            centroid_3d=(float(o.centroid_3d.x), float(o.centroid_3d.y), float(o.centroid_3d.z))))
    return stamp_to_ns(msg.header), int(msg.frame_index), out


def object_visibility(obj) -> np.ndarray:
    """An ObjectResult's ``N float32`` visibility: the tracker's score where the engine gives one,
    otherwise its ``visible`` flags as 0/1."""
    vis = getattr(obj, "visibility", None)
    if vis is None:
        vis = np.asarray(obj.visible, dtype=np.float32)
    return np.clip(np.asarray(vis, dtype=np.float32).reshape(-1), 0.0, 1.0)


# ---------------------------------------------------------------------------- rejections
class RejectionLog:
    """Counts rejected messages per kind (``image``, ``prompt``, ...) and reason, and decides
    which rejections get a log line: each one a single line of at most ``MAX_REASON_CHARS``
    characters (plus a short prefix), at most ``per_second`` lines a second; the lines
    suppressed meanwhile are counted in the next line that is logged."""

    def __init__(self, per_second: int = 20) -> None:
        self.per_second = int(per_second)
        self.counts: Dict[str, Dict[str, int]] = {}
        self._window = -1
        self._lines = 0
        self._suppressed = 0

    def add(self, kind: str, reason: str, text: str, now: float) -> Optional[str]:
        """Count one rejection; returns the line to log, or None when lines are being rate-limited."""
        per = self.counts.setdefault(kind, {})
        per[reason] = per.get(reason, 0) + 1
        second = int(now)
        if second != self._window:
            self._window, self._lines = second, 0
        if self._lines >= self.per_second:
            self._suppressed += 1
            return None
        self._lines += 1
        line = f"{kind} rejected ({reason}): {bounded(text)}"
        if self._suppressed:
            line += f" [{self._suppressed} more rejections not logged]"
            self._suppressed = 0
        return line

    def total(self, kind: str) -> int:
        return sum(self.counts.get(kind, {}).values())
