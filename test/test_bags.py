"""rosbag2 conversions: stamps, encodings and custom messages survive a round trip (sqlite3 and mcap)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sampt_ros.tools import bags
from sampt_ros.tools.synthetic import SyntheticScene, SyntheticSpec, write_davis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store():
    return bags.build_typestore(REPO / "msg")


@pytest.fixture(scope="module")
def small_davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    write_davis(root, SyntheticSpec(width=320, height=240, n_frames=10, seed=5, name="syn"))
    return root


def test_custom_types_registered_from_msg_text(store):
    for name in ("PointPrompt", "TrackedObject", "TrackedObjects"):
        assert f"sampt_ros/msg/{name}" in store.types
    p = store.types["sampt_ros/msg/PointPrompt"]
    assert (p.ACTION_SET, p.ACTION_REMOVE) == (0, 1)
    assert store.hash_rihs01("sampt_ros/msg/TrackedObjects").startswith("RIHS01_")
    with pytest.raises(FileNotFoundError):
        bags.build_typestore(REPO / "test")


def _installed_type_descriptions():
    """The rosidl-generated ``share/sampt_ros/msg/*.json`` (type descriptions with hashes), if built."""
    import sys

    candidates = [Path(sys.prefix) / "share" / "sampt_ros" / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("sampt_ros")) / "msg")
    except Exception:  # noqa: BLE001 - not an ament install
        pass
    for c in candidates:
        if (c / "PointPrompt.json").is_file():
            return c
    pytest.skip("generated sampt_ros messages not installed (run scripts/build_msgs.sh)")


def test_type_hashes_match_rosidl(store):
    """rosbags' hash of our .msg text equals rosidl's, so bags and live topics agree on the types."""
    folder = _installed_type_descriptions()
    for name in ("PointPrompt", "TrackedObject", "TrackedObjects"):
        data = json.loads((folder / f"{name}.json").read_text())
        hashes = {h["type_name"]: h["hash_string"] for h in data["type_hashes"]}
        assert store.hash_rihs01(f"sampt_ros/msg/{name}") == hashes[f"sampt_ros/msg/{name}"], name


def test_custom_cdr_is_what_rclpy_deserializes(store):
    """A PointPrompt / TrackedObjects written by rosbags is read by the rosidl-generated classes."""
    ser = pytest.importorskip("rclpy.serialization")
    try:
        from sampt_ros.msg import PointPrompt, TrackedObjects
    except ImportError:
        pytest.skip("generated sampt_ros messages not installed (run scripts/build_msgs.sh)")
    raw = bytes(store.serialize_cdr(bags.prompt_to_msg(store, 5, [[1.5, 2.5], [3, 4]], [1, 0], 7_000_000_001),
                                    bags.PROMPT_TYPE))
    msg = ser.deserialize_message(raw, PointPrompt)
    assert msg.object_id == 5 and list(msg.labels) == [1, 0] and msg.points[0].x == 1.5
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 1)
    # (byte equality is not expected: CDR alignment padding is unspecified)
    again = store.deserialize_cdr(ser.serialize_message(msg), bags.PROMPT_TYPE)
    assert bags.prompt_from_msg(again)[0] == 5 and bags.prompt_from_msg(again)[4] == 7_000_000_001
    raw = bytes(store.serialize_cdr(_tracked(store, 9), bags.TRACKED_TYPE))
    tracked = ser.deserialize_message(raw, TrackedObjects)
    assert tracked.frame_index == 4 and list(tracked.objects[0].visible) == [True, False, True]
    back = store.deserialize_cdr(ser.serialize_message(tracked), bags.TRACKED_TYPE)
    assert back.objects[0].object_id == 7


@pytest.mark.parametrize(
    "array,encoding",
    [
        (np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8), "rgb8"),
        (np.random.default_rng(1).integers(0, 256, (7, 9), dtype=np.uint8), "mono8"),
        (np.random.default_rng(2).integers(0, 65536, (5, 4), dtype=np.uint16), "mono16"),
        (np.random.default_rng(3).random((5, 4)).astype(np.float32), "32FC1"),
    ],
)
def test_image_round_trip(store, array, encoding):
    msg = bags.image_to_msg(store, array, 1_234_567_890_123_456_789, "cam")
    assert msg.encoding == encoding
    assert msg.step == array.shape[1] * array.dtype.itemsize * (3 if array.ndim == 3 else 1)
    raw = store.serialize_cdr(msg, bags.IMAGE_TYPE)
    back = store.deserialize_cdr(raw, bags.IMAGE_TYPE)
    assert bags.stamp_to_ns(back.header.stamp) == 1_234_567_890_123_456_789
    assert back.header.frame_id == "cam"
    out = bags.image_from_msg(back)
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_image_decode_handles_padding_bgr_and_big_endian(store):
    rgb = np.random.default_rng(4).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    msg = bags.image_to_msg(store, rgb[..., ::-1].copy(), 0, encoding="bgr8")
    np.testing.assert_array_equal(bags.rgb_from_msg(msg), rgb)
    # rows padded to 20 bytes
    padded = np.zeros((3, 20), np.uint8)
    padded[:, :15] = rgb.reshape(3, 15)
    msg.encoding, msg.step, msg.data = "rgb8", 20, padded.reshape(-1)
    np.testing.assert_array_equal(bags.rgb_from_msg(msg), rgb)
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    big = bags.image_to_msg(store, depth, 0)
    big.is_bigendian = 1
    big.data = np.frombuffer(depth.astype(">u2").tobytes(), np.uint8)
    np.testing.assert_array_equal(bags.image_from_msg(big), depth)
    with pytest.raises(ValueError, match="data has 10 bytes"):
        msg.data = msg.data[:10]
        bags.image_from_msg(msg)
    with pytest.raises(ValueError, match="unsupported"):
        bags.image_to_msg(store, rgb, 0, encoding="yuv422")
    with pytest.raises(ValueError, match="needs a uint8"):
        bags.image_to_msg(store, depth, 0, encoding="rgb8")


def test_tools_decode_images_exactly_as_the_node(store):
    """One codec: 8UC3 is BGR (cv_bridge's reading) in the tools as in the node; compressed
    frames are decoded by the same function, with the header-size check."""
    from sampt_ros.ros import codec

    rgb = np.random.default_rng(5).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    msg = bags.image_to_msg(store, rgb[..., ::-1].copy(), 0, encoding="8UC3")
    np.testing.assert_array_equal(bags.rgb_from_msg(msg), rgb)
    np.testing.assert_array_equal(codec.image_to_rgb(msg), rgb)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cmsg = store.types["sensor_msgs/msg/CompressedImage"](header=bags._header(store, 5, "cam"), format="png",
                                                          data=np.frombuffer(png.tobytes(), np.uint8))
    np.testing.assert_array_equal(bags.rgb_from_msg(cmsg), rgb)
    seq = bags.BagSequence(images=[(5, 5, "sensor_msgs/msg/CompressedImage",
                                    store.serialize_cdr(cmsg, "sensor_msgs/msg/CompressedImage"))])
    np.testing.assert_array_equal(seq.image(0, store), rgb)


def test_prompt_message_and_point_parsing(store):
    pts, lbl = bags.parse_points("10,20,1; 30.5,40 ;5,6,0")
    np.testing.assert_array_equal(pts, [[10, 20], [30.5, 40], [5, 6]])
    np.testing.assert_array_equal(lbl, [1, 1, 0])
    msg = bags.prompt_to_msg(store, 3, pts, lbl, 42, "cam")
    back = store.deserialize_cdr(store.serialize_cdr(msg, bags.PROMPT_TYPE), bags.PROMPT_TYPE)
    oid, action, p2, l2, stamp = bags.prompt_from_msg(back)
    assert (oid, action, stamp) == (3, 0, 42)
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(l2, lbl)
    for bad in ("", "1,2,3", "1;2", "a,b", "1,2,0"):
        with pytest.raises(ValueError):
            bags.parse_points(bad)
    with pytest.raises(ValueError):
        bags.prompt_to_msg(store, 0, pts, lbl, 0)
    with pytest.raises(ValueError):
        bags.prompt_to_msg(store, 1, pts, lbl[:2], 0)


def _tracked(store, stamp_ns, n=3):
    pt = store.types["geometry_msgs/msg/Point"]
    obj = store.types["sampt_ros/msg/TrackedObject"](
        object_id=7, state=1, score=0.5,
        points=[pt(x=float(i), y=float(2 * i), z=0.0) for i in range(n)],
        labels=np.array([1] * (n - 1) + [0], np.int8), visible=np.array([True, False, True][:n]),
        visibility=np.linspace(0, 1, n).astype(np.float32), centroid=pt(x=1.5, y=2.5, z=0.0), has_3d=False,
        points_3d=[], centroid_3d=pt(x=float("nan"), y=0.0, z=0.0),
    )
    return store.types[bags.TRACKED_TYPE](
        header=bags._header(store, stamp_ns, "camera"), frame_index=4, objects=[obj])


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_round_trip(tmp_path, store, storage):
    path = tmp_path / f"t_{storage}"
    stamps = bags.frame_stamps_ns(5, 30.0, 100.0)
    assert np.diff(stamps).tolist() == [33_333_333, 33_333_334, 33_333_333, 33_333_333] or \
        all(abs(d - 33_333_333) <= 1 for d in np.diff(stamps))
    frames = [np.full((6, 8, 3), i * 10, np.uint8) for i in range(5)]
    with bags.BagWriter(path, storage, store=store) as bag:
        bag.set_metadata("k", {"a": 1})
        bag.write(bags.PROMPT_TOPIC, bags.prompt_to_msg(store, 1, [[1, 2]], [1], stamps[0]), stamps[0])
        for s, f in zip(stamps, frames):
            bag.write(bags.IMAGE_TOPIC, bags.image_to_msg(store, f, s), s)
            bag.write("/sampt/tracked_objects", _tracked(store, s), s + 5)
    msgs = list(bags.read_raw(path))
    assert len(msgs) == 11
    assert [m.log_ns for m in msgs] == sorted(m.log_ns for m in msgs)
    tracked = [store.deserialize_cdr(m.data, m.msgtype) for m in msgs if m.topic == "/sampt/tracked_objects"]
    assert [bags.stamp_to_ns(t.header.stamp) for t in tracked] == stamps
    t0 = tracked[0].objects[0]
    assert (t0.object_id, t0.state, t0.score) == (7, 1, 0.5)
    np.testing.assert_array_equal(t0.visible, [True, False, True])
    np.testing.assert_array_equal(t0.labels, [1, 1, 0])
    assert np.isnan(t0.centroid_3d.x) and t0.centroid.y == 2.5
    seq = bags.load_sequence(path, store=store)
    assert [s for s, *_ in seq.images] == stamps
    assert len(seq.prompts) == 1 and seq.prompts[0][0] == stamps[0]
    for i in range(5):
        np.testing.assert_array_equal(seq.image(i, store), frames[i])
    assert json.loads(bags.bag_metadata(path)["k"]) == {"a": 1}
    facts, topics = bags.summarize(path)
    assert facts["storage"] == storage and facts["messages"] == 11
    by = {t.topic: t for t in topics}
    assert by[bags.IMAGE_TOPIC].count == 5 and abs(by[bags.IMAGE_TOPIC].rate_hz - 30.0) < 1e-3
    with pytest.raises(FileExistsError):
        bags.BagWriter(path, storage, store=store)


def test_aborted_bag_is_removed(tmp_path, store):
    path = tmp_path / "broken"
    with pytest.raises(RuntimeError):
        with bags.BagWriter(path, store=store) as bag:
            bag.write(bags.IMAGE_TOPIC, bags.image_to_msg(store, np.zeros((4, 4, 3), np.uint8), 1), 1)
            raise RuntimeError("boom")
    assert not path.exists()


def test_raw_cdr_is_what_rclpy_deserializes(store):
    """The bag's CDR bytes are the wire format: rclpy reads them as its own message."""
    ser = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import Image

    rgb = np.random.default_rng(5).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    raw = bytes(store.serialize_cdr(bags.image_to_msg(store, rgb, 1_500_000_000_250_000_000, "cam"), bags.IMAGE_TYPE))
    msg = ser.deserialize_message(raw, Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_500_000_000, 250_000_000)
    assert msg.encoding == "rgb8" and msg.header.frame_id == "cam"
    np.testing.assert_array_equal(bags.rgb_from_msg(msg), rgb)  # rclpy message decodes too
    again = store.deserialize_cdr(ser.serialize_message(msg), bags.IMAGE_TYPE)
    np.testing.assert_array_equal(bags.rgb_from_msg(again), rgb)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_from_davis(tmp_path, small_davis, store, storage):
    out = tmp_path / "syn.bag"
    rc = bags.main(["from-davis", str(small_davis), "syn", str(out), "--rate", "15", "--format", storage,
                    "--config", "cpu", "--start-time", "10"])
    assert rc == 0
    seq = bags.load_sequence(out, store=store)
    stamps = [s for s, *_ in seq.images]
    assert stamps == bags.frame_stamps_ns(10, 15.0, 10.0)
    assert [log for _, log, *_ in seq.images] == stamps
    assert sorted(seq.gt) == stamps
    # frames are the JPEGs as sampt-eval decodes them; GT maps are the annotations as label maps
    frames, anns = bags.davis_frames(small_davis, "syn")
    for i in (0, 9):
        np.testing.assert_array_equal(seq.image(i, store), bags.read_rgb(frames[i]))
        np.testing.assert_array_equal(seq.gt_label_map(stamps[i], store), bags.read_label_map(anns[i]))
        assert set(np.unique(seq.gt_label_map(stamps[i], store)).tolist()) == {0, 1}
    # the prompt carries the first-frame mask (the node samples it as sampt-eval does)
    (pstamp, plog, praw), = seq.prompts
    assert pstamp == plog == stamps[0]
    pmsg = store.deserialize_cdr(praw, bags.PROMPT_TYPE)
    oid, action, pts, lbl, _ = bags.prompt_from_msg(pmsg)
    assert (oid, action, len(pts), len(lbl)) == (1, 0, 0, 0)
    np.testing.assert_array_equal(bags.prompt_mask_from_msg(pmsg), bags.read_label_map(anns[0]) == 1)
    # --prompt points: the sampler's output for the first-frame mask with the cpu profile's sampling
    pts_bag = tmp_path / "syn_points.bag"
    assert bags.main(["from-davis", str(small_davis), "syn", str(pts_bag), "--prompt", "points",
                      "--config", "cpu", "--format", storage]) == 0
    (_, _, praw), = bags.load_sequence(pts_bag, store=store).prompts
    pmsg = store.deserialize_cdr(praw, bags.PROMPT_TYPE)
    oid, action, pts, lbl, _ = bags.prompt_from_msg(pmsg)
    assert bags.prompt_mask_from_msg(pmsg) is None
    sampling = bags.load_sampling_config(["cpu"])
    expected = bags.sample_prompts(bags.read_label_map(anns[0]), bags.read_rgb(frames[0]), sampling)
    assert (oid, action) == (1, 0)
    np.testing.assert_allclose(pts, expected[0][1])
    np.testing.assert_array_equal(lbl, expected[0][2])
    assert (lbl == 1).sum() == sampling.n_positive and (lbl == 0).sum() == sampling.n_negative
    meta = json.loads(bags.bag_metadata(out)["sampt_ros.source"])
    assert meta["sequence"] == "syn" and meta["frames"] == 10
    # existing output is refused unless --overwrite
    assert bags.main(["from-davis", str(small_davis), "syn", str(out)]) == 2
    assert bags.main(["from-davis", str(small_davis), "syn", str(out), "--overwrite"]) == 0
    assert bags.main(["from-davis", str(small_davis), "nope", str(tmp_path / "x")]) == 2


def test_from_images_with_points_and_mask(tmp_path, store):
    scene = SyntheticScene(SyntheticSpec(width=160, height=120, n_frames=4, seed=2))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (img, mask) in enumerate(scene):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if i == 0:
            cv2.imwrite(str(tmp_path / "mask.png"), mask.astype(np.uint8) * 255)
    out = tmp_path / "a.bag"
    assert bags.main(["from-images", str(folder), str(out), "--rate", "10", "--points", "80,60,1;5,5,0",
                      "--object-id", "4"]) == 0
    seq = bags.load_sequence(out, store=store)
    assert len(seq.images) == 4 and not seq.gt
    for i, (img, _) in enumerate(scene):
        np.testing.assert_array_equal(seq.image(i, store), img)  # PNG: lossless
    oid, _, pts, lbl, stamp = bags.prompt_from_msg(store.deserialize_cdr(seq.prompts[0][2], bags.PROMPT_TYPE))
    assert oid == 4 and stamp == seq.images[0][0]
    np.testing.assert_array_equal(pts, [[80, 60], [5, 5]])
    out2 = tmp_path / "b.bag"
    assert bags.main(["from-images", str(folder), str(out2), "--mask", str(tmp_path / "mask.png"),
                      "--object-id", "2", "--format", "mcap"]) == 0
    seq2 = bags.load_sequence(out2, store=store)
    pmsg = store.deserialize_cdr(seq2.prompts[0][2], bags.PROMPT_TYPE)
    oid, _, pts, lbl, _ = bags.prompt_from_msg(pmsg)
    assert oid == 2 and len(pts) == 0
    np.testing.assert_array_equal(bags.prompt_mask_from_msg(pmsg), scene.frame(0)[1])
    # bad prompts are clear errors, not tracebacks
    assert bags.main(["from-images", str(folder), str(tmp_path / "c.bag"), "--points", "900,10"]) == 2
    assert bags.main(["from-images", str(tmp_path / "none"), str(tmp_path / "d.bag")]) == 2


def test_from_video_and_info(tmp_path, store, capsys):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (160, 120))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write an MJPG avi here")
    scene = SyntheticScene(SyntheticSpec(width=160, height=120, n_frames=8, seed=3))
    for img, _ in scene:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "v.bag"
    assert bags.main(["from-video", str(video), str(out), "--max-frames", "6", "--resize", "80x60"]) == 0
    seq = bags.load_sequence(out, store=store)
    assert len(seq.images) == 6 and seq.image(0, store).shape == (60, 80, 3)
    stamps = [s for s, *_ in seq.images]
    assert all(abs(d - 1e9 / 12.0) <= 1 for d in np.diff(stamps))  # the file's 12 fps
    capsys.readouterr()
    assert bags.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "/camera/image_raw" in text and "sensor_msgs/msg/Image" in text and "12.00" in text
    assert bags.main(["info", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["topics"][0]["count"] == 6
    assert bags.main(["info", str(tmp_path)]) == 2


def test_add_prompt_copies_a_recorded_bag(tmp_path, store):
    """A bag as `ros2 bag record` makes it (images + a type this store does not know) gets a prompt."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    other = get_typestore(Stores.ROS2_JAZZY)
    other.register(get_types_from_msg("int32 value\n", "my_pkg/msg/Custom"))
    src = tmp_path / "rec"
    stamps = bags.frame_stamps_ns(4, 10.0, 50.0)
    frames = [np.full((24, 32, 3), 30 * i, np.uint8) for i in range(4)]
    w = Writer(src, version=9)
    w.open()
    cimg = w.add_connection("/cam/image", bags.IMAGE_TYPE, typestore=other)
    ccus = w.add_connection("/custom", "my_pkg/msg/Custom", typestore=other)
    for s, f in zip(stamps, frames):
        w.write(cimg, s + 7, bytes(other.serialize_cdr(bags.image_to_msg(other, f, s, "cam0"), bags.IMAGE_TYPE)))
        w.write(ccus, s + 8, bytes(other.serialize_cdr(other.types["my_pkg/msg/Custom"](value=5), "my_pkg/msg/Custom")))
    w.close()
    out = tmp_path / "prompted"
    assert bags.main(["add-prompt", str(src), str(out), "--image-topic", "/cam/image", "--frame", "2",
                      "--points", "10,12,1;1,1,0", "--object-id", "3"]) == 0
    msgs = list(bags.read_raw(out))
    assert len(msgs) == 9
    prompt_idx = [i for i, m in enumerate(msgs) if m.topic == bags.PROMPT_TOPIC]
    assert len(prompt_idx) == 1
    p = store.deserialize_cdr(msgs[prompt_idx[0]].data, bags.PROMPT_TYPE)
    oid, _, pts, lbl, stamp = bags.prompt_from_msg(p)
    assert (oid, stamp, p.header.frame_id) == (3, stamps[2], "cam0")
    assert msgs[prompt_idx[0] + 1].topic == "/cam/image"  # logged just before its frame
    seq = bags.load_sequence(out, image_topic="/cam/image", store=store)
    assert [s for s, *_ in seq.images] == stamps
    np.testing.assert_array_equal(seq.image(3, store), frames[3])
    custom = [m for m in msgs if m.topic == "/custom"]
    assert len(custom) == 4 and other.deserialize_cdr(custom[0].data, "my_pkg/msg/Custom").value == 5
    assert bags.main(["add-prompt", str(src), str(tmp_path / "x"), "--image-topic", "/nope", "--points", "1,1"]) == 2
    assert bags.main(["add-prompt", str(src), str(tmp_path / "y"), "--image-topic", "/cam/image",
                      "--frame", "9", "--points", "1,1"]) == 2
