"""The thread that owns the engine: frames and prompts go in through a queue, results come out
through a callback (ROS-free, so it is tested and benchmarked without DDS).

Why a thread: ROS callbacks must never wait for the model (as image_pipeline's
camera_calibration does it); they convert a message, hand it over and return. Every engine
call, prompts included, happens on this one thread, in the order the inputs arrived, so the
engine needs no locks.

Queue policy (``mode``):

* ``live`` - at most ONE frame waits; a newer frame replaces it and the replaced frame counts
  as dropped (:attr:`WorkerStats.dropped`). Prompts, clicks and commands are never dropped.
* ``lockstep`` - every frame is processed, in arrival order. The queue holds up to
  ``queue_size`` frames (default 1000, about 0.9 GB of 640x480 RGB). It only fills when the
  input outruns the model for that long: a replay for evaluation should pace itself on the
  node's outputs. A frame arriving at a full queue is refused loudly and counted in
  ``dropped`` and ``overflows`` rather than letting memory grow without bound.

Prompt timing: a prompt carries the stamp of the frame its points were placed on.

* stamp 0 - the next frame processed;
* a frame not processed yet - the prompt waits and is applied just before that frame is
  processed (a rosbag replay sends it just before its frame). If that frame never gets
  processed (dropped in live mode), it lands on the first later frame;
* a frame already processed - tracking starts on that frame if the engine still buffers it
  (stamps map to engine frame indices for the recent frames); otherwise it is rejected.

A rejected prompt is reported through ``on_warning`` with the reason and changes nothing.

Frame sizes: a frame the engine refuses (not ``HxWx3 uint8``, a side under 8 px) changes
nothing: it is counted as failed and every object stays. A valid frame of another size (a
camera reconfigured) goes to the engine, which keeps the objects and rescales them (it reports
that in ``FrameResult.warnings``); only an engine that cannot (it raises ``ValueError`` for the
new size) is reset, with a warning.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..core.engine import MIN_SIDE
from ..core.types import as_rgb_image

ACTION_SET = 0  #: PointPrompt.ACTION_SET
ACTION_REMOVE = 1  #: PointPrompt.ACTION_REMOVE

MODES = ("live", "lockstep")


@dataclass(eq=False)
class Frame:
    """One input frame.

    Attributes:
        rgb: ``HxWx3 uint8`` RGB.
        stamp_ns: the header stamp in nanoseconds.
        header: the input header, carried to every output (opaque here).
        received: ``time.monotonic()`` when the message arrived (latency reference).
        convert_s: seconds the callback spent converting the message.
        depth: ``HxW float32`` metres (NaN unknown) registered to ``rgb``, or None.
        intrinsics: the camera (:class:`~sampt_ros.ros.geometry.Intrinsics`), or None.
    """

    rgb: np.ndarray
    stamp_ns: int
    header: object = None
    received: float = 0.0
    convert_s: float = 0.0
    depth: Optional[np.ndarray] = None
    intrinsics: object = None


@dataclass(eq=False)
class Prompt:
    """A validated prompt for one object.

    Attributes:
        object_id: 1..255.
        action: :data:`ACTION_SET` or :data:`ACTION_REMOVE`.
        points: ``Nx2 float`` (x, y) pixels (empty for remove).
        labels: ``N int`` 1 positive / 0 negative.
        stamp_ns: stamp of the frame the points belong to; 0 = the next frame.
        mask: ``HxW bool`` instead of points (the engine samples the query points from it).
    """

    object_id: int
    action: int
    points: np.ndarray
    labels: np.ndarray
    stamp_ns: int = 0
    mask: Optional[np.ndarray] = None


@dataclass(eq=False)
class Click:
    """One click in image pixels for ``object_id``, label 1 positive / 0 negative."""

    object_id: int
    label: int
    x: float
    y: float


@dataclass(eq=False)
class _Command:
    kind: str  # "reset" | "remove"
    object_id: int = 0


@dataclass
class WorkerStats:
    """A snapshot of the worker's counters and recent timings (seconds).

    ``latency`` is output-published time minus message-receipt time, both ``time.monotonic()``
    in the node process (so it holds under sim time too); ``overhead`` is the node's own
    per-frame work (conversion in the callback + everything the worker does besides
    ``engine.step``: prompt handling, message building, publishing).
    """

    received: int = 0
    processed: int = 0
    dropped: int = 0
    overflows: int = 0
    failed: int = 0
    rejected_prompts: int = 0
    rejected_reasons: Dict[str, int] = field(default_factory=dict)
    resizes: int = 0
    pending_prompts: int = 0
    queued_frames: int = 0
    objects: Tuple[int, ...] = ()
    fps: float = 0.0
    latency: List[float] = field(default_factory=list)
    step: List[float] = field(default_factory=list)
    overhead: List[float] = field(default_factory=list)

    @staticmethod
    def percentile(values: List[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")


ResultCallback = Callable[[Frame, object], None]


class EngineWorker:
    """Runs ``engine`` on its own thread.

    Args:
        engine: a :class:`~sampt_ros.core.engine.SamPtEngine` (or anything with its API).
        on_result: ``(frame, FrameResult) -> None``, called on the worker thread after each
            step; it publishes. Its duration counts as node overhead.
        mode: ``live`` or ``lockstep`` (see the module docstring).
        queue_size: lockstep's frame bound (>= 1).
        max_objects: refuse prompts that would create more objects than this.
        on_warning: ``str -> None`` for rejected prompts and failed frames (the node logs).
        history: how many processed frames' stamps are remembered for stamp -> index lookup.
        max_points: the most points one object's prompt (or its accumulated clicks) may have.
    """

    def __init__(self, engine, on_result: ResultCallback, mode: str = "live", queue_size: int = 1000,
                 max_objects: int = 32, on_warning: Optional[Callable[[str], None]] = None,
                 history: int = 256, max_pending: int = 256, max_points: int = 256) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.engine = engine
        self.mode = mode
        self.queue_size = int(queue_size)
        self.max_objects = int(max_objects)
        self.max_points = int(max_points)
        self._on_result = on_result
        self._on_warning = on_warning or (lambda msg: None)
        self._cond = threading.Condition()
        self._queue: Deque[object] = collections.deque()
        self._waiting_frame: Optional[Frame] = None  # live mode: the one frame in the queue
        self._queued_frames = 0
        self._busy = False
        self._running = False
        self._thread: Optional[threading.Thread] = None
        # worker-thread state
        self._pending: List[Prompt] = []  # prompts waiting for their frame, in arrival order
        self._max_pending = int(max_pending)
        self._history: Deque[Tuple[int, int, Tuple[int, int]]] = collections.deque(maxlen=history)
        self._clicks: Dict[int, List[Tuple[float, float, int]]] = {}
        # counters (written by both threads under the lock)
        self._received = self._processed = self._dropped = self._overflows = 0
        self._failed = self._rejected = self._resizes = 0
        self._reasons: Dict[str, int] = {}
        self._known_ids: Tuple[int, ...] = ()
        self._done_times: Deque[float] = collections.deque(maxlen=600)
        self._latency: Deque[float] = collections.deque(maxlen=600)
        self._step: Deque[float] = collections.deque(maxlen=600)
        self._overhead: Deque[float] = collections.deque(maxlen=600)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="sampt_engine_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop after the frame being processed (queued inputs are discarded)."""
        with self._cond:
            self._running = False
            self._queue.clear()
            self._waiting_frame = None
            self._queued_frames = 0
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._running

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the queue is empty and nothing is being processed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------------ producers (any thread)
    def submit_frame(self, frame: Frame) -> bool:
        """Queue a frame. Returns False when it was refused (lockstep queue full)."""
        with self._cond:
            self._received += 1
            if self.mode == "live":
                if self._waiting_frame is not None:
                    self._queue.remove(self._waiting_frame)  # newest wins
                    self._dropped += 1
                    self._queued_frames -= 1
                self._waiting_frame = frame
            elif self._queued_frames >= self.queue_size:
                self._dropped += 1
                self._overflows += 1
                return False
            self._queue.append(frame)
            self._queued_frames += 1
            self._cond.notify_all()
        return True

    def submit_prompt(self, prompt: Prompt) -> None:
        """Queue a prompt. One stamped with a frame still queued goes just before that frame."""
        with self._cond:
            pos = len(self._queue)
            if prompt.stamp_ns:
                for i, item in enumerate(self._queue):
                    if isinstance(item, Frame) and item.stamp_ns >= prompt.stamp_ns:
                        pos = i
                        break
            self._queue.insert(pos, prompt)
            self._cond.notify_all()

    def submit_click(self, click: Click) -> None:
        self._submit(click)

    def submit_reset(self) -> None:
        self._submit(_Command("reset"))

    def submit_remove(self, object_id: int) -> bool:
        """Queue removing an object; returns whether it is known (tracked or waiting) now."""
        with self._cond:
            known = object_id in self._known_ids or any(
                isinstance(p, Prompt) and p.object_id == object_id and p.action == ACTION_SET
                for p in list(self._queue) + self._pending)
        self._submit(_Command("remove", object_id))
        return known

    def _submit(self, item) -> None:
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()

    # ------------------------------------------------------------------ statistics
    def stats(self) -> WorkerStats:
        with self._cond:
            now = time.monotonic()
            recent = [t for t in self._done_times if now - t <= 5.0]
            if len(recent) >= 2 and recent[-1] > recent[0]:
                fps = (len(recent) - 1) / (recent[-1] - recent[0])
            else:
                fps = 0.0
            return WorkerStats(
                received=self._received, processed=self._processed, dropped=self._dropped,
                overflows=self._overflows, failed=self._failed, rejected_prompts=self._rejected,
                rejected_reasons=dict(self._reasons), resizes=self._resizes, pending_prompts=len(self._pending),
                queued_frames=self._queued_frames, objects=self._known_ids, fps=fps,
                latency=list(self._latency), step=list(self._step), overhead=list(self._overhead),
            )

    def note_rejected_prompt(self, reason: str = "malformed") -> None:
        """Count a prompt the node rejected before it reached the worker (``reason``: a short key)."""
        with self._cond:
            self._rejected += 1
            self._reasons[reason] = self._reasons.get(reason, 0) + 1

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._queue:
                    self._cond.wait()
                if not self._running:
                    self._busy = False
                    self._cond.notify_all()
                    return
                item = self._queue.popleft()
                if isinstance(item, Frame):
                    self._queued_frames -= 1
                    if item is self._waiting_frame:
                        self._waiting_frame = None
                self._busy = True
            try:
                if isinstance(item, Frame):
                    self._process_frame(item)
                elif isinstance(item, Prompt):
                    self._handle_prompt(item)
                elif isinstance(item, Click):
                    self._handle_click(item)
                else:
                    self._handle_command(item)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self._warn(f"internal error while handling {type(item).__name__}: {exc!r}", reject=False)
            finally:
                with self._cond:
                    self._known_ids = tuple(self.engine.object_ids)
                    self._busy = False
                    self._cond.notify_all()

    def _warn(self, msg: str, reject: bool = True, reason: str = "engine") -> None:
        if reject:
            with self._cond:
                self._rejected += 1
                self._reasons[reason] = self._reasons.get(reason, 0) + 1
        self._on_warning(msg)

    # -- frames
    def _fail(self, frame: Frame, why: str) -> None:
        with self._cond:
            self._failed += 1
        self._on_warning(f"frame stamped {frame.stamp_ns} not processed: {why}")

    def _process_frame(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        try:  # refused before anything changes: no prompt applied, no reset, objects kept
            rgb = as_rgb_image(frame.rgb, "frame", min_side=MIN_SIDE)
        except ValueError as exc:
            self._fail(frame, str(exc))
            return
        h, w = rgb.shape[:2]
        resized = bool(self._history) and self._history[-1][2] != (h, w)
        self._apply_pending(frame)
        t1 = time.perf_counter()
        try:
            result = self.engine.step(rgb)
        except ValueError as exc:
            if not resized:
                self._fail(frame, f"the engine refused it: {exc}")
                return
            # an engine that cannot rescale its objects: start over at the new size
            old = self._history[-1][2]
            self._on_warning(f"frame size changed from {old[1]}x{old[0]} to {w}x{h} and the engine cannot "
                             f"rescale ({exc}): resetting the tracker (objects are forgotten)")
            self._reset_all()
            self._apply_pending(frame)
            try:
                result = self.engine.step(rgb)
            except Exception as exc2:  # noqa: BLE001
                self._fail(frame, f"engine step failed: {exc2!r}")
                return
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self._fail(frame, f"engine step failed: {exc!r}")
            return
        t2 = time.perf_counter()
        if resized:
            with self._cond:
                self._resizes += 1
        self._history.append((frame.stamp_ns, int(result.frame_index), (h, w)))
        resolution_change = getattr(result, "resolution_change", None)
        for warning in getattr(result, "warnings", ()) or ():
            text = str(warning)
            if resolution_change is not None and text == resolution_change:
                self._on_warning(text)  # the engine's note on the new size: not a dropped prompt
            else:
                self._warn(f"prompt dropped: {warning}", reason="dropped_by_engine")
        try:
            self._on_result(frame, result)
        except Exception as exc:  # noqa: BLE001
            self._on_warning(f"publishing the result of frame {result.frame_index} failed: {exc!r}")
        t3 = time.perf_counter()
        now = time.monotonic()
        with self._cond:
            self._processed += 1
            self._done_times.append(now)
            self._latency.append(now - frame.received if frame.received else t3 - t0)
            self._step.append(t2 - t1)
            self._overhead.append(frame.convert_s + (t1 - t0) + (t3 - t2))

    def _apply_pending(self, frame: Frame) -> None:
        """Apply the waiting prompts whose frame is this one (or was skipped before it)."""
        pending, self._pending = self._pending, []
        keep: List[Prompt] = []
        for p in pending:
            if p.stamp_ns and p.stamp_ns > frame.stamp_ns:
                keep.append(p)
            else:
                self._apply_prompt(p, frame_index=None, shape=frame.rgb.shape[:2])
        self._pending = keep + self._pending

    # -- prompts
    def _handle_prompt(self, p: Prompt) -> None:
        last_stamp = self._history[-1][0] if self._history else None
        if p.stamp_ns == 0 or last_stamp is None or p.stamp_ns > last_stamp:
            if len(self._pending) >= self._max_pending:
                old = self._pending.pop(0)
                self._warn(f"object {old.object_id}: prompt for stamp {old.stamp_ns} discarded: "
                           f"more than {self._max_pending} prompts wait for frames", reason="pending_overflow")
            self._pending.append(p)  # waits for its frame
            return
        if p.action == ACTION_REMOVE:
            self._remove(p.object_id)
            return
        if p.stamp_ns < self._history[0][0]:
            self._warn(f"object {p.object_id}: prompt stamped {p.stamp_ns * 1e-9:.3f} s is older than every "
                       f"frame still known (the oldest is {self._history[0][0] * 1e-9:.3f} s)", reason="stale")
            return
        # an already processed frame: the first one stamped at or after the prompt
        for stamp, index, shape in self._history:
            if stamp >= p.stamp_ns:
                if not self.engine.has_frame(index):
                    break
                self._apply_prompt(p, frame_index=index, shape=shape)
                return
        self._warn(f"object {p.object_id}: prompt stamped {p.stamp_ns * 1e-9:.3f} s refers to a frame "
                   f"that is no longer buffered (the engine keeps the last "
                   f"{getattr(getattr(self.engine, 'tracker', None), 'buffer_size', '?')} frames)", reason="stale")

    def _apply_prompt(self, p: Prompt, frame_index: Optional[int], shape: Tuple[int, int]) -> bool:
        if p.action == ACTION_REMOVE:
            self._remove(p.object_id)
            return True
        h, w = shape
        pts = p.points
        if p.mask is not None and p.mask.shape != (h, w):
            self._warn(f"object {p.object_id}: the mask is {p.mask.shape[1]}x{p.mask.shape[0]}, the frame {w}x{h}",
                       reason="mask_size")
            return False
        if len(pts) > self.max_points:
            self._warn(f"object {p.object_id}: {len(pts)} points, more than {self.max_points}", reason="too_many_points")
            return False
        if np.any(pts < -0.5) or np.any(pts[:, 0] > w - 0.5) or np.any(pts[:, 1] > h - 0.5):
            bad = pts[(pts[:, 0] < -0.5) | (pts[:, 1] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] > h - 0.5)]
            shown = bad[:4].round(1).tolist()
            more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
            self._warn(f"object {p.object_id}: {len(bad)} points outside the {w}x{h} image: {shown}{more}",
                       reason="outside_image")
            return False
        ids = self.engine.object_ids
        if p.object_id not in ids and len(ids) >= self.max_objects:
            self._warn(f"object {p.object_id}: too many objects (engine.max_objects = {self.max_objects})",
                       reason="too_many_objects")
            return False
        try:
            if p.mask is not None:
                self.engine.set_prompt(p.object_id, mask=p.mask, frame_index=frame_index)
            else:
                self.engine.set_prompt(p.object_id, points=pts, labels=p.labels, frame_index=frame_index)
        except (KeyError, ValueError) as exc:
            self._warn(f"object {p.object_id}: prompt rejected: {exc}", reason="engine")
            return False
        self._clicks.pop(p.object_id, None)  # a full prompt replaces the clicks so far
        return True

    def _handle_click(self, c: Click) -> None:
        if not self._history:
            self._warn(f"object {c.object_id}: click ignored: no frame has been processed yet", reason="no_frame")
            return
        _, index, (h, w) = self._history[-1]
        if len(self._clicks.get(c.object_id, [])) >= self.max_points:
            self._warn(f"object {c.object_id}: click ignored: it already has {self.max_points} clicked points "
                       "(send a prompt to replace them)", reason="too_many_points")
            return
        clicks = self._clicks.get(c.object_id, []) + [(c.x, c.y, c.label)]
        pts = np.array([(x, y) for x, y, _ in clicks], dtype=np.float64)
        labels = np.array([lab for _, _, lab in clicks], dtype=np.int64)
        if not np.any(labels == 1):
            self._warn(f"object {c.object_id}: the first click of an object must be positive (set node.click_label to 1)",
                       reason="labels")
            return
        frame_index = index if self.engine.has_frame(index) else None
        p = Prompt(c.object_id, ACTION_SET, pts, labels, 0)
        if self._apply_prompt(p, frame_index=frame_index, shape=(h, w)):
            self._clicks[c.object_id] = clicks

    # -- commands
    def _handle_command(self, cmd: _Command) -> None:
        if cmd.kind == "reset":
            self._reset_all()
        elif cmd.kind == "remove":
            self._remove(cmd.object_id)

    def _remove(self, object_id: int) -> None:
        self.engine.remove_object(object_id)
        self._clicks.pop(object_id, None)
        self._pending = [p for p in self._pending if p.object_id != object_id]

    def _reset_all(self) -> None:
        self.engine.reset()
        self._pending.clear()
        self._clicks.clear()
        self._history.clear()
