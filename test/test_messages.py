"""The generated sampt_ros interfaces (msg/, srv/): fields, constants, CDR round trips, and
agreement with rosbags, which registers the same .msg text (bags written by sampt_ros.tools.bags
must be readable by ROS 2 and the other way round).

Needs rclpy and the generated messages: ``scripts/build_msgs.sh .venv`` (or a colcon build).
"""

import math
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MESSAGE_NAMES = ("PointPrompt", "TrackedObject", "TrackedObjects")

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (the ros-jazzy-rclpy wheels)")
try:
    from rclpy.serialization import deserialize_message, serialize_message
    from geometry_msgs.msg import Point
    from sampt_ros.msg import PointPrompt, TrackedObject, TrackedObjects
    from sampt_ros.srv import RemoveObject
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"the generated sampt_ros messages are not importable ({exc}); build them with "
                "scripts/build_msgs.sh .venv", allow_module_level=True)

pytestmark = pytest.mark.ros


def round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_fields_and_types_match_the_contract():
    assert PointPrompt.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "object_id": "uint16",
        "action": "uint8",
        "points": "sequence<geometry_msgs/Point>",
        "labels": "sequence<int8>",
        "mask": "sensor_msgs/Image",
    }
    assert TrackedObject.get_fields_and_field_types() == {
        "object_id": "uint16",
        "state": "uint8",
        "score": "float",
        "points": "sequence<geometry_msgs/Point>",
        "labels": "sequence<int8>",
        "visible": "sequence<boolean>",
        "visibility": "sequence<float>",
        "centroid": "geometry_msgs/Point",
        "has_3d": "boolean",
        "points_3d": "sequence<geometry_msgs/Point>",
        "centroid_3d": "geometry_msgs/Point",
    }
    assert TrackedObjects.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "frame_index": "uint32",
        "objects": "sequence<sampt_ros/TrackedObject>",
    }
    assert RemoveObject.Request.get_fields_and_field_types() == {"object_id": "uint16"}
    assert RemoveObject.Response.get_fields_and_field_types() == {
        "success": "boolean", "message": "string"}


def test_constants():
    assert (PointPrompt.ACTION_SET, PointPrompt.ACTION_REMOVE) == (0, 1)
    assert (TrackedObject.STATE_TRACKING, TrackedObject.STATE_OCCLUDED,
            TrackedObject.STATE_LOST) == (0, 1, 2)
    # A default message is an add/replace of a tracking object.
    assert PointPrompt().action == PointPrompt.ACTION_SET
    assert TrackedObject().state == TrackedObject.STATE_TRACKING


def test_point_prompt_round_trip():
    msg = PointPrompt(object_id=7, action=PointPrompt.ACTION_SET, labels=[1, 1, 0])
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.header.frame_id = "camera_color_optical_frame"
    msg.points = [Point(x=10.5, y=20.25), Point(x=639.0, y=0.0), Point(x=1.0, y=479.0)]
    back = round_trip(msg)
    assert back == msg
    assert [(p.x, p.y) for p in back.points] == [(10.5, 20.25), (639.0, 0.0), (1.0, 479.0)]
    assert list(back.labels) == [1, 1, 0]


def test_tracked_objects_round_trip_keeps_nan_and_nesting():
    nan = float("nan")
    lost = TrackedObject(object_id=2, state=TrackedObject.STATE_LOST, score=0.0,
                         centroid=Point(x=nan, y=nan, z=0.0))
    tracking = TrackedObject(
        object_id=1, state=TrackedObject.STATE_TRACKING, score=0.875,
        points=[Point(x=1.0, y=2.0), Point(x=3.0, y=4.0)], labels=[1, 0],
        visible=[True, False], visibility=[0.95, 0.25], centroid=Point(x=2.0, y=3.0),
        has_3d=True, points_3d=[Point(x=0.1, y=0.2, z=1.5), Point(x=nan, y=nan, z=nan)],
        centroid_3d=Point(x=0.1, y=0.2, z=1.5))
    msg = TrackedObjects(frame_index=4_000_000_000, objects=[tracking, lost])
    msg.header.frame_id = "camera"
    back = round_trip(msg)
    assert back.frame_index == 4_000_000_000 and back.header.frame_id == "camera"
    assert [o.object_id for o in back.objects] == [1, 2]
    first = back.objects[0]
    for field in ("object_id", "state", "score", "points", "labels", "centroid", "has_3d",
                  "centroid_3d"):
        assert getattr(first, field) == getattr(tracking, field), field
    assert list(first.visible) == [True, False]
    assert list(first.visibility) == pytest.approx([0.95, 0.25], abs=1e-6)  # float32
    assert (first.points_3d[0].x, first.points_3d[0].z) == (0.1, 1.5)
    unknown = first.points_3d[1]
    assert math.isnan(unknown.x) and math.isnan(unknown.y) and math.isnan(unknown.z)
    second = back.objects[1]
    assert second.state == TrackedObject.STATE_LOST
    assert math.isnan(second.centroid.x) and math.isnan(second.centroid.y)


def test_remove_object_service_round_trip():
    request = RemoveObject.Request(object_id=65535)
    assert round_trip(request) == request
    response = RemoveObject.Response(success=False, message="no object 3")
    assert round_trip(response) == response


def test_field_ranges_follow_the_contract():
    # Jazzy checks field values only with check_fields=True (or ROS_PYTHON_CHECK_FIELDS=1);
    # otherwise an out-of-range integer is wrapped silently when serialized, so the node and
    # the tools validate ids themselves.
    with pytest.raises(AssertionError):
        PointPrompt(check_fields=True, object_id=65536)
    PointPrompt(check_fields=True, object_id=65535)
    with pytest.raises(AssertionError):
        TrackedObjects(check_fields=True, frame_index=-1)
    with pytest.raises((AssertionError, OverflowError)):
        PointPrompt(check_fields=True, labels=[200])  # int8


def _rosbags_typestore():
    typesys = pytest.importorskip("rosbags.typesys", reason="needs rosbags")
    typestore = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    types = {}
    for name in MESSAGE_NAMES:
        text = (REPO / "msg" / f"{name}.msg").read_text(encoding="utf-8")
        types.update(typesys.get_types_from_msg(text, f"sampt_ros/msg/{name}"))
    typestore.register(types)
    return typestore


def test_rosbags_type_hashes_equal_rosidl():
    """rosbags' RIHS01 hash of the .msg text equals the one the rosidl-built type advertises."""
    typestore = _rosbags_typestore()
    context = rclpy.Context()
    # Own domain and localhost only: this test needs no peer, it reads its own publishers' info.
    rclpy.init(context=context, domain_id=int(os.environ.get("SAMPT_TEST_DOMAIN_ID", "117")))
    try:
        node = rclpy.create_node("sampt_hash_probe", context=context)
        try:
            for name, msg_type in zip(MESSAGE_NAMES, (PointPrompt, TrackedObject, TrackedObjects)):
                topic = f"/sampt_hash_probe/{name.lower()}"
                node.create_publisher(msg_type, topic, 1)
                infos = node.get_publishers_info_by_topic(topic)
                assert len(infos) == 1 and infos[0].topic_type == f"sampt_ros/msg/{name}"
                assert str(infos[0].topic_type_hash) == typestore.hash_rihs01(
                    f"sampt_ros/msg/{name}"), (
                    f"{name}: the built message differs from msg/{name}.msg; rebuild "
                    "(scripts/build_msgs.sh .venv)")
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_rosbags_and_rclpy_cdr_interoperate():
    typestore = _rosbags_typestore()
    msg = TrackedObjects(frame_index=9)
    msg.header.stamp.sec, msg.header.frame_id = 3, "camera"
    msg.objects = [TrackedObject(object_id=5, state=TrackedObject.STATE_OCCLUDED, score=0.5,
                                 points=[Point(x=1.5, y=2.5)], labels=[1], visible=[False],
                                 visibility=[0.125])]
    raw = serialize_message(msg)
    decoded = typestore.deserialize_cdr(raw, "sampt_ros/msg/TrackedObjects")
    assert decoded.frame_index == 9 and decoded.header.frame_id == "camera"
    obj = decoded.objects[0]
    assert (obj.object_id, obj.state, obj.score) == (5, 1, 0.5)
    assert (obj.points[0].x, obj.points[0].y) == (1.5, 2.5)
    assert list(obj.labels) == [1] and list(obj.visible) == [False]
    # rosbags' CDR, as a bag stores it, reads back in rclpy unchanged.
    raw_rosbags = typestore.serialize_cdr(decoded, "sampt_ros/msg/TrackedObjects")
    assert deserialize_message(bytes(raw_rosbags), TrackedObjects) == msg

    prompt = PointPrompt(object_id=3, action=PointPrompt.ACTION_REMOVE)
    prompt_back = typestore.deserialize_cdr(serialize_message(prompt), "sampt_ros/msg/PointPrompt")
    assert (prompt_back.object_id, prompt_back.action) == (3, PointPrompt.ACTION_REMOVE)
    assert prompt_back.ACTION_REMOVE == 1 and prompt_back.ACTION_SET == 0
