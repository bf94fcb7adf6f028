"""Tests of sampt_ros.core.metrics: DAVIS J/F (hand-computed values, the official toolkit's
rules, agreement with vos-benchmark) and PCK."""

import math

import numpy as np
import pytest

from sampt_ros.core.metrics import (
    SequenceScorer,
    boundary_disk,
    boundary_f,
    boundary_map,
    boundary_radius,
    dataset_mean,
    pck,
    pck_threshold,
    region_j,
)


def _rect(shape, top, left, height, width):
    m = np.zeros(shape, bool)
    m[top:top + height, left:left + width] = True
    return m


# ------------------------------------------------------------------------------------------
# Single masks
# ------------------------------------------------------------------------------------------


def test_identical_masks_score_one():
    m = _rect((60, 80), 10, 20, 25, 30)
    assert region_j(m, m) == 1.0 and boundary_f(m, m) == 1.0


def test_disjoint_masks_score_zero():
    a = _rect((100, 100), 5, 5, 20, 20)
    b = _rect((100, 100), 60, 60, 20, 20)
    assert region_j(a, b) == 0.0 and boundary_f(a, b) == 0.0


def test_known_iou():
    gt = _rect((50, 50), 10, 10, 10, 20)  # 200 px
    pred = _rect((50, 50), 10, 10, 10, 10)  # 100 px inside it
    assert region_j(pred, gt) == pytest.approx(0.5)
    # 20x20 squares shifted by 3 columns: overlap 20x17 = 340, union 800 - 340 = 460
    a, b = _rect((100, 100), 20, 20, 20, 20), _rect((100, 100), 20, 23, 20, 20)
    assert region_j(a, b) == pytest.approx(340 / 460)


def test_boundary_f_of_a_shifted_square_matches_a_hand_count():
    # 100x100 image: radius ceil(0.008 * 141.4) = 2, disk offsets x^2 + y^2 <= 4.
    # A 20x20 square at rows/cols 20..39 has its boundary on the ring of rows/cols 19..39
    # (80 pixels). Shifted right by 3 (cols 22..42), per side of the predicted ring:
    #   top and bottom rows (21 px each): 20 within 2 px of the ground-truth ring, the
    #   far-right pixel 3 px away; left column (19 px): only the 2 px next to each end
    #   (4); right column: none. Precision = (20+20+4+0)/80, recall the same by symmetry.
    gt = _rect((100, 100), 20, 20, 20, 20)
    pred = _rect((100, 100), 20, 23, 20, 20)
    assert boundary_radius((100, 100)) == 2
    assert int(boundary_map(gt).sum()) == 80
    expected = 44 / 80  # F of precision = recall = 0.55
    assert boundary_f(pred, gt) == pytest.approx(expected)


def test_boundary_map_rules():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:3] = True
    expected = np.array([
        [1, 1, 1, 0, 0],  # the row above: its lower / lower-right neighbours differ
        [1, 0, 1, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ], bool)
    np.testing.assert_array_equal(boundary_map(m), expected)
    # touching the last row and column: only the in-image neighbour counts, never the corner
    full = np.ones((3, 3), bool)
    assert not boundary_map(full).any()


def test_boundary_disk_radius():
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)
    disk = boundary_disk((480, 854))
    assert disk.shape == (17, 17) and disk[8, 0] == 1 and disk[0, 0] == 0 and disk.sum() == 197


def test_empty_masks():
    empty = np.zeros((30, 30), bool)
    obj = _rect((30, 30), 5, 5, 10, 10)
    assert region_j(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    assert region_j(empty, obj) == 0.0 and boundary_f(empty, obj) == 0.0
    assert region_j(obj, empty) == 0.0 and boundary_f(obj, empty) == 0.0


def test_single_mask_validation():
    with pytest.raises(ValueError, match="40x30"):
        region_j(np.zeros((30, 40), bool), np.zeros((40, 30), bool))
    with pytest.raises(ValueError, match="2-D"):
        boundary_f(np.zeros((3, 3, 1)), np.zeros((3, 3, 1)))


# ------------------------------------------------------------------------------------------
# Sequences
# ------------------------------------------------------------------------------------------


def _half_frame():
    gt = _rect((50, 50), 10, 10, 10, 20)
    pred = _rect((50, 50), 10, 10, 10, 10)
    return pred.astype(np.uint8), gt.astype(np.uint8)


def test_first_and_last_frames_are_excluded():
    gt = _rect((50, 50), 10, 10, 10, 20).astype(np.uint8)
    half_pred, _ = _half_frame()
    scorer = SequenceScorer()
    scorer.add(gt, gt)  # frame 0: perfect
    scorer.add(half_pred, gt)  # J = 0.5
    scorer.add(half_pred, gt)
    scorer.add(np.zeros_like(gt), gt)  # last frame: J = 0, excluded
    res = scorer.result()
    assert res["frames"] == 4 and res["evaluated_frames"] == 2
    assert res["J"] == pytest.approx(0.5)
    assert res["J_per_frame"] == pytest.approx([1.0, 0.5, 0.5, 0.0])
    f_mid = boundary_f(half_pred, gt)
    assert res["F"] == pytest.approx(f_mid) and res["JF"] == pytest.approx((0.5 + f_mid) / 2)
    assert res["per_object"] == {1: {"J": pytest.approx(0.5), "F": pytest.approx(f_mid)}}

    everything = SequenceScorer(skip_first_and_last=False)
    for p in (gt, half_pred, half_pred, np.zeros_like(gt)):
        everything.add(p, gt)
    assert everything.result()["J"] == pytest.approx(0.5)  # (1 + .5 + .5 + 0) / 4
    assert everything.result()["evaluated_frames"] == 4


def test_short_sequences():
    gt = _rect((50, 50), 10, 10, 10, 20).astype(np.uint8)
    half_pred, _ = _half_frame()
    scorer = SequenceScorer()
    res = scorer.result()
    assert res["frames"] == 0 and math.isnan(res["J"]) and res["per_object"] == {}
    scorer.add(half_pred, gt)
    assert scorer.result()["J"] == pytest.approx(0.5) and scorer.result()["evaluated_frames"] == 1
    scorer.add(gt, gt)
    res = scorer.result()  # two frames: both averaged
    assert res["J"] == pytest.approx(0.75) and res["evaluated_frames"] == 2


def test_objects_come_from_the_first_frame_and_absent_frames_count_as_perfect():
    gt0 = np.zeros((40, 40), np.uint8)
    gt0[5:15, 5:15] = 1
    gt0[20:30, 20:30] = 2
    gt_gone = gt0.copy()
    gt_gone[gt_gone == 2] = 0  # object 2 leaves the scene
    pred_gone = gt_gone.copy()
    pred_gone[30:35, 30:35] = 7  # an unknown id in the prediction: ignored
    scorer = SequenceScorer()
    scorer.add(gt0, gt0)
    scorer.add(pred_gone, gt_gone)  # object 2 absent from both: J = F = 1 (official rule)
    wrong = gt_gone.copy()
    wrong[20:30, 20:30] = 2  # object 2 predicted where it is not
    scorer.add(wrong, gt_gone)
    scorer.add(gt0, gt0)
    res = scorer.result()
    assert scorer.object_ids == [1, 2]
    assert res["per_object"][1] == {"J": 1.0, "F": 1.0}
    assert res["per_object"][2] == {"J": pytest.approx(0.5), "F": pytest.approx(0.5)}
    assert res["J"] == pytest.approx(0.75) and res["F"] == pytest.approx(0.75)


def test_explicit_object_ids_and_binary_mode():
    gt = np.zeros((30, 30), np.uint8)
    gt[5:15, 5:25] = 255  # DAVIS 2016: 0 / 255
    pred = np.zeros((30, 30), np.uint16)
    pred[5:15, 5:15] = 1  # the engine's object 1: half of it
    binary = SequenceScorer(binary=True)
    for _ in range(3):
        binary.add(pred, gt)
    assert binary.result()["J"] == pytest.approx(0.5)
    literal = SequenceScorer()  # without binary, 255 is another object than 1
    for _ in range(3):
        literal.add(pred, gt)
    assert literal.result()["J"] == 0.0
    chosen = SequenceScorer(object_ids=[3])
    for _ in range(3):
        chosen.add(np.zeros((30, 30), np.int32), np.zeros((30, 30), np.int32))
    assert chosen.result()["per_object"] == {3: {"J": 1.0, "F": 1.0}}


def test_sequence_validation():
    scorer = SequenceScorer()
    with pytest.raises(ValueError, match="integer"):
        scorer.add(np.zeros((5, 5), float), np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="HxW"):
        scorer.add(np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="but gt"):
        scorer.add(np.zeros((5, 6), np.uint8), np.zeros((5, 5), np.uint8))
    scorer.add(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="the sequence is"):
        scorer.add(np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        SequenceScorer(object_ids=[0])


def test_dataset_mean_pools_objects():
    a = {"per_object": {1: {"J": 1.0, "F": 0.5}, 2: {"J": 0.0, "F": 0.5}}}
    b = {"per_object": {1: {"J": 0.5, "F": 1.0}}}
    res = dataset_mean([a, b])
    assert res["objects"] == 3
    assert res["J"] == pytest.approx(0.5) and res["F"] == pytest.approx(2 / 3)
    assert math.isnan(dataset_mean([])["JF"])


# ------------------------------------------------------------------------------------------
# Agreement with vos-benchmark (the official formulas)
# ------------------------------------------------------------------------------------------


def test_agrees_with_vos_benchmark_frame_by_frame():
    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(8, 70, 2))
        if trial % 2:
            a = rng.random((h, w)) < rng.random()
            b = rng.random((h, w)) < rng.random()
        else:
            a = _rect((h, w), *(int(v) for v in rng.integers(0, 30, 4)))
            b = _rect((h, w), *(int(v) for v in rng.integers(0, 30, 4)))
        ev = evaluator.Evaluator()
        ev.feed_frame(a.astype(np.uint8), b.astype(np.uint8))
        if 1 in ev.object_iou:
            assert region_j(a, b) == pytest.approx(ev.object_iou[1][0], abs=1e-12)
            assert boundary_f(a, b) == pytest.approx(ev.boundary_f[1][0], abs=1e-12)


def test_agrees_with_vos_benchmark_on_a_sequence():
    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    rng = np.random.default_rng(1)
    gts, preds = [], []
    for t in range(7):
        gt = np.zeros((48, 64), np.uint8)
        gt[10 + t:25 + t, 8:30] = 1
        gt[30:44, 35 + t:55] = 2
        pred = np.roll(gt, int(rng.integers(-3, 4)), axis=1)
        pred[rng.random(gt.shape) < 0.02] = 0
        gts.append(gt)
        preds.append(pred)
    scorer = SequenceScorer()
    for p, g in zip(preds, gts):
        scorer.add(p, g)
    ev = evaluator.Evaluator()
    for p, g in zip(preds[1:-1], gts[1:-1]):  # vos-benchmark's own first/last skipping
        ev.feed_frame(p, g)
    iou, bf = ev.conclude()
    res = scorer.result()
    for oid in (1, 2):
        assert res["per_object"][oid]["J"] == pytest.approx(iou[oid] / 100)
        assert res["per_object"][oid]["F"] == pytest.approx(bf[oid] / 100)


def test_boundary_map_and_disk_equal_the_toolkit_helpers():
    utils = pytest.importorskip("vos_benchmark.utils")
    morphology = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = rng.random(tuple(int(v) for v in rng.integers(1, 30, 2))) < 0.4
        np.testing.assert_array_equal(boundary_map(m), utils._seg2bmap(m))
    for shape in [(480, 854), (100, 100), (3, 4), (1080, 1920)]:
        np.testing.assert_array_equal(
            boundary_disk(shape), morphology.disk(np.ceil(0.008 * np.linalg.norm(shape))).astype(np.uint8))


def test_davis_ground_truth_against_itself_and_vos_benchmark(davis_root):
    """A real sequence with a degraded prediction: same values as vos-benchmark."""
    import cv2
    import imageio.v3 as iio

    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    files = sorted((davis_root / "Annotations" / "480p" / "libby").glob("*.png"))[:12]
    gts = [(iio.imread(f) > 0).astype(np.uint8) for f in files]
    preds = [np.roll(cv2.erode(g, np.ones((5, 5), np.uint8)), i % 5 - 2, axis=1) for i, g in enumerate(gts)]
    scorer = SequenceScorer(binary=True)
    ev = evaluator.Evaluator()
    for i, (p, g) in enumerate(zip(preds, gts)):
        scorer.add(p, g * 255)
        if 0 < i < len(gts) - 1:
            ev.feed_frame(p, g)
    iou, bf = ev.conclude()
    res = scorer.result()
    assert res["J"] == pytest.approx(iou[1] / 100) and res["F"] == pytest.approx(bf[1] / 100)
    assert 0.5 < res["J"] < 1.0


# ------------------------------------------------------------------------------------------
# PCK
# ------------------------------------------------------------------------------------------


def test_pck_values():
    gt = np.zeros((4, 2))
    pred = np.array([[1.0, 0.0], [3.0, 4.0], [6.0, 8.0], [100.0, 100.0]])  # distances 1, 5, 10, far
    visible = np.array([True, True, True, False])
    assert pck(pred, gt, visible, 6.0) == pytest.approx(2 / 3)
    assert pck(pred, gt, visible, 5.0) == pytest.approx(1 / 3)  # strictly within: 5 is a miss
    assert pck(pred, gt, visible, np.array([0.5, 6.0, 11.0, 1.0])) == pytest.approx(2 / 3)
    pred[0] = np.nan  # a lost point is a miss
    assert pck(pred, gt, visible, 6.0) == pytest.approx(1 / 3)
    assert math.isnan(pck(pred, gt, np.zeros(4, bool), 6.0))


def test_pck_threshold_and_validation():
    assert pck_threshold(_rect((40, 40), 0, 0, 10, 10)) == pytest.approx(2.0)  # 0.2 * sqrt(100)
    assert pck_threshold(np.zeros((5, 5), bool)) == 0.0
    with pytest.raises(ValueError, match="Nx2"):
        pck(np.zeros((3, 3)), np.zeros((3, 3)), np.ones(3, bool), 1.0)
    with pytest.raises(ValueError, match="visible"):
        pck(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(2, bool), 1.0)
    with pytest.raises(ValueError, match="bool"):
        pck(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="threshold"):
        pck(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3, bool), np.ones(2))
    with pytest.raises(ValueError, match="threshold"):
        pck(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3, bool), -1.0)
