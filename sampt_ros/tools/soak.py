"""A long lockstep run that shows memory stays flat while objects are lost and found again.

``python -m sampt_ros.tools.soak --frames 10000 --profile cpu`` renders a synthetic scenario
(default ``demo``: object 1 passes behind a wall, object 2 leaves the view and comes back) once
and plays it over and over through the engine worker in lockstep (every frame, in order, as the
node does in ``node.mode: lockstep``). Every loop ends with the objects teleporting back to their
start, a second way of being lost. It prints, every ``--report-every`` frames, the resident
memory (RSS), the appearance memory's entries, the states seen, and at the end:

* RSS growth after warm-up: ``(largest RSS after warm-up - RSS at warm-up) / RSS at warm-up``;
* how often each object was lost and found again (LOST or OCCLUDED -> TRACKING);
* step time median and p99 over all frames and over the frames where some object was not
  TRACKING (re-detection is running then), and their ratio to the overall median.

With ``--json`` the last line is one JSON object with these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from .cli import rss_kib, size_argument
from .eval import EvalError, _build, resolve_config
from .synthetic import SCENARIOS, make_scene


def rss_mib() -> float:
    """This process' resident memory now, in MiB (0 where ``/proc`` is unavailable)."""
    return rss_kib(os.getpid())[0] / 1024.0


def run_soak(profile: str, frames: int, size=(640, 480), scenario: str = "demo", warmup: int = 1000,
             report_every: int = 500, overrides: Optional[List[str]] = None, stream=None) -> Dict[str, object]:
    """Run the soak; returns the figures (see the module docstring)."""
    from ..core.types import ObjectState
    from ..ros.worker import EngineWorker, Frame

    stream = stream or sys.stdout
    config, _ = resolve_config([profile], overrides)
    engine = _build("engine", config)
    scene = make_scene(scenario, size=size)
    clip = [scene.frame(i) for i in range(len(scene))]
    first_labels = clip[0][1]

    results: List[object] = []
    worker = EngineWorker(engine, lambda frame, result: results.append(result), mode="lockstep", queue_size=4)
    worker.start()
    prompted = set()
    step_ms: List[float] = []
    searching: List[bool] = []
    found = {oid: 0 for oid in scene.object_ids}
    lost = {oid: 0 for oid in scene.object_ids}
    previous: Dict[int, ObjectState] = {}
    rss_warm = None
    rss_after: List[float] = []
    t0 = time.monotonic()
    try:
        for i in range(frames):
            image, labels = clip[i % len(clip)]
            if i == 0:
                for oid in scene.object_ids:
                    if (first_labels == oid).any():
                        engine.set_prompt(oid, mask=first_labels == oid)
                        prompted.add(oid)
            elif i < len(clip):  # objects that appear later are prompted once, at their first frame
                for oid in scene.object_ids:
                    if oid not in prompted and (labels == oid).any():
                        engine.set_prompt(oid, mask=labels == oid)
                        prompted.add(oid)
            worker.submit_frame(Frame(rgb=image, stamp_ns=(i + 1) * 33_333_333, received=time.monotonic()))
            if not worker.wait_idle(timeout=120.0):
                raise RuntimeError(f"frame {i} took more than 120 s")
            result = results.pop()
            results.clear()
            step_ms.append(1000.0 * result.timings.get("total", 0.0))
            states = {oid: obj.state for oid, obj in result.objects.items()}
            searching.append(any(s != ObjectState.TRACKING for s in states.values()))
            for oid, state in states.items():
                before = previous.get(oid)
                if state == ObjectState.TRACKING and before in (ObjectState.OCCLUDED, ObjectState.LOST):
                    found[oid] += 1
                if state == ObjectState.LOST and before != ObjectState.LOST:
                    lost[oid] += 1
            previous = states
            if i + 1 == warmup:
                rss_warm = rss_mib()
            if (i + 1) % report_every == 0 or i + 1 == frames:
                rss = rss_mib()
                if rss_warm is not None and i + 1 > warmup:
                    rss_after.append(rss)
                mem = engine.stats().get("memory", {})
                print(f"frame {i + 1:6d}  RSS {rss:7.1f} MiB  memory entries {int(mem.get('entries', 0)):3d}  "
                      f"lost {sum(lost.values()):4d}  found again {sum(found.values()):4d}  "
                      f"step median {np.median(step_ms[-report_every:]):6.1f} ms  "
                      f"({(time.monotonic() - t0) / (i + 1) * 1000:.1f} ms/frame wall)", file=stream, flush=True)
    finally:
        worker.stop(timeout=10.0)
    step = np.asarray(step_ms)
    busy = step[np.asarray(searching)]
    median = float(np.median(step))
    out = {
        "profile": profile, "scenario": scenario, "frames": frames, "size": f"{size[0]}x{size[1]}",
        "rss_mib_at_warmup": rss_warm, "rss_mib_max_after": max(rss_after) if rss_after else None,
        "rss_mib_end": rss_after[-1] if rss_after else None,
        "rss_growth": (max(rss_after) - rss_warm) / rss_warm if rss_after and rss_warm else None,
        "lost": lost, "found_again": found,
        "step_ms": {"median": median, "p99": float(np.percentile(step, 99)),
                    "median_while_searching": float(np.median(busy)) if busy.size else None,
                    "p99_while_searching": float(np.percentile(busy, 99)) if busy.size else None},
        "p99_while_searching_over_median": float(np.percentile(busy, 99)) / median if busy.size and median else None,
        "memory": engine.stats().get("memory", {}),
    }
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sampt_ros.tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", help="profile name or YAML file (default cpu)")
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--size", type=size_argument, default=(640, 480), help="WxH (default 640x480)")
    p.add_argument("--scenario", default="demo", choices=sorted(SCENARIOS))
    p.add_argument("--warmup", type=int, default=1000, help="frames before the RSS reference is taken")
    p.add_argument("--report-every", type=int, default=500)
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = p.parse_args(argv)
    try:
        if args.frames <= args.warmup:
            raise EvalError(f"--frames ({args.frames}) must exceed --warmup ({args.warmup})")
        out = run_soak(args.profile, args.frames, args.size, args.scenario, args.warmup, args.report_every, args.set)
    except (EvalError, ValueError) as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    growth = out["rss_growth"]
    print(f"RSS {out['rss_mib_at_warmup']:.1f} MiB at frame {args.warmup}, at most {out['rss_mib_max_after']:.1f} MiB "
          f"after: growth {100 * growth:+.2f}%; lost {sum(out['lost'].values())} times, found again "
          f"{sum(out['found_again'].values())} times; step median {out['step_ms']['median']:.1f} ms, "
          f"p99 while searching {out['step_ms']['p99_while_searching'] or float('nan'):.1f} ms "
          f"({out['p99_while_searching_over_median'] or float('nan'):.2f}x the median)")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
