"""The node over real DDS publishes an object's honest state while it is hidden and when it comes back.

A synthetic object (the ``occluded`` scenario: it passes completely behind a wall for about 17
frames) is replayed in lockstep through the node, weight-free ``cpu`` profile with the colour
memory. ``tracked_objects`` must say TRACKING, then OCCLUDED, then LOST while it is hidden, then
TRACKING again for the same id once it is back, and the mask topic must hold it again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ros_context  # noqa: E402

DOMAIN_ID = 10 + (os.getpid() * 11 + 5) % 80
SEC = 1_000_000_000


@pytest.fixture(scope="module", name="ros_context")
def _ros_context():
    yield from ros_context(DOMAIN_ID)


def mask_prompt(object_id: int, mask: np.ndarray, stamp_ns: int):
    from sensor_msgs.msg import Image

    from sampt_ros.msg import PointPrompt
    from sampt_ros.ros.client import make_header

    msg = PointPrompt()
    msg.header = make_header(stamp_ns)
    msg.object_id = object_id
    msg.mask = Image(height=mask.shape[0], width=mask.shape[1], encoding="mono8", is_bigendian=0,
                     step=mask.shape[1], data=(mask.astype(np.uint8) * 255).tobytes())
    return msg


def test_the_node_reports_occluded_lost_and_tracking_again_with_the_same_id(ros_context, tmp_path: Path):
    from sampt_ros.ros.client import NodeClient, start_node_process, stop_process
    from sampt_ros.tools.synthetic import make_scene

    scene = make_scene("occluded", size=(320, 180))
    frames = [scene.frame(i) for i in range(len(scene))]
    stamps = [(i + 1) * SEC // 10 for i in range(len(frames))]
    namespace = f"/sampt_reacq_{os.getpid()}"
    log = tmp_path / "node.log"
    proc = start_node_process(namespace, {
        "profile": "cpu", "node.mode": "lockstep", "node.image_qos": "reliable", "node.diagnostics_period": 0.5,
        "reid.kind": "colour", "reid.lost_after": 5}, DOMAIN_ID, str(log))
    client = NodeClient(namespace, context=ros_context, image_qos="reliable")
    try:
        assert client.wait_for_node(timeout=40.0), log.read_text()
        client.publish_prompt_msg(mask_prompt(1, frames[0][1] == 1, stamps[0]), wait_acked=5.0)
        for (image, _), stamp in zip(frames, stamps):  # paced on the outputs, as sampt-replay does
            client.publish_frame(image, stamp)
            done = client.wait_until(lambda r: stamp in r.objects and stamp in r.masks, 20.0)
            assert done, f"frame {stamp} was not answered; node log:\n{log.read_text()[-3000:]}"
        received = client.received
        states, ids = [], set()
        for stamp in stamps:
            objects = received.objects[stamp].objects
            ids.update(int(o.object_id) for o in objects)
            states.append(int(objects[0].state))
        assert ids == {1}
        runs = [states[0]] + [s for prev, s in zip(states, states[1:]) if s != prev]
        tracking, occluded, lost = 0, 1, 2
        # the published story: tracked, hidden (occluded, then lost), found again - never a swap of id
        assert runs[0] == tracking and runs[-1] == tracking
        assert occluded in runs and lost in runs
        assert runs.index(occluded) < runs.index(lost) < len(runs) - 1
        hidden = [i for i, (_, labels) in enumerate(frames) if not (labels == 1).any()]
        assert hidden, "the scenario hides the object"
        for i in hidden[2:]:
            assert states[i] != tracking, f"frame {i}: the hidden object is reported TRACKING"
        last_mask = np.frombuffer(received.masks[stamps[-1]].data, np.uint8).reshape(180, 320)
        truth = frames[-1][1] == 1
        iou = np.logical_and(last_mask == 1, truth).sum() / np.logical_or(last_mask == 1, truth).sum()
        assert iou > 0.7, f"the object is back in the mask topic only with IoU {iou:.2f}"
    finally:
        client.close()
        stop_process(proc)
