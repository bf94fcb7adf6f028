"""A small client for the node's topics and services, and a helper that starts the node in its
own process. Used by the node's tests and :mod:`sampt_ros.tools.node_benchmark`; handy for
scripting a running node too.

Example::

    import rclpy
    from sampt_ros.ros.client import NodeClient, moving_disk
    rclpy.init()
    client = NodeClient("/sampt")
    client.wait_for_node()
    frames, centres = moving_disk(30)
    client.publish_prompt(1, [centres[0]], [1], stamp_ns=1_000_000_000)
    for i, f in enumerate(frames):
        client.publish_frame(f, stamp_ns=(i + 1) * 1_000_000_000)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- synthetic frames
def moving_disk(n_frames: int, width: int = 320, height: int = 240, radius: Optional[int] = None,
                speed: float = 3.0, seed: int = 0) -> Tuple[List[np.ndarray], np.ndarray]:
    """A textured disk sliding right over a textured background.

    Returns ``(frames, centres)``: ``n_frames`` ``HxWx3 uint8`` RGB images and ``n_frames x 2``
    float (x, y) disk centres in pixels. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    r = radius or max(8, min(width, height) // 8)
    background = rng.integers(20, 110, (height, width, 3), dtype=np.uint8)
    texture = rng.integers(150, 255, (height, width, 3), dtype=np.uint8)
    texture[..., 2] //= 3  # a reddish object: distinct colours help the weight-free segmenter
    yy, xx = np.mgrid[:height, :width]
    frames, centres = [], []
    x0, y0 = width * 0.25, height * 0.5
    for i in range(n_frames):
        cx = x0 + speed * i
        cx = r + (cx - r) % max(1, width - 2 * r)  # wrap around instead of leaving the image
        inside = (xx - cx) ** 2 + (yy - y0) ** 2 <= r * r
        img = background.copy()
        # the texture moves with the disk so point trackers have something to follow
        shift = int(round(cx - x0))
        img[inside] = np.roll(texture, shift, axis=1)[inside]
        frames.append(img)
        centres.append((cx, y0))
    return frames, np.array(centres, dtype=np.float64)


# ---------------------------------------------------------------------------- node process
def ros_env(domain_id: int, fastdds_profile: Optional[str] = None, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for a ROS process isolated on ``domain_id`` and this machine."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if fastdds_profile:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile)
        env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "1"  # as the launch file sets it with the profile
    return env


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"  # a YAML string, even if it looks like a number
    return repr(value)


def start_node_process(namespace: str, params: Mapping[str, object], domain_id: int,
                       log_path: Optional[str] = None, params_files: Sequence[str] = (),
                       fastdds_profile: Optional[str] = None) -> subprocess.Popen:
    """Start ``python -m sampt_ros.ros.node`` in ``namespace`` with ``-p name:=value`` overrides."""
    cmd = [sys.executable, "-m", "sampt_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
    for path in params_files:
        cmd += ["--params-file", str(path)]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={_param_text(value)}"]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, env=ros_env(domain_id, fastdds_profile), cwd=str(REPO_ROOT),
                            stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# ---------------------------------------------------------------------------- the client
@dataclass
class Received:
    """What the client got, keyed by header stamp (ns); ``times`` = ``time.time()`` at receipt."""

    masks: Dict[int, object] = field(default_factory=dict)
    objects: Dict[int, object] = field(default_factory=dict)
    times: Dict[int, float] = field(default_factory=dict)
    order: List[int] = field(default_factory=list)  # tracked_objects stamps in arrival order
    diagnostics: List[Dict[str, str]] = field(default_factory=list)
    markers: Dict[int, object] = field(default_factory=dict)


class NodeClient:
    """Publishes frames/prompts to a node in ``namespace`` and records its outputs.

    Args:
        namespace: the node's namespace (``/sampt``).
        context: an initialised ``rclpy.Context`` (default: the global one).
        image_qos: ``reliable`` or ``sensor_data`` for the image publisher.
        history: publisher/subscription depth.
    """

    def __init__(self, namespace: str = "/sampt", context=None, image_qos: str = "reliable",
                 history: int = 100, keep_masks: bool = True) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PointStamped
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from sampt_ros.msg import PointPrompt, TrackedObjects
        from sampt_ros.ros.node import make_qos
        from sampt_ros.srv import RemoveObject
        from std_srvs.srv import Trigger

        ns = "/" + namespace.strip("/")
        self.namespace = ns
        self.node = rclpy.create_node(f"sampt_client_{os.getpid()}_{id(self) % 10000}", context=context)
        out_qos = make_qos("reliable", history)
        self.image_pub = self.node.create_publisher(Image, f"{ns}/image", make_qos(image_qos, history))
        self.prompt_pub = self.node.create_publisher(PointPrompt, f"{ns}/prompt", make_qos("reliable", 100))
        self.click_pub = self.node.create_publisher(PointStamped, f"{ns}/clicked_point", make_qos("reliable", 10))
        self._image_qos = make_qos(image_qos, history)
        self._extra_pubs: Dict[str, object] = {}
        self._lock = threading.Condition()
        self.received = Received()
        self._keep_masks = keep_masks
        self.node.create_subscription(Image, f"{ns}/mask", self._on_mask, out_qos)
        self.node.create_subscription(TrackedObjects, f"{ns}/tracked_objects", self._on_objects, out_qos)
        self.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", self._on_diag, make_qos("reliable", 10))
        from visualization_msgs.msg import MarkerArray

        self.node.create_subscription(MarkerArray, f"{ns}/markers", self._on_markers, out_qos)
        self.reset_client = self.node.create_client(Trigger, f"{ns}/reset")
        self.remove_client = self.node.create_client(RemoveObject, f"{ns}/remove_object")
        self._service_clients: Dict[tuple, object] = {}
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us
                if not self._running:
                    return
                raise

    def close(self) -> None:
        self._running = False
        self._thread.join(5.0)
        self._executor.remove_node(self.node)
        self.node.destroy_node()

    # ------------------------------------------------------------------ callbacks
    def _on_mask(self, msg) -> None:
        from sampt_ros.ros.conversions import stamp_to_ns

        with self._lock:
            self.received.masks[stamp_to_ns(msg.header)] = msg if self._keep_masks else True
            self._lock.notify_all()

    def _on_objects(self, msg) -> None:
        from sampt_ros.ros.conversions import stamp_to_ns

        now = time.time()
        with self._lock:
            s = stamp_to_ns(msg.header)
            self.received.objects[s] = msg
            self.received.times[s] = now
            self.received.order.append(s)
            self._lock.notify_all()

    def _on_markers(self, msg) -> None:
        from sampt_ros.ros.conversions import stamp_to_ns

        with self._lock:
            if msg.markers:
                self.received.markers[stamp_to_ns(msg.markers[0].header)] = msg
            self._lock.notify_all()

    def _on_diag(self, msg) -> None:
        with self._lock:
            for st in msg.status:
                self.received.diagnostics.append({kv.key: kv.value for kv in st.values})
            self._lock.notify_all()

    # ------------------------------------------------------------------ waiting
    def wait_until(self, predicate: Callable[[Received], bool], timeout: float) -> bool:
        """Wait until ``predicate(self.received)`` holds (checked under the lock)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def input_publisher(self, topic: str):
        """The publisher of one of the node's inputs: ``image``, ``image/compressed``, ``depth``, ``camera_info``."""
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        if topic == "image":
            return self.image_pub
        types = {"image/compressed": ("compressed", CompressedImage), "depth": ("depth", Image),
                 "camera_info": ("camera_info", CameraInfo)}
        name, mtype = types[topic]
        return self._pub(name, mtype, topic)

    def wait_for_node(self, timeout: float = 20.0, diagnostics: bool = True, inputs: Sequence[str] = ("image",)) -> bool:
        """Wait until the node is connected both ways.

        The node must subscribe to ``inputs`` and ``prompt``, publish ``mask`` and
        ``tracked_objects``, offer its services and (``diagnostics``) have delivered one
        diagnostics message: proof that its publishers matched this client's subscriptions.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (all(self.input_publisher(t).get_subscription_count() >= 1 for t in inputs)
                    and self.prompt_pub.get_subscription_count() >= 1
                    and self.node.count_publishers(f"{self.namespace}/tracked_objects") >= 1
                    and self.node.count_publishers(f"{self.namespace}/mask") >= 1
                    and self.reset_client.service_is_ready() and self.remove_client.service_is_ready()):
                break
            time.sleep(0.05)
        else:
            return False
        if not diagnostics:
            return True
        return self.wait_until(lambda r: len(r.diagnostics) > 0, max(0.0, deadline - time.monotonic()))

    def latest_diagnostics(self) -> Optional[Dict[str, str]]:
        with self._lock:
            return dict(self.received.diagnostics[-1]) if self.received.diagnostics else None

    # ------------------------------------------------------------------ publishing
    def publish_frame(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> None:
        from std_msgs.msg import Header

        from sampt_ros.ros.conversions import rgb_to_image_msg

        self.image_pub.publish(rgb_to_image_msg(rgb, make_header(stamp_ns, frame_id, Header)))

    def publish_image_msg(self, msg) -> None:
        self.image_pub.publish(msg)

    def _pub(self, name: str, msg_type, topic: str):
        if name not in self._extra_pubs:
            self._extra_pubs[name] = self.node.create_publisher(msg_type, f"{self.namespace}/{topic}", self._image_qos)
        return self._extra_pubs[name]

    def publish_compressed(self, rgb: np.ndarray, stamp_ns: int, fmt: str = "jpeg", frame_id: str = "camera") -> None:
        """Publish ``HxWx3 uint8`` RGB as a CompressedImage (jpeg or png) on ``image/compressed``."""
        import cv2
        from sensor_msgs.msg import CompressedImage

        ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else fmt), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode as {fmt}")
        msg = CompressedImage()
        msg.header = make_header(stamp_ns, frame_id)
        msg.format = fmt
        msg.data = buf.tobytes()
        self._pub("compressed", CompressedImage, "image/compressed").publish(msg)

    def publish_depth(self, depth: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> None:
        """Publish ``HxW`` depth: ``uint16`` millimetres (16UC1) or ``float32`` metres (32FC1)."""
        from sampt_ros.ros.conversions import make_image_msg

        enc = "16UC1" if depth.dtype == np.uint16 else "32FC1"
        arr = depth if depth.dtype == np.uint16 else depth.astype(np.float32)
        from sensor_msgs.msg import Image

        self._pub("depth", Image, "depth").publish(make_image_msg(arr, make_header(stamp_ns, frame_id), enc))

    def publish_camera_info(self, k: Sequence[float], width: int, height: int, stamp_ns: int,
                            frame_id: str = "camera") -> None:
        """Publish a CameraInfo with row-major 3x3 ``k`` for a ``width x height`` image."""
        from sensor_msgs.msg import CameraInfo

        msg = CameraInfo()
        msg.header = make_header(stamp_ns, frame_id)
        msg.width, msg.height = int(width), int(height)
        msg.k = [float(v) for v in k]
        self._pub("camera_info", CameraInfo, "camera_info").publish(msg)

    def publish_prompt(self, object_id: int, points, labels, stamp_ns: int = 0, action: int = 0,
                       frame_id: str = "camera", wait_acked: float = 0.0) -> None:
        """Publish a PointPrompt; ``wait_acked`` > 0 waits (up to that many seconds) until the node's
        reader has it (Fast DDS learns acknowledgements with its heartbeat, so this can take seconds)."""
        from geometry_msgs.msg import Point
        from std_msgs.msg import Header

        from sampt_ros.msg import PointPrompt

        msg = PointPrompt()
        msg.header = make_header(stamp_ns, frame_id, Header)
        msg.object_id = int(object_id)
        msg.action = int(action)
        msg.points = [Point(x=float(x), y=float(y), z=0.0) for x, y in points]
        msg.labels = [int(v) for v in labels]
        self.publish_prompt_msg(msg, wait_acked)

    def publish_prompt_msg(self, msg, wait_acked: float = 0.0) -> None:
        from rclpy.duration import Duration

        self.prompt_pub.publish(msg)
        if wait_acked > 0:
            self.prompt_pub.wait_for_all_acked(Duration(nanoseconds=int(wait_acked * 1e9)))

    def click(self, x: float, y: float, frame_id: str = "camera") -> None:
        from geometry_msgs.msg import PointStamped

        msg = PointStamped()
        msg.header.frame_id = frame_id
        msg.point.x, msg.point.y = float(x), float(y)
        self.click_pub.publish(msg)

    # ------------------------------------------------------------------ services
    def _call(self, client, request, timeout: float, resend_after: Optional[float] = None):
        """``request``'s answer within ``timeout`` s.

        ``resend_after``: for a query that may be asked twice (a lifecycle state), send it again
        when no answer came in that many seconds: DDS can lose a request or its answer while a
        service and a client are still discovering each other.
        """
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        while True:
            left = deadline - time.monotonic()
            wait = left if resend_after is None else min(left, resend_after)
            future = client.call_async(request)
            try:
                self._wait(future, max(wait, 0.0), f"service {client.srv_name}")
                return future.result()
            except TimeoutError:
                client.remove_pending_request(future)
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"service {client.srv_name} did not answer in {timeout} s") from None

    def _service_client(self, srv_type, name: str):
        """One client per service for the client's lifetime (a client made per call is a new
        DDS endpoint each time, and the first request of a new endpoint is the one that gets lost)."""
        key = (srv_type, name)
        if key not in self._service_clients:
            self._service_clients[key] = self.node.create_client(srv_type, name)
        return self._service_clients[key]

    def set_parameters(self, values: Mapping[str, object], node_name: str = "sampt_node", timeout: float = 10.0):
        """Set parameters of the node; returns its ``SetParametersResult`` list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self._service_client(SetParameters, f"{self.namespace}/{node_name}/set_parameters")
        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self._call(client, req, timeout).results)

    def lifecycle_state(self, node_name: str = "sampt_node", timeout: float = 10.0) -> str:
        """The node's lifecycle state label (``unconfigured``, ``inactive``, ``active``, ...)."""
        from lifecycle_msgs.srv import GetState

        client = self._service_client(GetState, f"{self.namespace}/{node_name}/get_state")
        return self._call(client, GetState.Request(), timeout, resend_after=5.0).current_state.label

    def change_state(self, transition_id: int, node_name: str = "sampt_node", timeout: float = 60.0) -> bool:
        """Request a lifecycle transition (``lifecycle_msgs/Transition`` id); returns success."""
        from lifecycle_msgs.srv import ChangeState

        client = self._service_client(ChangeState, f"{self.namespace}/{node_name}/change_state")
        req = ChangeState.Request()
        req.transition.id = int(transition_id)
        return bool(self._call(client, req, timeout).success)

    @staticmethod
    def _wait(future, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer in {timeout} s")
            time.sleep(0.01)

    def reset(self, timeout: float = 10.0):
        from std_srvs.srv import Trigger

        return self._call(self.reset_client, Trigger.Request(), timeout)

    def remove_object(self, object_id: int, timeout: float = 10.0):
        from sampt_ros.srv import RemoveObject

        return self._call(self.remove_client, RemoveObject.Request(object_id=int(object_id)), timeout)


def make_header(stamp_ns: int, frame_id: str = "camera", header_type=None):
    """A ``std_msgs/Header`` with a nanosecond stamp."""
    if header_type is None:
        from std_msgs.msg import Header as header_type  # noqa: N813
    h = header_type()
    h.stamp.sec = int(stamp_ns // 1_000_000_000)
    h.stamp.nanosec = int(stamp_ns % 1_000_000_000)
    h.frame_id = frame_id
    return h
