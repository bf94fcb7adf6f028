"""Message <-> numpy conversions, pinhole geometry and the approximate-time matcher (no DDS)."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from sampt_ros.ros.geometry import Intrinsics, back_project, mask_centroid, mask_depth, object_geometry, sample_depth
from sampt_ros.ros.sync import ApproxTimeMatcher

try:
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from sampt_ros.msg import PointPrompt
    from sampt_ros.ros import conversions as conv

    ROS_MISSING = None
except Exception as exc:  # noqa: BLE001
    ROS_MISSING = f"needs rclpy and the generated sampt_ros messages (run scripts/build_msgs.sh): {exc}"

needs_ros = pytest.mark.skipif(ROS_MISSING is not None, reason=ROS_MISSING or "")


def rgb_image(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_rgb(h=48, w=64):
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xx / w * 200 + 20, yy / h * 200 + 30, (xx + yy) / (w + h) * 150 + 50], -1).astype(np.uint8)


def image_msg(arr, encoding, step=None, bigendian=False, pad_value=0xAB):
    """Build an Image from an ``HxW[xC]`` array, optionally with row padding."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if bigendian and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    rows = arr.reshape(h, -1).view(np.uint8).reshape(h, -1)
    row = rows.shape[1]
    step = row if step is None else step
    buf = np.full((h, step), pad_value, np.uint8)
    buf[:, :row] = rows
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step, data=buf.tobytes())


# ---------------------------------------------------------------------------- colour images
@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4"])
def test_colour_encodings_decode_exactly(encoding):
    rgb = rgb_image()
    src = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1], "8UC3": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "8UC4": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
    }[encoding]
    out = conv.image_to_rgb(image_msg(src, encoding))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.writeable and out.flags.c_contiguous
    assert np.array_equal(out, rgb)


@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_becomes_grey_rgb(encoding):
    grey = rgb_image()[..., 0]
    out = conv.image_to_rgb(image_msg(grey, encoding))
    assert np.array_equal(out, np.dstack([grey] * 3))


@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_encodings_keep_the_high_byte_and_honour_endianness(bigendian):
    rgb = rgb_image()
    grey16 = rgb[..., 0].astype(np.uint16) * 256 + 3
    assert np.array_equal(conv.image_to_rgb(image_msg(grey16, "mono16", bigendian=bigendian)),
                          np.dstack([rgb[..., 0]] * 3))
    rgb16 = rgb.astype(np.uint16) * 257
    assert np.array_equal(conv.image_to_rgb(image_msg(rgb16, "rgb16", bigendian=bigendian)), rgb)
    assert np.array_equal(conv.image_to_rgb(image_msg(rgb16[..., ::-1], "bgr16", bigendian=bigendian)), rgb)


@needs_ros
@pytest.mark.ros
def test_row_padding_is_honoured_including_odd_steps():
    rgb = rgb_image()
    assert np.array_equal(conv.image_to_rgb(image_msg(rgb, "rgb8", step=64 * 3 + 13)), rgb)
    grey16 = rgb[..., 1].astype(np.uint16) * 257
    # an odd step: 16-bit rows that start at odd byte offsets
    out = conv.image_to_rgb(image_msg(grey16, "mono16", step=64 * 2 + 1))
    assert np.array_equal(out[..., 0], rgb[..., 1])


@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("encoding,code", [("yuv422", cv2.COLOR_RGB2YUV_UYVY), ("uyvy", cv2.COLOR_RGB2YUV_UYVY),
                                           ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2), ("yuyv", cv2.COLOR_RGB2YUV_YUY2)])
def test_yuv422_byte_orders(encoding, code):
    rgb = smooth_rgb()
    packed = cv2.cvtColor(rgb, code)  # HxWx2
    out = conv.image_to_rgb(image_msg(packed, encoding))
    assert np.abs(out.astype(int) - rgb).mean() < 4  # chroma is shared by pixel pairs


@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_put_colours_in_the_right_channels(pattern):
    rgb = smooth_rgb(64, 64)
    mosaic = np.zeros(rgb.shape[:2], np.uint8)
    channel = {"r": 0, "g": 1, "b": 2}
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # ROS names the first row first
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
    out = conv.image_to_rgb(image_msg(mosaic, f"bayer_{pattern}8"))
    inner = (slice(2, -2), slice(2, -2))
    assert np.abs(out[inner].astype(int) - rgb[inner]).mean() < 3


@needs_ros
@pytest.mark.ros
def test_malformed_images_are_rejected_with_the_reason():
    rgb = rgb_image()
    good = image_msg(rgb, "rgb8")
    cases = [
        (Image(height=48, width=64, encoding="foo", step=192, data=good.data), "unsupported image encoding 'foo'"),
        (image_msg(rgb[..., 0].astype(np.uint16), "16UC1"), "depth encoding"),
        (Image(height=48, width=64, encoding="rgb8", step=191, data=bytes(191 * 48)), "step 191 is smaller"),
        (Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(192 * 48 - 1)), "data has 9215 bytes"),
        (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty image"),
        (Image(height=48, width=0, encoding="rgb8", step=0, data=b""), "empty image"),
    ]
    for msg, reason in cases:
        with pytest.raises(conv.ImageError, match=reason.replace("(", r"\(")):
            conv.image_to_rgb(msg)


@needs_ros
@pytest.mark.ros
def test_compressed_images():
    rgb = smooth_rgb()
    for fmt, ext in (("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")):
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        out = conv.compressed_to_rgb(CompressedImage(format=fmt, data=buf.tobytes()))
        assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < (0.01 if ext == ".png" else 3)
    with pytest.raises(conv.ImageError, match="compressed depth"):
        conv.compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"123"))
    with pytest.raises(conv.ImageError, match="no data"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(conv.ImageError, match="neither PNG nor JPEG"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    ok, buf = cv2.imencode(".jpg", rgb)
    with pytest.raises(conv.ImageError, match="cannot decode"):  # a JPEG header, then garbage
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=buf.tobytes()[:200] + b"\x00" * 50))


# ---------------------------------------------------------------------------- depth, camera
@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_16uc1_millimetres(bigendian):
    mm = np.array([[0, 1000, 2500], [65535, 1, 0]], np.uint16)
    out = conv.depth_to_metres(image_msg(mm, "16UC1", bigendian=bigendian))
    assert out.dtype == np.float32
    expected = np.array([[np.nan, 1.0, 2.5], [65.535, 0.001, np.nan]], np.float32)
    assert np.allclose(out, expected, equal_nan=True)


@needs_ros
@pytest.mark.ros
def test_depth_32fc1_metres_and_errors():
    m = np.array([[1.5, np.nan, -1.0], [0.0, np.inf, 3.25]], np.float32)
    out = conv.depth_to_metres(image_msg(m, "32FC1"))
    assert np.allclose(out, [[1.5, np.nan, np.nan], [np.nan, np.nan, 3.25]], equal_nan=True)
    with pytest.raises(conv.ImageError, match="unsupported depth encoding 'rgb8'"):
        conv.depth_to_metres(image_msg(rgb_image(), "rgb8"))


@needs_ros
@pytest.mark.ros
def test_camera_info_intrinsics():
    info = CameraInfo(width=640, height=480, k=[500.0, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1])
    k = conv.intrinsics_from_camera_info(info)
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (500.0, 510.0, 319.5, 239.5, 640, 480)
    half = k.scaled_to(320, 240)
    assert (half.fx, half.fy, half.cx, half.cy) == (250.0, 255.0, 159.5, 119.5)
    with pytest.raises(conv.ImageError, match="fx > 0"):
        conv.intrinsics_from_camera_info(CameraInfo(width=640, height=480))  # an all-zero K


# ---------------------------------------------------------------------------- geometry (no ROS)
def test_back_projection_on_a_plane_and_holes():
    k = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    depth = np.full((240, 320), 2.0, np.float32)
    depth[100:103, 200:203] = np.nan  # a hole bigger than the 3x3 window
    depth[50, 50] = np.nan  # a one-pixel hole, bridged by the window
    pts = np.array([[160.0, 120.0], [310.0, 20.0], [201.0, 101.0], [50.0, 50.0], [-5.0, 10.0]])
    z = sample_depth(pts, depth, (320, 240))
    assert np.allclose(z, [2.0, 2.0, np.nan, 2.0, np.nan], equal_nan=True)
    xyz = back_project(pts, z, k, (320, 240))
    assert np.allclose(xyz[1], [(310 - 160) * 2 / 300, (20 - 120) * 2 / 300, 2.0])
    assert np.all(np.isnan(xyz[2])) and np.all(np.isnan(xyz[4]))
    # a depth map at half resolution, registered to the image
    z_half = sample_depth(pts[:2], np.full((120, 160), 1.0, np.float32), (320, 240))
    assert np.allclose(z_half, 1.0)


def test_mask_centroid_and_object_geometry():
    mask = np.zeros((240, 320), bool)
    mask[100:120, 40:80] = True
    assert mask_centroid(mask) == (59.5, 109.5)
    assert all(math.isnan(v) for v in mask_centroid(np.zeros((4, 4), bool)))
    depth = np.full((240, 320), 3.0, np.float32)
    depth[100:105, 40:80] = 1.0  # a minority of nearer pixels does not move the median
    assert mask_depth(mask, depth) == 3.0
    k = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    (cx, cy), pts3, c3 = object_geometry(np.array([[60.0, 110.0]]), mask, depth, k)
    assert (cx, cy) == (59.5, 109.5)
    assert np.allclose(pts3[0], [(60 - 160) * 3 / 300, (110 - 120) * 3 / 300, 3.0])
    assert np.allclose(c3, [(59.5 - 160) * 3 / 300, (109.5 - 120) * 3 / 300, 3.0])
    assert object_geometry(np.zeros((0, 2)), mask, None, None)[1:] == (None, None)
    with pytest.raises(ValueError, match="fx > 0"):
        Intrinsics(0.0, 1.0, 0.0, 0.0, 1, 1)


# ---------------------------------------------------------------------------- prompts
def _prompt(oid=1, pts=((10.0, 20.0),), labels=(1,), action=0, sec=5):
    from geometry_msgs.msg import Point

    m = PointPrompt()
    m.header.stamp.sec = sec
    m.header.stamp.nanosec = 7
    m.object_id, m.action = oid, action
    m.points = [Point(x=float(x), y=float(y), z=0.0) for x, y in pts]
    m.labels = list(labels)
    return m


@needs_ros
@pytest.mark.ros
def test_prompt_from_msg_valid_and_remove():
    p = conv.prompt_from_msg(_prompt(pts=((10.0, 20.0), (30.5, 40.0)), labels=(1, 0)))
    assert (p.object_id, p.action, p.stamp_ns) == (1, 0, 5_000_000_007)
    assert p.points.tolist() == [[10.0, 20.0], [30.5, 40.0]] and p.labels.tolist() == [1, 0]
    r = conv.prompt_from_msg(_prompt(oid=3, pts=(), labels=(), action=PointPrompt.ACTION_REMOVE))
    assert (r.object_id, r.action) == (3, 1)


@needs_ros
@pytest.mark.ros
@pytest.mark.parametrize("kwargs,reason", [
    (dict(pts=((float("nan"), 1.0),)), "NaN"),
    (dict(pts=((float("inf"), 1.0),)), "NaN or infinite"),
    (dict(pts=((1.0, 1.0), (2.0, 2.0)), labels=(1,)), "2 points but 1 labels"),
    (dict(pts=(), labels=()), "no points"),
    (dict(action=9), "unknown action 9"),
    (dict(oid=0), "object_id must be in 1..255, got 0"),
    (dict(oid=256), "got 256"),
    (dict(labels=(0,)), "at least one positive"),
    (dict(labels=(2,)), "labels must be 1"),
])
def test_malformed_prompts_are_rejected(kwargs, reason):
    with pytest.raises(conv.PromptError, match=reason):
        conv.prompt_from_msg(_prompt(**kwargs))


def _with_mask(m, mask, encoding="mono8", step=None):
    m.mask.height, m.mask.width = mask.shape
    m.mask.encoding = encoding
    m.mask.step = mask.shape[1] if step is None else step
    m.mask.data = mask.astype(np.uint8).tobytes()[: m.mask.step * mask.shape[0]]
    return m


@needs_ros
@pytest.mark.ros
def test_mask_prompts():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:6] = True
    p = conv.prompt_from_msg(_with_mask(_prompt(pts=(), labels=()), mask * 255))
    assert p.points.shape == (0, 2) and p.mask is not None
    np.testing.assert_array_equal(p.mask, mask)
    with pytest.raises(conv.PromptError, match="points or a mask, not both"):
        conv.prompt_from_msg(_with_mask(_prompt(), mask))
    with pytest.raises(conv.PromptError, match="the mask is empty"):
        conv.prompt_from_msg(_with_mask(_prompt(pts=(), labels=()), mask & False))
    with pytest.raises(conv.PromptError, match="must be mono8"):
        conv.prompt_from_msg(_with_mask(_prompt(pts=(), labels=()), mask, encoding="rgb8"))
    with pytest.raises(conv.PromptError, match="unusable mask"):
        conv.prompt_from_msg(_with_mask(_prompt(pts=(), labels=()), mask, step=4))


# ---------------------------------------------------------------------------- outputs
@needs_ros
@pytest.mark.ros
def test_output_images_round_trip_and_use_bytes():
    from sampt_ros.ros.client import make_header

    rgb = rgb_image(480, 640)
    header = make_header(1_500_000_000, "cam")
    times = []
    for _ in range(5):
        t = time.perf_counter()
        msg = conv.rgb_to_image_msg(rgb, header)
        times.append(time.perf_counter() - t)
    # ndarray assignment costs ~84 ms for this size; bytes well under 10 ms even on a busy machine
    assert sorted(times)[2] < 0.02, times
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.header.frame_id) == ("rgb8", 640, 480, 1920, "cam")
    assert np.array_equal(conv.image_to_rgb(msg), rgb)
    labels = np.zeros((480, 640), np.uint16)
    labels[10:20, 30:40] = 7
    m = conv.label_image_to_msg(labels, header)
    assert m.encoding == "mono8" and np.frombuffer(m.data, np.uint8).reshape(480, 640)[15, 35] == 7
    with pytest.raises(ValueError, match="above 255"):
        conv.label_image_to_msg(labels + 300, header)


def object_result(cls, oid, mask, points, labels, visible, score, state, visibility=None):
    """An ObjectResult with or without the ``visibility`` field (it carries the tracker's score)."""
    import dataclasses

    kwargs = dict(object_id=oid, mask=mask, points=np.array(points, float), labels=np.array(labels),
                  visible=np.array(visible, bool), score=score, state=state)
    if "visibility" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["visibility"] = (np.asarray(visible, np.float32) if visibility is None
                                else np.asarray(visibility, np.float32))
    return cls(**kwargs)


@needs_ros
@pytest.mark.ros
def test_tracked_objects_and_markers_from_a_frame_result():
    from sampt_ros.core.types import FrameResult, ObjectResult, ObjectState
    from sampt_ros.ros.client import make_header

    mask1 = np.zeros((240, 320), bool)
    mask1[100:120, 40:80] = True
    obj1 = object_result(ObjectResult, 1, mask1, [[50.0, 110.0], [70.0, 105.0], [5.0, 5.0]], [1, 1, 0],
                         [True, False, True], 0.9, ObjectState.TRACKING)
    obj3 = object_result(ObjectResult, 3, np.zeros((240, 320), bool), [[200.0, 100.0]], [1], [False], 0.0,
                         ObjectState.OCCLUDED)
    result = FrameResult(frame_index=12, objects={1: obj1, 3: obj3})
    header = make_header(2_000_000_000, "cam")
    lab = conv.label_image(result, (240, 320))
    assert lab.dtype == np.uint8 and lab[110, 50] == 1 and lab.sum() == mask1.sum()

    msg = conv.tracked_objects_msg(result, header)
    assert msg.frame_index == 12 and msg.header.frame_id == "cam"
    o1, o3 = msg.objects
    assert (o1.object_id, o1.state, round(o1.score, 3)) == (1, 0, 0.9)
    assert [(p.x, p.y) for p in o1.points] == [(50.0, 110.0), (70.0, 105.0), (5.0, 5.0)]
    assert list(o1.labels) == [1, 1, 0] and list(o1.visible) == [True, False, True]
    assert list(o1.visibility) == [1.0, 0.0, 1.0]
    assert (o1.centroid.x, o1.centroid.y) == (59.5, 109.5) and not o1.has_3d
    assert (o3.state, math.isnan(o3.centroid.x)) == (1, True)

    depth = np.full((240, 320), 2.0, np.float32)
    k = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    msg3 = conv.tracked_objects_msg(result, header, depth, k)
    o1 = msg3.objects[0]
    assert o1.has_3d and len(o1.points_3d) == 3
    assert np.allclose([o1.points_3d[0].x, o1.points_3d[0].y, o1.points_3d[0].z], [(50 - 160) * 2 / 300, -0.0666667, 2.0])
    markers = conv.markers_msg(msg3, header)
    from visualization_msgs.msg import Marker

    assert markers.markers[0].action == Marker.DELETEALL
    kinds = {(m.ns, m.id) for m in markers.markers[1:]}
    assert kinds == {("points", 1), ("centroid", 1), ("label", 1), ("points", 3)}  # 3 has no mask: no centroid
    assert all(m.header.frame_id == "cam" for m in markers.markers)


# ---------------------------------------------------------------------------- approximate time
def test_approx_time_matcher_pairs_within_slop_in_order():
    out = []
    m = ApproxTimeMatcher(3, 5, 0.010, stamp_of=lambda x: x[1], callback=lambda *g: out.append(tuple(x[1] for x in g)))
    ms = 1_000_000
    m.add(0, ("img", 100 * ms))
    m.add(1, ("depth", 104 * ms))
    assert out == []  # camera_info still missing
    m.add(2, ("info", 97 * ms))
    assert out == [(100 * ms, 104 * ms, 97 * ms)]
    # an image whose partners are too far off is dropped once later partners prove it
    m.add(0, ("img", 200 * ms))
    m.add(1, ("depth", 230 * ms))
    m.add(2, ("info", 231 * ms))
    assert len(out) == 1
    m.add(0, ("img", 232 * ms))
    assert out[-1] == (232 * ms, 230 * ms, 231 * ms)
    # an image older than one already emitted is ignored
    m.add(0, ("img", 150 * ms))
    m.add(1, ("depth", 150 * ms))
    m.add(2, ("info", 150 * ms))
    assert len(out) == 2


def test_approx_time_matcher_is_bounded_and_validates():
    out = []
    m = ApproxTimeMatcher(2, 3, 0.0, stamp_of=lambda x: x, callback=lambda *g: out.append(g))
    for s in range(10):
        m.add(0, s)  # no partner ever: only the newest 3 are kept
    assert len(m._queues[0]) == 3
    m.add(1, 9)
    assert out == [(9, 9)]
    with pytest.raises(ValueError, match="n_inputs"):
        ApproxTimeMatcher(1, 3, 0.1, stamp_of=int, callback=print)
    with pytest.raises(ValueError, match="slop"):
        ApproxTimeMatcher(2, 3, -1.0, stamp_of=int, callback=print)
