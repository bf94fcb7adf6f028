"""Re-acquisition metrics (sampt_ros.core.metrics): state timelines, disappear/reappear events,
frames until re-acquired, J after return, id swaps, false positives, on hand-made label maps."""

import json

import numpy as np
import pytest

from sampt_ros.core.metrics import (
    ABSENT_FRACTION,
    NO_STATE,
    ReacquisitionScorer,
    format_timeline,
    object_scores,
    reacquisition_digest,
    runs,
    score_reacquisition,
    state_name,
)
from sampt_ros.core.types import ObjectState

T, O, L = ObjectState.TRACKING, ObjectState.OCCLUDED, ObjectState.LOST
H, W = 40, 60


def _box(labels, oid, top, left, size=10):
    labels[top:top + size, left:left + size] = oid
    return labels


def _frames(n):
    return [np.zeros((H, W), np.uint8) for _ in range(n)]


def test_runs_and_state_names():
    assert runs([]) == []
    assert runs("aabccc") == [("a", 0, 1), ("b", 2, 2), ("c", 3, 5)]
    assert [state_name(s) for s in (T, 1, 2, "lost", None, 7)] == ["TRACKING", "OCCLUDED", "LOST", "LOST",
                                                                    NO_STATE, "STATE_7"]


def test_hidden_then_back_reacquired_at_once():
    """Object 1 is gone in frames 3-5 (GT empty), the prediction is perfect: re-acquired at 6."""
    n = 10
    gt, pred = _frames(n), _frames(n)
    states = []
    for f in range(n):
        if f not in (3, 4, 5):
            _box(gt[f], 1, 5, 5 + f)
            _box(pred[f], 1, 5, 5 + f)
        states.append({1: O if f in (3, 4, 5) else T})
    res = score_reacquisition(gt, pred, states)
    o = res["objects"][1]
    assert res["frames"] == n and list(res["objects"]) == [1]
    assert o["timeline"] == [("TRACKING", 0, 2), ("OCCLUDED", 3, 5), ("TRACKING", 6, 9)]
    assert o["gt_timeline"] == [("VISIBLE", 0, 2), ("ABSENT", 3, 5), ("VISIBLE", 6, 9)]
    (e,) = o["events"]
    assert (e["disappeared"], e["reappeared"], e["absent_frames"], e["window"]) == (3, 6, 3, (6, 9))
    assert (e["reacquired_frame"], e["frames_to_reacquire"], e["J_after_return"]) == (6, 0, 1.0)
    assert e["states_while_absent"] == {"OCCLUDED": 3} and e["false_positive_frames"] == 0
    assert (o["id_swaps"], o["false_positive_frames"], o["final_state"], o["absent_at_end"], o["left_at"]) == \
        (0, 0, "TRACKING", False, None)
    assert o["J_all_frames"] == 1.0  # empty prediction on an empty ground truth scores 1
    assert res["summary"]["events"] == 1 and res["summary"]["reacquired"] == 1
    assert res["summary"]["mean_frames_to_reacquire"] == 0.0


def test_reacquired_late_needs_tracking_state_and_iou():
    """After the return: frame 6 empty, 7 a mask off the object (IoU < 0.5), 8 a good mask but
    state LOST, 9 good and TRACKING -> re-acquired at 9, 3 frames after the return at 6."""
    n = 12
    gt, pred = _frames(n), _frames(n)
    states = []
    for f in range(n):
        if f not in (3, 4, 5):
            _box(gt[f], 1, 5, 20)
        if f < 3 or f >= 8:
            _box(pred[f], 1, 5, 20)
        if f == 7:
            _box(pred[f], 1, 5, 26)  # overlap 4 of 10 columns: IoU 40/160 = 0.25
        states.append({1: L if f == 8 else (O if f in (3, 4, 5, 6) else T)})
    o = score_reacquisition(gt, pred, states)["objects"][1]
    (e,) = o["events"]
    assert e["reappeared"] == 6 and e["reacquired_frame"] == 9 and e["frames_to_reacquire"] == 3
    # J over frames 6..11: 0, 0.25, 1, 1, 1, 1
    assert e["J_after_return"] == pytest.approx((0 + 0.25 + 4) / 6)
    assert o["timeline"] == [("TRACKING", 0, 2), ("OCCLUDED", 3, 6), ("TRACKING", 7, 7), ("LOST", 8, 8),
                             ("TRACKING", 9, 11)]
    # without states only the masks decide: frame 8 counts
    e2 = score_reacquisition(gt, pred)["objects"][1]["events"][0]
    assert e2["reacquired_frame"] == 8 and e2["frames_to_reacquire"] == 2


def test_never_reacquired_after_return():
    n = 8
    gt, pred = _frames(n), _frames(n)
    for f in range(n):
        if f not in (2, 3):
            _box(gt[f], 1, 5, 5)
        if f < 2:
            _box(pred[f], 1, 5, 5)
    states = [{1: T}] * 2 + [{1: O}] * 2 + [{1: L}] * 4
    o = score_reacquisition(gt, pred, states)["objects"][1]
    (e,) = o["events"]
    assert e["reacquired_frame"] is None and e["frames_to_reacquire"] is None and e["J_after_return"] == 0.0
    assert o["final_state"] == "LOST"
    line = format_timeline(1, o)
    assert line == "object 1: TRACKING 0-1 | OCCLUDED 2-3 | LOST 4-7 (came back at 4, not re-acquired, J after return 0.00)"


def test_a_sliver_below_the_absent_fraction_is_absent():
    """Typical area 100 px; 3 px (< 5 %) count as absent, 6 px (>= 5 %) as present."""
    n = 9
    gt = _frames(n)
    for f in range(n):
        _box(gt[f], 1, 5, 5)
    gt[3][:] = 0
    gt[3][0, :3] = 1  # 3 px
    gt[4][:] = 0
    gt[5][:] = 0
    gt[5][0, :6] = 1  # 6 px
    o = score_reacquisition(gt, gt)["objects"][1]
    assert ABSENT_FRACTION == 0.05
    assert o["gt_timeline"] == [("VISIBLE", 0, 2), ("ABSENT", 3, 4), ("VISIBLE", 5, 8)]
    assert [e["reappeared"] for e in o["events"]] == [5]
    # with the fraction at 0 only frames without any pixel are absent
    o0 = score_reacquisition(gt, gt, absent_fraction=0.0)["objects"][1]
    assert o0["gt_timeline"] == [("VISIBLE", 0, 3), ("ABSENT", 4, 4), ("VISIBLE", 5, 8)]


def test_two_returns_have_separate_windows():
    n = 12
    gt, pred = _frames(n), _frames(n)
    for f in range(n):
        if f not in (2, 3, 7):
            _box(gt[f], 1, 5, 5)
            if f not in (4, 8, 9):
                _box(pred[f], 1, 5, 5)
    o = score_reacquisition(gt, pred)["objects"][1]
    a, b = o["events"]
    assert (a["disappeared"], a["reappeared"], a["window"]) == (2, 4, (4, 6))
    assert (b["disappeared"], b["reappeared"], b["window"]) == (7, 8, (8, 11))
    assert (a["frames_to_reacquire"], b["frames_to_reacquire"]) == (1, 2)
    assert a["J_after_return"] == pytest.approx(2 / 3) and b["J_after_return"] == pytest.approx(0.5)
    d = reacquisition_digest({1: o})
    assert d["events"] == 2 and d["reacquired"] == 2 and d["mean_frames_to_reacquire"] == 1.5
    assert d["J_after_return_mean"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert d["J_after_return_min"] == pytest.approx(0.5)


def test_late_first_appearance_is_no_event_and_leaving_for_good_is_reported():
    """Object 2 first appears at frame 3; object 1 leaves at frame 5 and never comes back."""
    n = 8
    gt, pred = _frames(n), _frames(n)
    states = []
    for f in range(n):
        if f < 5:
            _box(gt[f], 1, 5, 5)
            _box(pred[f], 1, 5, 5)
        if f >= 3:
            _box(gt[f], 2, 20, 40)
            _box(pred[f], 2, 20, 40)
        states.append({1: T if f < 5 else L, **({2: T} if f >= 3 else {})})
    res = score_reacquisition(gt, pred, states)
    o1, o2 = res["objects"][1], res["objects"][2]
    assert o1["events"] == [] and o1["left_at"] == 5 and o1["absent_at_end"] and o1["final_state"] == "LOST"
    assert o1["false_positive_frames"] == 0
    assert o2["events"] == [] and o2["left_at"] is None and o2["first_visible"] == 3
    assert o2["timeline"] == [(NO_STATE, 0, 2), ("TRACKING", 3, 7)]
    assert res["summary"]["left"] == [1] and res["summary"]["left_final_states"] == {1: "LOST"}
    assert format_timeline(1, o1) == ("object 1: TRACKING 0-4 | LOST 5-7 "
                                      "(left at 5, never came back, final state LOST)")


def test_false_positives_need_a_claimed_mask_where_the_ground_truth_has_none():
    """Object 1 leaves at 4; the prediction keeps a mask: TRACKING frames count, OCCLUDED ones not."""
    n = 8
    gt, pred = _frames(n), _frames(n)
    for f in range(n):
        if f < 4:
            _box(gt[f], 1, 5, 5)
        _box(pred[f], 1, 5, 5)
    states = [{1: T}] * 4 + [{1: T}, {1: T}, {1: O}, {1: T}]
    o = score_reacquisition(gt, pred, states)["objects"][1]
    assert o["false_positive_frames"] == 3 and o["false_positive_runs"] == [(4, 5), (7, 7)]
    assert o["final_state"] == "TRACKING" and o["left_at"] == 4
    # unknown states: a mask is a claim
    assert score_reacquisition(gt, pred)["objects"][1]["false_positive_frames"] == 4
    # a perfect tracker that reports LOST with an empty mask has none
    clean = [p if f < 4 else np.zeros_like(p) for f, p in enumerate(pred)]
    ok = score_reacquisition(gt, clean, [{1: T}] * 4 + [{1: L}] * 4)["objects"][1]
    assert ok["false_positive_frames"] == 0 and ok["final_state"] == "LOST"


def test_id_swaps_are_counted_as_onsets():
    """Object 1's prediction sits on object 2 in frames 2-3 and 6: two swaps; object 2 none."""
    n = 9
    gt, pred = _frames(n), _frames(n)
    for f in range(n):
        _box(gt[f], 1, 5, 5)
        _box(gt[f], 2, 25, 40)
        _box(pred[f], 2, 25, 40)
        if f in (2, 3, 6):
            pred[f][pred[f] == 2] = 1  # object 1 claims object 2's pixels (label map: one id per pixel)
        else:
            _box(pred[f], 1, 5, 5)
    res = score_reacquisition(gt, pred)
    o1, o2 = res["objects"][1], res["objects"][2]
    assert o1["id_swaps"] == 2 and o1["id_swap_runs"] == [(2, 2, 3), (2, 6, 6)]
    assert o1["on_other_frames"] == 3 and o1["on_other_runs"] == [(2, 2, 3), (2, 6, 6)]
    assert o2["id_swaps"] == 0 and o2["on_other_frames"] == 0
    assert res["summary"]["id_swaps"] == 2
    # a mask half on its own object and half on the other is no swap
    half = [p.copy() for p in pred]
    for f in range(n):
        half[f][:] = 0
        _box(half[f], 1, 5, 5)
        _box(half[f], 2, 25, 40)
    assert score_reacquisition(gt, half)["objects"][1]["id_swaps"] == 0


def test_a_small_mask_drifting_onto_a_large_object_is_on_other_but_no_swap():
    n = 4
    gt, pred = _frames(n), _frames(n)
    for f in range(n):
        _box(gt[f], 1, 2, 2, size=6)
        _box(gt[f], 2, 10, 20, size=25)
        pred[f][:] = gt[f]
        if f == 2:
            pred[f][pred[f] == 1] = 0
            _box(pred[f], 1, 15, 25, size=6)  # 36 px inside object 2's 625
    o = score_reacquisition(gt, pred)["objects"][1]
    assert o["id_swaps"] == 0 and o["on_other_runs"] == [(2, 2, 2)]


def test_object_scores_merge_davis_scores_and_json():
    gt = _frames(3)
    for g in gt:
        _box(g, 1, 5, 5)
    res = score_reacquisition(gt, gt, [{1: T}] * 3)
    merged = object_scores({"per_object": {1: {"J": 0.5, "F": 0.25}}}, res)
    assert merged[1]["J"] == 0.5 and merged[1]["F"] == 0.25 and merged[1]["timeline"] == [("TRACKING", 0, 2)]
    json.dumps(res)  # plain types only


def test_scorer_validation_and_object_ids():
    s = ReacquisitionScorer(object_ids=[3])
    g = np.zeros((4, 5), np.uint8)
    s.add(g, g.astype(bool))
    with pytest.raises(ValueError, match="5x4"):
        s.add(g, np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        s.add(g, g.astype(float))
    with pytest.raises(ValueError, match="HxW"):
        s.add(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), np.uint8))
    res = s.result()
    assert list(res["objects"]) == [3] and res["objects"][3]["events"] == []
    with pytest.raises(ValueError, match="positive"):
        ReacquisitionScorer(object_ids=[0])
    with pytest.raises(ValueError):
        score_reacquisition([g, g], [g])
    # a uint16 label map with a large id works (no giant tables)
    big = np.zeros((4, 5), np.uint16)
    big[1, 1] = 4000
    assert list(score_reacquisition([big], [big])["objects"]) == [4000]
