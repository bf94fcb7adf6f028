"""Hostile input and transport against a running node: ``python -m sampt_ros.tools.fuzz``.

Commands::

    python -m sampt_ros.tools.fuzz fuzz [--messages 5000] [--seed 0] [--json OUT]
    python -m sampt_ros.tools.fuzz hostile [--json OUT]
    python -m sampt_ros.tools.fuzz transport --namespace /sampt [--mode lockstep|live] [--frames 60]
        [--rate 30] [--size 854x480] [--domain-id N]

``fuzz`` starts the node (weight-free ``cpu`` profile, lockstep, reliable images) in its own
process, tracks one object on a moving disk and sends it ``--messages`` generated messages:
malformed, oversized and odd images (raw: random encodings, sizes, steps, payloads; then, on a
second node with ``node.compressed``, PNG/JPEG/other formats, forged headers, truncated data and
a decompression bomb), prompts (random ids, actions, point counts up to 5,000, NaN/inf/huge
coordinates, labels, masks) and clicks. Every 25 messages a valid frame goes through, and the
tracked object must still be there. It prints and returns: messages sent, crashes (the node
process exited), checks whose object was gone, the node's rejection counters and its RSS: at the
start (after the prompt and 10 frames), after a warm-up (the first tenth of the messages, which
touch every code path once) and at the end; ``rss_ratio`` = end / after warm-up (the pass
criterion: <= 1.10), ``rss_ratio_to_start`` = end / start. Generated images only have the stream's own size when
their layout is valid, so a valid message never changes the resolution (``--resize`` lets valid
other sizes through: that tests the engine's handling of a camera reconfigured).

``hostile`` runs the issue's items 1-5 one by one through the running node and measures them:
odd-width YUV 4:2:2 (1), frames with a side under 8 px (2), a 140 KB PNG that decodes to
12000x12000 (3: time until the next frame is answered, peak RSS, the published mask's size),
a prompt of 100,000 points (4: the next frames' latency) and 20,000 points outside the image
(5: the longest log line).

``transport`` measures what arrives at a node someone else started (e.g. with the launch file):
``--mode lockstep`` publishes ``--frames`` frames reliably, each after the previous one was
answered (5 s timeout each) and counts the answers; ``--mode live`` publishes at ``--rate`` Hz
best effort, like a camera driver, and reads the node's ``frames_received`` from its
diagnostics. It never sets ``FASTRTPS_DEFAULT_PROFILES_FILE`` itself (it reports whether the
environment has it): the point is a publisher without transport settings.

``fuzz`` and ``hostile`` set the project's Fast DDS profile for both processes (unless the
environment names one): they test the node, not the transport.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .cli import rss_kib

REPO = Path(__file__).resolve().parents[2]
SEC = 1_000_000_000
W, H = 320, 240  # the stream's frame size


# ---------------------------------------------------------------------------- the node process
def _fastdds_profile() -> Optional[str]:
    path = REPO / "config" / "fastdds.xml"
    return str(path) if path.is_file() else None


def start_node(namespace: str, params: Dict[str, object], domain_id: int, log_path: Path,
               node_repo: Optional[Path] = None) -> subprocess.Popen:
    """``python -m sampt_ros.ros.node`` from ``node_repo`` (default: this checkout)."""
    from sampt_ros.ros.client import _param_text, ros_env

    repo = Path(node_repo or REPO)
    env = ros_env(domain_id)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "sampt_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={_param_text(value)}"]
    log = open(log_path, "w")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, env=env, cwd=str(repo), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


class Session:
    """A node process plus a :class:`~sampt_ros.ros.client.NodeClient` in this process."""

    def __init__(self, ctx, namespace: str, params: Dict[str, object], domain_id: int, log_path: Path,
                 node_repo: Optional[Path] = None, inputs=("image",)) -> None:
        from sampt_ros.ros.client import NodeClient

        base = {"profile": "cpu", "node.mode": "lockstep", "node.image_qos": "reliable",
                "node.diagnostics_period": 0.5, "node.click_object_id": 7}
        base.update(params)
        self.log_path = log_path
        self.proc = start_node(namespace, base, domain_id, log_path, node_repo)
        self.client = NodeClient(namespace, context=ctx, image_qos="reliable", keep_masks=True)
        self.stamp = 10 * SEC
        if not self.client.wait_for_node(timeout=60.0, inputs=inputs):
            self.close()
            raise RuntimeError(f"the node did not come up; log:\n{self.log()[-3000:]}")
        from sampt_ros.ros.client import moving_disk

        self.frames, self.centres = moving_disk(64, W, H)
        self.k = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def next_stamp(self) -> int:
        self.stamp += SEC // 10
        return self.stamp

    def frame(self, compressed: bool = False, timeout: float = 60.0) -> Tuple[Optional[object], float]:
        """Publish the next valid frame; returns (its TrackedObjects or None, seconds to the answer)."""
        i = self.k % len(self.frames)
        self.k += 1
        s = self.next_stamp()
        t0 = time.monotonic()
        if compressed:
            self.client.publish_compressed(self.frames[i], s, fmt="png")
        else:
            self.client.publish_frame(self.frames[i], s)
        self.client.wait_until(lambda r: s in r.objects, timeout)
        return self.client.received.objects.get(s), time.monotonic() - t0

    def prompt_disk(self, compressed: bool = False) -> None:
        """Prompt object 1 on the disk of the next frame and run a few frames."""
        i = self.k % len(self.frames)
        c = self.centres[i]
        self.client.publish_prompt(1, [c, c + (6.0, 0.0), c + (0.0, 6.0)], [1, 1, 1], self.stamp + SEC // 10,
                                   wait_acked=5.0)
        time.sleep(0.3)
        for _ in range(3):
            self.frame(compressed)

    def diag(self) -> Dict[str, str]:
        t = time.monotonic()
        n = len(self.client.received.diagnostics)
        self.client.wait_until(lambda r: len(r.diagnostics) > n, 3.0)
        d = self.client.latest_diagnostics() or {}
        d["_waited_s"] = f"{time.monotonic() - t:.2f}"
        return d

    def close(self) -> None:
        from sampt_ros.ros.client import stop_process

        try:
            self.client.close()
        finally:
            stop_process(self.proc)


def _ids(objs) -> List[int]:
    return [int(o.object_id) for o in objs.objects] if objs is not None else []


def _context(domain_id: int):
    import rclpy

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    return ctx


# ---------------------------------------------------------------------------- generated messages
_ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4", "rgb16", "bgr16",
              "rgba16", "bgra16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "bayer_rggb8", "bayer_bggr8",
              "bayer_gbrg8", "bayer_grbg8", "16UC1", "32FC1", "nv12", "jpeg", "", "RGB8", "x" * 300]
_BPP = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "8UC1": 1, "8UC3": 3, "8UC4": 4,
        "rgb16": 6, "bgr16": 6, "rgba16": 8, "bgra16": 8, "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
        "16UC1": 2, "32FC1": 4}
_SIDES = [0, 1, 2, 3, 4, 5, 7, 9, 13, 33, 64, 1 << 16, (1 << 31) - 1, (1 << 32) - 1]


#: the largest payload of a generated raw image (bytes)
MAX_PAYLOAD = 1 << 22


def gen_image(rng: random.Random, stamp_ns: int, allow_resize: bool = False):
    """One generated ``sensor_msgs/Image``: usually broken, sometimes valid at the stream's size."""
    from sensor_msgs.msg import Image

    from sampt_ros.ros.client import make_header

    enc = rng.choice(_ENCODINGS)
    bpp = _BPP.get(enc, rng.choice([1, 2, 3]))
    if rng.random() < 0.3:
        w, h = W, H
    else:
        w, h = rng.choice(_SIDES + [W, H, 8, 10]), rng.choice(_SIDES + [W, H, 8, 10])
        if not allow_resize and min(w, h) >= 8 and w * h <= 4096 * 4096 and (w, h) != (W, H):
            w = rng.choice([1, 2, 3, 5, 7])  # a valid layout must keep the stream's size
    row = min(w * bpp, 1 << 40)
    step = rng.choice([row, row, row + rng.randint(1, 16), max(0, row - 1), 0, (1 << 32) - 1]) & 0xFFFFFFFF
    want = step * h if step * h <= MAX_PAYLOAD else rng.randint(0, 4096)
    size = rng.choice([want, want, max(0, want - rng.randint(1, 64)), want + rng.randint(1, 64), 0])
    size = min(size, MAX_PAYLOAD)
    data = rng.randbytes(size) if size < 4096 else np.random.default_rng(rng.getrandbits(32)).integers(
        0, 256, size, dtype=np.uint8).tobytes()
    msg = Image(height=h & 0xFFFFFFFF, width=w & 0xFFFFFFFF, encoding=enc, step=step, data=data,
                is_bigendian=rng.choice([0, 0, 1, 255]))
    msg.header = make_header(stamp_ns)
    return msg


def _png(img: np.ndarray, level: int = 3) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, level])
    assert ok
    return buf.tobytes()


def _encoded(ext: str, img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


_BOMB: Optional[bytes] = None


def png_bomb(side: int = 12000) -> bytes:
    """A small PNG (about 140 KB) that decodes to ``side x side`` pixels."""
    global _BOMB
    if _BOMB is None:
        _BOMB = _png(np.zeros((side, side), np.uint8), 9)
    return _BOMB


def _forge_png_size(png: bytes, w: int, h: int) -> bytes:
    return png[:16] + struct.pack(">II", w, h) + png[24:]


def _forge_jpeg_size(jpg: bytes, w: int, h: int) -> bytes:
    i = jpg.find(b"\xff\xc0")
    if i < 0:
        return jpg
    return jpg[: i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


class CompressedBlobs:
    """Payloads for generated ``CompressedImage`` messages."""

    def __init__(self, rng: random.Random, frame: np.ndarray, allow_resize: bool = False) -> None:
        import cv2

        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        png, jpg = _png(bgr), _encoded(".jpg", bgr)
        small = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        self.valid = [png, jpg]
        self.broken = [
            _png(np.zeros((1, 1, 3), np.uint8)), _png(np.zeros((4, 4, 3), np.uint8)),
            _encoded(".jpg", np.zeros((4, 4, 3), np.uint8)), _png(np.zeros((7, 300), np.uint8)),
            png[: len(png) // 2], jpg[: len(jpg) // 3], png[:30], jpg[:20], b"", b"\x89PNG", b"\xff\xd8\xff",
            _forge_png_size(png, 60000, 60000), _forge_png_size(png, 0, 0), _forge_jpeg_size(jpg, 65000, 65000),
            _encoded(".bmp", small), _encoded(".tiff", small),
            _encoded(".webp", small), b"P6\n16 16\n255\n" + small.tobytes(), b"\xff\xd8" + rng.randbytes(2000),
            b"\x89PNG\r\n\x1a\n" + rng.randbytes(500),
        ]
        if allow_resize:  # decodable frames of other sizes: a camera reconfigured
            self.valid += [_png(np.zeros((8, 8, 3), np.uint8)), _forge_jpeg_size(jpg, 400, 300)]

    def pick(self, rng: random.Random, bomb_share: float = 0.0) -> Tuple[str, bytes]:
        if bomb_share and rng.random() < bomb_share:
            return "png", png_bomb()
        r = rng.random()
        fmt = rng.choice(["png", "jpeg", "rgb8; jpeg compressed bgr8", "", "16UC1; compressedDepth png", "bmp",
                          "z" * 500])
        if r < 0.15:
            return fmt, rng.choice(self.valid)
        if r < 0.85:
            return fmt, rng.choice(self.broken)
        return fmt, rng.randbytes(rng.choice([1, 10, 1000, 100000]))


def gen_compressed(rng: random.Random, blobs: CompressedBlobs, stamp_ns: int, bomb_share: float = 0.0):
    from sensor_msgs.msg import CompressedImage

    from sampt_ros.ros.client import make_header

    fmt, data = blobs.pick(rng, bomb_share)
    msg = CompressedImage(format=fmt, data=data)
    msg.header = make_header(stamp_ns)
    return msg


_COORDS = [float("nan"), float("inf"), -float("inf"), -1e308, 1e308, -1.0, -0.5, 0.0, 5.0, 100.0, 319.4, 239.4,
           320.0, 1000.0, 1e9]


def gen_prompt(rng: random.Random, stamp_ns: int):
    """One generated ``PointPrompt``. Object 1 (the tracked one) only ever gets malformed prompts."""
    from geometry_msgs.msg import Point

    from sampt_ros.msg import PointPrompt
    from sampt_ros.ros.client import make_header

    m = PointPrompt()
    m.header = make_header(rng.choice([0, stamp_ns, stamp_ns + 10 * SEC, max(0, stamp_ns - 100 * SEC),
                                       rng.randint(0, (1 << 31) * SEC)]))
    m.object_id = rng.choice([0, 1, 2, 3, 5, 31, 255, 256, 1000, 65535])  # uint16 on the wire
    m.action = rng.choice([0, 0, 0, 1, 2, 255])
    n = rng.choice([0, 1, 2, 3, 8, 50, 256, 257, 1000, 5000])
    if rng.random() < 0.5:
        pts = [(rng.uniform(0, W - 1), rng.uniform(0, H - 1)) for _ in range(n)]
    else:
        pts = [(rng.choice(_COORDS), rng.choice(_COORDS)) for _ in range(n)]
    m.points = [Point(x=float(x), y=float(y)) for x, y in pts]
    nl = rng.choice([n, n, n, max(0, n - 1), n + 1])
    m.labels = [rng.choice([1, 1, 0, 2, -1, 127, -128]) for _ in range(nl)]
    if rng.random() < 0.15:
        mh, mw = rng.choice([(H, W), (H, W), (4, 4), (0, 5), (5000, 5000), (H, W + 3)])
        m.mask.height, m.mask.width = mh, mw
        m.mask.encoding = rng.choice(["mono8", "8UC1", "rgb8", "", "mono16"])
        m.mask.step = rng.choice([mw, mw + 1, max(0, mw - 1), 0])
        size = min(m.mask.step * mh, 1 << 20)
        m.mask.data = (np.random.default_rng(rng.getrandbits(32)).random(size) < 0.1).astype(np.uint8).tobytes()
    if m.object_id == 1 and m.action in (0, 1):
        # keep object 1's prompts malformed (an ACTION_SET with a NaN point or no positive label):
        # a valid one would legitimately replace or remove the tracked object
        m.action = 0
        if m.points and rng.random() < 0.5:
            m.points[0] = Point(x=float("nan"), y=1.0)
        else:
            m.labels = [0] * len(m.points)
            m.mask.height = m.mask.width = 0
            m.mask.data = b""
    return m


def gen_click(rng: random.Random):
    from geometry_msgs.msg import PointStamped

    m = PointStamped()
    m.header.frame_id = "camera"
    m.point.x, m.point.y = rng.choice(_COORDS), rng.choice(_COORDS)
    return m


# ---------------------------------------------------------------------------- fuzz
def run_fuzz(n_messages: int, seed: int = 0, node_repo: Optional[Path] = None, check_every: int = 25,
             bomb_share: float = 0.0006, allow_resize: bool = False, out_dir: Optional[Path] = None,
             domain_id: Optional[int] = None, phases=("raw", "compressed"),
             mix: Tuple[float, float, float] = (0.55, 0.35, 0.10)) -> Dict[str, object]:
    """Send ``n_messages`` generated messages (split over ``phases``: raw images to one node,
    compressed images to another) through node processes."""
    rng = random.Random(seed)
    domain_id = domain_id if domain_id is not None else 120 + os.getpid() % 90
    out_dir = Path(out_dir or "/tmp") / f"sampt_fuzz_{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _context(domain_id)
    report: Dict[str, object] = {"seed": seed, "messages": 0, "by_kind": {}, "phases": []}
    t_start = time.monotonic()
    try:
        todo = [(p, p == "compressed") for p in phases]
        for k, (phase, compressed) in enumerate(todo):
            n_phase = n_messages // len(todo) if k < len(todo) - 1 else n_messages - (len(todo) - 1) * (
                n_messages // len(todo))
            params = {"node.compressed": True} if compressed else {}
            ses = Session(ctx, f"/sampt_fuzz_{phase}_{os.getpid()}", params, domain_id, out_dir / f"{phase}.log",
                          node_repo, inputs=("image/compressed",) if compressed else ("image",))
            info: Dict[str, object] = {"phase": phase, "messages": 0, "checks": 0, "checks_without_object": 0,
                                       "checks_unanswered": 0, "crashed": False}
            try:
                ses.prompt_disk(compressed)
                for _ in range(10):
                    ses.frame(compressed)
                rss0 = rss_kib(ses.proc.pid)
                rss_warm = None
                series: List[Tuple[int, int]] = []
                warm_at = max(check_every, n_phase // 10)
                blobs = CompressedBlobs(rng, ses.frames[0], allow_resize) if compressed else None
                kinds: Dict[str, int] = {}
                lost_at: List[int] = []
                sent = 0
                while sent < n_phase:
                    for _ in range(min(check_every, n_phase - sent)):
                        r = rng.random() * sum(mix)
                        stamp = ses.next_stamp()
                        if r < mix[0]:
                            kind = "image"
                            if compressed:
                                ses.client.input_publisher("image/compressed").publish(
                                    gen_compressed(rng, blobs, stamp, bomb_share))
                            else:
                                ses.client.publish_image_msg(gen_image(rng, stamp, allow_resize))
                        elif r < mix[0] + mix[1]:
                            kind = "prompt"
                            ses.client.publish_prompt_msg(gen_prompt(rng, stamp))
                        else:
                            kind = "click"
                            ses.client.click_pub.publish(gen_click(rng))
                        kinds[kind] = kinds.get(kind, 0) + 1
                        sent += 1
                    if not ses.alive():
                        info["crashed"] = True
                        break
                    objs, _dt = ses.frame(compressed, timeout=120.0)
                    info["checks"] = int(info["checks"]) + 1
                    if objs is None:
                        info["checks_unanswered"] = int(info["checks_unanswered"]) + 1
                    elif 1 not in _ids(objs):
                        info["checks_without_object"] = int(info["checks_without_object"]) + 1
                        lost_at.append(sent)
                        ses.prompt_disk(compressed)  # track it again so later checks mean something
                    if not ses.alive():
                        info["crashed"] = True
                        break
                    if rss_warm is None and sent >= warm_at:
                        rss_warm = rss_kib(ses.proc.pid)
                    if sent % 250 < check_every:
                        series.append((sent, rss_kib(ses.proc.pid)[0]))
                    if sent % 500 < check_every:
                        print(f"  {phase}: {sent}/{n_phase} messages, {info['checks']} checks, "
                              f"{info['checks_without_object']} without the object", file=sys.stderr, flush=True)
                rss1 = rss_kib(ses.proc.pid)
                d = ses.diag() if ses.alive() else {}
                rss_warm = rss_warm or rss0
                info.update(messages=sent, by_kind=kinds, lost_at=lost_at[:20],
                            rss_start_kib=rss0[0], rss_after_warmup_kib=rss_warm[0], warmup_messages=warm_at,
                            rss_end_kib=rss1[0], rss_peak_kib=rss1[1], rss_series_kib=series,
                            rss_ratio_to_start=(rss1[0] / rss0[0]) if rss0[0] else None,
                            rss_ratio=(rss1[0] / rss_warm[0]) if rss_warm[0] else None,
                            alive=ses.alive(), exit_code=ses.proc.poll(),
                            diagnostics={k: v for k, v in d.items() if k.startswith(
                                ("rejected", "failed", "frames_", "callback", "objects", "resized", "dropped",
                                 "pending"))},
                            longest_log_line=max((len(x) for x in ses.log().splitlines()), default=0),
                            log=str(ses.log_path))
                if not ses.alive():
                    info["crashed"] = True
                    info["log_tail"] = ses.log()[-2000:]
            finally:
                ses.close()
            report["phases"].append(info)
            report["messages"] = int(report["messages"]) + int(info["messages"])
    finally:
        ctx.try_shutdown()
    phases = report["phases"]
    report["seconds"] = round(time.monotonic() - t_start, 1)
    report["crashes"] = sum(bool(p["crashed"]) for p in phases)
    report["checks"] = sum(int(p["checks"]) for p in phases)
    report["checks_without_object"] = sum(int(p["checks_without_object"]) for p in phases)
    report["checks_unanswered"] = sum(int(p["checks_unanswered"]) for p in phases)
    report["max_rss_ratio"] = max((p.get("rss_ratio") or 0.0) for p in phases) if phases else None
    return report


# ---------------------------------------------------------------------------- hostile items 1-5
def _raw_image(w: int, h: int, enc: str, stamp: int, bpp: int):
    from sensor_msgs.msg import Image

    from sampt_ros.ros.client import make_header

    msg = Image(height=h, width=w, encoding=enc, step=w * bpp, data=bytes(w * h * bpp))
    msg.header = make_header(stamp)
    return msg


def _log_lines(ses: Session, pattern: str) -> int:
    return sum(1 for line in ses.log().splitlines() if pattern in line)


def run_hostile(node_repo: Optional[Path] = None, out_dir: Optional[Path] = None,
                domain_id: Optional[int] = None) -> Dict[str, object]:
    """The issue's items 1-5, measured through running nodes (raw, then compressed)."""
    from sensor_msgs.msg import CompressedImage

    from sampt_ros.ros.client import make_header

    domain_id = domain_id if domain_id is not None else 120 + os.getpid() % 90
    out_dir = Path(out_dir or "/tmp") / f"sampt_hostile_{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _context(domain_id)
    res: Dict[str, object] = {}
    try:
        ses = Session(ctx, f"/sampt_hostile_raw_{os.getpid()}", {}, domain_id, out_dir / "raw.log", node_repo)
        try:
            ses.prompt_disk()
            # item 1: odd-width YUV 4:2:2
            for enc in ("yuv422", "uyvy", "yuv422_yuy2"):
                ses.client.publish_image_msg(_raw_image(5, 4, enc, ses.next_stamp(), 2))
            time.sleep(1.0)
            objs, _ = ses.frame(timeout=20.0) if ses.alive() else (None, 0.0)
            res["item1_odd_yuv"] = {"alive": ses.alive(), "next_frame_answered": objs is not None,
                                    "objects_after": _ids(objs)}
            if not ses.alive():  # record how it died, then go on with a new node
                res["item1_odd_yuv"]["log_tail"] = ses.log()[-1500:]
                res["item1_odd_yuv"]["exit_code"] = ses.proc.poll()
                ses.close()
                ses = Session(ctx, f"/sampt_hostile_raw2_{os.getpid()}", {}, domain_id, out_dir / "raw2.log",
                              node_repo)
                ses.prompt_disk()
            # item 2: frames with a side under 8 px
            for w, h in ((1, 1), (4, 4), (7, 7), (320, 7)):
                ses.client.publish_image_msg(_raw_image(w, h, "rgb8", ses.next_stamp(), 3))
            objs, _ = ses.frame(timeout=20.0)
            d = ses.diag()
            res["item2_tiny_raw"] = {"objects_after": _ids(objs), "failed_frames": d.get("failed_frames"),
                                     "rejected_images": d.get("rejected_images"),
                                     "reset_log_lines": _log_lines(ses, "resetting the tracker")}
            # item 4: 100,000 points
            base = [ses.frame()[1] for _ in range(7)]
            c = ses.centres[ses.k % len(ses.frames)]
            rng = np.random.default_rng(0)
            pts = np.clip(c + rng.normal(0, 10, (100_000, 2)), 0, [W - 1, H - 1])
            ses.client.publish_prompt(2, pts, np.ones(len(pts), int), 0, wait_acked=10.0)
            time.sleep(0.5)
            after = [ses.frame(timeout=120.0)[1] for _ in range(7)]
            objs, _ = ses.frame()
            d = ses.diag()
            res["item4_100k_points"] = {
                "frame_s_before": [round(x, 3) for x in base], "frame_s_after": [round(x, 3) for x in after],
                "median_before_s": round(float(np.median(base)), 3), "max_after_s": round(max(after), 3),
                "object_2_tracked": 2 in _ids(objs), "rejected_prompts": d.get("rejected_prompts")}
            # item 5: many points outside the image
            far = np.stack([np.linspace(1000, 50000, 20_000), np.full(20_000, 10.0)], 1)
            ses.client.publish_prompt(3, far, np.ones(len(far), int), 0, wait_acked=10.0)
            time.sleep(0.5)
            ses.frame()
            time.sleep(0.5)
            res["item5_log_line"] = {"longest_log_line_chars": max(len(x) for x in ses.log().splitlines())}
            rss = rss_kib(ses.proc.pid)
            res["raw_node_rss_kib"] = {"rss": rss[0], "peak": rss[1]}
        finally:
            ses.close()

        ses = Session(ctx, f"/sampt_hostile_png_{os.getpid()}", {"node.compressed": True}, domain_id,
                      out_dir / "compressed.log", node_repo, inputs=("image/compressed",))
        try:
            ses.prompt_disk(compressed=True)
            pub = ses.client.input_publisher("image/compressed")
            # item 2, compressed: a valid small PNG
            for side in (1, 4):
                m = CompressedImage(format="png", data=_png(np.full((side, side, 3), 90, np.uint8)))
                m.header = make_header(ses.next_stamp())
                pub.publish(m)
            objs, _ = ses.frame(compressed=True, timeout=20.0)
            res["item2_tiny_png"] = {"objects_after": _ids(objs),
                                     "reset_log_lines": _log_lines(ses, "resetting the tracker")}
            # item 3: decompression bomb
            bomb = png_bomb()
            for _ in range(3):
                ses.frame(compressed=True)
            rss0 = rss_kib(ses.proc.pid)
            bomb_stamp = ses.next_stamp()
            m = CompressedImage(format="png", data=bomb)
            m.header = make_header(bomb_stamp)
            t0 = time.monotonic()
            pub.publish(m)
            objs, dt = ses.frame(compressed=True, timeout=300.0)
            total = time.monotonic() - t0
            rss1 = rss_kib(ses.proc.pid)
            mask = ses.client.received.masks.get(bomb_stamp)
            d = ses.diag()
            res["item3_png_bomb"] = {
                "png_bytes": len(bomb), "decodes_to": "12000x12000",
                "seconds_until_next_frame_answered": round(total, 2),
                "rss_before_kib": rss0[0], "peak_rss_kib": rss1[1], "peak_growth_kib": rss1[1] - rss0[1],
                "mask_published_for_bomb": (f"{mask.width}x{mask.height}" if mask is not None else None),
                "objects_after": _ids(objs), "rejected_images": d.get("rejected_images"),
                "alive": ses.alive()}
        finally:
            ses.close()
    finally:
        ctx.try_shutdown()
    return res


# ---------------------------------------------------------------------------- transport
def run_transport(namespace: str, mode: str = "lockstep", frames: int = 60, rate: float = 30.0,
                  size: Tuple[int, int] = (854, 480), domain_id: Optional[int] = None,
                  reliability: Optional[str] = None, timeout: float = 5.0,
                  discovery_timeout: float = 60.0, image_topic: Optional[str] = None) -> Dict[str, object]:
    """Frames answered (lockstep) or arrived at the node (live) from a plain publisher.

    ``image_topic``: where the node's ``image`` input is remapped to (the launch file's
    ``image_topic``, default ``<namespace>/image``)."""
    import rclpy

    from sampt_ros.ros.client import NodeClient, moving_disk

    reliability = reliability or ("reliable" if mode == "lockstep" else "sensor_data")
    kwargs = {} if domain_id is None else {"domain_id": int(domain_id)}
    ctx = rclpy.Context()
    rclpy.init(context=ctx, **kwargs)
    res: Dict[str, object] = {"mode": mode, "frames": frames, "size": f"{size[0]}x{size[1]}",
                              "publisher_qos": reliability,
                              "publisher_FASTRTPS_DEFAULT_PROFILES_FILE": os.environ.get(
                                  "FASTRTPS_DEFAULT_PROFILES_FILE", "")}
    client = NodeClient(namespace, context=ctx, image_qos=reliability, keep_masks=False)
    if image_topic:
        from sensor_msgs.msg import Image

        from sampt_ros.ros.node import make_qos

        client.image_pub = client.node.create_publisher(Image, image_topic, make_qos(reliability, 100))
        res["image_topic"] = image_topic
    try:
        t0 = time.monotonic()
        if not client.wait_for_node(timeout=discovery_timeout):
            raise RuntimeError(f"no node in {namespace} within {discovery_timeout:.0f} s")
        res["discovery_s"] = round(time.monotonic() - t0, 2)
        d0 = client.latest_diagnostics() or {}
        received0 = int(d0.get("frames_received", 0))
        imgs, _ = moving_disk(min(frames, 60), size[0], size[1])
        stamp0 = int(time.time()) * SEC
        stamps = [stamp0 + i * SEC // 30 for i in range(frames)]
        answered = 0
        t0 = time.monotonic()
        if mode == "lockstep":
            for i, s in enumerate(stamps):
                client.publish_frame(imgs[i % len(imgs)], s)
                if client.wait_until(lambda r, s=s: s in r.objects, timeout):
                    answered += 1
        else:
            period = 1.0 / rate
            for i, s in enumerate(stamps):
                target = t0 + i * period
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                client.publish_frame(imgs[i % len(imgs)], s)
            client.wait_until(lambda r: False, 3.0)  # let the last frames land
            answered = sum(s in client.received.objects for s in stamps)
        res["seconds"] = round(time.monotonic() - t0, 1)
        n = len(client.received.diagnostics)
        client.wait_until(lambda r: len(r.diagnostics) > n + 1, 5.0)
        d = client.latest_diagnostics() or {}
        res.update(answered=answered, frames_received_by_node=int(d.get("frames_received", 0)) - received0,
                   dropped_by_node=d.get("dropped_frames"), messages_lost=d.get("messages_lost"),
                   node_image_qos=d.get("image_qos"), incompatible_qos=d.get("incompatible_qos"))
    finally:
        client.close()
        ctx.try_shutdown()
    return res


# ---------------------------------------------------------------------------- command line
def _size(text: str) -> Tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sampt_ros.tools.fuzz", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fuzz", help="generated hostile messages through running nodes")
    f.add_argument("--messages", type=int, default=5000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--check-every", type=int, default=25)
    f.add_argument("--bomb-share", type=float, default=0.0006,
                   help="share of compressed messages that are the 12000x12000 PNG bomb")
    f.add_argument("--resize", action="store_true", help="let valid images of other sizes through")
    f.add_argument("--phases", default="raw,compressed", help="raw, compressed or both (comma-separated)")
    f.add_argument("--max-payload", type=int, default=MAX_PAYLOAD, help="largest generated raw image payload")
    f.add_argument("--mix", default="0.55,0.35,0.10", help="shares of images, prompts and clicks")
    hs = sub.add_parser("hostile", help="the issue's items 1-5, measured")
    for q in (f, hs):
        q.add_argument("--node-repo", type=Path, default=None, help="run the node from this checkout")
        q.add_argument("--out", type=Path, default=None, help="folder for the node logs (default /tmp)")
        q.add_argument("--json", type=Path, default=None, help="also write the result here")
        q.add_argument("--domain-id", type=int, default=None)
    t = sub.add_parser("transport", help="frames from a plain publisher to a running node")
    t.add_argument("--namespace", default="/sampt")
    t.add_argument("--mode", choices=("lockstep", "live"), default="lockstep")
    t.add_argument("--frames", type=int, default=60)
    t.add_argument("--rate", type=float, default=30.0)
    t.add_argument("--size", type=_size, default=(854, 480))
    t.add_argument("--reliability", choices=("reliable", "sensor_data"), default=None)
    t.add_argument("--timeout", type=float, default=5.0, help="lockstep: seconds to wait for each answer")
    t.add_argument("--domain-id", type=int, default=None)
    t.add_argument("--image-topic", default=None, help="the topic the node's image input is remapped to")
    t.add_argument("--json", type=Path, default=None)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.cmd in ("fuzz", "hostile") and not os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        profile = _fastdds_profile()
        if profile:  # what the launch file gives the node
            os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
            os.environ.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "1")
    if args.cmd == "fuzz":
        global MAX_PAYLOAD
        MAX_PAYLOAD = int(args.max_payload)
        res = run_fuzz(args.messages, args.seed, args.node_repo, args.check_every, args.bomb_share, args.resize,
                       args.out, args.domain_id, tuple(p for p in args.phases.split(",") if p),
                       tuple(float(x) for x in args.mix.split(",")))
        ok = res["crashes"] == 0 and res["checks_without_object"] == 0 and res["checks_unanswered"] == 0 and \
            (res["max_rss_ratio"] or 0) <= 1.10
    elif args.cmd == "hostile":
        res = run_hostile(args.node_repo, args.out, args.domain_id)
        ok = True
    else:
        res = run_transport(args.namespace, args.mode, args.frames, args.rate, args.size, args.domain_id,
                            args.reliability, args.timeout, image_topic=args.image_topic)
        ok = True
    text = json.dumps(res, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
