"""``sampt-demo``: the whole pipeline in one command, no weights and no camera needed.

1. renders the synthetic ``demo`` scenario (:mod:`sampt_ros.tools.synthetic`: 150 frames at
   854x480; object 1 passes completely behind a wall and comes back, object 2 drives out of the
   view and comes back in; exact ground-truth label maps) as a DAVIS-2017-layout folder;
2. writes it as a rosbag (:func:`sampt_ros.tools.bags.davis_to_bag`: images, one mask prompt
   per object on the first frame, ground-truth label maps);
3. starts the real ROS 2 node with the weight-free profile (``config/sampt.yaml`` +
   ``config/cpu.yaml``: Lucas-Kanade points + the classic segmenter) in lockstep mode, on a
   private ROS domain;
4. replays the bag through it over DDS, records the outputs and scores them
   (:func:`sampt_ros.tools.replay.run_replay`);
5. prints J&F, FPS and latency, each object's state timeline with its re-acquisition figures
   (when it came back, after how many frames it was re-acquired, its J after the return), and
   where the report, output bag and overlay video are (default ``outputs/demo/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

from sampt_ros.tools import bags
from sampt_ros.tools.replay import ReplayError, print_summary, run_replay
from sampt_ros.tools.cli import size_argument
from sampt_ros.tools.synthetic import SCENARIOS, make_scene, write_davis

DEFAULT_OUT = Path("outputs") / "demo"


def run_demo(out: Path, frames: Optional[int] = None, seed: int = 0, size=(854, 480),
             config_files: Optional[List[str]] = None, overrides: Optional[List[str]] = None, rate: float = 30.0,
             storage: str = "sqlite3", video: bool = True, timeout: float = 60.0, progress: bool = True, stream=None,
             scenario: str = "demo"):
    """Run the demo into ``out``; returns the :class:`~sampt_ros.tools.replay.ReplayResult`.

    ``frames`` None plays the scenario at its own length (the demo: 150 frames).
    """
    stream = stream or sys.stdout
    config_files = list(config_files) if config_files else ["cpu"]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    scene = make_scene(scenario, tuple(size), frames, seed)
    write_davis(out / "data", scene)
    print(f"[1/3] synthetic sequence '{scene.name}': {scene.n_frames} frames of {scene.width}x{scene.height} in "
          f"{out / 'data'} ({time.monotonic() - t0:.1f} s); ground truth per object:", file=stream)
    for line in scene.describe().splitlines():
        print(f"        {line}", file=stream)
    t = time.monotonic()
    bag = out / "synthetic.bag"
    counts = bags.davis_to_bag(out / "data", scene.name, bag, rate=rate, storage=storage, config_files=config_files,
                               overrides=overrides, overwrite=True)
    print(f"[2/3] bag {bag}: {counts['images']} images, {counts['prompts']} prompt(s), {counts['gt']} masks "
          f"({time.monotonic() - t:.1f} s)", file=stream)
    print(f"[3/3] node ({' + '.join(['sampt.yaml'] + config_files)}) in lockstep, replaying over DDS ...",
          file=stream)
    result = run_replay(bag, out / "replay", lockstep=True, launch_node=True, config_files=config_files,
                        overrides=overrides, timeout=timeout, video=video, storage=storage, progress=progress,
                        name="synthetic demo")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="sampt-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--scenario", default="demo", choices=list(SCENARIOS),
                   help="synthetic scenario (default demo: an object hidden by a wall, one leaving the view)")
    p.add_argument("--frames", type=int, default=None, help="frames of the synthetic sequence (default: the "
                   "scenario's, 150 for demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=size_argument, default=(854, 480), help="WxH (default 854x480)")
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="config file or profile over config/sampt.yaml (default: cpu; repeatable)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--rate", type=float, default=30.0, help="frame rate of the bag's stamps (default 30)")
    p.add_argument("--format", dest="storage", choices=bags.STORAGE_FORMATS, default="sqlite3")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one frame may take in the node")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        res = run_demo(out, args.frames, args.seed, args.size, args.config, args.set, args.rate, args.storage,
                       not args.no_video, args.timeout, progress=not args.quiet, scenario=args.scenario)
    except (ValueError, FileNotFoundError, ReplayError) as exc:
        print(f"sampt-demo: error: {exc}", file=sys.stderr)
        return 2
    print()
    print_summary(res.summary, res.paths)
    print(f"  data: {out / 'data'}  input bag: {out / 'synthetic.bag'}")
    if res.summary["dropped"]:
        print("sampt-demo: frames were lost in lockstep mode", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
