"""Benchmark the ROS node itself (not the models): ``python -m sampt_ros.tools.node_benchmark``.

(a) **Node overhead per frame**, in-process: the node's per-frame path minus ``engine.step``:
    image message -> RGB conversion in the callback, prompt handling, building the mask and
    TrackedObjects messages (and the overlay when enabled) and publishing them. Frames are fed
    to the node's image callback one at a time (lockstep) so nothing else competes; medians
    are printed, with a breakdown of the parts.

(b) **Live mode across processes**: the node runs as its own process (weight-free ``cpu``
    profile, ``node.mode: live``); this process publishes 640x480 rgb8 frames at 30 Hz
    (best-effort sensor-data QoS by default, with ``config/fastdds.xml`` for both processes
    when it exists), a prompt on the first frame, and receives the outputs. Printed:
    sustained output FPS (after a warm-up), frames the node dropped (live queue) and frames
    lost in transport, and latency p50/p99.

    Latency definitions: **end-to-end** = time ``tracked_objects`` arrives here minus the input
    header stamp, which is the wall-clock time the frame was published (same machine, same
    clock); it includes DDS both ways, conversion, queueing and the model. **In-node** = output
    published minus image received, both inside the node (from its diagnostics).

Numbers on a shared 2-core machine vary; medians and percentiles are reported, not means.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _median_ms(values: List[float]) -> float:
    return 1000.0 * statistics.median(values) if values else float("nan")


def _pct_ms(values: List[float], q: float) -> float:
    return 1000.0 * float(np.percentile(values, q)) if values else float("nan")


def _prompts(centres: np.ndarray, n_objects: int, width: int, height: int):
    """Object 1 on the moving disk, further objects on static background patches."""
    r = max(8, min(width, height) // 8)
    out = [(1, centres[0] + np.array([[0.0, 0.0], [r * 0.4, 0.0], [0.0, r * 0.4], [-r * 0.4, -r * 0.3]]))]
    for k in range(2, n_objects + 1):
        x = width * (0.15 + 0.7 * ((k * 0.37) % 1.0))
        y = height * 0.15
        out.append((k, np.array([[x, y], [x + 8.0, y + 4.0]])))
    return out


# ---------------------------------------------------------------------------- (a)
def overhead_in_process(n_frames: int, width: int, height: int, n_objects: int, overlay: bool,
                        domain_id: int) -> Dict[str, float]:
    """Run the node in this process and time its per-frame work around ``engine.step``."""
    import rclpy
    from rclpy.parameter import Parameter

    from sampt_ros.msg import PointPrompt
    from sampt_ros.ros import conversions as conv
    from sampt_ros.ros.client import make_header, moving_disk
    from sampt_ros.ros.node import SamptNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = SamptNode(context=ctx, namespace=f"/sampt_bench_{os.getpid()}", parameter_overrides=[
        Parameter("profile", value="cpu"), Parameter("node.mode", value="lockstep"),
        Parameter("node.publish_overlay", value=overlay)])
    try:
        if not node.autostart():
            raise RuntimeError("the node did not start; see the log above")
        frames, centres = moving_disk(n_frames, width, height)
        msgs = [conv.rgb_to_image_msg(f, make_header((i + 1) * 10**8, "camera")) for i, f in enumerate(frames)]
        from geometry_msgs.msg import Point

        for oid, pts in _prompts(centres, n_objects, width, height):
            p = PointPrompt()
            p.header = make_header(10**8, "camera")
            p.object_id = oid
            p.points = [Point(x=float(x), y=float(y)) for x, y in pts]
            p.labels = [1] * len(pts)
            node._on_prompt(p)
        cb_times = []
        for msg in msgs:
            t = time.perf_counter()
            node._on_image(msg)
            cb_times.append(time.perf_counter() - t)
            node.worker.wait_idle(60.0)
        st = node.worker.stats()
        warm = slice(min(5, n_frames // 4), None)  # the first frames warm caches up
        result = {
            "frames": n_frames, "objects": len(st.objects),
            "overhead_median_ms": _median_ms(st.overhead[warm]),
            "overhead_p90_ms": _pct_ms(st.overhead[warm], 90),
            "engine_step_median_ms": _median_ms(st.step[warm]),
            "image_callback_median_ms": _median_ms(cb_times[warm]),
        }
        # the parts, timed directly on the last frame's result
        last_frame = frames[-1]
        res = node.engine.step(last_frame)
        header = msgs[-1].header
        parts = {
            "convert_in_ms": lambda: conv.image_to_rgb(msgs[-1]),
            "mask_msg_ms": lambda: conv.label_image_to_msg(conv.label_image(res, (height, width)), header),
            "tracked_objects_msg_ms": lambda: conv.tracked_objects_msg(res, header),
            "publish_mask_ms": lambda: node._pubs["mask"].publish(
                conv.label_image_to_msg(conv.label_image(res, (height, width)), header)),
        }
        if overlay:
            from sampt_ros.core.visualization import draw_overlay

            parts["overlay_ms"] = lambda: conv.rgb_to_image_msg(draw_overlay(last_frame, res), header)
        for name, fn in parts.items():
            times = []
            for _ in range(15):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            result[name] = _median_ms(times)
        return result
    finally:
        node._stop_inputs()
        node.destroy_node()
        ctx.try_shutdown()


# ---------------------------------------------------------------------------- (b)
def live_across_processes(duration: float, rate: float, width: int, height: int, n_objects: int,
                          image_qos: str, fastdds: Optional[str], domain_id: int, warmup: float = 3.0,
                          log_path: Optional[str] = None) -> Dict[str, float]:
    """Node in a child process, frames published from here at ``rate`` Hz for ``duration`` s."""
    import rclpy

    from sampt_ros.ros.client import NodeClient, make_header, moving_disk, start_node_process, stop_process
    from sampt_ros.ros import conversions as conv

    ns = f"/sampt_live_bench_{os.getpid()}"
    proc = start_node_process(ns, {"profile": "cpu", "node.mode": "live", "node.image_qos": image_qos,
                                   "node.publish_overlay": False, "node.diagnostics_period": 1.0},
                              domain_id, log_path, fastdds_profile=fastdds)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    client = None
    try:
        client = NodeClient(ns, context=ctx, image_qos=image_qos, history=10, keep_masks=False)
        if not client.wait_for_node(timeout=60.0):
            raise RuntimeError(f"the node did not come up; log: {log_path}")
        frames, centres = moving_disk(90, width, height)
        msgs = [conv.rgb_to_image_msg(f, make_header(0, "camera")) for f in frames]
        t_start = time.time()
        first_stamp = int(t_start * 1e9)
        for oid, pts in _prompts(centres, n_objects, width, height):
            client.publish_prompt(oid, pts, [1] * len(pts), stamp_ns=first_stamp)
        sent: List[int] = []
        period = 1.0 / rate
        next_t = time.monotonic()
        i = 0
        while time.time() - t_start < duration:
            now = time.monotonic()
            if now < next_t:
                time.sleep(next_t - now)
            next_t += period
            msg = msgs[i % len(msgs)]
            stamp = first_stamp if i == 0 else int(time.time() * 1e9)
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp // 10**9, stamp % 10**9
            client.publish_image_msg(msg)
            sent.append(stamp)
            i += 1
        t_end = time.time()
        client.wait_until(lambda r: sent[-1] in r.objects, 3.0)
        # a diagnostics message from after the node went idle
        client.wait_until(lambda r: bool(r.diagnostics) and r.diagnostics[-1].get("queued_frames") == "0"
                          and int(r.diagnostics[-1]["frames_processed"]) + int(r.diagnostics[-1]["dropped_frames"])
                          == int(r.diagnostics[-1]["frames_received"]), 5.0)
        diag = client.latest_diagnostics() or {}
        with client._lock:
            times = dict(client.received.times)
        sent_set = set(sent)
        outs = sorted((s, t) for s, t in times.items() if s in sent_set)
        steady = [(s, t) for s, t in outs if s / 1e9 >= t_start + warmup]
        if len(steady) >= 2:
            fps = (len(steady) - 1) / (steady[-1][1] - steady[0][1])
        else:
            fps = float("nan")
        lat = [t - s / 1e9 for s, t in steady]
        node_received = int(diag.get("frames_received", -1))
        return {
            "duration_s": round(t_end - t_start, 2), "rate_hz": rate, "image_qos": image_qos,
            "fastdds_profile": bool(fastdds), "frames_sent": len(sent),
            "frames_received_by_node": node_received,
            "frames_processed": int(diag.get("frames_processed", -1)),
            "dropped_by_node": int(diag.get("dropped_frames", -1)),
            "lost_in_transport": len(sent) - node_received if node_received >= 0 else -1,
            "outputs_received": len(outs),
            "sustained_fps": fps,
            "latency_end_to_end_p50_ms": _pct_ms(lat, 50), "latency_end_to_end_p99_ms": _pct_ms(lat, 99),
            "latency_in_node_p50_ms": float(diag.get("latency_p50_ms", "nan")),
            "latency_in_node_p99_ms": float(diag.get("latency_p99_ms", "nan")),
            "engine_step_p50_ms": float(diag.get("step_p50_ms", "nan")),
            "node_overhead_p50_ms": float(diag.get("node_overhead_p50_ms", "nan")),
            "objects": int(diag.get("objects", -1)),
        }
    finally:
        if client is not None:
            client.close()
        ctx.try_shutdown()
        stop_process(proc)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--objects", type=int, default=2, help="objects to track (default 2)")
    ap.add_argument("--frames", type=int, default=60, help="(a) frames fed in-process")
    ap.add_argument("--duration", type=float, default=20.0, help="(b) seconds of publishing")
    ap.add_argument("--rate", type=float, default=30.0, help="(b) publishing rate in Hz")
    ap.add_argument("--image-qos", choices=("sensor_data", "reliable"), default="sensor_data")
    ap.add_argument("--no-fastdds-profile", action="store_true", help="(b) do not use config/fastdds.xml")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: derived from the pid)")
    ap.add_argument("--log", default=None, help="(b) the node's log file")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    fastdds = None if args.no_fastdds_profile else str(REPO / "config" / "fastdds.xml")
    if fastdds and not os.path.isfile(fastdds):
        fastdds = None
    if fastdds:
        # this process publishes the images: it needs the bigger shared-memory segment too
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = fastdds
    domain = args.domain_id if args.domain_id is not None else 10 + os.getpid() % 90
    results: Dict[str, Dict[str, float]] = {}
    print(f"node benchmark: {args.width}x{args.height}, {args.objects} objects, weight-free cpu profile; "
          f"machine shared, medians/percentiles reported", flush=True)
    if not args.skip_overhead:
        for overlay in (False, True):
            r = overhead_in_process(args.frames, args.width, args.height, args.objects, overlay, domain)
            key = "overhead_with_overlay" if overlay else "overhead"
            results[key] = r
            print(f"(a) node overhead per frame{' (overlay on)' if overlay else ''}: median "
                  f"{r['overhead_median_ms']:.2f} ms (p90 {r['overhead_p90_ms']:.2f}) over engine.step "
                  f"{r['engine_step_median_ms']:.1f} ms; parts: "
                  + ", ".join(f"{k[:-3]} {v:.2f}" for k, v in r.items() if k.endswith("_ms")
                              and k not in ("overhead_median_ms", "overhead_p90_ms", "engine_step_median_ms"))
                  + " ms", flush=True)
    if not args.skip_live:
        r = live_across_processes(args.duration, args.rate, args.width, args.height, args.objects,
                                  args.image_qos, fastdds, domain, log_path=args.log)
        results["live"] = r
        print(f"(b) live, {r['rate_hz']:.0f} Hz {args.width}x{args.height} {r['image_qos']} "
              f"(fastdds profile: {r['fastdds_profile']}): sustained {r['sustained_fps']:.1f} FPS; sent "
              f"{r['frames_sent']}, node received {r['frames_received_by_node']}, processed {r['frames_processed']}, "
              f"dropped by node {r['dropped_by_node']}, lost in transport {r['lost_in_transport']}; latency "
              f"end-to-end p50 {r['latency_end_to_end_p50_ms']:.0f} / p99 {r['latency_end_to_end_p99_ms']:.0f} ms, "
              f"in-node p50 {r['latency_in_node_p50_ms']:.0f} / p99 {r['latency_in_node_p99_ms']:.0f} ms; "
              f"engine.step p50 {r['engine_step_p50_ms']:.0f} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
