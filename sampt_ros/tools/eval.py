"""``sampt-eval``: offline evaluation of the online SAM-PT engine.

Two commands:

``sampt-eval davis ROOT [--sequences a,b] [--config FILE ...] [--set key=value ...] [--out DIR]
[--video] [--max-frames N]``
    Video object segmentation on a DAVIS-layout folder (``JPEGImages/480p/<seq>/*.jpg``,
    ``Annotations/480p/<seq>/*.png``; DAVIS 2016 0/255 masks or DAVIS 2017 paletted label
    maps). Each object is prompted with its mask in the first frame it appears in, the engine
    runs online, frame by frame, and every frame is scored with the DAVIS J (region IoU) and F
    (boundary) measures, averaged over the frames except the first and the last; per object,
    its state timeline and re-acquisition figures (see :func:`evaluate_davis_sequence`).
    Writes ``DIR/summary.json``, the predicted label maps as paletted PNGs
    (``DIR/<seq>/<frame>.png``) and, with ``--video``, an overlay video ``DIR/<seq>.mp4``.

``sampt-eval badja DAVIS_ROOT BADJA_JSON ... [--reinit] [--config FILE ...] [--out DIR]``
    Point tracking on BADJA animal joints (see :func:`run_badja`), scored with PCK.

Configuration: ``--config`` files (paths or profile names such as ``cpu``) are laid, left to
right, over ``config/sampt.yaml`` (the node's defaults); ``--set key=value`` overrides single
keys (the value is parsed as YAML: ``true``, ``8``, ``vit_b``). Bad input (missing folder,
unknown sequence, bad config, missing weights) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..core.config import Config, config_dir, load_config

#: where results go when ``--out`` is not given (a timestamped folder below it)
DEFAULT_OUT_ROOT = os.path.join("outputs", "eval")
#: BADJA joints are annotated on the full-resolution (1920x1080) DAVIS frames
BADJA_SOURCE_SIZE = (1920, 1080)
#: PCK threshold as a fraction of sqrt(ground-truth mask area) (BADJA / PIPS convention)
PCK_FRACTION = 0.2


class EvalError(Exception):
    """A user-facing problem with the inputs: reported in one line, exit status 2."""


# ---------------------------------------------------------------------------- configuration
def parse_overrides(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["a.b=1", "c=true"]`` -> ``{"a.b": 1, "c": True}``; values are parsed as YAML scalars."""
    import yaml

    out: Dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EvalError(f"--set expects key=value, got {item!r}")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise EvalError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return out


def _resolve_config_file(name: str) -> str:
    if os.path.isfile(name):
        return name
    try:
        path = os.path.join(config_dir(), f"{name}.yaml")
    except FileNotFoundError:
        raise EvalError(f"config file not found: {name}") from None
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(config_dir()) if f.endswith(".yaml"))
        raise EvalError(f"config file not found: {name} (profile names: {', '.join(known)})")
    return path


def resolve_config(config_args: Optional[Sequence[str]], set_args: Optional[Sequence[str]]) -> Tuple[Config, List[str]]:
    """Load ``config/sampt.yaml`` + the ``--config`` files + the ``--set`` overrides.

    Returns the validated config and the list of files used. Raises :class:`EvalError`.
    """
    files: List[str] = []
    try:
        files.append(os.path.join(config_dir(), "sampt.yaml"))
    except FileNotFoundError:
        if not config_args:
            raise EvalError("cannot find config/sampt.yaml; pass --config FILE") from None
    for name in config_args or []:
        path = _resolve_config_file(name)
        if not files or os.path.abspath(path) != os.path.abspath(files[0]):
            files.append(path)
    overrides = parse_overrides(set_args)
    try:
        return load_config(files, overrides), files
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise EvalError(f"bad config: {exc}") from None


def _flatten_args(values: Optional[Sequence[Sequence[str]]]) -> List[str]:
    """argparse ``action=append, nargs='+'`` gives a list of lists."""
    return [v for group in values or [] for v in group]


def _build(kind: str, config: Config):
    """Build the engine or the tracker, turning configuration/weights problems into EvalError."""
    from ..core import factory

    try:
        return factory.build_engine(config) if kind == "engine" else factory.build_tracker(config)
    except (ValueError, FileNotFoundError, OSError, ImportError, KeyError) as exc:
        raise EvalError(f"cannot build the {kind} from the config: {exc}") from None


# ---------------------------------------------------------------------------- DAVIS layout
@dataclass
class DavisSequence:
    """One sequence of a DAVIS-layout folder.

    Attributes:
        name: the folder name.
        frames: JPEG paths in frame order.
        annotations: per frame, the annotation PNG path or ``None`` when absent.
    """

    name: str
    frames: List[Path]
    annotations: List[Optional[Path]]


def davis_dirs(root: os.PathLike) -> Tuple[Path, Path]:
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"DAVIS root not found: {root}")
    images = root / "JPEGImages" / "480p"
    annotations = root / "Annotations" / "480p"
    if not images.is_dir():
        raise EvalError(f"{root} is not a DAVIS-layout folder: {images} is missing")
    if not annotations.is_dir():
        raise EvalError(f"{root} is not a DAVIS-layout folder: {annotations} is missing")
    return images, annotations


def list_sequences(root: os.PathLike) -> List[str]:
    images, _ = davis_dirs(root)
    return sorted(p.name for p in images.iterdir() if p.is_dir())


def load_sequence(root: os.PathLike, name: str) -> DavisSequence:
    """Frame and annotation paths of sequence ``name`` (frames sorted by file name)."""
    images, annotations = davis_dirs(root)
    folder = images / name
    if not folder.is_dir():
        known = ", ".join(list_sequences(root)) or "none"
        raise EvalError(f"unknown sequence {name!r} in {root} (sequences: {known})")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise EvalError(f"sequence {name!r} has no frames in {folder}")
    ann = [annotations / name / f"{p.stem}.png" for p in frames]
    return DavisSequence(name, frames, [a if a.is_file() else None for a in ann])


def read_rgb(path: os.PathLike) -> np.ndarray:
    """A frame file as ``HxWx3 uint8`` RGB."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvalError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label_map(path: os.PathLike) -> np.ndarray:
    """A DAVIS annotation PNG as an ``HxW uint16`` label map (0 background, k = object k).

    Paletted PNGs (DAVIS 2017) hold object ids as palette indices and are used as they are.
    Greyscale PNGs (DAVIS 2016: 0/255) map a lone value 255 to object 1; other grey values are
    taken as ids.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot read annotation {path}: {exc}") from None
    if mode == "P":
        return arr.astype(np.uint16)
    if arr.ndim == 3:
        # An RGB(A) rendering of a label map: any non-black colour is one object per colour.
        colours = arr[..., :3].reshape(-1, 3)
        uniq, inv = np.unique(colours, axis=0, return_inverse=True)
        black = np.all(uniq == 0, axis=1)
        ids = np.cumsum(~black) * (~black)
        return ids[inv.reshape(-1)].reshape(arr.shape[:2]).astype(np.uint16)
    arr = arr.astype(np.uint16)
    values = np.unique(arr)
    if values.size and values[-1] == 255 and set(values.tolist()) <= {0, 255}:
        return (arr == 255).astype(np.uint16)
    return arr


def write_label_png(path: os.PathLike, labels: np.ndarray) -> None:
    """Save an ``HxW`` label map (values 0..255) as a paletted PNG with the overlay palette."""
    from PIL import Image

    from ..core.visualization import palette_array

    if labels.size and int(labels.max()) > 255:
        raise ValueError(f"label {int(labels.max())} does not fit an 8-bit paletted PNG")
    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    img.putpalette(palette_array(256).reshape(-1).tolist())  # turns the 'L' image into 'P'
    img.save(str(path))


class _VideoWriter:
    """mp4 (MPEG-4 part 2, ``mp4v``) writer over OpenCV; RGB frames in."""

    def __init__(self, path: Path, fps: float, size: Tuple[int, int]) -> None:
        import cv2

        self._cv2 = cv2
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self._writer.isOpened():
            raise EvalError(f"cannot open a video writer for {path} (OpenCV without an mp4 backend?)")

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=not enabled, leave=False,
                dynamic_ncols=True)


# ---------------------------------------------------------------------------- DAVIS
def evaluate_davis_sequence(
    engine,
    seq: DavisSequence,
    out_dir: Optional[Path],
    max_frames: Optional[int] = None,
    video: bool = False,
    video_fps: float = 24.0,
    progress: bool = True,
) -> Dict[str, Any]:
    """Run the engine over one sequence, each object prompted from its first annotated mask.

    Every object of the sequence's annotations (DAVIS 2017: several, ids = palette indices) is
    prompted with its ground-truth mask in the first frame it appears in, just before that
    frame is given to the engine (causal: the prompt is that frame's own annotation); an object
    absent in later frames is not prompted again. The engine is reset first.

    Returns ``{"J", "F", "JF", "frames", "fps", "objects", "reacquisition"}``: J, F, J&F are
    fractions (0..1) averaged over the scored frames except the first and the last (DAVIS
    convention, computed by :class:`~sampt_ros.core.metrics.SequenceScorer` over every object
    of the sequence); ``frames`` is the number of frames processed; ``fps`` = frames / seconds
    spent inside ``engine.step`` (reading and decoding the JPEGs, scoring and writing outputs
    are not counted). ``objects``: per object id, its J and F, the frame it was prompted on
    (``prompted_at``) and its re-acquisition figures from
    :class:`~sampt_ros.core.metrics.ReacquisitionScorer` (state ``timeline``, ``events``,
    ``id_swaps``, ``false_positive_frames``, ``final_state``, ...); ``reacquisition``: their
    digest (:func:`~sampt_ros.core.metrics.reacquisition_digest`). When a frame has no
    annotation, re-acquisition is not scored: ``reacquisition`` is None and each object carries
    J, F and ``prompted_at`` only.
    """
    from ..core.metrics import ReacquisitionScorer, SequenceScorer, object_scores

    frames = seq.frames[: max_frames] if max_frames else seq.frames
    annotations = seq.annotations[: len(frames)]
    if annotations[0] is None:
        raise EvalError(f"sequence {seq.name!r} has no first-frame annotation ({seq.frames[0].stem}.png)")
    gt0 = read_label_map(annotations[0])
    # the objects: every id in the annotations (read here only to know the ids; each mask
    # reaches the engine at the frame it belongs to)
    ids = set()
    for ann in annotations:
        if ann is not None:
            ids.update(int(v) for v in np.unique(gt0 if ann is annotations[0] else read_label_map(ann)) if v != 0)
    object_ids = sorted(ids)
    if not object_ids:
        raise EvalError(f"sequence {seq.name!r}: the annotations hold no object")

    engine.reset()
    prompted: Dict[int, int] = {}
    scorer = SequenceScorer(object_ids=object_ids)
    reacq = ReacquisitionScorer(object_ids=object_ids) if all(a is not None for a in annotations) else None
    mask_dir = None
    if out_dir is not None:
        mask_dir = out_dir / seq.name
        mask_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    step_seconds = 0.0
    missing_gt = 0
    bar = _progress(len(frames), seq.name, progress)
    try:
        for i, path in enumerate(frames):
            image = read_rgb(path)
            if i == 0 and image.shape[:2] != gt0.shape:
                raise EvalError(
                    f"sequence {seq.name!r}: frame is {image.shape[1]}x{image.shape[0]} but the "
                    f"annotation is {gt0.shape[1]}x{gt0.shape[0]}"
                )
            ann = annotations[i]
            gt = None if ann is None else (gt0 if i == 0 else read_label_map(ann))
            if gt is not None:
                for oid in object_ids:
                    if oid in prompted:
                        continue
                    mask = gt == oid
                    if mask.shape == image.shape[:2] and mask.any():
                        try:
                            engine.set_prompt(oid, mask=mask)
                        except ValueError as exc:  # e.g. more objects than engine.max_objects
                            raise EvalError(f"sequence {seq.name!r}: cannot prompt object {oid} on frame "
                                            f"{path.name}: {exc}") from None
                        prompted[oid] = i
            t = time.perf_counter()
            try:
                result = engine.step(image)
            except ValueError as exc:  # e.g. a frame of another size: a data problem, not a crash
                raise EvalError(f"sequence {seq.name!r}, frame {path.name}: {exc}") from None
            step_seconds += time.perf_counter() - t
            pred = result.label_image(image.shape[:2])

            if gt is None:
                missing_gt += 1
            else:
                try:
                    scorer.add(pred, gt)
                    if reacq is not None:
                        reacq.add(gt, pred, {oid: o.state for oid, o in result.objects.items()})
                except ValueError as exc:  # an annotation of another size
                    raise EvalError(f"sequence {seq.name!r}, {ann.name}: {exc}") from None
            if mask_dir is not None:
                write_label_png(mask_dir / f"{path.stem}.png", pred)
            if video and out_dir is not None:
                from ..core.visualization import draw_overlay

                if writer is None:
                    writer = _VideoWriter(out_dir / f"{seq.name}.mp4", video_fps, (image.shape[1], image.shape[0]))
                writer.write(draw_overlay(image, result))
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if missing_gt:
        print(f"warning: {seq.name}: {missing_gt} frame(s) without annotation were not scored"
              + (" (no re-acquisition figures)" if reacq is None else ""), file=sys.stderr)

    scores = scorer.result()
    reacq_result = reacq.result() if reacq is not None else None
    objects = object_scores(scores, reacq_result, object_ids)
    for oid, entry in objects.items():
        entry["prompted_at"] = prompted.get(oid)
    n = len(frames)
    return {
        "_scores": scores,  # removed before writing; per-object values for the dataset mean
        "J": float(scores["J"]),
        "F": float(scores["F"]),
        "JF": float(scores["JF"]),
        "frames": n,
        "fps": float(n / step_seconds) if step_seconds > 0 else 0.0,
        "objects": objects,
        "reacquisition": reacq_result["summary"] if reacq_result is not None else None,
        "_step_seconds": step_seconds,  # removed before writing; used for the mean fps
    }


def run_davis(
    config: Config,
    root: os.PathLike,
    sequences: Optional[Sequence[str]] = None,
    out_dir: Optional[os.PathLike] = None,
    video: bool = False,
    max_frames: Optional[int] = None,
    progress: bool = True,
    engine=None,
    stdout=None,
) -> Dict[str, Any]:
    """Evaluate every (or the named) sequence and write ``out_dir/summary.json``.

    Returns the summary: ``{"sequences": {seq: {"J", "F", "JF", "frames", "fps", "objects",
    "reacquisition"}}, "mean": {"J", "F", "JF", "fps"}, "reacquisition": {...}, "config":
    {...}}`` (see :func:`evaluate_davis_sequence`). The mean J and F average all objects of all
    sequences (the DAVIS toolkit's figure; the mean over sequences when each has one object),
    J&F is their mean; the mean fps is total frames / total seconds in ``engine.step``. The
    top-level ``reacquisition`` digests every object of every sequence (keys ``seq/id``).
    Prints the J&F table, then per object its J, F, re-acquisition figures and state timeline.
    """
    from ..core.metrics import dataset_mean, reacquisition_digest

    stdout = sys.stdout if stdout is None else stdout
    names = list(sequences) if sequences else list_sequences(root)
    if not names:
        raise EvalError(f"no sequences in {root}")
    seqs = [load_sequence(root, n) for n in names]  # validate every name before any work
    for s in seqs:
        if s.annotations[0] is None:
            raise EvalError(f"sequence {s.name!r} has no first-frame annotation")
    if max_frames is not None and max_frames < 1:
        raise EvalError(f"--max-frames must be >= 1, got {max_frames}")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if engine is None:
        engine = _build("engine", config)

    per_seq: Dict[str, Dict[str, Any]] = {}
    _print_header(stdout)
    for s in seqs:
        res = evaluate_davis_sequence(engine, s, out, max_frames=max_frames, video=video, progress=progress)
        per_seq[s.name] = res
        _print_row(stdout, s.name, res)

    total_frames = sum(r["frames"] for r in per_seq.values())
    total_seconds = sum(r.pop("_step_seconds") for r in per_seq.values())
    overall = dataset_mean([r.pop("_scores") for r in per_seq.values()])
    mean = {
        "J": float(overall["J"]),
        "F": float(overall["F"]),
        "JF": float(overall["JF"]),
        "fps": float(total_frames / total_seconds) if total_seconds > 0 else 0.0,
    }
    _print_rule(stdout)
    _print_row(stdout, "mean", dict(mean, frames=total_frames))
    _print_objects(stdout, per_seq)
    every = {f"{name}/{oid}": o for name, r in per_seq.items() if r.get("reacquisition") is not None
             for oid, o in r["objects"].items()}
    summary = {"sequences": per_seq, "mean": mean, "reacquisition": reacquisition_digest(every),
               "config": config.to_dict()}
    if out is not None:
        _write_json(out / "summary.json", summary)
    return summary


_ROW = "{:<22} {:>6} {:>7} {:>7} {:>7} {:>8}"


def _print_header(stream) -> None:
    print(_ROW.format("sequence", "frames", "J(%)", "F(%)", "J&F(%)", "FPS"), file=stream)
    _print_rule(stream)


def _print_rule(stream) -> None:
    print("-" * 62, file=stream)


def _print_row(stream, name: str, r: Mapping[str, Any]) -> None:
    print(
        _ROW.format(name[:22], r["frames"], f"{100 * r['J']:.1f}", f"{100 * r['F']:.1f}",
                    f"{100 * r['JF']:.1f}", f"{r['fps']:.2f}"),
        file=stream, flush=True,
    )


_OBJ_ROW = "{:<22} {:>3} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>5} {:>6} {:>6}  {}"


def _print_objects(stream, per_seq: Mapping[str, Mapping[str, Any]]) -> None:
    """Per object: J, F, re-acquisition events (returns, re-acquired, mean frames until, mean J
    after return), id swaps, frames mostly on another object, false-positive frames, final
    state; then its state timeline."""
    from ..core.metrics import format_timeline

    print("", file=stream)
    print("per object (events: the ground truth shows the object gone, then back)", file=stream)
    print(_OBJ_ROW.format("sequence", "id", "J(%)", "F(%)", "events", "reacq", "frames", "J-back", "swaps",
                          "other", "false+", "final"), file=stream)
    print("-" * 103, file=stream)
    lines = []
    for name, r in per_seq.items():
        for oid, o in r.get("objects", {}).items():
            if "events" not in o:
                print(_OBJ_ROW.format(name[:22], oid, f"{100 * o['J']:.1f}", f"{100 * o['F']:.1f}", "-", "-", "-",
                                      "-", "-", "-", "-", "-"), file=stream)
                continue
            ev = o["events"]
            back = [e["frames_to_reacquire"] for e in ev if e["frames_to_reacquire"] is not None]
            j_back = [e["J_after_return"] for e in ev]
            print(_OBJ_ROW.format(
                name[:22], oid, f"{100 * o['J']:.1f}", f"{100 * o['F']:.1f}", len(ev), len(back),
                f"{np.mean(back):.1f}" if back else "-", f"{np.mean(j_back):.2f}" if j_back else "-",
                o["id_swaps"], o["on_other_frames"], o["false_positive_frames"], o["final_state"]), file=stream)
            lines.append(f"  {name}: {format_timeline(oid, o)}")
    for line in lines:
        print(line, file=stream)
    stream.flush()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------- BADJA
@dataclass
class BadjaFrame:
    """One annotated BADJA frame.

    Attributes:
        frame: DAVIS frame number (from ``image_path``).
        joints: ``Jx2 float`` (x, y) pixels (BADJA's 1920x1080 until :func:`scale_badja`).
        visible: ``J bool``.
    """

    frame: int
    joints: np.ndarray
    visible: np.ndarray


def load_badja(path: os.PathLike) -> Tuple[str, List[BadjaFrame]]:
    """Read a BADJA json file: the sequence name and its annotated frames, sorted by frame.

    Joints stay in BADJA's full-resolution pixels but as ``(x, y)`` (BADJA stores
    ``[row, col]``); :func:`scale_badja` maps them onto the DAVIS frames.
    """
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise EvalError(f"BADJA file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot read BADJA file {path}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise EvalError(f"{path}: expected a non-empty list of annotated frames")
    names = set()
    frames: List[BadjaFrame] = []
    for k, entry in enumerate(data):
        try:
            image_path = Path(str(entry["image_path"]))
            joints = np.asarray(entry["joints"], dtype=np.float64).reshape(-1, 2)
            visible = np.asarray(entry["visibility"], dtype=bool).reshape(-1)
            number = int(image_path.stem)
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalError(f"{path}: entry {k} is malformed ({exc})") from None
        if visible.shape[0] != joints.shape[0]:
            raise EvalError(f"{path}: entry {k} has {joints.shape[0]} joints but {visible.shape[0]} visibility flags")
        names.add(image_path.parent.name)
        frames.append(BadjaFrame(number, joints[:, ::-1].copy(), visible))
    if len(names) != 1:
        raise EvalError(f"{path}: frames from several sequences: {sorted(names)}")
    if len({f.joints.shape[0] for f in frames}) != 1:
        raise EvalError(f"{path}: the annotated frames have different numbers of joints")
    frames.sort(key=lambda f: f.frame)
    return names.pop(), frames


def scale_badja(frames: Sequence[BadjaFrame], frame_size: Tuple[int, int]) -> List[BadjaFrame]:
    """Scale joints from BADJA's 1920x1080 to ``frame_size`` = (W, H): x * W/1920, y * H/1080."""
    s = np.array([frame_size[0] / BADJA_SOURCE_SIZE[0], frame_size[1] / BADJA_SOURCE_SIZE[1]])
    return [BadjaFrame(f.frame, f.joints * s, f.visible) for f in frames]


def project_onto_mask(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Move every ``Nx2 (x, y)`` point outside ``mask`` (``HxW bool``) to the nearest mask pixel.

    Points already inside (rounded to the pixel grid) are unchanged. An empty mask changes nothing.
    """
    points = np.asarray(points, np.float64).copy()
    if not mask.any() or len(points) == 0:
        return points
    h, w = mask.shape
    xi = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    inside = mask[yi, xi] & (points[:, 0] > -0.5) & (points[:, 0] < w - 0.5) & (points[:, 1] > -0.5) & (points[:, 1] < h - 0.5)
    if inside.all():
        return points
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    boundary = np.concatenate([c.reshape(-1, 2) for c in contours], axis=0).astype(np.float64)
    out = points[~inside]
    d2 = ((out[:, None, :] - boundary[None, :, :]) ** 2).sum(-1)
    points[~inside] = boundary[np.argmin(d2, axis=1)]
    return points


def _track_joints(
    config: Config,
    seq: DavisSequence,
    anns: List[BadjaFrame],
    reinit_horizon: int,
    progress: bool,
) -> Dict[str, Any]:
    """Carry the first annotated frame's visible joints through the sequence and score them.

    ``reinit_horizon == 0``: the configured point tracker alone carries the joints (it chains
    its windows itself). ``reinit_horizon = h > 0``: the full engine tracks the animal from its
    first-frame ground-truth mask with SAM-PT re-initialisation every ``h`` frames, and the
    joints ride on a second tracker of the same kind whose track is restarted on the same
    schedule from the joints' current positions, each joint outside the engine's newest mask
    first moved to the nearest mask pixel (the mask is the only extra evidence re-init adds).
    """
    from ..core.metrics import pck, pck_threshold

    by_frame = {a.frame: a for a in anns}
    first = anns[0]
    query = first.joints[first.visible]
    if len(query) == 0:
        raise EvalError(f"{seq.name}: no visible joint on the first annotated frame {first.frame}")
    last = anns[-1].frame
    index_of = {int(p.stem): i for i, p in enumerate(seq.frames) if p.stem.isdigit()}
    for a in anns:
        if a.frame not in index_of:
            raise EvalError(f"{seq.name}: BADJA frame {a.frame} is not among the DAVIS frames")
    start, stop = index_of[first.frame], index_of[last]

    tracker = _build("tracker", config)
    engine = None
    if reinit_horizon > 0:
        engine = _build("engine", config)
        gt = seq.annotations[start]
        if gt is None:
            raise EvalError(f"{seq.name}: no annotation for frame {first.frame} to prompt the engine")
        engine.set_prompt(1, mask=read_label_map(gt) > 0)

    key = "joints"
    query_index = None
    correct = total = 0
    per_frame: List[Dict[str, Any]] = []
    bar = _progress(stop - start + 1, f"{seq.name}{' reinit' if engine else ''}", progress)
    try:
        for i in range(start, stop + 1):
            image = read_rgb(seq.frames[i])
            result = engine.step(image) if engine is not None else None
            index = tracker.push_frame(image)
            if query_index is None:
                tracker.set_track(key, query, index)
                query_index = index
            positions = tracker.track()[key].points
            if engine is not None and index - query_index >= reinit_horizon - 1:
                query_index = index  # next restart one horizon later, mask or not (as the engine)
                mask = result.objects[1].mask
                if mask.any():
                    positions = project_onto_mask(positions, mask)
                    tracker.set_track(key, positions, index)
            bar.update(1)

            number = int(seq.frames[i].stem)
            ann = by_frame.get(number)
            if ann is None or number == first.frame:
                continue  # the query frame is trivially right: not scored
            gt_path = seq.annotations[i]
            if gt_path is None:
                print(f"warning: {seq.name}: no mask for frame {number}; its joints are not scored", file=sys.stderr)
                continue
            thr = float(pck_threshold(read_label_map(gt_path) > 0))
            both = ann.visible[first.visible]  # tracked joints that are annotated visible here
            n = int(both.sum())
            if n == 0:
                continue
            gt_xy = ann.joints[first.visible]
            ok = int(round(pck(positions, gt_xy, both, thr) * n))
            correct += ok
            total += n
            err = np.linalg.norm(positions[both] - gt_xy[both], axis=1)
            per_frame.append({"frame": number, "joints": n, "correct": ok, "threshold": thr,
                              "errors": [round(float(e), 2) for e in err]})
    finally:
        bar.close()
    return {"pck": correct / total if total else float("nan"), "joints": total, "queries": int(len(query)),
            "frames": per_frame}


def run_badja(
    config: Config,
    davis_root: os.PathLike,
    json_files: Sequence[os.PathLike],
    out_dir: Optional[os.PathLike] = None,
    reinit: bool = False,
    reinit_horizon: Optional[int] = None,
    progress: bool = True,
    stdout=None,
) -> Dict[str, Any]:
    """Score point tracking on BADJA joints; write ``out_dir/summary.json``.

    Per file: the visible joints of the first annotated frame are the queries of one track,
    carried online from that frame to the last annotated one. A tracked joint counts correct
    on a later annotated frame where it is annotated visible if it lies strictly within
    ``0.2 * sqrt(ground-truth mask area)`` of the annotation (the DAVIS mask of that frame).

    ``"pck"`` is the configured point tracker alone. With ``reinit`` the run is repeated with
    SAM-PT re-initialisation (see :func:`_track_joints`) and ``"pck_reinit"`` is added.
    ``"joints"`` counts the (joint, frame) pairs scored. The mean is over sequences.
    """
    stdout = sys.stdout if stdout is None else stdout
    if not json_files:
        raise EvalError("give at least one BADJA json file")
    davis_dirs(davis_root)
    horizon = 0
    if reinit:
        horizon = int(reinit_horizon or config.engine.reinit_horizon or 8)
        if horizon < 2:
            raise EvalError(f"--reinit-horizon must be >= 2, got {horizon}")
        if horizon != config.engine.reinit_horizon:
            try:
                config = _with_horizon(config, horizon)
            except ValueError as exc:
                raise EvalError(f"bad config: {exc}") from None

    jobs = []
    for path in json_files:
        name, anns = load_badja(path)
        seq = load_sequence(davis_root, name)
        h, w = read_rgb(seq.frames[0]).shape[:2]
        jobs.append((name, seq, scale_badja(anns, (w, h))))

    per_seq: Dict[str, Dict[str, Any]] = {}
    details: Dict[str, Any] = {}
    row = "{:<22} {:>7} {:>7} {:>7} {:>9}"
    print(row.format("sequence", "queries", "joints", "PCK(%)", "reinit(%)"), file=stdout)
    print("-" * 56, file=stdout)
    for seq_name, seq, anns in jobs:
        key = seq_name
        n = 2
        while key in per_seq:
            key, n = f"{seq_name}_{n}", n + 1
        plain = _track_joints(config, seq, anns, 0, progress)
        entry = {"pck": plain["pck"], "joints": plain["joints"]}
        details[key] = {"queries": plain["queries"], "tracker": plain["frames"]}
        if reinit:
            re = _track_joints(config, seq, anns, horizon, progress)
            entry["pck_reinit"] = re["pck"]
            details[key]["reinit"] = re["frames"]
        per_seq[key] = entry
        print(row.format(key[:22], plain["queries"], entry["joints"], f"{100 * entry['pck']:.1f}",
                         f"{100 * entry['pck_reinit']:.1f}" if reinit else "-"), file=stdout, flush=True)
    mean = {"pck": float(np.nanmean([e["pck"] for e in per_seq.values()]))}
    if reinit:
        mean["pck_reinit"] = float(np.nanmean([e["pck_reinit"] for e in per_seq.values()]))
    print("-" * 56, file=stdout)
    print(row.format("mean", "", sum(e["joints"] for e in per_seq.values()), f"{100 * mean['pck']:.1f}",
                     f"{100 * mean['pck_reinit']:.1f}" if reinit else "-"), file=stdout)
    summary = {"sequences": per_seq, "mean": mean, "config": config.to_dict()}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "summary.json", summary)
        _write_json(out / "details.json", details)
    return summary


def _with_horizon(config: Config, horizon: int) -> Config:
    from ..core.config import config_from_dict

    tree = config.to_dict()
    tree["engine"]["reinit_horizon"] = horizon
    return config_from_dict(tree)


# ---------------------------------------------------------------------------- CLI
_DAVIS_HELP = """\
DAVIS 2016 or 2017 layout (several objects per sequence, objects absent in some frames). Each
object is prompted with its annotated mask in the first frame it appears in (causally, just
before that frame; never again), the online engine runs frame by frame, and J (region IoU), F
(boundary) and J&F are scored per sequence over every object and all frames but the first and
the last (DAVIS convention). Per object, re-acquisition is scored too: its state timeline; for
every time the ground truth shows it gone (no pixel, or under 5% of its typical area) and back,
the J over the frames after its return and the frames until it was re-acquired (state TRACKING
and IoU >= 0.5); id swaps (its mask matches another object better than its own, IoU >= 0.5);
false-positive frames (a mask claimed while the ground truth has none of it); its final state.
Writes DIR/summary.json ({"sequences": {seq: {J, F, JF, frames, fps, objects: {id: {J, F,
prompted_at, timeline, events, id_swaps, false_positive_frames, final_state, ...}},
reacquisition}}, "mean": {J, F, JF, fps}, "reacquisition": {...}, "config": {...}}; J, F, JF
as fractions 0..1), the predicted label maps DIR/<seq>/<frame>.png (paletted PNG, pixel value
= object id) and, with --video, DIR/<seq>.mp4 overlays.
fps = frames / seconds inside engine.step() (JPEG decoding, scoring and writing excluded);
the mean fps is all frames / all seconds in engine.step(); the mean J and F average all objects
of all sequences (as the DAVIS toolkit; with one object per sequence, the mean over sequences).
"""

_BADJA_HELP = """\
Point tracking on BADJA joints (joints are [row, col] in 1920x1080; scaled to the DAVIS frames).
For each json file the visible joints of the first annotated frame are the queries of one
track, carried online through the DAVIS frames up to the last annotated frame. A joint counts
correct on a later annotated frame (where it is annotated visible) when it lies strictly within
0.2*sqrt(area of that frame's ground-truth DAVIS mask) of its annotation; the query frame is
not scored. "pck" is the configured point tracker alone (tracker.kind; PIPS chains its
8-frame windows itself). With --reinit the run is repeated with SAM-PT re-initialisation: the
engine tracks the animal from its first-frame mask (re-sampling its points every H frames)
and the joints ride on a second tracker restarted every H frames from their current positions,
each joint lying outside the engine's newest mask first moved to the nearest mask pixel;
the result is "pck_reinit". Joint identity cannot survive SAM-PT's re-sampling itself, so the
mask is what re-init contributes to the joints. Writes DIR/summary.json ({"sequences": {seq:
{pck, joints[, pck_reinit]}}, "mean": {pck[, pck_reinit]}, "config": {...}}; "joints" = the
number of (joint, frame) pairs scored; mean over sequences) and DIR/details.json (per-frame errors).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sampt-eval",
        description="Evaluate the online SAM-PT engine on DAVIS (J&F) or BADJA (PCK).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{davis,badja}")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", action="append", nargs="+", metavar="FILE",
                       help="config file(s) or profile name(s) (e.g. cpu, paper), laid left to right "
                            "over config/sampt.yaml (default: config/sampt.yaml alone)")
        p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", dest="overrides",
                       help="override config keys, e.g. --set segmenter.sam.model_type=vit_b "
                            "tracker.pips.allow_random_weights=true")
        p.add_argument("--out", metavar="DIR",
                       help=f"output folder (default: {DEFAULT_OUT_ROOT}/<timestamp>)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    d = sub.add_parser("davis", help="J&F on a DAVIS-layout folder", description=_DAVIS_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("root", metavar="ROOT", help="folder with JPEGImages/480p and Annotations/480p")
    d.add_argument("--sequences", metavar="A,B,...", help="comma-separated sequence names (default: all)")
    d.add_argument("--video", action="store_true", help="also write an overlay video DIR/<seq>.mp4")
    d.add_argument("--max-frames", type=int, metavar="N", help="process only the first N frames of each sequence")
    common(d)

    b = sub.add_parser("badja", help="PCK of point tracking on BADJA joints", description=_BADJA_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("davis_root", metavar="DAVIS_ROOT", help="DAVIS-layout folder with the sequences' frames and masks")
    b.add_argument("badja_json", metavar="BADJA_JSON", nargs="+", help="BADJA annotation file(s)")
    b.add_argument("--reinit", action="store_true",
                   help="also score with SAM-PT re-initialisation (adds pck_reinit; runs the full engine)")
    b.add_argument("--reinit-horizon", type=int, metavar="H",
                   help="re-init period for --reinit (default: engine.reinit_horizon, or 8 when that is 0)")
    common(b)
    return parser


def _default_out() -> Path:
    return Path(DEFAULT_OUT_ROOT) / time.strftime("%Y%m%d-%H%M%S")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, files = resolve_config(_flatten_args(args.config), _flatten_args(args.overrides))
        out = Path(args.out) if args.out else _default_out()
        if args.command == "davis":
            sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
            davis_dirs(args.root)
            run_davis(config, args.root, sequences, out, video=args.video, max_frames=args.max_frames,
                      progress=not args.no_progress)
        else:
            run_badja(config, args.davis_root, args.badja_json, out, reinit=args.reinit,
                      reinit_horizon=args.reinit_horizon, progress=not args.no_progress)
    except EvalError as exc:
        print(f"sampt-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sampt-eval: interrupted", file=sys.stderr)
        return 130
    print(f"results: {out / 'summary.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
