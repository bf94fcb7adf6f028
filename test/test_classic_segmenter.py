"""ClassicSegmenter: synthetic discs with known masks, prompts, state, validation, real data."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from sampt_ros.core.classic_segmenter import ClassicSegmenter
from sampt_ros.core.backends.classic import ClassicConfig
from sampt_ros.core.config import load_config
from sampt_ros.core.types import SegmentRequest

H, W = 240, 320
REPO = Path(__file__).resolve().parents[1]


def noise(seed: int, mean, spread: float = 40.0) -> np.ndarray:
    """``HxWx3 uint8`` texture: blurred noise around an RGB mean colour."""
    rng = np.random.default_rng(seed)
    img = np.asarray(mean, np.float32) + rng.normal(0.0, spread, (H, W, 3)).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def seg1(seg: ClassicSegmenter, points, labels, prior=None, object_id: int = 1, probe: bool = False):
    """One request through the Segmenter protocol: ``(HxW bool mask, score)``."""
    req = SegmentRequest(object_id, np.asarray(points, np.float64), np.asarray(labels), prior, probe)
    answer = seg.segment([req])[0]
    return answer.mask, answer.score


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def scene(*masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Reddish textured discs on a greenish textured background."""
    img = noise(seed, (70, 140, 60))
    obj = noise(seed + 100, (190, 60, 50))
    for m in masks:
        img[m] = obj[m]
    return img


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float(max((a | b).sum(), 1))


def ring_points(cx, cy, r, n=6):
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1)


def test_points_only_finds_a_textured_disc():
    gt = disc(160, 120, 40)
    seg = ClassicSegmenter(ClassicConfig())
    seg.set_image(scene(gt))
    pts = np.vstack([[[160, 120]], ring_points(160, 120, 18)])
    mask, score = seg1(seg, pts, np.ones(len(pts), int), None)
    assert mask.shape == (H, W) and mask.dtype == bool
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    assert iou(mask, gt) > 0.9
    assert score > 0.9  # every positive point is inside the mask


def test_shifted_prior_is_corrected_by_colour():
    gt = disc(160, 120, 40)
    seg = ClassicSegmenter(ClassicConfig())
    seg.set_image(scene(gt))
    prior = disc(165, 116, 40)  # the motion prediction is off by ~6 px
    mask, score = seg1(seg, [[160, 120]], [1], prior)
    assert iou(prior, gt) < 0.86
    assert iou(mask, gt) > 0.9
    assert 0.0 < score <= 1.0


def test_previous_mask_is_moved_by_dense_flow():
    # Frame 0: the disc and its exact mask. Frame 1: the disc moved 14 px right and 6 px down,
    # and the prior is the old, unmoved mask (as if the points had not followed at all).
    old, new = disc(130, 110, 40), disc(144, 116, 40)
    background = (70, 140, 60)
    frame0, frame1 = scene(old, seed=3), noise(3, background)
    frame1[new] = np.roll(np.roll(frame0, 6, axis=0), 14, axis=1)[new]
    seg = ClassicSegmenter(ClassicConfig())
    seg.set_image(frame0)
    seg1(seg, [[130, 110]], [1], old)
    seg.set_image(frame1)
    mask, _ = seg1(seg, [[144, 116]], [1], old)
    assert seg.stats()["flow_matches"] == 1
    assert iou(old, new) < 0.7
    assert iou(mask, new) > 0.9


def test_negative_points_carve_out_a_second_disc():
    a, b = disc(100, 120, 35), disc(225, 120, 35)
    seg = ClassicSegmenter(ClassicConfig())
    seg.set_image(scene(a, b))
    pos = np.vstack([[[100, 120]], ring_points(100, 120, 15, 4)])
    neg = np.vstack([[[225, 120]], ring_points(225, 120, 15, 4)])
    pts = np.vstack([pos, neg])
    labels = np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]

    # A prior that wrongly covers both discs: the negatives remove the second one.
    mask, _ = seg1(seg, pts, labels, a | b)
    assert iou(mask, a) > 0.9
    assert (mask & b).sum() < 0.02 * b.sum()
    # Without the negatives the same prior keeps both discs (the test can fail).
    both, _ = seg1(seg, pos, np.ones(len(pos), int), a | b)
    assert iou(both, a | b) > 0.9

    # Points only, with the negatives: the box around the positives does not take disc b.
    mask, _ = seg1(seg, pts, labels, None)
    assert iou(mask, a) > 0.85
    assert (mask & b).sum() < 0.02 * b.sum()


def test_posterior_only_mode_and_flow_off():
    gt = disc(160, 120, 40)
    seg = ClassicSegmenter(ClassicConfig(graph_cut=False, flow="off"))
    seg.set_image(scene(gt))
    mask, _ = seg1(seg, [[160, 120]], [1], disc(163, 118, 40))
    assert iou(mask, gt) > 0.9
    seg.set_image(scene(gt))
    seg1(seg, [[160, 120]], [1], gt)
    assert seg.stats()["flow_matches"] == 0


def test_graph_cut_mode_runs_and_is_repeatable():
    gt = disc(160, 120, 40)
    img = scene(gt)
    out = []
    for _ in range(2):
        seg = ClassicSegmenter(ClassicConfig(graph_cut=True, iters=2))
        seg.set_image(img)
        out.append(seg1(seg, [[160, 120]], [1], disc(166, 116, 40))[0])
    np.testing.assert_array_equal(out[0], out[1])
    assert iou(out[0], gt) > 0.85


def test_counters_sizes_and_state():
    seg = ClassicSegmenter(ClassicConfig(work_size=160))
    gt = disc(160, 120, 40)
    for k in range(3):
        seg.set_image(scene(gt))
        mask, _ = seg1(seg, [[160, 120]], [1], gt)
        assert mask.shape == (H, W)  # full size even though the work happens at 160x120
    assert seg.stats()["embeddings_computed"] == 3
    assert seg.stats()["segmentations"] == 3
    assert seg.stats()["flow_matches"] == 2  # frames 1 and 2 found frame 0's / 1's mask
    assert seg.image_shape == (H, W)
    seg.reset()
    assert seg.image_shape is None
    with pytest.raises(RuntimeError):
        seg1(seg, [[1, 1]], [1])


def test_empty_prior_falls_back_to_points():
    gt = disc(160, 120, 40)
    seg = ClassicSegmenter(ClassicConfig())
    seg.set_image(scene(gt))
    mask, _ = seg1(seg, [[160, 120]], [1], np.zeros((H, W), bool))
    assert iou(mask, gt) > 0.8


def test_validation_errors():
    with pytest.raises(ValueError):
        ClassicSegmenter("nope")  # type: ignore[arg-type]
    for bad in ({"work_size": 10}, {"flow": "slow"}, {"iters": 0}, {"memory": 0.0}, {"band": 0.0}):
        with pytest.raises(ValueError):
            ClassicConfig(**bad)
    seg = ClassicSegmenter(ClassicConfig())
    with pytest.raises(RuntimeError):
        seg1(seg, [[10, 10]], [1])
    with pytest.raises(ValueError):
        seg.set_image(np.zeros((H, W), np.uint8))
    with pytest.raises(ValueError):
        seg.set_image(np.zeros((H, W, 3), np.float64))
    seg.set_image(scene())
    mask, score = seg1(seg, [[10, 10]], [0])  # no positive point and no prior: nothing to find
    assert not mask.any() and score == 0.0
    with pytest.raises(ValueError):
        seg1(seg, [[10, 10]], [1, 1])  # labels do not match points
    with pytest.raises(ValueError):
        seg1(seg, [[10, 10]], [1], np.zeros((H // 2, W), bool))  # prior of another size
    with pytest.raises(ValueError):
        seg1(seg, [[np.nan, 10]], [1])


@pytest.mark.shared
def test_blackswan_first_frames_with_the_cpu_profile(davis_root):
    """The weight-free pipeline (LK + classic segmenter + re-init) on DAVIS blackswan.

    The profile scores J 0.91 on frames 1..8 (and ~0.90 over the whole sequence with
    ``sampt-eval``). The bar, 0.85, is well above doing nothing: the first-frame mask kept
    unmoved scores 0.72 on these frames (0.58 by frame 8, as the swan swims out of it), so a
    broken tracker, prior or flow fails here.
    """
    from sampt_ros.core.factory import build_engine

    frames = sorted((davis_root / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:10]
    annos = sorted((davis_root / "Annotations" / "480p" / "blackswan").glob("*.png"))[:10]
    engine = build_engine(load_config([str(REPO / "config" / "cpu.yaml")]))
    gts = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in annos]
    engine.set_prompt(1, mask=gts[0])
    js = []
    for i, (path, gt) in enumerate(zip(frames, gts)):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = engine.step(rgb).objects[1].mask
        if 0 < i < len(frames) - 1:  # DAVIS convention: neither the first nor the last frame
            js.append(iou(mask, gt))
    assert np.mean(js) > 0.85, js
