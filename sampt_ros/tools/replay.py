"""``sampt-replay``: play a bag into a running sampt_ros node over DDS, record and score its outputs.

Commands::

    sampt-replay BAG [--lockstep | --rate 1.0] [--launch-node [--config FILE ...]] [--out DIR]
    sampt-replay compare-davis ROOT [--sequences a,b] [--config FILE ...] [--out DIR]

``BAG`` is a bag made by ``sampt-bag`` (or any bag with ``sensor_msgs/Image`` frames on
``--image-topic`` and, optionally, ``sampt_ros/msg/PointPrompt`` prompts and ``mono8``
ground-truth label maps). Its raw CDR is published unchanged on the node's ``image`` and
``prompt`` topics (namespace ``--namespace``, default ``/sampt``).

Modes:

* ``--lockstep``: a frame is published only when the previous frame's outputs (``mask`` and
  ``tracked_objects`` with its stamp) have arrived; nothing can be dropped; a frame without
  outputs after ``--timeout`` seconds stops the replay with an error. Prompts are sent before
  the frame whose stamp they carry.
* ``--rate R`` (real time, default ``1.0``): messages go out at the bag's timing scaled by
  ``R`` (2.0 = twice as fast); frames the node skips (live mode) count as dropped.

In both modes ``/clock`` is published at each frame's bag time (for nodes with
``use_sim_time``). Outputs (``mask``, ``tracked_objects``, ``diagnostics``; ``overlay`` with
``--record-overlay``) are recorded into ``OUT/outputs.bag`` with their receipt wall-clock
time as log time. The report (:mod:`sampt_ros.tools.report`) goes to ``OUT``: J, F, J&F
(when the bag holds ground truth), latency p50/p95/p99 (output receipt - input publish), FPS,
dropped frames, plots and an overlay video.

``--launch-node`` starts the node itself (``sampt_ros.ros.node:main``) in a subprocess, on a
private ROS domain, with the configuration ``config/sampt.yaml`` + ``--config`` files +
``--set`` overrides (resolved exactly as ``sampt-eval`` does), in lockstep mode with reliable
image QoS for ``--lockstep`` replays, and waits for discovery (``count_subscribers`` /
``count_publishers``, never a fixed sleep).

``compare-davis`` is the acceptance check: for every sequence of a DAVIS-layout folder it runs
``sampt-eval davis``'s evaluation in-process, makes a bag (``sampt-bag from-davis``: the
first-frame masks as prompts, as sampt-eval prompts), replays it in lockstep through one launched node (reset between
sequences), and prints per sequence the eval J&F, the replay J&F, their difference and
frames sent/received; it exits 1 when a difference exceeds ``--tolerance`` or a frame is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sampt_ros.tools import bags
from sampt_ros.tools.report import FrameRecord, overlay_frames_from_bags, summarize, write_overlay_video, write_report

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NAMESPACE = "/sampt"
#: How long to wait for the node's endpoints; >= 5 s (about 5% of DDS cold starts take ~3 s)
DEFAULT_DISCOVERY_TIMEOUT = 60.0
#: Most seconds to wait for the node to acknowledge a prompt before the next frame is sent
#: (prompts and images travel on different topics, which DDS does not order between each other).
PROMPT_ACK_TIMEOUT_S = 5.0


class ReplayError(RuntimeError):
    """A replay that cannot go on (no node, a frame without outputs, a node that died)."""


# ---------------------------------------------------------------------------- helpers
def _join(namespace: str, name: str) -> str:
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def cdr_header_stamp_ns(data: bytes) -> int:
    """Header stamp of a raw CDR message whose first field is ``std_msgs/Header`` (no full decode)."""
    if len(data) < 12:
        raise ValueError("message too short for a header")
    endian = "<" if data[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def fastdds_profile() -> Optional[str]:
    """The project's Fast DDS profile (large shared-memory segment) when it ships one."""
    try:
        from sampt_ros.core.config import config_dir

        path = Path(config_dir()) / "fastdds.xml"
    except FileNotFoundError:
        return None
    return str(path) if path.is_file() else None


def _ensure_fastdds_profile(env: Optional[Dict[str, str]] = None) -> None:
    """Use the project's Fast DDS profile unless the user chose one (must run before rclpy starts DDS)."""
    env = os.environ if env is None else env
    if not env.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        profile = fastdds_profile()
        if profile:
            env["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
            env.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "1")  # as the launch file does


# ---------------------------------------------------------------------------- the player
@dataclass
class ReplayResult:
    """Everything a replay measured (see :func:`sampt_ros.tools.report.summarize`)."""

    records: List[FrameRecord]
    summary: Dict[str, Any]
    outputs: Dict[str, List[Tuple[int, bytes]]] = field(default_factory=dict)  # topic -> [(log_ns, cdr)]
    output_types: Dict[str, str] = field(default_factory=dict)
    paths: Dict[str, str] = field(default_factory=dict)


class Player:
    """An rclpy client that publishes a bag's inputs and collects the node's outputs.

    It owns its own rclpy context (``domain_id`` or ``ROS_DOMAIN_ID``) and spins an executor on
    a background thread; outputs are matched to inputs by header stamp.

    Args:
        namespace: the node's namespace; topics are relative to it.
        domain_id: ROS domain, None for the environment's.
        image_msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        reliable: publish images with reliable QoS (matches reliable and best-effort nodes); else
            best effort (like a camera; a lockstep node, which subscribes reliably, reports it as
            incompatible QoS).
        record_overlay: also subscribe to (and keep) the ``overlay`` images.
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, domain_id: Optional[int] = None,
                 image_msgtype: str = bags.IMAGE_TYPE, reliable: bool = True, record_overlay: bool = False,
                 image_topic: str = "image", prompt_topic: str = "prompt") -> None:
        _ensure_fastdds_profile()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CompressedImage, Image

        try:
            from sampt_ros.msg import PointPrompt, TrackedObjects
        except ImportError as exc:
            raise ReplayError(
                "the sampt_ros messages are not built for this Python (run scripts/build_msgs.sh "
                f".venv, or colcon build): {exc}") from None

        self.namespace = namespace
        self._rclpy = rclpy
        self._context = rclpy.Context()
        kwargs = {"context": self._context}
        if domain_id is not None:
            kwargs["domain_id"] = int(domain_id)
        rclpy.init(**kwargs)
        self.node = rclpy.create_node("sampt_replay", context=self._context,
                                      start_parameter_services=False, enable_rosout=False)
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        image_qos = QoSProfile(depth=10, reliability=reliability, history=HistoryPolicy.KEEP_LAST)
        cmd_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        image_cls = CompressedImage if image_msgtype.endswith("CompressedImage") else Image
        self.topics = {
            "image": _join(namespace, image_topic), "prompt": _join(namespace, prompt_topic),
            "mask": _join(namespace, "mask"), "tracked_objects": _join(namespace, "tracked_objects"),
            "diagnostics": _join(namespace, "diagnostics"), "overlay": _join(namespace, "overlay"),
            "clock": "/clock",
        }
        self.types = {
            "mask": bags.IMAGE_TYPE, "tracked_objects": bags.TRACKED_TYPE,
            "diagnostics": "diagnostic_msgs/msg/DiagnosticArray", "overlay": bags.IMAGE_TYPE,
        }
        self.image_pub = self.node.create_publisher(image_cls, self.topics["image"], image_qos)
        self.prompt_pub = self.node.create_publisher(PointPrompt, self.topics["prompt"], cmd_qos)
        self.clock_pub = self.node.create_publisher(Clock, self.topics["clock"], 10)
        self._clock_cls = Clock

        self._cond = threading.Condition()
        self._by_stamp: Dict[int, FrameRecord] = {}
        self.outputs: Dict[str, List[Tuple[int, bytes]]] = {k: [] for k in ("mask", "tracked_objects",
                                                                             "diagnostics", "overlay")}
        self.last_output_s: Optional[float] = None
        self._subs = [
            self.node.create_subscription(Image, self.topics["mask"], self._cb("mask"), out_qos, raw=True),
            self.node.create_subscription(TrackedObjects, self.topics["tracked_objects"],
                                          self._cb("tracked_objects"), out_qos, raw=True),
            self.node.create_subscription(DiagnosticArray, self.topics["diagnostics"], self._cb("diagnostics"),
                                          out_qos, raw=True),
        ]
        if record_overlay:
            self._subs.append(self.node.create_subscription(Image, self.topics["overlay"], self._cb("overlay"),
                                                            out_qos, raw=True))
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._spin_thread = threading.Thread(target=self._spin, name="sampt_replay_spin", daemon=True)
        self._spin_thread.start()

    # -- executor thread --------------------------------------------------------------------
    def _spin(self) -> None:
        try:
            while self._context.ok():
                self._executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - shutdown races end the thread quietly
            pass

    def _cb(self, kind: str):
        def callback(data: bytes) -> None:
            now = time.monotonic()
            wall = time.time_ns()
            with self._cond:
                self.outputs[kind].append((wall, bytes(data)))
                self.last_output_s = now
                if kind in ("mask", "tracked_objects"):
                    try:
                        stamp = cdr_header_stamp_ns(data)
                    except ValueError:
                        return
                    rec = self._by_stamp.get(stamp)
                    if rec is not None:
                        attr = "mask_s" if kind == "mask" else "tracked_s"
                        if getattr(rec, attr) is None:
                            setattr(rec, attr, now)
                    self._cond.notify_all()
        return callback

    # -- discovery --------------------------------------------------------------------------
    def wait_for_node(self, timeout: float = DEFAULT_DISCOVERY_TIMEOUT, process: Optional[subprocess.Popen] = None,
                      log_path: Optional[Path] = None) -> float:
        """Wait until the node subscribes ``image`` + ``prompt`` and publishes ``mask`` + ``tracked_objects``.

        Returns the seconds waited. Raises :class:`ReplayError` after ``timeout`` (at least 5 s)
        or when ``process`` exits first.
        """
        timeout = max(5.0, float(timeout))
        t0 = time.monotonic()
        while True:
            ok = (self.image_pub.get_subscription_count() >= 1 and self.prompt_pub.get_subscription_count() >= 1
                  and self.node.count_publishers(self.topics["mask"]) >= 1
                  and self.node.count_publishers(self.topics["tracked_objects"]) >= 1)
            if ok:
                return time.monotonic() - t0
            if process is not None and process.poll() is not None:
                raise ReplayError(f"the node exited with status {process.returncode} before it was ready"
                                  + _log_tail(log_path))
            if time.monotonic() - t0 > timeout:
                raise ReplayError(
                    f"no sampt_ros node found in namespace {self.namespace!r} within {timeout:.0f} s (need "
                    f"subscribers on {self.topics['image']} and {self.topics['prompt']}, publishers on "
                    f"{self.topics['mask']} and {self.topics['tracked_objects']}); is it running, in this "
                    f"ROS_DOMAIN_ID, with the same namespace?" + _log_tail(log_path))
            time.sleep(0.05)

    def call_reset(self, timeout: float = 10.0) -> None:
        """Call the node's ``reset`` service (std_srvs/Trigger); raises ReplayError on failure."""
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, _join(self.namespace, "reset"))
        try:
            if not client.wait_for_service(timeout_sec=max(5.0, timeout)):
                raise ReplayError(f"service {_join(self.namespace, 'reset')} not available")
            future = client.call_async(Trigger.Request())
            t0 = time.monotonic()
            while not future.done():
                if time.monotonic() - t0 > timeout:
                    raise ReplayError("the node did not answer the reset call")
                time.sleep(0.01)
            res = future.result()
            if not res.success:
                raise ReplayError(f"reset refused: {res.message}")
        finally:
            self.node.destroy_client(client)

    # -- publishing -------------------------------------------------------------------------
    def publish_clock(self, stamp_ns: int) -> None:
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = int(stamp_ns // 1_000_000_000), int(stamp_ns % 1_000_000_000)
        self.clock_pub.publish(msg)

    def track(self, records: Sequence[FrameRecord]) -> None:
        """Start matching outputs to these frames (by stamp); clears earlier outputs."""
        with self._cond:
            self._by_stamp = {r.stamp_ns: r for r in records}
            for v in self.outputs.values():
                v.clear()
            self.last_output_s = None

    def publish_prompt(self, stamp_ns: int, data: bytes, wait_acked_s: float = 0.0) -> bool:
        """Publish a serialized prompt; with ``wait_acked_s`` > 0 wait (at most that long) until the
        node's reader has acknowledged it, the way :meth:`NodeClient.publish_prompt_msg` does.

        Images and prompts are separate topics that DDS does not order between each other; a
        prompt acknowledged before its frame is sent cannot arrive after it. Returns whether it
        was acknowledged (True without waiting)."""
        from rclpy.duration import Duration

        self.publish_clock(stamp_ns)
        self.prompt_pub.publish(data)
        if wait_acked_s <= 0:
            return True
        return bool(self.prompt_pub.wait_for_all_acked(Duration(nanoseconds=int(wait_acked_s * 1e9))))

    def publish_frame(self, record: FrameRecord, data: bytes) -> None:
        self.publish_clock(record.stamp_ns)
        with self._cond:
            record.sent_s = time.monotonic()
        self.image_pub.publish(data)

    def wait_outputs(self, record: FrameRecord, timeout: float) -> bool:
        """Block until both outputs of ``record`` arrived (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while record.received_s is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def wait_all(self, records: Sequence[FrameRecord], quiet_s: float, limit_s: float) -> None:
        """Wait until every sent frame has its outputs, or ``quiet_s`` without any output, or ``limit_s``."""
        t0 = time.monotonic()
        with self._cond:
            while True:
                if all(r.received_s is not None for r in records if r.sent_s is not None):
                    return
                now = time.monotonic()
                last = self.last_output_s or t0
                if now - max(last, t0) > quiet_s or now - t0 > limit_s:
                    return
                self._cond.wait(0.05)

    def close(self) -> None:
        try:
            self._executor.shutdown(timeout_sec=1.0)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.node.destroy_node()
        finally:
            if self._context.ok():
                self._rclpy.shutdown(context=self._context)
        self._spin_thread.join(timeout=2.0)

    def __enter__(self) -> "Player":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _log_tail(log_path: Optional[Path], n: int = 25) -> str:
    if log_path is None or not Path(log_path).is_file():
        return ""
    lines = Path(log_path).read_text(errors="replace").splitlines()[-n:]
    return f"\n--- last lines of the node's log ({log_path}) ---\n" + "\n".join(lines) if lines else ""


def replay(player: Player, seq: bags.BagSequence, lockstep: bool = True, rate: float = 1.0,
           timeout: float = 60.0, first_timeout: Optional[float] = None, drain_s: float = 3.0,
           process: Optional[subprocess.Popen] = None, log_path: Optional[Path] = None,
           progress: bool = False) -> List[FrameRecord]:
    """Publish ``seq``'s prompts and frames through ``player``; returns one record per frame.

    Lockstep raises :class:`ReplayError` when a frame gets no outputs within ``timeout`` seconds
    (``first_timeout`` for the first frame, which may include model warm-up).
    """
    if not lockstep and not rate > 0:
        raise ValueError(f"--rate must be > 0, got {rate}")
    records = [FrameRecord(index=i, stamp_ns=s) for i, (s, *_rest) in enumerate(seq.images)]
    if len(set(r.stamp_ns for r in records)) != len(records):
        raise ReplayError("the bag has frames with equal stamps: outputs could not be told apart")
    player.track(records)
    # Prompts due at or before the first frame go out first, each acknowledged by the node before
    # any frame is sent: the node holds a prompt for a frame it has not seen yet, while a prompt
    # that arrives after its frame was processed starts late (or is refused).
    first_log = seq.images[0][1]
    leading = [i for i, (_s, log, _raw) in enumerate(seq.prompts) if log <= first_log]
    leading_ids = set(leading)
    for i in leading:
        player.publish_prompt(seq.prompts[i][0], seq.prompts[i][2], wait_acked_s=PROMPT_ACK_TIMEOUT_S)
    # the rest on one time line, in log-time order, a prompt before a frame of the same time
    events: List[Tuple[int, int, int, bytes]] = [
        (log, 0, i, raw) for i, (_s, log, raw) in enumerate(seq.prompts) if i not in leading_ids]
    events += [(log, 1, i, raw) for i, (_s, log, _t, raw) in enumerate(seq.images)]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    first_timeout = max(timeout, first_timeout or 0.0)
    t0 = time.monotonic()
    log0 = first_log
    for log_ns, kind, i, raw in events:
        if not lockstep:
            target = t0 + (log_ns - log0) / 1e9 / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if kind == 0:
            # in lockstep a prompt is acknowledged before the next frame goes out (live: no wait)
            player.publish_prompt(seq.prompts[i][0], raw, wait_acked_s=PROMPT_ACK_TIMEOUT_S if lockstep else 0.0)
            continue
        rec = records[i]
        player.publish_frame(rec, raw)
        if lockstep:
            limit = first_timeout if i == 0 else timeout
            if not player.wait_outputs(rec, limit):
                missing = [name for name, t in (("mask", rec.mask_s), ("tracked_objects", rec.tracked_s)) if t is None]
                dead = process is not None and process.poll() is not None
                raise ReplayError(
                    f"frame {i} (stamp {rec.stamp_ns / 1e9:.9f}) got no {' and no '.join(missing)} within "
                    f"{limit:.0f} s" + ("; the node exited" if dead else
                                        "; is the node busy, in live mode with a best-effort image QoS, or "
                                        "failing on this frame? (see its log / diagnostics)")
                    + _log_tail(log_path))
        if progress and (i % 10 == 0 or i == len(records) - 1):
            got = sum(r.received_s is not None for r in records)
            print(f"\r  frame {i + 1}/{len(records)} sent, {got} answered", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    if not lockstep:
        player.wait_all(records, quiet_s=drain_s, limit_s=max(drain_s, 10 * drain_s))
    return records


# ---------------------------------------------------------------------------- scoring
def decode_outputs(player_outputs: Dict[str, List[Tuple[int, bytes]]], store=None) -> Tuple[Dict[int, np.ndarray], Dict[int, Any]]:
    """``({stamp: HxW label map}, {stamp: TrackedObjects})`` from recorded raw outputs (first per stamp)."""
    store = store or bags.typestore()
    masks: Dict[int, np.ndarray] = {}
    tracked: Dict[int, Any] = {}
    for _, raw in player_outputs.get("mask", []):
        stamp = cdr_header_stamp_ns(raw)
        if stamp not in masks:
            masks[stamp] = bags.image_from_msg(store.deserialize_cdr(raw, bags.IMAGE_TYPE))
    for _, raw in player_outputs.get("tracked_objects", []):
        stamp = cdr_header_stamp_ns(raw)
        if stamp not in tracked:
            tracked[stamp] = store.deserialize_cdr(raw, bags.TRACKED_TYPE)
    return masks, tracked


def score(records: Sequence[FrameRecord], seq: bags.BagSequence, masks: Dict[int, np.ndarray],
          store=None, tracked: Optional[Dict[int, Any]] = None) -> Optional[Dict[str, Any]]:
    """J, F, J&F of the recorded masks against the bag's ground truth (None without any GT), and
    per object the same re-acquisition figures as ``sampt-eval davis``.

    Frames are scored in bag order with :class:`~sampt_ros.core.metrics.SequenceScorer`, exactly
    as ``sampt-eval`` scores them (every object of the ground truth; first and last scored frame
    excluded, as DAVIS); a frame without a mask output counts as an empty mask. Each record gets
    its frame's J and F.

    ``tracked`` (``{stamp: TrackedObjects}``, the node's ``tracked_objects`` outputs) gives each
    object's state per frame (a frame without one: state ``NONE``). The result then also holds
    ``"objects"`` (``{id: {J, F, prompted_at, timeline, events, id_swaps, false_positive_frames,
    final_state, ...}}``, see :class:`~sampt_ros.core.metrics.ReacquisitionScorer`;
    ``prompted_at`` = index of the frame the object's first prompt in the bag is stamped with)
    and ``"reacquisition"`` (their digest). Without ``tracked``, or when a frame has no ground
    truth, ``"objects"`` carries J and F only and ``"reacquisition"`` is None.
    """
    if not seq.gt:
        return None
    from sampt_ros.core.metrics import ReacquisitionScorer, SequenceScorer, object_scores

    store = store or bags.typestore()
    ids = set()
    for rec in records:  # every object of the ground truth, as sampt-eval scores them
        gt = seq.gt_label_map(rec.stamp_ns, store)
        if gt is not None:
            ids.update(int(v) for v in np.unique(gt) if v != 0)
    object_ids = sorted(ids)
    scorer = SequenceScorer(object_ids=object_ids or None)
    complete = tracked is not None and all(rec.stamp_ns in seq.gt for rec in records)
    reacq = ReacquisitionScorer(object_ids=object_ids) if complete and object_ids else None
    for rec in records:
        gt = seq.gt_label_map(rec.stamp_ns, store)
        if gt is None:
            continue
        pred = masks.get(rec.stamp_ns)
        if pred is None or pred.shape != gt.shape:
            pred = np.zeros(gt.shape, np.uint8)
        rec.J, rec.F = scorer.add(pred, gt)
        if reacq is not None:
            msg = tracked.get(rec.stamp_ns)
            states = {int(o.object_id): int(o.state) for o in msg.objects} if msg is not None else {}
            reacq.add(gt, pred, states)
    result = scorer.result()
    out: Dict[str, Any] = {k: float(result[k]) for k in ("J", "F", "JF")}
    reacq_result = reacq.result() if reacq is not None else None
    objects = object_scores(result, reacq_result, object_ids)
    first_prompt = _first_prompt_frames(seq, records, store)
    for oid, entry in objects.items():
        entry["prompted_at"] = first_prompt.get(oid)
    out["objects"] = objects
    out["reacquisition"] = reacq_result["summary"] if reacq_result is not None else None
    return out


def _first_prompt_frames(seq: bags.BagSequence, records: Sequence[FrameRecord], store) -> Dict[int, int]:
    """``{object_id: index of the first frame stamped at or after its first set-prompt}``."""
    out: Dict[int, int] = {}
    for stamp, _log, raw in seq.prompts:
        try:
            oid, action, _p, _l, _s = bags.prompt_from_msg(store.deserialize_cdr(raw, bags.PROMPT_TYPE))
        except Exception:  # noqa: BLE001 - a prompt we cannot read is reported elsewhere
            continue
        if action != 0 or oid in out:
            continue
        rec = next((r for r in records if r.stamp_ns >= stamp), None)
        if rec is not None:
            out[oid] = rec.index
    return out


def write_outputs_bag(path: Path, player: Player, storage: str = "sqlite3") -> None:
    """The recorded raw outputs -> a bag (log time = receipt wall-clock time)."""
    with bags.BagWriter(path, storage, overwrite=True) as bag:
        for kind, rows in player.outputs.items():
            for log_ns, raw in rows:
                bag.write_raw(player.topics[kind], player.types[kind], raw, log_ns)


# ---------------------------------------------------------------------------- the node process
def resolved_config(config_files: Optional[Sequence[str]], overrides: Optional[Sequence[str]] = None):
    """``(Config, files)`` resolved as ``sampt-eval`` resolves them (sampt.yaml + files + --set)."""
    from sampt_ros.tools.eval import EvalError, resolve_config

    try:
        return resolve_config(list(config_files or []), list(overrides or []))
    except EvalError as exc:
        raise ValueError(str(exc)) from None


def write_params_file(config, path: Path, node_overrides: Optional[Dict[str, Any]] = None) -> Path:
    """A ROS 2 parameter file (``/**: ros__parameters``) holding the whole resolved config, flattened."""
    import yaml

    flat = config.flat()
    flat.update(node_overrides or {})
    flat = {k: v for k, v in flat.items() if v is not None}
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": flat}}, sort_keys=True), encoding="utf-8")
    return path


class NodeProcess:
    """The sampt_ros node in a subprocess (``sampt_ros.ros.node:main``), stopped on exit."""

    def __init__(self, params_file: Path, namespace: str = DEFAULT_NAMESPACE, domain_id: Optional[int] = None,
                 log_path: Optional[Path] = None, use_sim_time: bool = True,
                 extra_args: Sequence[str] = ()) -> None:
        env = dict(os.environ)
        _ensure_fastdds_profile(env)
        if domain_id is not None:
            env["ROS_DOMAIN_ID"] = str(int(domain_id))
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [sys.executable, "-c", "import sys; from sampt_ros.ros.node import main; sys.exit(main())",
               "--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(params_file),
               "-p", f"use_sim_time:={'true' if use_sim_time else 'false'}", *extra_args]
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, timeout: float = 10.0) -> None:
        p = self.process
        if p.poll() is None:
            import signal

            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def private_domain_id() -> int:
    """A random ROS domain for a launched node, so parallel runs and other users don't cross."""
    return random.SystemRandom().randint(1, 101)


# ---------------------------------------------------------------------------- one replay end to end
def run_replay(bag: os.PathLike | str, out_dir: os.PathLike | str, lockstep: bool = True, rate: float = 1.0,
               namespace: str = DEFAULT_NAMESPACE, launch_node: bool = False,
               config_files: Optional[Sequence[str]] = None, overrides: Optional[Sequence[str]] = None,
               domain_id: Optional[int] = None, timeout: float = 60.0, first_timeout: float = 300.0,
               discovery_timeout: float = DEFAULT_DISCOVERY_TIMEOUT, drain_s: float = 3.0,
               record_overlay: bool = False, video: bool = True, video_fps: Optional[float] = None,
               storage: str = "sqlite3", image_topic: str = bags.IMAGE_TOPIC,
               prompt_topic: str = bags.PROMPT_TOPIC, gt_topic: str = bags.GT_TOPIC,
               player: Optional[Player] = None, progress: bool = False, name: Optional[str] = None,
               reset: bool = False) -> ReplayResult:
    """Replay ``bag`` (optionally into a node launched here), record, score and report into ``out_dir``.

    With ``player`` given, that (already connected) player is used and no node is launched.
    ``reset`` calls the node's reset service first (for a node reused across bags).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = bags.typestore()
    seq = bags.load_sequence(bag, image_topic, prompt_topic, gt_topic, store)
    config = None
    node = None
    own_player = player is None
    if launch_node or config_files or overrides:
        config, _files = resolved_config(config_files, overrides)
    if launch_node:
        if domain_id is None:
            domain_id = private_domain_id()
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # same as the node's
        node_over = {"node.mode": "lockstep", "node.image_qos": "reliable"} if lockstep else {}
        params = write_params_file(config, out / "node_params.yaml", node_over)
        node = NodeProcess(params, namespace, domain_id, out / "node.log")
    try:
        if own_player:
            # always a reliable writer: it matches a lockstep node's reliable subscription and,
            # towards a live node's best-effort one, sends best effort like a camera
            player = Player(namespace, domain_id, seq.images[0][2], reliable=True,
                            record_overlay=record_overlay)
        try:
            waited = player.wait_for_node(discovery_timeout, node.process if node else None,
                                          node.log_path if node else None)
            if reset:
                player.call_reset()
            t_start = time.monotonic()
            records = replay(player, seq, lockstep, rate, timeout, first_timeout, drain_s,
                             node.process if node else None, node.log_path if node else None, progress)
            wall = time.monotonic() - t_start
            outputs = {k: list(v) for k, v in player.outputs.items()}
            write_outputs_bag(out / "outputs.bag", player, storage)
        finally:
            if own_player:
                player.close()
    finally:
        if node is not None:
            node.stop()
    masks, tracked = decode_outputs(outputs, store)
    scores = score(records, seq, masks, store, tracked=tracked)
    warnings = _prompt_warnings(seq, records, tracked, store)
    summary = summarize(
        records, scores, name=name or Path(bag).name, bag=str(bag), output_bag=str(out / "outputs.bag"),
        mode="lockstep" if lockstep else "real-time", rate=None if lockstep else rate, wall_s=wall,
        discovery_s=waited, namespace=namespace, node="launched" if launch_node else "external",
        profile=config.profile if config is not None else None,
        config=config.to_dict() if config is not None else None, warnings=warnings,
        node_diagnostics=_last_diagnostics(outputs, store),
    )
    paths = {}
    if video:
        fps = video_fps or _bag_rate(seq) or 15.0
        n = write_overlay_video(out / "overlay.mp4", overlay_frames_from_bags(bag, out / "outputs.bag", image_topic,
                                                                              player.topics["mask"],
                                                                              player.topics["tracked_objects"]),
                                fps)
        summary["video"] = str(out / "overlay.mp4") if n else None
        paths["video"] = str(out / "overlay.mp4")
    paths.update(write_report(out, summary, records))
    paths["output_bag"] = str(out / "outputs.bag")
    return ReplayResult(records, summary, outputs, dict(player.types), paths)


def _bag_rate(seq: bags.BagSequence) -> Optional[float]:
    stamps = [s for s, *_ in seq.images]
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)


def _prompt_warnings(seq: bags.BagSequence, records: Sequence[FrameRecord], tracked: Dict[int, Any],
                     store) -> List[str]:
    """Prompts whose object is missing from the first output at or after the prompt's frame."""
    out = []
    for stamp, _log, raw in seq.prompts:
        oid, action, _p, _l, _s = bags.prompt_from_msg(store.deserialize_cdr(raw, bags.PROMPT_TYPE))
        if action != 0:
            continue
        rec = next((r for r in records if r.stamp_ns >= stamp and r.stamp_ns in tracked), None)
        if rec is None:
            continue
        ids = {int(o.object_id) for o in tracked[rec.stamp_ns].objects}
        if oid not in ids:
            out.append(f"object {oid} (prompt stamped {stamp / 1e9:.9f}) is missing from the output of frame "
                       f"{rec.index}: the prompt reached the node late or was rejected")
    return out


def _last_diagnostics(outputs: Dict[str, List[Tuple[int, bytes]]], store) -> Optional[Dict[str, str]]:
    rows = outputs.get("diagnostics") or []
    if not rows:
        return None
    msg = store.deserialize_cdr(rows[-1][1], "diagnostic_msgs/msg/DiagnosticArray")
    out: Dict[str, str] = {}
    for status in msg.status:
        for kv in status.values:
            out[f"{status.name}/{kv.key}" if len(msg.status) > 1 else kv.key] = kv.value
    return out


def print_summary(summary: Dict[str, Any], paths: Dict[str, str], stream=None) -> None:
    stream = stream or sys.stdout
    lat = summary["latency_ms"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    def ms(v):
        return "n/a" if v is None else f"{v:.1f}"

    print(f"{summary.get('name')}: {summary['mode']}"
          + (f" x{summary['rate']:g}" if summary.get("rate") else ""), file=stream)
    print(f"  J&F {pct(summary['JF'])}  J {pct(summary['J'])}  F {pct(summary['F'])}", file=stream)
    print(f"  frames sent {summary['frames_sent']}, received {summary['frames_received']}, dropped "
          f"{summary['dropped']}", file=stream)
    print(f"  FPS {summary['fps'] or 0:.2f}; latency ms p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  "
          f"p99 {ms(lat['p99'])}", file=stream)
    from sampt_ros.core.metrics import format_timeline

    digest = summary.get("reacquisition")
    if digest:
        back = digest["mean_frames_to_reacquire"]
        j_back = digest["J_after_return_mean"]
        print(f"  re-acquisition: {digest['reacquired']}/{digest['events']} returns re-acquired"
              + (f" (after {back:.1f} frames on average)" if back is not None else "")
              + (f", J after return {j_back:.2f}" if j_back is not None else "")
              + f"; id swaps {digest['id_swaps']}; false-positive frames {digest['false_positive_frames']}",
              file=stream)
    for oid, obj in (summary.get("objects") or {}).items():
        if "timeline" in obj:
            print(f"  {format_timeline(oid, obj)}", file=stream)
    for w in summary.get("warnings") or []:
        print(f"  warning: {w}", file=stream)
    for key in ("markdown", "json", "output_bag", "video"):
        if key in paths:
            print(f"  {key}: {paths[key]}", file=stream)


# ---------------------------------------------------------------------------- compare-davis
def compare_davis(root: os.PathLike | str, out_dir: os.PathLike | str, sequences: Optional[Sequence[str]] = None,
                  config_files: Optional[Sequence[str]] = None, overrides: Optional[Sequence[str]] = None,
                  rate: float = 30.0, storage: str = "sqlite3",
                  timeout: float = 120.0, discovery_timeout: float = DEFAULT_DISCOVERY_TIMEOUT,
                  tolerance: float = 0.005, fresh_node: bool = False, video: bool = False,
                  progress: bool = True, stream=None) -> Dict[str, Any]:
    """The acceptance check (see the module docstring). Returns ``{"rows": [...], "ok": bool, ...}``."""
    from sampt_ros.core import factory
    from sampt_ros.tools import eval as sampt_eval

    stream = stream or sys.stdout
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, files = resolved_config(config_files, overrides)
    names = list(sequences) if sequences else sampt_eval.list_sequences(root)

    # 1. sampt-eval davis, in-process, same config
    print(f"[1/2] sampt-eval davis, profile {config.profile}", file=stream)
    engine = factory.build_engine(config)
    eval_summary = sampt_eval.run_davis(config, root, names, out / "eval", progress=progress, engine=engine,
                                        stdout=stream)

    # 2. bags + lockstep replay through one node
    print("[2/2] bags replayed in lockstep through the node", file=stream)
    domain_id = private_domain_id()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # same as the node's
    rows = []
    node = None
    player = None
    params = write_params_file(config, out / "node_params.yaml", {"node.mode": "lockstep", "node.image_qos": "reliable"})
    try:
        for k, seq_name in enumerate(names):
            bag_path = out / "bags" / seq_name
            bags.davis_to_bag(root, seq_name, bag_path, rate=rate, storage=storage, config_files=config_files,
                              overrides=overrides, overwrite=True)
            if node is None or fresh_node:
                if player is not None:
                    player.close()
                    player = None
                if node is not None:
                    node.stop()
                node = NodeProcess(params, DEFAULT_NAMESPACE, domain_id, out / f"node_{seq_name}.log"
                                   if fresh_node else out / "node.log")
                player = Player(DEFAULT_NAMESPACE, domain_id, bags.IMAGE_TYPE, reliable=True)
                needs_reset = False
            else:
                needs_reset = True
            try:
                res = run_replay(bag_path, out / "replay" / seq_name, lockstep=True, timeout=timeout,
                                 first_timeout=max(timeout, 300.0), discovery_timeout=discovery_timeout,
                                 video=video, player=player, progress=progress, name=seq_name,
                                 reset=needs_reset, storage=storage)
            except ReplayError as exc:
                raise ReplayError(f"{seq_name}: {exc}" + _log_tail(node.log_path)) from None
            s = res.summary
            ev = eval_summary["sequences"][seq_name]
            diff = abs((s["JF"] or 0.0) - ev["JF"])
            row = {"sequence": seq_name, "eval_JF": ev["JF"], "replay_JF": s["JF"], "diff": diff,
                   "frames": len(res.records), "sent": s["frames_sent"], "received": s["frames_received"],
                   "eval_J": ev["J"], "replay_J": s["J"], "eval_F": ev["F"], "replay_F": s["F"],
                   "latency_p50_ms": s["latency_ms"]["p50"], "fps": s["fps"], "warnings": s["warnings"]}
            rows.append(row)
            print(f"    {seq_name}: eval {100 * ev['JF']:.2f}  replay {100 * (s['JF'] or 0):.2f}  "
                  f"diff {100 * diff:.3f}  frames {s['frames_sent']}/{s['frames_received']}", file=stream)
    finally:
        if player is not None:
            player.close()
        if node is not None:
            node.stop()
    ok = all(r["diff"] <= tolerance and r["sent"] == r["received"] == r["frames"] for r in rows)
    result = {"rows": rows, "ok": ok, "tolerance": tolerance,
              "profile": config.profile, "config_files": files, "overrides": list(overrides or []),
              "mean_eval_JF": float(np.mean([r["eval_JF"] for r in rows])),
              "mean_replay_JF": float(np.mean([r["replay_JF"] or 0 for r in rows]))}
    with open(out / "compare.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    (out / "compare.md").write_text(compare_table(result), encoding="utf-8")
    print(compare_table(result), file=stream)
    return result


def compare_table(result: Dict[str, Any]) -> str:
    lines = [f"profile {result['profile']}, first-frame mask prompts, tolerance "
             f"{result['tolerance']:.3f} (J&F as fractions)", "",
             "| sequence | eval J&F | replay J&F | diff | frames sent/received |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['sequence']} | {r['eval_JF']:.4f} | {(r['replay_JF'] or 0):.4f} | {r['diff']:.4f} | "
                     f"{r['sent']}/{r['received']} (of {r['frames']}) |")
    lines.append(f"| mean | {result['mean_eval_JF']:.4f} | {result['mean_replay_JF']:.4f} | | |")
    lines.append("")
    lines.append("PASS" if result["ok"] else "FAIL")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- CLI
def _default_out(kind: str) -> Path:
    return Path("outputs") / kind / time.strftime("%Y%m%d-%H%M%S")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sampt-replay",
        description="Replay a bag into a sampt_ros node (lockstep or real time), record and score the outputs. "
                    "'sampt-replay compare-davis ROOT' checks replay == sampt-eval on every DAVIS sequence.")
    p.add_argument("bag", help="input bag folder (or 'compare-davis')")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--lockstep", action="store_true", help="send a frame only after the previous one's outputs")
    mode.add_argument("--rate", type=float, default=None, help="real time, scaled (default 1.0)")
    p.add_argument("--out", default=None, help="report folder (default outputs/replay/<time>)")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the node's namespace (default /sampt)")
    p.add_argument("--launch-node", action="store_true", help="start the node here (private ROS domain)")
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="with --launch-node: config file or profile name over config/sampt.yaml (repeatable)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: ROS_DOMAIN_ID, or a "
                   "random private one with --launch-node)")
    p.add_argument("--timeout", type=float, default=60.0, help="lockstep: seconds a frame may take (default 60)")
    p.add_argument("--first-timeout", type=float, default=300.0,
                   help="lockstep: seconds the first frame may take, model warm-up included (default 300)")
    p.add_argument("--discovery-timeout", type=float, default=DEFAULT_DISCOVERY_TIMEOUT)
    p.add_argument("--drain", type=float, default=3.0, help="real time: seconds to wait for late outputs")
    p.add_argument("--record-overlay", action="store_true", help="also record the node's overlay images")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    p.add_argument("--format", dest="storage", choices=bags.STORAGE_FORMATS, default="sqlite3",
                   help="storage of the recorded outputs bag")
    p.add_argument("--image-topic", default=bags.IMAGE_TOPIC, help="image topic in the bag")
    p.add_argument("--prompt-topic", default=bags.PROMPT_TOPIC, help="prompt topic in the bag")
    p.add_argument("--gt-topic", default=bags.GT_TOPIC, help="ground-truth topic in the bag")
    p.add_argument("--quiet", action="store_true")
    return p


def build_compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sampt-replay compare-davis",
        description="For every DAVIS sequence: sampt-eval's J&F vs a lockstep replay of its bag through the node.")
    p.add_argument("root", help="DAVIS-layout root")
    p.add_argument("--sequences", default=None, help="comma-separated (default: all)")
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="config file or profile name over config/sampt.yaml (repeatable), e.g. cpu")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="output folder (default outputs/compare/<time>)")
    p.add_argument("--tolerance", type=float, default=0.005)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--fresh-node", action="store_true", help="a new node per sequence instead of reset")
    p.add_argument("--video", action="store_true", help="overlay videos of the replays")
    p.add_argument("--format", dest="storage", choices=bags.STORAGE_FORMATS, default="sqlite3")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare-davis":
        args = build_compare_parser().parse_args(argv[1:])
        try:
            result = compare_davis(
                args.root, Path(args.out) if args.out else _default_out("compare"),
                sequences=[s for s in (args.sequences or "").split(",") if s] or None,
                config_files=args.config, overrides=args.set,
                storage=args.storage, timeout=args.timeout, tolerance=args.tolerance, fresh_node=args.fresh_node,
                video=args.video, progress=not args.quiet)
        except (ValueError, FileNotFoundError, ReplayError) as exc:
            print(f"sampt-replay compare-davis: error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - eval's own user errors
            if type(exc).__name__ == "EvalError":
                print(f"sampt-replay compare-davis: error: {exc}", file=sys.stderr)
                return 2
            raise
        return 0 if result["ok"] else 1

    parser = build_parser()
    args = parser.parse_args(argv)
    lockstep = bool(args.lockstep)
    rate = 1.0 if args.rate is None else args.rate
    if not lockstep and not rate > 0:
        parser.error(f"--rate must be > 0, got {rate}")
    if (args.config or args.set) and not args.launch_node:
        parser.error("--config/--set configure a node launched here: add --launch-node")
    out = Path(args.out) if args.out else _default_out("replay")
    try:
        res = run_replay(args.bag, out, lockstep=lockstep, rate=rate, namespace=args.namespace,
                         launch_node=args.launch_node, config_files=args.config, overrides=args.set,
                         domain_id=args.domain_id, timeout=args.timeout, first_timeout=args.first_timeout,
                         discovery_timeout=args.discovery_timeout, drain_s=args.drain,
                         record_overlay=args.record_overlay, video=not args.no_video, storage=args.storage,
                         image_topic=args.image_topic, prompt_topic=args.prompt_topic, gt_topic=args.gt_topic,
                         progress=not args.quiet)
    except (ValueError, FileNotFoundError, ReplayError) as exc:
        print(f"sampt-replay: error: {exc}", file=sys.stderr)
        return 2
    print_summary(res.summary, res.paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
