"""Replay reports: numbers (JSON + Markdown), plots (PNG) and an overlay video (mp4).

A replay (``sampt-replay``) produces one :class:`FrameRecord` per input frame. From them:

* **latency** of a frame = receipt time of its *last* output (``mask`` and
  ``tracked_objects``, both carrying the frame's stamp) minus the time the frame was
  published, in milliseconds; percentiles p50/p95/p99 are over the frames that got both
  outputs;
* **FPS** = frames with both outputs / (last output receipt - first frame published);
* **dropped** = frames published without both outputs by the end of the replay (in
  ``lockstep`` mode this must be 0);
* J, F, J&F (fractions 0..1) come from :class:`~sampt_ros.core.metrics.SequenceScorer` (mean
  over frames, first and last excluded, as DAVIS); a dropped frame scores as an empty mask;
* per object (``objects``) its J and F, its state timeline from the ``tracked_objects``
  messages and its re-acquisition figures (events where the ground truth shows it gone and
  back: J after the return, frames until re-acquired; id swaps; false-positive frames; final
  state), computed by :class:`~sampt_ros.core.metrics.ReacquisitionScorer` exactly as
  ``sampt-eval davis`` computes them, and their digest (``reacquisition``).

``python -m sampt_ros.tools.report video INPUT.bag OUTPUT.bag OUT.mp4`` rebuilds the overlay
video from a bag and the bag of recorded outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from sampt_ros.core.types import FrameResult, ObjectResult, ObjectState

MASK_TOPIC = "/sampt/mask"
TRACKED_TOPIC = "/sampt/tracked_objects"


@dataclass
class FrameRecord:
    """What happened to one input frame during a replay.

    Attributes:
        index: position of the frame in the bag (0-based).
        stamp_ns: the frame's header stamp.
        sent_s: when it was published (``time.monotonic()`` seconds), None if never sent.
        mask_s, tracked_s: when the ``mask`` / ``tracked_objects`` output with this stamp
            arrived (same clock), None if it did not.
        J, F: this frame's region and boundary scores (0..1) when ground truth exists.
    """

    index: int
    stamp_ns: int
    sent_s: Optional[float] = None
    mask_s: Optional[float] = None
    tracked_s: Optional[float] = None
    J: Optional[float] = None
    F: Optional[float] = None

    @property
    def received_s(self) -> Optional[float]:
        """Receipt time of the frame's last output, None unless both outputs arrived."""
        if self.mask_s is None or self.tracked_s is None:
            return None
        return max(self.mask_s, self.tracked_s)

    @property
    def latency_s(self) -> Optional[float]:
        r = self.received_s
        return None if r is None or self.sent_s is None else r - self.sent_s


def latency_stats(latencies_s: Sequence[float]) -> Dict[str, Optional[float]]:
    """``{"n", "p50", "p95", "p99", "mean", "max"}`` in milliseconds (None when empty)."""
    lat = np.asarray([x for x in latencies_s if x is not None and math.isfinite(x)], np.float64) * 1e3
    if lat.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {"n": int(lat.size), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "mean": float(lat.mean()), "max": float(lat.max())}


def summarize(records: Sequence[FrameRecord], scores: Optional[Mapping[str, float]] = None,
              **info: Any) -> Dict[str, Any]:
    """The replay's headline numbers.

    Args:
        records: one per input frame, in order.
        scores: ``{"J", "F", "JF"}`` fractions (optionally ``"objects"`` and
            ``"reacquisition"``, see :func:`sampt_ros.tools.replay.score`), or None when the bag
            has no ground truth.
        info: anything else to keep in the report (mode, rate, bag paths, config, ...).
    """
    sent = [r for r in records if r.sent_s is not None]
    received = [r for r in sent if r.received_s is not None]
    partial = [r for r in sent if r.received_s is None and (r.mask_s is not None or r.tracked_s is not None)]
    fps = None
    if received:
        span = max(r.received_s for r in received) - min(r.sent_s for r in sent)
        fps = len(received) / span if span > 0 else None
    out: Dict[str, Any] = {
        "frames": len(records),
        "frames_sent": len(sent),
        "frames_received": len(received),
        "dropped": len(sent) - len(received),
        "partial": len(partial),
        "latency_ms": latency_stats([r.latency_s for r in received]),
        "fps": fps,
        "J": None, "F": None, "JF": None,
        "objects": None, "reacquisition": None,
    }
    if scores is not None:
        out.update({k: float(scores[k]) for k in ("J", "F", "JF")})
        out["objects"] = scores.get("objects")
        out["reacquisition"] = scores.get("reacquisition")
    out.update(info)
    return out


# ---------------------------------------------------------------------------- files
def _fmt(value: Any, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value * scale:.{digits}f}{unit}"


def markdown(summary: Mapping[str, Any], plots: Mapping[str, str] = None) -> str:
    """The report as Markdown (paths of plots relative to the report's folder)."""
    lat = summary.get("latency_ms") or {}
    lines = [f"# Replay report: {summary.get('name', 'replay')}", ""]
    facts = [
        ("bag", summary.get("bag")),
        ("mode", summary.get("mode")),
        ("rate", summary.get("rate")),
        ("profile", summary.get("profile")),
        ("node", summary.get("node")),
        ("output bag", summary.get("output_bag")),
    ]
    for k, v in facts:
        if v is not None:
            lines.append(f"- **{k}**: `{v}`")
    lines += ["", "| metric | value |", "|---|---|"]
    rows = [
        ("J&F", _fmt(summary.get("JF"), 1, 100, " %")),
        ("J (region IoU)", _fmt(summary.get("J"), 1, 100, " %")),
        ("F (boundary)", _fmt(summary.get("F"), 1, 100, " %")),
        ("frames sent / received", f"{summary.get('frames_sent')} / {summary.get('frames_received')}"),
        ("dropped frames", str(summary.get("dropped"))),
        ("FPS (received frames / wall time)", _fmt(summary.get("fps"), 2)),
        ("latency p50", _fmt(lat.get("p50"), 1, 1, " ms")),
        ("latency p95", _fmt(lat.get("p95"), 1, 1, " ms")),
        ("latency p99", _fmt(lat.get("p99"), 1, 1, " ms")),
        ("latency mean / max", f"{_fmt(lat.get('mean'), 1)} / {_fmt(lat.get('max'), 1)} ms"),
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "J, F and J&F: mean over frames excluding the first and the last (DAVIS); a dropped "
              "frame counts as an empty mask. Latency: receipt of a frame's last output (mask and "
              "tracked_objects) minus the time the frame was published.", ""]
    lines += objects_markdown(summary.get("objects"), summary.get("reacquisition"))
    for title, rel in (plots or {}).items():
        lines += [f"![{title}]({rel})", ""]
    if summary.get("video"):
        lines += [f"Overlay video: `{summary['video']}`", ""]
    if summary.get("config") is not None:
        import yaml

        lines += ["<details><summary>configuration</summary>", "", "```yaml",
                  yaml.safe_dump(summary["config"], sort_keys=False).rstrip(), "```", "", "</details>", ""]
    return "\n".join(lines)


def objects_markdown(objects: Optional[Mapping[Any, Mapping[str, Any]]],
                     digest: Optional[Mapping[str, Any]] = None) -> List[str]:
    """The per-object section of the report: a table and each object's state timeline."""
    if not objects:
        return []
    from sampt_ros.core.metrics import format_timeline

    lines = ["## Objects", "",
             "| object | J | F | returns | re-acquired | frames until | J after return | id swaps | "
             "on other object | false-positive frames | final state |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    timelines = []
    for oid, o in objects.items():
        if "events" not in o:
            lines.append(f"| {oid} | {_fmt(o.get('J'), 1, 100, ' %')} | {_fmt(o.get('F'), 1, 100, ' %')} | "
                         "n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        ev = o["events"]
        back = [e["frames_to_reacquire"] for e in ev if e["frames_to_reacquire"] is not None]
        j_back = [e["J_after_return"] for e in ev]
        lines.append(
            f"| {oid} | {_fmt(o.get('J'), 1, 100, ' %')} | {_fmt(o.get('F'), 1, 100, ' %')} | {len(ev)} | "
            f"{len(back)} | {', '.join(str(b) for b in back) or '-'} | "
            f"{', '.join(f'{j:.2f}' for j in j_back) or '-'} | {o['id_swaps']} | {o.get('on_other_frames', 0)} | "
            f"{o['false_positive_frames']} | {o['final_state']} |")
        timelines.append(f"- {format_timeline(oid, o)}")
    lines += [""] + timelines + [""]
    if digest:
        lines += [f"Re-acquisition: {digest['reacquired']} of {digest['events']} returns re-acquired; "
                  f"id swaps {digest['id_swaps']}; false-positive frames {digest['false_positive_frames']}.", ""]
    lines += ["A return: the ground truth shows the object gone (no pixel, or under 5 % of its typical "
              "area) and back. Re-acquired: state TRACKING and IoU >= 0.5 in a frame after the return "
              "(frames until = that frame minus the return frame). J after return: mean IoU from the "
              "return to the next disappearance or the end. Id swap: its mask matches another object's "
              "ground truth (IoU >= 0.5) better than its own (onsets). On other object: frames where most "
              "of its mask lies on another object. False positive: a mask claimed (state TRACKING or "
              "none) while the ground truth has none of it. States come from the tracked_objects "
              "messages (NONE: no message for that frame).", ""]
    return lines


def plot_latency(records: Sequence[FrameRecord], path: os.PathLike | str) -> None:
    """Latency (ms) of each received frame against its index, with p50/p95 lines (PNG)."""
    from matplotlib.figure import Figure

    idx = [r.index for r in records if r.latency_s is not None]
    lat = [r.latency_s * 1e3 for r in records if r.latency_s is not None]
    dropped = [r.index for r in records if r.sent_s is not None and r.latency_s is None]
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.subplots()
    ax.plot(idx, lat, ".-", lw=0.8, ms=3, label="latency")
    if lat:
        for q, style in ((50, "--"), (95, ":")):
            ax.axhline(np.percentile(lat, q), color="grey", ls=style, lw=0.8, label=f"p{q}")
    if dropped:
        ax.plot(dropped, [0] * len(dropped), "rx", label="dropped")
    ax.set_xlabel("frame")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))


def plot_scores(records: Sequence[FrameRecord], path: os.PathLike | str) -> bool:
    """J (and F) per frame (PNG). Returns False (and writes nothing) without scores."""
    from matplotlib.figure import Figure

    rows = [r for r in records if r.J is not None]
    if not rows:
        return False
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.subplots()
    ax.plot([r.index for r in rows], [r.J for r in rows], ".-", lw=0.8, ms=3, label="J (IoU)")
    f_rows = [r for r in rows if r.F is not None]
    if f_rows:
        ax.plot([r.index for r in f_rows], [r.F for r in f_rows], ".-", lw=0.8, ms=3, label="F (boundary)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))
    return True


def write_report(out_dir: os.PathLike | str, summary: Dict[str, Any], records: Sequence[FrameRecord],
                 plots: bool = True) -> Dict[str, str]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, str] = {}
    rel_plots: Dict[str, str] = {}
    if plots:
        plot_latency(records, out / "latency.png")
        paths["latency_plot"] = str(out / "latency.png")
        rel_plots["latency per frame"] = "latency.png"
        if plot_scores(records, out / "scores.png"):
            paths["score_plot"] = str(out / "scores.png")
            rel_plots["J and F per frame"] = "scores.png"
    data = dict(summary)
    data["per_frame"] = [
        {**asdict(r), "latency_ms": None if r.latency_s is None else r.latency_s * 1e3} for r in records
    ]
    with open(out / "report.json", "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=_json_default)
        fh.write("\n")
    paths["json"] = str(out / "report.json")
    (out / "report.md").write_text(markdown(summary, rel_plots), encoding="utf-8")
    paths["markdown"] = str(out / "report.md")
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


# ---------------------------------------------------------------------------- overlay video
#: the fields ObjectResult takes (``visibility`` is newer than some of the code that builds one)
_OBJECT_RESULT_FIELDS = frozenset(getattr(ObjectResult, "__dataclass_fields__", {}))


def frame_result_from_msgs(tracked, label_map: Optional[np.ndarray], shape: Tuple[int, int]) -> FrameResult:
    """A recorded ``TrackedObjects`` message (rosbags or rclpy) + the ``mask`` label map -> FrameResult.

    Args:
        tracked: the frame's ``sampt_ros/TrackedObjects``.
        label_map: ``HxW`` integer label map from the ``mask`` topic (0 background, k = object k),
            or None when that output is missing (masks are then empty).
        shape: ``(H, W)`` of the frame.
    """
    objects: Dict[int, ObjectResult] = {}
    for o in tracked.objects:
        oid = int(o.object_id)
        pts = np.array([[p.x, p.y] for p in o.points], np.float64).reshape(-1, 2)
        mask = (label_map == oid) if label_map is not None else np.zeros(shape, bool)
        try:
            state = ObjectState(int(o.state))
        except ValueError:
            state = ObjectState.LOST
        values = dict(
            object_id=oid, mask=mask, points=pts, labels=np.asarray(o.labels, np.int64).reshape(-1),
            visible=np.asarray(o.visible, bool).reshape(-1), score=float(o.score), state=state,
            visibility=np.asarray(getattr(o, "visibility", np.ones(len(pts))), np.float64).reshape(-1),
        )
        objects[oid] = ObjectResult(**{k: v for k, v in values.items() if k in _OBJECT_RESULT_FIELDS})
    return FrameResult(frame_index=int(tracked.frame_index), objects=dict(sorted(objects.items())))


class VideoWriter:
    """mp4 writer: H.264 via imageio-ffmpeg when available, else OpenCV's MPEG-4 (``mp4v``). RGB in."""

    def __init__(self, path: os.PathLike | str, fps: float, size: Tuple[int, int]) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"video fps must be positive, got {fps}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = size
        self._imageio = None
        self._cv = None
        even = size[0] % 2 == 0 and size[1] % 2 == 0
        try:
            import imageio.v2 as imageio

            if not even:
                raise ValueError("H.264 yuv420p needs even frame sizes")
            self._imageio = imageio.get_writer(str(self.path), fps=float(fps), codec="libx264", quality=7,
                                               macro_block_size=2, pixelformat="yuv420p",
                                               ffmpeg_log_level="error")
        except Exception:  # noqa: BLE001 - no ffmpeg: fall back to OpenCV
            import cv2

            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
            if not self._cv.isOpened():
                raise RuntimeError(f"cannot open a video writer for {self.path}") from None

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape[1::-1] != tuple(self._size):
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the video is {self._size[0]}x{self._size[1]}")
        if self._imageio is not None:
            self._imageio.append_data(np.ascontiguousarray(rgb))
        else:
            import cv2

            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._imageio is not None:
            self._imageio.close()
            self._imageio = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None


def _no_output_banner(rgb: np.ndarray) -> np.ndarray:
    import cv2

    out = rgb.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1] - 1, 28), (160, 0, 0), -1)
    cv2.putText(out, "no output for this frame (dropped)", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_overlay_video(path: os.PathLike | str, frames: Iterable[Tuple[np.ndarray, Optional[FrameResult]]],
                        fps: float = 15.0) -> int:
    """Draw each ``(HxWx3 uint8 RGB, FrameResult or None)`` with ``draw_overlay`` into an mp4.

    Frames without a result get a "dropped" banner. Returns the number of frames written.
    """
    from sampt_ros.core.visualization import draw_overlay

    writer = None
    n = 0
    try:
        for rgb, result in frames:
            if writer is None:
                writer = VideoWriter(path, fps, (rgb.shape[1], rgb.shape[0]))
            writer.write(_no_output_banner(rgb) if result is None else draw_overlay(rgb, result))
            n += 1
    finally:
        if writer is not None:
            writer.close()
    return n


def overlay_frames_from_bags(input_bag: os.PathLike | str, output_bag: os.PathLike | str,
                             image_topic: str = "/camera/image_raw", mask_topic: str = MASK_TOPIC,
                             tracked_topic: str = TRACKED_TOPIC):
    """Yield ``(rgb, FrameResult or None)`` per input frame, outputs matched by header stamp."""
    from sampt_ros.tools import bags

    store = bags.typestore()
    masks: Dict[int, bytes] = {}
    tracked: Dict[int, bytes] = {}
    for m in bags.read_raw(output_bag, (mask_topic, tracked_topic)):
        stamp = bags._header_stamp_ns(store, m.data, m.msgtype)
        (masks if m.topic == mask_topic else tracked)[stamp] = m.data
    seq = bags.load_sequence(input_bag, image_topic=image_topic, store=store)
    for i, (stamp, *_rest) in enumerate(seq.images):
        rgb = seq.image(i, store)
        result = None
        if stamp in tracked:
            labels = None
            if stamp in masks:
                labels = bags.image_from_msg(store.deserialize_cdr(masks[stamp], bags.IMAGE_TYPE))
                if labels.shape != rgb.shape[:2]:
                    labels = None
            result = frame_result_from_msgs(store.deserialize_cdr(tracked[stamp], bags.TRACKED_TYPE), labels,
                                            rgb.shape[:2])
        yield rgb, result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sampt_ros.tools.report",
                                     description="Rebuild the overlay video of a replay from its bags.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("video", help="input bag + recorded outputs bag -> overlay mp4")
    p.add_argument("input_bag")
    p.add_argument("output_bag")
    p.add_argument("out", help="mp4 path")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--mask-topic", default=MASK_TOPIC)
    p.add_argument("--tracked-topic", default=TRACKED_TOPIC)
    args = parser.parse_args(argv)
    try:
        n = write_overlay_video(args.out, overlay_frames_from_bags(args.input_bag, args.output_bag,
                                                                   args.image_topic, args.mask_topic,
                                                                   args.tracked_topic), args.fps)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
