"""The SAM-PT ROS 2 node: a thin lifecycle node over :class:`sampt_ros.core.engine.SamPtEngine`.

Topics (relative, remappable; the node's namespace defaults to ``/sampt``):

* subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` (``node.compressed``),
  ``prompt`` (sampt_ros/PointPrompt), ``clicked_point`` (geometry_msgs/PointStamped in image
  pixels, e.g. rqt_image_view's mouse clicks), and with ``node.use_depth`` ``depth``
  (16UC1 mm / 32FC1 m, registered to the image) + ``camera_info``, matched to the image by
  approximate time (message_filters where installed, :mod:`sampt_ros.ros.sync` otherwise);
* publishes ``mask`` (mono8 label image), ``tracked_objects`` (sampt_ros/TrackedObjects),
  ``overlay`` (rgb8; while someone subscribes or ``node.publish_overlay``), ``markers``
  (visualization_msgs/MarkerArray, with depth) - each with its input image's header - and
  ``diagnostics`` (diagnostic_msgs/DiagnosticArray: FPS, latency, drops, device, model).
* services ``reset`` (std_srvs/Trigger) and ``remove_object`` (sampt_ros/RemoveObject).

Lifecycle: configure builds the engine (loads the models, the slow part, once); activate
creates the subscriptions, services and the worker thread; deactivate stops them; cleanup
frees the models. ``node.autostart`` (default true) configures and activates at start so
``ros2 run`` works without a lifecycle manager. A configuration or load error is logged once
and leaves the node running, unconfigured (no crash loop); fix it and trigger configure.

Threading: callbacks only convert messages and queue them; the worker thread
(:mod:`sampt_ros.ros.worker`) owns the engine and publishes. ``node.mode`` picks live
(newest frame wins) or lockstep (every frame, in order).

The message boundary (:mod:`sampt_ros.ros.codec`): every input is checked against the size
policy (``node.max_image_pixels``, ``node.max_image_bytes``, ``node.max_points_per_prompt``;
a compressed image's size is read from its header) before it is decoded; a rejected message is
counted per reason in the diagnostics and logged as one bounded line. No exception raised by a
message leaves a callback.

QoS: in lockstep the image inputs are reliable and keep-all (a reliable publisher is throttled
by DDS instead of losing frames); in live mode they follow ``node.image_qos``. Every
subscription and publisher takes the ROS 2 ``qos_overrides.<topic>.<subscription|publisher>.*``
parameters (``QoSOverridingOptions``), and a publisher whose QoS cannot match a subscription
(best effort into a reliable lockstep node) is reported by the incompatible-QoS event.
"""

from __future__ import annotations

import functools
import gc
import math
import sys
import threading
import time
from typing import Dict, List, Optional

import rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sampt_ros.ros import conversions as conv
from sampt_ros.ros.codec import CodecError, Limits, RejectionLog, bounded
from sampt_ros.ros.parameters import LIVE_NODE_KEYS, NodeParameters, NodeSettings
from sampt_ros.ros.sync import ApproxTimeMatcher
from sampt_ros.ros.worker import Click, EngineWorker, Frame

DEFAULT_NAMESPACE = "sampt"
DEFAULT_NAME = "sampt_node"


def make_qos(kind: str, depth: int, keep_all: bool = False) -> QoSProfile:
    """``sensor_data`` (best effort, volatile) or ``reliable`` QoS of the given history depth."""
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == "sensor_data" else ReliabilityPolicy.RELIABLE
    history = HistoryPolicy.KEEP_ALL if keep_all else HistoryPolicy.KEEP_LAST
    return QoSProfile(history=history, depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE)


def image_qos(settings: NodeSettings) -> QoSProfile:
    """The image inputs' QoS: lockstep reliable + keep-all (no frame lost), live ``node.image_qos``."""
    if settings.mode == "lockstep":
        return make_qos("reliable", settings.qos_depth, keep_all=True)
    return make_qos(settings.image_qos, settings.qos_depth)


def qos_text(qos: QoSProfile) -> str:
    """``reliable/keep_all`` style summary of a profile (diagnostics, logs)."""
    hist = "keep_all" if qos.history == HistoryPolicy.KEEP_ALL else f"keep_last({qos.depth})"
    return f"{qos.reliability.name.lower()}/{hist}"


def _overridable():
    """``QoSOverridingOptions`` with the default policies (history, depth, reliability)."""
    from rclpy.qos_overriding_options import QoSOverridingOptions

    return QoSOverridingOptions.with_default_policies()


def guarded(method):
    """A callback that no exception leaves: it is counted, logged as one bounded line, and the
    callback returns None (a message must never take the node down through ``rclpy.spin``)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - that is the point
            self._note_callback_error(method.__name__, exc)
            return None

    return wrapper


class SamptNode(LifecycleNode):
    """The node. Construct, then (unless managed externally) call :meth:`autostart`."""

    def __init__(self, node_name: str = DEFAULT_NAME, **kwargs) -> None:
        kwargs.setdefault("namespace", DEFAULT_NAMESPACE)
        super().__init__(node_name, **kwargs)
        self.params = NodeParameters(self)
        for note in self.params.notes:
            self.get_logger().info(note)
        if self.params.unknown_overrides:
            self.get_logger().warning(
                "ignoring parameters that are not sampt_ros settings (typo?): " + ", ".join(self.params.unknown_overrides))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.config = None
        self.settings: Optional[NodeSettings] = None
        self.engine = None
        self.worker: Optional[EngineWorker] = None
        self.state_label = "unconfigured"
        self._describe = ""
        self._device = ""
        self._pubs = {}
        self._subs: List[object] = []
        self._srvs: List[object] = []
        self._timer = None
        self._sync = None
        self._limits = Limits()
        self._rejections = RejectionLog()
        self._reject_lock = threading.Lock()
        self._callback_errors = 0
        self._incompatible_qos: Dict[str, int] = {}
        self._messages_lost = 0
        self._image_qos_text = ""
        self._prompts_received = 0
        self._clicks_received = 0
        self._last_image_time = 0.0

    # ------------------------------------------------------------------ start-up
    def autostart(self) -> bool:
        """Configure and activate if ``node.autostart``; returns whether the node is active."""
        value = self.get_parameter("node.autostart").value
        if value is not True:
            self.get_logger().info("node.autostart is false: waiting for lifecycle transitions")
            return False
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config, settings = self.params.build()
        except ValueError as exc:
            self.get_logger().error(f"invalid configuration, not configuring: {exc}")
            return TransitionCallbackReturn.FAILURE
        try:
            from sampt_ros.core.factory import build_engine, describe

            t0 = time.monotonic()
            engine = build_engine(config)
        except Exception as exc:  # noqa: BLE001 - a missing checkpoint etc. must not kill the node
            self.get_logger().error(
                f"cannot load the models ({type(exc).__name__}: {exc}); the node stays unconfigured - "
                f"fix the parameters and trigger the configure transition")
            return TransitionCallbackReturn.FAILURE
        self.config, self.settings, self.engine = config, settings, engine
        self._describe = describe(config)
        self._device = engine.device
        self._limits = Limits(max_image_pixels=settings.max_image_pixels, max_image_bytes=settings.max_image_bytes,
                              max_points_per_prompt=settings.max_points_per_prompt)
        out_qos = make_qos(settings.output_qos, settings.qos_depth)
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        from sampt_ros.msg import TrackedObjects

        try:
            self._pubs = {
                "mask": self._publisher(Image, "mask", out_qos),
                "tracked_objects": self._publisher(TrackedObjects, "tracked_objects", out_qos),
                "overlay": self._publisher(Image, "overlay", out_qos),
                "diagnostics": self._publisher(DiagnosticArray, "diagnostics", make_qos("reliable", 10)),
            }
            if settings.use_depth:
                self._pubs["markers"] = self._publisher(MarkerArray, "markers", out_qos)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid qos_overrides.* value
            self.get_logger().error(f"cannot create the publishers, not configuring: {bounded(str(exc), 400)}")
            for pub in self._pubs.values():
                self.destroy_lifecycle_publisher(pub)
            self._pubs = {}
            self.config = self.settings = self.engine = None
            return TransitionCallbackReturn.FAILURE
        if settings.warmup_frames and "cuda" in self._device:
            # first-call costs (CUDA context, cuDNN autotuning, torch.compile) are paid now, not on
            # the first camera frame (a CPU has none worth a warm-up)
            try:
                seconds = engine.warmup(frames=settings.warmup_frames)
                self.get_logger().info(f"warmed up in {seconds:.1f} s ({settings.warmup_frames} frames)")
            except Exception as exc:  # noqa: BLE001 - a failed warm-up is reported, the node still runs
                self.get_logger().warning(f"warm-up failed: {bounded(str(exc), 300)}")
        self.get_logger().info(
            f"configured in {time.monotonic() - t0:.1f} s: {self._describe} on {self._device}; mode {settings.mode}")
        self.state_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        self.worker = EngineWorker(
            self.engine, self._publish_result, mode=s.mode, queue_size=s.queue_size,
            max_objects=self.config.engine.max_objects, on_warning=self._worker_warning,
            max_points=s.max_points_per_prompt)
        self.worker.start()
        try:
            self._create_inputs(s)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid qos_overrides.* value
            self.get_logger().error(f"cannot create the subscriptions, not activating: {bounded(str(exc), 400)}")
            self._stop_inputs()
            return TransitionCallbackReturn.FAILURE
        from sampt_ros.srv import RemoveObject
        from std_srvs.srv import Trigger

        self._srvs = [
            self.create_service(Trigger, "reset", self._on_reset),
            self.create_service(RemoveObject, "remove_object", self._on_remove_object),
        ]
        self._timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self._last_image_time = time.monotonic()
        self.state_label = "active"
        self.get_logger().info(
            f"active: listening on {self.resolve_topic_name('image/compressed' if s.compressed else 'image')}"
            + (" + depth + camera_info" if s.use_depth else "") + f" ({self._image_qos_text})")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._sync = None
        for srv in self._srvs:
            self.destroy_service(srv)
        self._srvs = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.worker is not None:
            self.worker.stop(timeout=30.0)

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self.worker = None
        self.engine = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the models' memory back, not just to torch's cache

    # ------------------------------------------------------------------ QoS
    def _publisher(self, msg_type, topic: str, qos: QoSProfile):
        from rclpy.event_handler import PublisherEventCallbacks

        events = PublisherEventCallbacks(incompatible_qos=lambda info, t=topic: self._on_incompatible_qos(t, info))
        return self.create_lifecycle_publisher(msg_type, topic, qos, event_callbacks=events,
                                               qos_overriding_options=_overridable())

    def _subscription_kwargs(self, topic: str, qos: QoSProfile, image: bool = False) -> dict:
        from rclpy.event_handler import SubscriptionEventCallbacks

        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info, t=topic: self._on_incompatible_qos(t, info),
            message_lost=(lambda info: self._on_message_lost(info)) if image else None)
        return dict(qos_profile=qos, event_callbacks=events, qos_overriding_options=_overridable())

    def _subscribe(self, msg_type, topic: str, callback, qos: QoSProfile, image: bool = False):
        sub = self.create_subscription(msg_type, topic, callback, **self._subscription_kwargs(topic, qos, image))
        self._subs.append(sub)
        return sub

    @guarded
    def _on_incompatible_qos(self, topic: str, info) -> None:
        policy = getattr(getattr(info, "last_policy_kind", None), "name", str(getattr(info, "last_policy_kind", "?")))
        with self._reject_lock:
            self._incompatible_qos[topic] = int(getattr(info, "total_count", 0) or 0)
        hint = ""
        if "RELIABILITY" in str(policy).upper():
            hint = (" - a best-effort publisher cannot feed a reliable subscription (lockstep is reliable): "
                    "publish reliably, use node.mode live, or set qos_overrides.<topic>.subscription.reliability")
        self.get_logger().warning(bounded(
            f"incompatible QoS on {self.resolve_topic_name(topic)}: policy {policy} "
            f"({getattr(info, 'total_count', '?')} endpoints so far){hint}", 400))

    @guarded
    def _on_message_lost(self, info) -> None:
        with self._reject_lock:
            self._messages_lost = int(getattr(info, "total_count", self._messages_lost + 1))

    # ------------------------------------------------------------------ inputs
    def _create_inputs(self, s: NodeSettings) -> None:
        from geometry_msgs.msg import PointStamped
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from sampt_ros.msg import PointPrompt

        # prompts and clicks first: when a prompt and its frame are ready in the same executor
        # cycle, rclpy runs subscriptions in creation order, so the prompt reaches the worker first
        self._subscribe(PointPrompt, "prompt", self._on_prompt, make_qos("reliable", 100))
        self._subscribe(PointStamped, "clicked_point", self._on_click, make_qos("reliable", 10))
        img_qos = image_qos(s)
        self._image_qos_text = qos_text(img_qos)
        img_type, img_topic = (CompressedImage, "image/compressed") if s.compressed else (Image, "image")
        if not s.use_depth:
            self._subscribe(img_type, img_topic, self._on_image, img_qos, image=True)
        else:
            try:
                import message_filters  # type: ignore

                filters = [
                    message_filters.Subscriber(self, img_type, img_topic, **self._subscription_kwargs(img_topic, img_qos, True)),
                    message_filters.Subscriber(self, Image, "depth", **self._subscription_kwargs("depth", img_qos)),
                    message_filters.Subscriber(self, CameraInfo, "camera_info",
                                               **self._subscription_kwargs("camera_info", img_qos)),
                ]
                self._sync = message_filters.ApproximateTimeSynchronizer(filters, s.sync_queue_size, s.sync_slop)
                self._sync.registerCallback(self._on_synced)
                self._subs.extend(f.sub for f in filters)
            except ImportError:
                matcher = ApproxTimeMatcher(3, s.sync_queue_size, s.sync_slop,
                                            lambda m: conv.stamp_to_ns(m.header), self._on_synced)
                self._sync = matcher
                for i, (mtype, topic) in enumerate(((img_type, img_topic), (Image, "depth"), (CameraInfo, "camera_info"))):
                    self._subscribe(mtype, topic, functools.partial(self._on_sync_input, matcher, i), img_qos,
                                    image=i == 0)

    @guarded
    def _on_sync_input(self, matcher: ApproxTimeMatcher, index: int, msg) -> None:
        matcher.add(index, msg)

    # ------------------------------------------------------------------ rejections
    def _reject(self, kind: str, reason: str, text: str) -> None:
        """Count a rejected message (per kind and reason) and log it as one bounded line."""
        with self._reject_lock:
            line = self._rejections.add(kind, reason, text, time.monotonic())
        if line is not None:
            self.get_logger().warning(line)

    def _note_callback_error(self, where: str, exc: BaseException) -> None:
        with self._reject_lock:
            self._callback_errors += 1
        self.get_logger().error(bounded(f"{where} failed, message dropped: {type(exc).__name__}: {exc}", 300))

    def _convert_image(self, msg) -> Optional[object]:
        try:
            return conv.message_to_rgb(msg, self._limits)
        except CodecError as exc:
            self._reject("image", exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - no exception type from a message may leave the callback
            self._reject("image", "internal", f"{type(exc).__name__}: {exc}")
        return None

    @guarded
    def _on_image(self, msg) -> None:
        received = time.monotonic()
        self._last_image_time = received
        rgb = self._convert_image(msg)
        if rgb is None or self.worker is None:
            return
        frame = Frame(rgb=rgb, stamp_ns=conv.stamp_to_ns(msg.header), header=msg.header, received=received,
                      convert_s=time.monotonic() - received)
        self._submit(frame)

    @guarded
    def _on_synced(self, image_msg, depth_msg, info_msg) -> None:
        received = time.monotonic()
        self._last_image_time = received
        rgb = self._convert_image(image_msg)
        if rgb is None or self.worker is None:
            return
        depth = intrinsics = None
        try:
            depth = conv.depth_to_metres(depth_msg, self._limits)
            intrinsics = conv.intrinsics_from_camera_info(info_msg)
            if depth.shape != rgb.shape[:2]:
                raise conv.ImageError(f"depth is {depth.shape[1]}x{depth.shape[0]}, the image "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}", "depth_size")
        except Exception as exc:  # noqa: BLE001 - the frame is still tracked, without 3-D
            depth = intrinsics = None
            self._reject("depth", getattr(exc, "reason", "internal"), f"no 3-D for this frame: {exc}")
        frame = Frame(rgb=rgb, stamp_ns=conv.stamp_to_ns(image_msg.header), header=image_msg.header,
                      received=received, convert_s=time.monotonic() - received, depth=depth, intrinsics=intrinsics)
        self._submit(frame)

    def _submit(self, frame: Frame) -> None:
        if not self.worker.submit_frame(frame):
            self.get_logger().error(
                f"lockstep queue full ({self.worker.queue_size} frames): frame refused; the input outruns the "
                "model - pace the replay on the outputs or use node.mode live", throttle_duration_sec=2.0)

    @guarded
    def _on_prompt(self, msg) -> None:
        if self.worker is None:
            return
        try:
            prompt = conv.prompt_from_msg(msg, self._limits)
        except CodecError as exc:
            self.worker.note_rejected_prompt(exc.reason)
            self._reject("prompt", exc.reason, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - no exception type from a message may leave the callback
            self.worker.note_rejected_prompt("internal")
            self._reject("prompt", "internal", f"{type(exc).__name__}: {exc}")
            return
        self._prompts_received += 1
        self.worker.submit_prompt(prompt)

    @guarded
    def _on_click(self, msg) -> None:
        if self.worker is None:
            return
        x, y = float(msg.point.x), float(msg.point.y)
        if not (math.isfinite(x) and math.isfinite(y)):
            self.worker.note_rejected_prompt("nonfinite")
            self._reject("click", "nonfinite", f"non-finite coordinates ({x}, {y})")
            return
        oid = int(self.get_parameter("node.click_object_id").value)
        label = int(self.get_parameter("node.click_label").value)
        self._clicks_received += 1
        self.worker.submit_click(Click(oid, label, x, y))

    def _worker_warning(self, msg: str) -> None:
        self.get_logger().warning(bounded(msg))

    # ------------------------------------------------------------------ services
    @guarded
    def _on_reset(self, request, response):
        if self.worker is None:
            response.success, response.message = False, "the node is not active"
            return response
        self.worker.submit_reset()
        response.success = True
        response.message = "all objects, prompts and buffered frames are forgotten before the next frame"
        return response

    @guarded
    def _on_remove_object(self, request, response):
        oid = int(request.object_id)
        if self.worker is None:
            response.success, response.message = False, "the node is not active"
        elif self.worker.submit_remove(oid):
            response.success, response.message = True, f"object {oid} is removed before the next frame"
        else:
            response.success, response.message = False, f"unknown object id {oid}"
        return response

    # ------------------------------------------------------------------ outputs (worker thread)
    def _publish_result(self, frame: Frame, result) -> None:
        header = frame.header
        h, w = frame.rgb.shape[:2]
        pubs = self._pubs
        pubs["mask"].publish(conv.label_image_to_msg(conv.label_image(result, (h, w)), header))
        objects = conv.tracked_objects_msg(result, header, frame.depth, frame.intrinsics)
        pubs["tracked_objects"].publish(objects)
        overlay = pubs["overlay"]
        if self.settings.publish_overlay or overlay.get_subscription_count() > 0:
            from sampt_ros.core.visualization import draw_overlay

            overlay.publish(conv.rgb_to_image_msg(draw_overlay(frame.rgb, result), header))
        if "markers" in pubs and frame.depth is not None and frame.intrinsics is not None:
            pubs["markers"].publish(conv.markers_msg(objects, header, self.settings.marker_scale))

    @guarded
    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        if self.worker is None:
            return
        st = self.worker.stats()
        ms = 1000.0
        lat50, lat99 = st.percentile(st.latency, 50), st.percentile(st.latency, 99)
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: SAM-PT tracker"
        status.hardware_id = self._device
        idle = time.monotonic() - self._last_image_time
        if st.overflows or st.failed:
            status.level = DiagnosticStatus.WARN
            status.message = f"{st.overflows} frames refused (lockstep queue full), {st.failed} failed"
        elif self._incompatible_qos:
            status.level = DiagnosticStatus.WARN
            status.message = "a publisher with incompatible QoS: " + ", ".join(sorted(self._incompatible_qos))
        elif idle > 5.0:
            status.level = DiagnosticStatus.WARN
            status.message = f"no image for {idle:.0f} s"
        else:
            status.level = DiagnosticStatus.OK
            status.message = f"{st.fps:.1f} FPS, {len(st.objects)} objects, {st.dropped} dropped"
        values = {
            "fps": f"{st.fps:.2f}",
            "latency_p50_ms": f"{lat50 * ms:.1f}",
            "latency_p99_ms": f"{lat99 * ms:.1f}",
            "step_p50_ms": f"{st.percentile(st.step, 50) * ms:.1f}",
            "node_overhead_p50_ms": f"{st.percentile(st.overhead, 50) * ms:.2f}",
            "frames_received": str(st.received),
            "frames_processed": str(st.processed),
            "dropped_frames": str(st.dropped),
            "lockstep_overflows": str(st.overflows),
            "failed_frames": str(st.failed),
            "rejected_images": str(self._rejections.total("image")),
            "rejected_prompts": str(st.rejected_prompts),
            "rejected_depth": str(self._rejections.total("depth")),
            "callback_errors": str(self._callback_errors),
            "incompatible_qos": str(sum(self._incompatible_qos.values())),
            "messages_lost": str(self._messages_lost),
            "resized_frames": str(st.resizes),
            "pending_prompts": str(st.pending_prompts),
            "image_qos": self._image_qos_text,
            "prompts_received": str(self._prompts_received),
            "clicks_received": str(self._clicks_received),
            "queued_frames": str(st.queued_frames),
            "objects": str(len(st.objects)),
            "object_ids": ",".join(map(str, st.objects)),
            "mode": self.settings.mode,
            "device": self._device,
            "model": self._describe,
            "profile": str(self.config.profile),
        }
        with self._reject_lock:
            counts = {kind: dict(per) for kind, per in self._rejections.counts.items()}
        for reason, n in sorted(counts.get("image", {}).items()):
            values[f"rejected_images.{reason}"] = str(n)
        for reason, n in sorted(st.rejected_reasons.items()):
            values[f"rejected_prompts.{reason}"] = str(n)
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._pubs["diagnostics"].publish(msg)

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        changes = {p.name: p.value for p in params}
        live = {n: v for n, v in changes.items() if n.startswith("node.") and n[5:] in LIVE_NODE_KEYS}
        if not live:
            return SetParametersResult(successful=True)
        node_values = {k[5:]: v for k, v in self.params.values(live).items() if k.startswith("node.")}
        try:
            settings = NodeSettings.from_dict(node_values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self.settings is not None:
            for key in LIVE_NODE_KEYS:
                setattr(self.settings, key, getattr(settings, key))
        return SetParametersResult(successful=True)


def tune_malloc() -> bool:
    """glibc: serve blocks of 256 KiB and more (image payloads) with mmap, so they go back to the
    system when freed. By default glibc raises its mmap threshold after the first large free and
    serves later image-size blocks from heaps it rarely returns, so a burst of large (or hostile)
    messages leaves the node tens of MB larger for good. ``MALLOC_MMAP_THRESHOLD_`` in the
    environment wins. Returns whether it applied."""
    import os

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 256 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def main(args=None) -> int:
    """Entry point of ``ros2 run sampt_ros sampt_node`` and the ``sampt-node`` console script."""
    from rclpy.executors import ExternalShutdownException

    tune_malloc()  # before rclpy starts DDS's threads
    rclpy.init(args=args)
    node = None
    try:
        node = SamptNode()
        node.autostart()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._stop_inputs()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
