"""The message codec at the boundary (no DDS): property-based tests (hypothesis) that any generated
message is either accepted and valid or rejected with a reason, never another exception; the
header-size readers; the size policy before decoding; agreement with rosbags-image; bounded logs.

Messages are duck-typed stand-ins (the codec reads fields only), so these run without rclpy; the
rclpy <-> rosbags agreement tests need the generated messages and skip without them.
"""

from __future__ import annotations

import math
import struct
import time
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sampt_ros.ros import codec
from sampt_ros.ros.codec import CodecError, ImageError, Limits, PromptError

LIMITS = Limits(max_image_pixels=64 * 64, max_image_bytes=64 * 64 * 8 + 4096, min_image_side=8,
                max_points_per_prompt=32)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(ns: int = 0):
    return NS(stamp=NS(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id="camera")


def image(h, w, enc, data, step, big=0):
    return NS(header=header(), height=h, width=w, encoding=enc, is_bigendian=big, step=step, data=data)


def compressed(data, fmt="png"):
    return NS(header=header(), format=fmt, data=data)


def png(arr) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def jpeg(arr, progressive=False) -> bytes:
    return cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


# ---------------------------------------------------------------------------- raw images
_ENC = st.sampled_from(list(codec.COLOUR_ENCODINGS) + ["16UC1", "32FC1", "", "foo", "nv12", "x" * 500])
_SIDE = st.one_of(st.integers(0, 40), st.sampled_from([64, 65, 1 << 16, (1 << 32) - 1]))


@st.composite
def raw_images(draw):
    enc = draw(_ENC)
    spec = codec.COLOUR_ENCODINGS.get(enc, (3, "u1", None))
    bpp = spec[0] * np.dtype(spec[1]).itemsize
    h, w = draw(_SIDE), draw(_SIDE)
    row = w * bpp
    step = draw(st.one_of(st.just(row), st.integers(0, row + 64), st.sampled_from([0, (1 << 32) - 1])))
    exact = step * h if step * h <= 70_000 else 0
    n = draw(st.one_of(st.just(exact), st.integers(0, 70_000)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return image(h, w, enc, data, step, draw(st.sampled_from([0, 1, 255])))


@FAST
@given(raw_images())
def test_any_raw_image_is_accepted_valid_or_rejected_with_a_reason(msg):
    try:
        out = codec.image_to_rgb(msg, LIMITS)
    except CodecError as exc:
        assert str(exc) and exc.reason and len(str(exc)) < 700
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape == (msg.height, msg.width, 3)
    assert out.flags.c_contiguous and out.flags.writeable
    assert 8 <= msg.width and 8 <= msg.height and msg.width * msg.height <= LIMITS.max_image_pixels


@pytest.mark.parametrize("enc", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_odd_width_yuv422_is_a_rejection_not_a_cv2_error(enc):
    # 5x4 crashed the node (cv2.error: sz.width % 2 == 0); now a rejection with the reason
    with pytest.raises(ImageError, match="width must be even") as info:
        codec.image_to_rgb(image(8, 9, enc, bytes(9 * 2 * 8), 18))
    assert info.value.reason == "layout"
    assert codec.image_to_rgb(image(8, 10, enc, bytes(10 * 2 * 8), 20)).shape == (8, 10, 3)


@pytest.mark.parametrize("w,h", [(1, 1), (7, 100), (100, 7), (4, 4)])
def test_frames_with_a_side_under_8_px_are_rejected(w, h):
    with pytest.raises(ImageError, match="too small") as info:
        codec.image_to_rgb(image(h, w, "rgb8", bytes(w * h * 3), w * 3))
    assert info.value.reason == "too_small"


def test_size_policy_comes_before_the_payload():
    # 100000 x 100000 rgb8 with 12 bytes of data: refused for its size, nothing allocated
    msg = image(100_000, 100_000, "rgb8", bytes(12), 300_000)
    with pytest.raises(ImageError, match="too large") as info:
        codec.image_to_rgb(msg)
    assert info.value.reason == "too_large"
    small = Limits(max_image_bytes=1000)
    with pytest.raises(ImageError, match="payload is 3072 bytes") as info:
        codec.image_to_rgb(image(32, 32, "rgb8", bytes(3072), 96), small)
    assert info.value.reason == "too_large"


def test_named_encodings_agree_with_rosbags_image_and_8uc3_is_bgr():
    """rosbags-image's conversions of the named encodings equal the codec's (unpadded images);
    8UC3 is where they part: rosbags passes it through (RGB), the codec reads it as cv_bridge
    does (BGR). 16-bit: rosbags scales by 255/65535, the codec keeps the high byte."""
    from rosbags.image import image_to_cvimage

    rng = np.random.default_rng(0)
    for enc, (ch, dt, _code) in codec.COLOUR_ENCODINGS.items():
        if enc in ("8UC1", "8UC3", "8UC4"):
            continue
        w = 16
        arr = rng.integers(0, 256 if dt == "u1" else 65536, (12, w, ch)).astype(dt)
        msg = image(12, w, enc, arr.tobytes(), w * ch * arr.itemsize)
        ours = codec.image_to_rgb(msg)
        theirs = image_to_cvimage(msg, "rgb8")
        tol = 1 if dt == "u2" else 0
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= tol, enc
    bgr = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    msg = image(8, 8, "8UC3", bgr.tobytes(), 24)
    np.testing.assert_array_equal(codec.image_to_rgb(msg), bgr[..., ::-1])  # cv_bridge: 8UC3 = BGR
    np.testing.assert_array_equal(image_to_cvimage(msg, "rgb8"), bgr)  # rosbags-image: unchanged


def test_padding_and_big_endian():
    rgb = np.random.default_rng(1).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    padded = np.zeros((9, 37), np.uint8)
    padded[:, :30] = rgb.reshape(9, 30)
    np.testing.assert_array_equal(codec.image_to_rgb(image(9, 10, "rgb8", padded.tobytes(), 37)), rgb)
    grey = (rgb[..., 0].astype(np.uint16) << 8) | 7
    out = codec.image_to_rgb(image(9, 10, "mono16", grey.astype(">u2").tobytes(), 20, big=1))
    np.testing.assert_array_equal(out[..., 0], rgb[..., 0])


# ---------------------------------------------------------------------------- compressed images
@pytest.mark.parametrize("w,h", [(8, 8), (33, 17), (640, 480), (854, 480), (1, 1)])
@pytest.mark.parametrize("kind", ["png", "jpeg", "jpeg-progressive", "png-grey", "png-16bit"])
def test_header_size_equals_the_decoded_size(kind, w, h):
    arr = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = {"png": lambda: png(arr), "jpeg": lambda: jpeg(arr), "jpeg-progressive": lambda: jpeg(arr, True),
            "png-grey": lambda: png(arr[..., 0]), "png-16bit": lambda: png(arr.astype(np.uint16) * 257)}[kind]()
    fmt, hw, hh = codec.compressed_image_size(data)
    assert (hw, hh) == (w, h) and fmt == kind.split("-")[0]
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (h, w)


def test_jpeg_with_large_app_segments_before_the_frame_header():
    arr = np.zeros((20, 30, 3), np.uint8)
    data = jpeg(arr)
    app = b"\xff\xe1" + struct.pack(">H", 65535) + bytes(65533)
    data = data[:2] + app * 3 + data[2:]
    assert codec.compressed_image_size(data) == ("jpeg", 30, 20)
    assert codec.compressed_to_rgb(compressed(data, "jpeg")).shape == (20, 30, 3)


def test_decompression_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    bomb = png(np.zeros((12000, 12000), np.uint8))  # about 140 KB
    assert len(bomb) < 200_000
    calls = []
    monkeypatch.setattr(codec.cv2, "imdecode", lambda *a: calls.append(a))
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="12000x12000") as info:
        codec.compressed_to_rgb(compressed(bomb))
    assert info.value.reason == "too_large" and not calls
    assert time.perf_counter() - t0 < 0.05


def test_other_formats_and_forged_headers_are_refused():
    small = np.zeros((16, 16, 3), np.uint8)
    for ext in (".bmp", ".tiff", ".webp", ".ppm"):
        data = cv2.imencode(ext, small)[1].tobytes()
        with pytest.raises(ImageError, match="neither PNG nor JPEG") as info:
            codec.compressed_to_rgb(compressed(data, "png"))
        assert info.value.reason == "format"
    good = png(small)
    forged = good[:16] + struct.pack(">II", 40, 40) + good[24:]  # header says 40x40, data 16x16
    with pytest.raises(ImageError, match="cannot decode|decoded to"):
        codec.compressed_to_rgb(compressed(forged))
    with pytest.raises(ImageError, match="too small"):
        codec.compressed_to_rgb(compressed(png(np.zeros((1, 1, 3), np.uint8))))
    with pytest.raises(ImageError, match="compressed depth"):
        codec.compressed_to_rgb(compressed(good, "16UC1; compressedDepth png"))


_VALID = [png(np.full((16, 24, 3), 7, np.uint8)), jpeg(np.full((16, 24, 3), 7, np.uint8))]


@st.composite
def compressed_payloads(draw):
    base = draw(st.sampled_from(_VALID + [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8"]))
    how = draw(st.sampled_from(["keep", "truncate", "flip", "random", "header"]))
    if how == "truncate":
        base = base[: draw(st.integers(0, len(base)))]
    elif how == "flip" and base:
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        base = bytes(data)
    elif how == "random":
        base = draw(st.binary(max_size=2000))
    elif how == "header":
        base = base[:8] + draw(st.binary(max_size=600))
    return base


@FAST
@given(compressed_payloads(), st.sampled_from(["png", "jpeg", "", "rgb8; jpeg compressed bgr8", "z" * 300]))
def test_any_compressed_image_is_accepted_valid_or_rejected_with_a_reason(data, fmt):
    try:
        out = codec.compressed_to_rgb(compressed(data, fmt), LIMITS)
    except CodecError as exc:
        assert str(exc) and exc.reason
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    kind, w, h = codec.compressed_image_size(data)
    assert out.shape[:2] == (h, w) and w >= 8 and h >= 8 and w * h <= LIMITS.max_image_pixels


# ---------------------------------------------------------------------------- prompts
_COORD = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 5.5]))


@st.composite
def prompts(draw):
    n = draw(st.integers(0, 40))
    pts = [NS(x=draw(_COORD), y=draw(_COORD), z=0.0) for _ in range(n)]
    n_labels = draw(st.sampled_from([n, n, max(0, n - 1), n + 1]))
    labels = [draw(st.integers(-128, 127)) if draw(st.booleans()) else draw(st.sampled_from([0, 1]))
              for _ in range(n_labels)]
    mh, mw = draw(st.sampled_from([(0, 0), (0, 0), (0, 0), (4, 6), (70, 70), (0, 5)]))
    menc = draw(st.sampled_from(["mono8", "8UC1", "rgb8", ""]))
    mstep = draw(st.sampled_from([mw, mw + 1, max(0, mw - 1)]))
    mdata = bytes(np.random.default_rng(n).integers(0, 2, mstep * mh, dtype=np.uint8)) if mh else b""
    mask = NS(height=mh, width=mw, encoding=menc, step=mstep, data=mdata, is_bigendian=0)
    return NS(header=header(draw(st.integers(0, 2 ** 62))), object_id=draw(st.integers(0, 65535)),
              action=draw(st.integers(0, 255)), points=pts, labels=labels, mask=mask)


@FAST
@given(prompts())
def test_any_prompt_is_accepted_valid_or_rejected_with_a_reason(msg):
    try:
        p = codec.prompt_from_msg(msg, LIMITS)
    except PromptError as exc:
        assert str(exc) and exc.reason and len(str(exc)) < 400
        return
    assert 1 <= p.object_id <= 255 and p.action in (0, 1)
    if p.action == 1:
        return
    if p.mask is not None:
        assert p.mask.dtype == bool and p.mask.any() and len(p.points) == 0
        assert p.mask.size <= LIMITS.max_image_pixels
        return
    assert 1 <= len(p.points) <= LIMITS.max_points_per_prompt and p.points.shape == (len(p.labels), 2)
    assert np.all(np.isfinite(p.points)) and set(p.labels.tolist()) <= {0, 1} and 1 in p.labels


def test_points_per_prompt_are_counted_before_conversion():
    pts = [NS(x=1.0, y=1.0, z=0.0)] * 100_000
    msg = NS(header=header(), object_id=2, action=0, points=pts, labels=[1] * 100_000,
             mask=NS(height=0, width=0, encoding="", step=0, data=b""))
    t0 = time.perf_counter()
    with pytest.raises(PromptError, match="100000 points/labels, more than node.max_points_per_prompt") as info:
        codec.prompt_from_msg(msg)
    assert info.value.reason == "too_many_points" and time.perf_counter() - t0 < 0.01


def test_prompt_masks_are_bounded_like_images():
    big = NS(height=5000, width=5000, encoding="mono8", step=5000, data=bytes(10))
    msg = NS(header=header(), object_id=2, action=0, points=[], labels=[], mask=big)
    with pytest.raises(PromptError, match="too large"):
        codec.prompt_from_msg(msg, LIMITS)


# ---------------------------------------------------------------------------- logging, stamps
def test_bounded_and_the_rejection_log():
    assert codec.bounded("a\nb   c") == "a b c"
    long = "x" * 1_660_000
    cut = codec.bounded(long)
    assert len(cut) <= codec.MAX_REASON_CHARS and cut.endswith("(1660000 chars)")
    log = codec.RejectionLog(per_second=3)
    lines = [log.add("image", "too_small", long, now=100.2) for _ in range(10)]
    assert sum(x is not None for x in lines) == 3 and all(len(x) < 260 for x in lines if x)
    nxt = log.add("image", "layout", "short", now=101.0)
    assert "7 more rejections not logged" in nxt
    assert log.counts == {"image": {"too_small": 10, "layout": 1}} and log.total("image") == 11


@given(st.integers(0, 2 ** 63 - 1))
def test_stamp_round_trip(ns):
    sec, nsec = codec.ns_to_sec_nanosec(ns)
    assert codec.stamp_to_ns(NS(sec=sec, nanosec=nsec)) == ns == codec.stamp_to_ns(header(ns))


# ---------------------------------------------------------------------------- rclpy <-> rosbags
def test_tracked_objects_decode_the_same_from_rclpy_and_rosbags():
    pytest.importorskip("rclpy")
    try:
        from sampt_ros.msg import TrackedObjects  # noqa: F401
    except ImportError:
        pytest.skip("generated sampt_ros messages not built")
    from rclpy.serialization import serialize_message

    from sampt_ros.core.types import FrameResult, ObjectResult, ObjectState
    from sampt_ros.ros import conversions as conv
    from sampt_ros.ros.client import make_header
    from sampt_ros.tools import bags

    import dataclasses

    mask = np.zeros((40, 50), bool)
    mask[10:20, 5:25] = True
    kw = dict(object_id=4, mask=mask, points=np.array([[6.0, 11.0], [20.5, 15.0]]), labels=np.array([1, 0]),
              visible=np.array([True, False]), score=0.75, state=ObjectState.TRACKING)
    if "visibility" in {f.name for f in dataclasses.fields(ObjectResult)}:
        kw["visibility"] = np.array([0.9, 0.2], np.float32)
    msg = conv.tracked_objects_msg(FrameResult(frame_index=3, objects={4: ObjectResult(**kw)}),
                                   make_header(7_000_000_123))
    store = bags.typestore()
    theirs = store.deserialize_cdr(serialize_message(msg), bags.TRACKED_TYPE)
    a, b = codec.tracked_objects_from_msg(msg), codec.tracked_objects_from_msg(theirs)
    assert a[:2] == b[:2] == (7_000_000_123, 3)
    (oa,), (ob,) = a[2], b[2]
    for f in ("points", "labels", "visible", "visibility"):
        np.testing.assert_array_equal(getattr(oa, f), getattr(ob, f))
    assert (oa.object_id, oa.state, oa.centroid) == (ob.object_id, ob.state, ob.centroid) == (4, 0, (14.5, 14.5))
    if "visibility" in kw:
        np.testing.assert_allclose(oa.visibility, [0.9, 0.2], rtol=1e-6)


def test_images_decode_the_same_from_rclpy_and_rosbags():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from sampt_ros.tools import bags

    bgr = np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    for enc in ("8UC3", "bgr8", "rgb8", "yuv422"):
        data = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY) if enc == "yuv422" else bgr
        msg = Image(height=10, width=12, encoding=enc, step=12 * data.shape[2], data=data.tobytes())
        theirs = bags.typestore().deserialize_cdr(serialize_message(msg), bags.IMAGE_TYPE)
        np.testing.assert_array_equal(codec.image_to_rgb(msg), codec.image_to_rgb(theirs))
        np.testing.assert_array_equal(codec.image_to_rgb(msg), bags.rgb_from_msg(theirs))


def test_the_tools_have_no_decoder_of_their_own():
    from pathlib import Path

    root = Path(codec.__file__).resolve().parents[1]
    for rel in ("tools/bags.py", "tools/replay.py", "ros/conversions.py", "ros/node.py"):
        assert "imdecode" not in (root / rel).read_text(), rel
