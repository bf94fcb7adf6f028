"""``sampt-benchmark``: per-stage timing, throughput, memory and work counts of the engine.

Runs the engine built from a configuration over a real DAVIS sequence (``--davis ROOT
--sequence NAME``) or, by default, a generated moving-texture sequence (a panning textured
background with ``--objects K`` textured ellipses moving on their own paths, each prompted from
its exact first-frame mask). The first ``--warmup`` frames are processed but not measured.

It prints, per measured frame, the median time of every engine stage (from
``FrameResult.timings``: tracker, image embedding, decoder passes, sampling, the mask motion
prior, the rest of the step, the whole step) and of the outputs any caller makes (label map and
overlay drawing), the throughput (frames / seconds inside ``engine.step``), the peak resident
memory (and the CUDA peak allocation when a GPU is used), the devices, and the counters that
show the work done per frame: image embeddings computed, tracker frames prepared / feature
maps computed, decoder passes, against the number of frames.

On a GPU every stage is timed with CUDA events recorded around the component calls (the engine's
own host clocks would only measure kernel launches), and the frame is synchronised once, after
the step. With ``--json`` the last line printed is one JSON object (medians)::

    {"objects": N, "decoder_calls_per_frame": .., "embeddings_per_frame": .., "ms": {"embedding": ..,
     "tracker": .., "decoder": .., "sampling": .., "total": ..}, "peak_rss_mib": .., "cuda_max_allocated_mib": ..}

``--objects 1,2,4,8`` runs each object count in turn in one process (the model is loaded once)
and prints one report (and with ``--json`` one summary line) per count. Runs made one after the
other meet different machine load, so on a shared machine their decoder times are not comparable
to a few tens of percent; ``--decoder-rounds R`` then replays every count's recorded decoder
inputs (the images and the ``segment`` requests of its measured frames) R rounds with the counts
interleaved, and reports the decoder's ms per frame per count and the ratio to the smallest count
under the same load; with ``--json`` that is the last line: ``{"decoder_scaling": {"objects": [..],
"ms": [..], "ratio": [..], "ratio_per_round": [..], ...}}``.

Example (tiny random models, numbers meaningless but the code path real)::

    sampt-benchmark --profile cpu --frames 30
    sampt-benchmark --profile random_weights --size 640x480 --objects 8 --json
    sampt-benchmark --profile random_weights --size 640x480 --objects 1,8 --decoder-rounds 10 --json
    sampt-benchmark --profile jetson --random-weights --objects 1,2,4,8 --decoder-rounds 5 --json   # on a GPU
    sampt-benchmark --frames 10 --profile random_weights --set segmenter.kind=sam_hq \\
        segmenter.sam_hq.model_type=tiny_light segmenter.sam_hq.allow_random_weights=true
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import cli
from .eval import (
    EvalError,
    _build,
    _flatten_args,
    _write_json,
    load_sequence,
    read_label_map,
    read_rgb,
    resolve_config,
)

#: engine stages reported, in order (FrameResult.timings keys); "other" and "step" are derived
STAGES = ("tracker", "embedding", "decoder", "sampling", "prior")
#: counter attributes looked up on the tracker and the segmenter, when present
COUNTER_SUFFIXES = ("_computed", "_calls", "_prepared")
COUNTER_NAMES = ("segmentations",)
#: counters that must equal the number of frames (one image embedding / one feature map per frame)
PER_FRAME_COUNTERS = {
    "segmenter": ("embeddings_computed",),
    "tracker": ("feature_maps_computed", "pyramids_computed", "frames_prepared"),
}


# ---------------------------------------------------------------------------- input
def parse_size(text: str) -> Tuple[int, int]:
    """``"854x480"`` -> ``(854, 480)`` (width, height); :class:`EvalError` when malformed or
    outside 32..8192 px a side."""
    try:
        return cli.parse_size(text, "--size", min_side=32)
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def _texture(rng: np.random.Generator, h: int, w: int, scale: float, tint: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` smooth random texture (blurred noise at several scales, tinted)."""
    import cv2

    acc = np.zeros((h, w), np.float32)
    for k, s in enumerate((scale, scale / 3, scale / 9)):
        small = rng.random((max(2, int(h / max(s, 1))), max(2, int(w / max(s, 1)))), dtype=np.float32)
        acc += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (k + 1)
    acc = (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-6)
    img = (0.35 + 0.65 * acc)[..., None] * tint[None, None, :]
    return np.clip(img, 0, 255).astype(np.uint8)


class MovingTextures:
    """A generated sequence: a panning textured background and ``n_objects`` moving textured ellipses.

    Frame ``t`` is a pure function of (size, n_objects, seed, t). Masks are exact (hard edges).

    Args:
        size: (W, H) pixels.
        n_objects: number of ellipses (ids 1..K; a higher id is drawn in front).
        seed: seeds the textures and paths.
    """

    def __init__(self, size: Tuple[int, int], n_objects: int, seed: int = 0) -> None:
        if n_objects < 1:
            raise EvalError(f"--objects must be >= 1, got {n_objects}")
        self.w, self.h = size
        rng = np.random.default_rng(seed)
        self.margin = m = max(self.w, self.h) // 4
        self.background = _texture(rng, self.h + 2 * m, self.w + 2 * m, 24.0, np.array([200.0, 190.0, 170.0]))
        base = min(self.w, self.h)
        self.objects = []
        for k in range(n_objects):
            axes = (base * rng.uniform(0.08, 0.14), base * rng.uniform(0.06, 0.11))
            tint = rng.uniform(60, 255, 3)
            tex = _texture(rng, self.h, self.w, 8.0, tint)
            phase = rng.uniform(0, 2 * np.pi, 2)
            speed = rng.uniform(0.02, 0.05, 2)
            self.objects.append((axes, tex, phase, speed, rng.uniform(0, 180)))

    def frame(self, t: int) -> Tuple[np.ndarray, np.ndarray]:
        """Frame ``t``: ``HxWx3 uint8`` RGB and its ``HxW uint16`` label map."""
        import cv2

        m = self.margin
        dx = int(round(m + 0.8 * m * np.sin(0.01 * t)))
        dy = int(round(m + 0.5 * m * np.sin(0.013 * t + 1.0)))
        image = self.background[dy:dy + self.h, dx:dx + self.w].copy()
        labels = np.zeros((self.h, self.w), np.uint16)
        for k, (axes, tex, phase, speed, angle) in enumerate(self.objects, start=1):
            cx = self.w * (0.5 + 0.32 * np.sin(speed[0] * t + phase[0]))
            cy = self.h * (0.5 + 0.30 * np.sin(speed[1] * t + phase[1]))
            mask = np.zeros((self.h, self.w), np.uint8)
            cv2.ellipse(mask, (int(cx), int(cy)), (int(axes[0]), int(axes[1])), angle + 0.5 * t, 0, 360, 1, -1)
            sel = mask.astype(bool)
            # the object's texture moves with it (shifted by its own displacement)
            shifted = np.roll(tex, (int(cy - self.h / 2), int(cx - self.w / 2)), axis=(0, 1))
            image[sel] = shifted[sel]
            labels[sel] = k
        return image, labels


def _davis_frames(root: str, name: str, size: Optional[Tuple[int, int]], total: int) -> Tuple[Iterator, np.ndarray]:
    """Frames of a DAVIS sequence, played forward then backward as often as ``total`` needs."""
    import cv2

    seq = load_sequence(root, name)
    if seq.annotations[0] is None:
        raise EvalError(f"sequence {name!r} has no first-frame annotation")
    gt0 = read_label_map(seq.annotations[0])
    n = len(seq.frames)
    order = list(range(n)) + list(range(n - 2, 0, -1)) if n > 1 else [0]

    def resize(img: np.ndarray, nearest: bool = False) -> np.ndarray:
        if size is None or (img.shape[1], img.shape[0]) == size:
            return img
        return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    def frames() -> Iterator[np.ndarray]:
        for t in range(total):
            yield resize(read_rgb(seq.frames[order[t % len(order)]]))

    return frames(), resize(gt0, nearest=True)


# ---------------------------------------------------------------------------- measurement
def counters(component: Any) -> Dict[str, int]:
    """A component's work counters: its ``stats()`` (the protocol), else its public int attributes that
    count work (``*_computed``, ``*_calls``, ...)."""
    stats = getattr(component, "stats", None)
    if callable(stats):
        try:
            values = stats()
        except Exception:  # noqa: BLE001 - a component without a working stats() falls back to attributes
            values = None
        if isinstance(values, dict):
            return {str(k): int(v) for k, v in sorted(values.items())
                    if isinstance(v, (int, np.integer)) and not isinstance(v, bool)}
    out: Dict[str, int] = {}
    for name in sorted(dir(component)):
        if name.startswith("_") or not (name.endswith(COUNTER_SUFFIXES) or name in COUNTER_NAMES):
            continue
        try:
            value = getattr(component, name)
        except Exception:  # noqa: BLE001 - a property may fail; it is just not a counter
            continue
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[name] = int(value)
    return out


def component_device(component: Any) -> str:
    """Where a component computes: a torch device name, or ``cpu (numpy/OpenCV)``."""
    for path in ("device", "predictor.device", "predictor.model.device", "net.device", "model.device"):
        obj = component
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if obj is not None and not callable(obj):
            return str(obj)
    for attr in ("net", "model"):
        mod = getattr(component, attr, None)
        params = getattr(mod, "parameters", None)
        if callable(params):
            try:
                return str(next(params()).device)
            except StopIteration:
                pass
    return "cpu (numpy/OpenCV)"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch():
    """torch if the run already imported it (the weight-free path never does)."""
    return sys.modules.get("torch")


def _cuda_in_use(torch) -> bool:
    """Whether the run computes on a GPU (torch imported and CUDA initialised by a component)."""
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def _wrap_methods(targets: Dict[Tuple[Any, str], Any]):
    """Replace ``obj.method`` by ``make(original)`` for each ``(obj, method): make``; returns a
    function that puts the originals back (components are wrapped on the instance, never the class)."""
    undo = []
    for (obj, method), make in targets.items():
        fn = getattr(obj, method, None) if obj is not None else None
        if fn is None:
            continue
        own = method in vars(obj)
        undo.append((obj, method, own, vars(obj).get(method)))
        setattr(obj, method, make(fn))

    def restore() -> None:
        for obj, method, own, original in reversed(undo):
            if own:
                setattr(obj, method, original)
            else:
                delattr(obj, method)
        undo.clear()

    return restore


class DecoderRecorder:
    """Records what the segmenter is given in the measured frames: per frame the image of
    ``set_image`` and the request lists of every ``segment`` call after it, to replay the decoder
    alone later (:func:`decoder_scaling`). Set ``measuring`` before each frame."""

    def __init__(self) -> None:
        self.frames: List[Tuple[np.ndarray, List[list]]] = []
        self.measuring = False
        self._restore = None

    def attach(self, segmenter) -> None:
        def on_image(fn):
            def set_image(image, *args, **kwargs):
                if self.measuring:  # a reference: the engine never writes a frame it has handed on
                    self.frames.append((image, []))
                return fn(image, *args, **kwargs)
            return set_image

        def on_segment(fn):
            def segment(requests, *args, **kwargs):
                requests = list(requests)
                if self.measuring and self.frames:
                    self.frames[-1][1].append(requests)
                return fn(requests, *args, **kwargs)
            return segment

        self._restore = _wrap_methods({(segmenter, "set_image"): on_image, (segmenter, "segment"): on_segment})

    def detach(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None


def decoder_scaling(recordings: Dict[int, List[Tuple[np.ndarray, List[list]]]], segmenter,
                    rounds: int) -> Dict[str, Any]:
    """Replay each object count's recorded frames through ``segmenter`` alone, the counts
    interleaved (their order rotated every round), and time the ``segment`` calls.

    Runs of different object counts made one after the other meet different machine load (on a
    shared machine the same code's 1-vs-8-object decoder ratio moves by more than the batching
    gain); interleaving puts every count under the same load. ``set_image`` is called before each
    frame and not timed; on a GPU each frame is synchronised before and after.

    Returns ``{"objects": [K..], "rounds": R, "ms": [median over rounds of the mean decoder ms per
    frame, per K], "ratio": [ms[K] / ms[smallest K]], "ratio_per_round": [median over rounds of the
    per-round ratio]}``.
    """
    counts = sorted(k for k, frames in recordings.items() if frames)
    if len(counts) < 2:
        raise EvalError("decoder scaling needs recorded frames of at least two object counts")
    torch = _torch()
    cuda = _cuda_in_use(torch)
    per_round: Dict[int, List[float]] = {k: [] for k in counts}
    for r in range(rounds):
        shift = r % len(counts)
        for k in counts[shift:] + counts[:shift]:
            total = 0.0
            for image, calls in recordings[k]:
                segmenter.set_image(image)
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for requests in calls:
                    segmenter.segment(requests)
                if cuda:
                    torch.cuda.synchronize()
                total += time.perf_counter() - t0
            per_round[k].append(1000.0 * total / len(recordings[k]))
    base = np.asarray(per_round[counts[0]])
    ms = [float(np.median(per_round[k])) for k in counts]
    return {
        "objects": counts,
        "rounds": rounds,
        "frames": {str(k): len(recordings[k]) for k in counts},
        "ms": [round(v, 3) for v in ms],
        "ratio": [round(v / ms[0], 3) if ms[0] > 0 else None for v in ms],
        "ratio_per_round": [round(float(np.median(np.asarray(per_round[k]) / base)), 3) for k in counts],
        "timing": "host clock, synchronised" if cuda else "host clock",
    }


def format_scaling(s: Dict[str, Any]) -> str:
    lines = [f"decoder alone, recorded frames replayed {s['rounds']} rounds with the object counts interleaved:",
             f"{'objects':>8} {'decoder ms/frame':>17} {'x ' + str(s['objects'][0]) + ' object(s)':>14} "
             f"{'per-round median':>17}"]
    for k, ms, ratio, per in zip(s["objects"], s["ms"], s["ratio"], s["ratio_per_round"]):
        lines.append(f"{k:>8} {ms:>17.2f} {ratio:>14.2f} {per:>17.2f}")
    return "\n".join(lines)


class CudaStageTimer:
    """Times engine stages on a GPU with CUDA events recorded around the component calls.

    The tracker's ``push_frame``/``track``, the segmenter's ``set_image``/``segment`` and the
    sampler's ``sample`` are wrapped on the instances (the engine is unchanged); events are only
    recorded inside a frame, and read after the frame's one synchronisation.
    """

    STAGE_OF = {("tracker", "push_frame"): "tracker", ("tracker", "track"): "tracker",
                ("segmenter", "set_image"): "embedding", ("segmenter", "segment"): "decoder",
                ("sampler", "sample"): "sampling"}

    def __init__(self, engine, torch) -> None:
        self.torch = torch
        self.pending: List[Tuple[str, Any, Any]] = []
        self._restore = _wrap_methods(
            {(getattr(engine, attr, None), method): (lambda fn, stage=stage: self._wrap(fn, stage))
             for (attr, method), stage in self.STAGE_OF.items()})

    def close(self) -> None:
        """Unwrap the components (a later run on the same engine wraps them afresh)."""
        self._restore()

    def _wrap(self, fn, stage):
        def timed(*args, **kwargs):
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                return fn(*args, **kwargs)
            finally:
                end.record()
                self.pending.append((stage, start, end))
        return timed

    def frame(self) -> Dict[str, float]:
        """Seconds per stage of the frame just run (call after synchronising)."""
        out = dict.fromkeys(STAGES, 0.0)
        for stage, start, end in self.pending:
            out[stage] = out.get(stage, 0.0) + start.elapsed_time(end) / 1000.0
        self.pending = []
        return out


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / (1024.0 * 1024.0)


def run_benchmark(
    config,
    frames: int = 30,
    warmup: int = 3,
    size: Optional[Tuple[int, int]] = None,
    objects: int = 1,
    davis: Optional[str] = None,
    sequence: Optional[str] = None,
    seed: int = 0,
    engine=None,
    progress: bool = True,
    recorder: Optional[DecoderRecorder] = None,
) -> Dict[str, Any]:
    """Run and measure; returns the report dict (see the module doc). Raises :class:`EvalError`.

    ``recorder`` (optional) records the segmenter's inputs of the measured frames.
    """
    from ..core.factory import describe
    from ..core.visualization import draw_overlay

    if frames < 1:
        raise EvalError(f"--frames must be >= 1, got {frames}")
    if warmup < 0:
        raise EvalError(f"--warmup must be >= 0, got {warmup}")
    total = warmup + frames
    if davis:
        if not sequence:
            raise EvalError("--davis needs --sequence NAME")
        stream, gt0 = _davis_frames(davis, sequence, size, total)
        source = {"kind": "davis", "root": str(davis), "sequence": sequence}
    else:
        synth = MovingTextures(size or (854, 480), objects, seed)
        stream = (synth.frame(t)[0] for t in range(total))
        gt0 = synth.frame(0)[1]
        source = {"kind": "generated", "objects": objects, "seed": seed}
    object_ids = [int(v) for v in np.unique(gt0) if v != 0]
    if not object_ids:
        raise EvalError("the first frame has no object to prompt")

    if engine is None:
        engine = _build("engine", config)
    engine.reset()
    for oid in object_ids:
        engine.set_prompt(oid, mask=gt0 == oid)
    torch = _torch()
    cuda = _cuda_in_use(torch)
    timer = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        timer = CudaStageTimer(engine, torch)

    rows: Dict[str, List[float]] = {k: [] for k in STAGES + ("other", "step", "wall", "label_image", "overlay")}
    counts_start: Dict[str, Dict[str, int]] = {}
    states: Dict[str, int] = {}
    shape = None
    from tqdm import tqdm

    if recorder is not None:
        recorder.attach(engine.segmenter)
    bar = tqdm(total=total, desc="benchmark", unit="frame", file=sys.stderr, disable=not progress, leave=False)
    try:
        for t, image in enumerate(stream):
            if recorder is not None:
                recorder.measuring = t >= warmup
            if t == warmup:
                counts_start = {"tracker": counters(engine.tracker), "segmenter": counters(engine.segmenter)}
                if cuda and _torch() is not None:
                    _torch().cuda.synchronize()
            if cuda:
                step_start = torch.cuda.Event(enable_timing=True)
                step_end = torch.cuda.Event(enable_timing=True)
                step_start.record()
            t0 = time.perf_counter()
            result = engine.step(image)
            if cuda:
                step_end.record()
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            if timer is not None:
                gpu = timer.frame()
                result.timings.update(gpu)
                result.timings["total"] = step_start.elapsed_time(step_end) / 1000.0
            t1 = time.perf_counter()
            result.label_image(image.shape[:2])
            t2 = time.perf_counter()
            draw_overlay(image, result)
            t3 = time.perf_counter()
            bar.update(1)
            shape = image.shape
            if t < warmup:
                continue
            tm = result.timings
            for k in STAGES:
                rows[k].append(float(tm.get(k, 0.0)))
            step_total = float(tm.get("total", wall))
            rows["step"].append(step_total)
            rows["other"].append(max(0.0, step_total - sum(float(tm.get(k, 0.0)) for k in STAGES)))
            rows["wall"].append(wall)
            rows["label_image"].append(t2 - t1)
            rows["overlay"].append(t3 - t2)
            for obj in result.objects.values():
                states[obj.state.name] = states.get(obj.state.name, 0) + 1
    finally:  # unwrap in the reverse order of wrapping
        bar.close()
        if recorder is not None:
            recorder.detach()
        if timer is not None:
            timer.close()
    if not counts_start:  # warmup >= frames streamed (cannot happen: total = warmup + frames)
        counts_start = {"tracker": {}, "segmenter": {}}

    counts_end = {"tracker": counters(engine.tracker), "segmenter": counters(engine.segmenter)}
    counts: Dict[str, Dict[str, Any]] = {}
    for comp in ("tracker", "segmenter"):
        for name, value in counts_end[comp].items():
            measured = value - counts_start[comp].get(name, 0)
            counts[f"{comp}.{name}"] = {"total": value, "measured": measured, "per_frame": measured / frames}

    checks: Dict[str, str] = {}
    for comp, names in PER_FRAME_COUNTERS.items():
        for name in names:
            c = counts.get(f"{comp}.{name}")
            if c is not None:
                ok = c["measured"] == frames
                checks[f"{comp}.{name}"] = f"{'OK' if ok else 'MISMATCH'} ({c['measured']} for {frames} frames)"
                break
        else:
            checks[f"{comp}: once-per-frame counter"] = "not exposed by this component"

    seconds = float(sum(rows["wall"]))
    report: Dict[str, Any] = {
        "config": config.to_dict(),
        "describe": describe(config),
        "input": dict(source, width=int(shape[1]), height=int(shape[0]), objects=len(object_ids)),
        "frames": frames,
        "warmup": warmup,
        "median_ms": {k: 1000.0 * float(np.median(v)) for k, v in rows.items()},
        "mean_ms": {k: 1000.0 * float(np.mean(v)) for k, v in rows.items()},
        "fps": frames / seconds if seconds > 0 else 0.0,
        "peak_rss_mib": peak_rss_mib(),
        "cuda_max_allocated_mib": (float(torch.cuda.max_memory_allocated()) / 2 ** 20) if cuda else None,
        "timing": "cuda events" if cuda else "host clock",
        "device": {
            "tracker": component_device(engine.tracker),
            "segmenter": component_device(engine.segmenter),
            "cpu": cpu_name(),
            "cpu_threads": os.cpu_count(),
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "gpu": torch.cuda.get_device_name() if cuda else None,
        },
        "counts": counts,
        "checks": checks,
        "object_states": states,
    }
    return report


def summary(r: Dict[str, Any]) -> Dict[str, Any]:
    """The one-line JSON summary of a report (medians per frame)."""
    counts = r["counts"]

    def per_frame(name: str) -> Optional[float]:
        c = counts.get(name)
        return None if c is None else round(float(c["per_frame"]), 4)

    med = r["median_ms"]
    return {
        "profile": r["config"].get("profile"),
        "segmenter": r["describe"],
        "objects": r["input"]["objects"],
        "size": f"{r['input']['width']}x{r['input']['height']}",
        "frames": r["frames"],
        "decoder_calls_per_frame": per_frame("segmenter.decoder_calls"),
        "embeddings_per_frame": per_frame("segmenter.embeddings_computed"),
        "ms": {"embedding": round(med["embedding"], 3), "tracker": round(med["tracker"], 3),
               "decoder": round(med["decoder"], 3), "sampling": round(med["sampling"], 3),
               "total": round(med["step"], 3)},
        "fps": round(r["fps"], 3),
        "peak_rss_mib": round(r["peak_rss_mib"], 1),
        "cuda_max_allocated_mib": None if r["cuda_max_allocated_mib"] is None else round(r["cuda_max_allocated_mib"], 1),
        "timing": r.get("timing"),
        "device": r["device"]["segmenter"],
        "gpu": r["device"].get("gpu"),
        "random_weights": _random_weights(r["config"]),
    }


def _random_weights(config: Dict[str, Any]) -> bool:
    """Whether a report's configured tracker or segmenter runs without a checkpoint, on random weights."""
    for family in ("tracker", "segmenter"):
        tree = config.get(family) or {}
        section = tree.get(tree.get("kind"), {}) if isinstance(tree, dict) else {}
        if isinstance(section, dict) and section.get("allow_random_weights") and not section.get("checkpoint"):
            return True
    return False


def format_report(r: Dict[str, Any]) -> str:
    """Human-readable table of :func:`run_benchmark`'s report."""
    inp = r["input"]
    src = f"DAVIS {inp['sequence']}" if inp["kind"] == "davis" else "generated moving textures"
    dev = r["device"]
    lines = [
        f"config   : {r['describe']}",
        f"input    : {src}, {inp['width']}x{inp['height']}, {inp['objects']} object(s); "
        f"{r['frames']} measured frames after {r['warmup']} warm-up",
        f"devices  : tracker {dev['tracker']}, segmenter {dev['segmenter']}; CPU {dev['cpu']} "
        f"({dev['cpu_threads']} threads{', torch ' + str(dev['torch_threads']) if dev['torch_threads'] else ''})"
        + (f"; GPU {dev['gpu']}" if dev["gpu"] else ""),
        "",
        f"{'stage (per frame)':<34} {'median ms':>10} {'mean ms':>10}",
        "-" * 56,
    ]
    names = {
        "tracker": "tracker (push_frame + track)",
        "embedding": "image embedding (set_image)",
        "decoder": "decoder passes (segment)",
        "sampling": "query sampling",
        "prior": "mask motion prior",
        "other": "engine other (bookkeeping)",
        "step": "engine step total",
        "wall": "engine.step wall (synchronised)",
        "label_image": "output: label map",
        "overlay": "output: draw_overlay",
    }
    for k, label in names.items():
        lines.append(f"{label:<34} {r['median_ms'][k]:>10.2f} {r['mean_ms'][k]:>10.2f}")
    lines += [
        "-" * 56,
        f"FPS (frames / seconds in engine.step): {r['fps']:.2f}",
        f"peak RSS: {r['peak_rss_mib']:.0f} MiB"
        + (f"; CUDA max allocated: {r['cuda_max_allocated_mib']:.0f} MiB" if r["cuda_max_allocated_mib"] is not None else ""),
        "",
        f"counts over the {r['frames']} measured frames ({r['input']['objects']} object(s)):",
    ]
    for name, c in r["counts"].items():
        lines.append(f"  {name:<34} {c['measured']:>6}  ({c['per_frame']:.2f} per frame; {c['total']} incl. warm-up)")
    for name, verdict in r["checks"].items():
        lines.append(f"once per frame: {name}: {verdict}")
    if r["object_states"]:
        lines.append("object states: " + ", ".join(f"{k} {v}" for k, v in sorted(r["object_states"].items())))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sampt-benchmark",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Timings are medians over the measured frames (warm-up excluded); FPS = measured frames / "
               "seconds inside engine.step (frame generation/decoding excluded).",
    )
    p.add_argument("--profile", metavar="NAME", help="profile name (cpu, paper, paper_reinit, fast_gpu) or YAML file")
    p.add_argument("--config", action="append", nargs="+", metavar="FILE",
                   help="config file(s) laid over config/sampt.yaml (after --profile)")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", dest="overrides",
                   help="override config keys, e.g. segmenter.sam.model_type=vit_b segmenter.sam.allow_random_weights=true")
    p.add_argument("--size", default=None, metavar="WxH",
                   help="frame size (default 854x480; DAVIS frames are resized only when given)")
    p.add_argument("--frames", type=int, default=30, metavar="N", help="measured frames (default 30)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="warm-up frames, not measured (default 3)")
    p.add_argument("--objects", default="1", metavar="K[,K...]",
                   help="objects in the generated sequence (default 1; with --davis the first-frame annotation's "
                        "objects). A list (1,2,4,8) runs each count in turn in this process, the model loaded once")
    p.add_argument("--decoder-rounds", type=int, default=0, metavar="R",
                   help="with two or more object counts: afterwards replay each count's recorded decoder inputs R "
                        "rounds, the counts interleaved, and report the decoder's time per count and its ratio to "
                        "the smallest count under the same machine load (default 0: off)")
    p.add_argument("--random-weights", action="store_true",
                   help="time the profile's models with random weights (no checkpoints; every point visible and no "
                        "mask emptied, so the work per frame is the real one): speeds real, masks meaningless")
    p.add_argument("--davis", metavar="ROOT", help="use a real DAVIS-layout sequence instead of generated frames")
    p.add_argument("--sequence", metavar="NAME", help="the DAVIS sequence (with --davis)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sequence")
    p.add_argument("--threads", type=int, metavar="N", help="torch / OpenCV threads")
    p.add_argument("--json", metavar="FILE", nargs="?", const="",
                   help="print a one-line JSON summary as the last line (medians: ms per stage, decoder calls and "
                        "embeddings per frame, peak memory); with FILE also write the whole report there")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def random_weight_overrides(config) -> List[str]:
    """``--set`` overrides that run ``config``'s models with random weights, for timing only.

    The configured tracker and segmenter get no checkpoint and ``allow_random_weights``; random
    visibility scores and predicted IoUs must not hide points or empty masks (that would skip the
    decoder's work), so every tracked point counts as visible and no mask is emptied
    (``prompting.visibility_threshold``, ``prompting.border_margin`` and
    ``segmenter.decoder.iou_threshold`` 0, as the ``random_weights`` profile has them).
    """
    out: List[str] = []
    for family in ("tracker", "segmenter"):
        kind = getattr(config, family).kind
        section = getattr(getattr(config, family), kind, None)
        if section is not None and hasattr(section, "allow_random_weights"):
            out += [f"{family}.{kind}.checkpoint=", f"{family}.{kind}.allow_random_weights=true"]
    return out + ["prompting.visibility_threshold=0.0", "prompting.border_margin=0.0",
                  "segmenter.decoder.iou_threshold=0.0"]


def parse_objects(text: str, limit: int) -> List[int]:
    """``"8"`` or ``"1,2,4,8"`` -> object counts (each 1..``limit``, the engine's ``max_objects``);
    :class:`EvalError` otherwise."""
    try:
        counts = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise EvalError(f"--objects must be a count or a comma-separated list of counts, got {text!r}") from None
    bad = [k for k in counts if not 1 <= k <= limit]
    if bad:
        raise EvalError(f"--objects counts must be 1..{limit} (engine.max_objects), got {bad[0]}")
    if len(set(counts)) != len(counts):
        raise EvalError(f"--objects lists a count twice: {text!r}")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    reports: List[Dict[str, Any]] = []
    scaling: Optional[Dict[str, Any]] = None
    try:
        configs = ([args.profile] if args.profile else []) + _flatten_args(args.config)
        config, _ = resolve_config(configs, _flatten_args(args.overrides))
        if args.random_weights:  # the user's --set still wins
            config, _ = resolve_config(configs, random_weight_overrides(config) + _flatten_args(args.overrides))
        size = parse_size(args.size) if args.size else None
        counts = parse_objects(args.objects, int(config.engine.max_objects))
        if args.davis and len(counts) > 1:
            raise EvalError("--objects takes one count with --davis (the annotation decides)")
        if args.decoder_rounds < 0:
            raise EvalError(f"--decoder-rounds must be >= 0, got {args.decoder_rounds}")
        if args.decoder_rounds and len(counts) < 2:
            raise EvalError("--decoder-rounds needs two or more object counts, e.g. --objects 1,8")
        if args.threads:
            import cv2

            cv2.setNumThreads(args.threads)
            if config.tracker.kind == "pips" or config.segmenter.kind in ("sam", "sam_hq", "sam2"):
                import torch

                torch.set_num_threads(args.threads)
        engine = _build("engine", config) if len(counts) > 1 else None
        recordings: Dict[int, List[Tuple[np.ndarray, List[list]]]] = {}
        for k in counts:
            recorder = DecoderRecorder() if args.decoder_rounds else None
            report = run_benchmark(config, frames=args.frames, warmup=args.warmup, size=size, objects=k,
                                   davis=args.davis, sequence=args.sequence, seed=args.seed, engine=engine,
                                   progress=not args.no_progress, recorder=recorder)
            reports.append(report)
            print(format_report(report) + ("\n" if len(counts) > 1 else ""), flush=True)
            if recorder is not None:
                recordings[k] = recorder.frames
        if args.decoder_rounds:
            scaling = decoder_scaling(recordings, engine.segmenter, args.decoder_rounds)
            print(format_scaling(scaling), flush=True)
    except EvalError as exc:
        print(f"sampt-benchmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sampt-benchmark: interrupted", file=sys.stderr)
        return 130
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        whole: Dict[str, Any] = reports[0] if len(reports) == 1 else {"runs": reports}
        if scaling is not None:
            whole["decoder_scaling"] = scaling
        _write_json(path, whole)
    if args.json is not None:
        import json

        for report in reports:
            print(json.dumps(summary(report)), flush=True)
        if scaling is not None:
            print(json.dumps({"decoder_scaling": scaling}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
