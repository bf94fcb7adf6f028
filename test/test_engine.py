"""The online engine's state machine, checked with a scripted tracker and a recording segmenter."""

import numpy as np
import pytest

from sampt_ros.core.config import config_from_dict
from sampt_ros.core.engine import SamPtEngine, motion_prior
from sampt_ros.core.types import ObjectState, TrackedPoints

H, W = 48, 64


class ScriptedTracker:
    """Moves every point by ``velocity`` px per frame; ``hidden`` keys report no visible point."""

    buffer_size = 8

    def __init__(self, velocity=(1.0, 0.0)):
        self.velocity = np.asarray(velocity, float)
        self.frames = []
        self.tracks = {}
        self.hidden = set()
        self.set_calls = []

    def push_frame(self, image):
        self.frames.append(len(self.frames))
        self.frames = self.frames[-self.buffer_size:]
        return self.frames[-1]

    def has_frame(self, index):
        return index in self.frames

    def set_track(self, key, points, frame_index):
        if not self.has_frame(frame_index):
            raise KeyError(frame_index)
        self.tracks[key] = (np.asarray(points, float).copy(), frame_index)
        self.set_calls.append((key, frame_index, len(points)))

    def remove_track(self, key):
        self.tracks.pop(key, None)

    def track(self):
        out = {}
        for key, (pts, start) in self.tracks.items():
            moved = pts + self.velocity * (self.frames[-1] - start)
            vis = np.full(len(pts), key not in self.hidden)
            out[key] = TrackedPoints(moved, vis, vis.astype(float))
        return out

    def reset(self):
        self.frames, self.tracks = [], {}


class RecordingSegmenter:
    """Returns a square around the mean positive point; records every prompt it got."""

    uses_prev_mask = True

    def __init__(self):
        self.embeddings_computed = 0
        self.calls = []
        self.empty = False

    def set_image(self, image):
        self.embeddings_computed += 1

    def segment(self, points, labels, prev_mask=None):
        self.calls.append((points.copy(), labels.copy(), prev_mask))
        mask = np.zeros((H, W), bool)
        if not self.empty:
            cx, cy = points[labels == 1].mean(axis=0).round().astype(int)
            mask[max(cy - 4, 0):cy + 5, max(cx - 4, 0):cx + 5] = True
        return mask, 0.75


class GridSampler:
    """Deterministic stand-in for QuerySampler: the mask's centre as positive, a corner negative."""

    def __init__(self, n_negative=1):
        self.n_negative = n_negative
        self.calls = 0

    def sample(self, mask, image=None):
        self.calls += 1
        ys, xs = np.nonzero(mask)
        pos = np.array([[xs.mean(), ys.mean()]])
        neg = np.array([[0.0, 0.0]] * self.n_negative)
        return np.concatenate([pos, neg]), np.array([1] + [0] * self.n_negative)


def make_engine(reinit=0, **kw):
    cfg = config_from_dict({"engine": {"reinit_horizon": reinit}, "tracker": {"kind": "lk"},
                            "segmenter": {"kind": "classic"}})
    tracker, seg, sampler = ScriptedTracker(**kw), RecordingSegmenter(), GridSampler()
    return SamPtEngine(cfg, tracker, seg, sampler), tracker, seg, sampler


def frame():
    return np.zeros((H, W, 3), np.uint8)


def test_points_prompt_tracks_and_segments_every_frame():
    eng, tracker, seg, _ = make_engine()
    eng.set_prompt(1, points=[[10, 20], [30, 30]], labels=[1, 0])
    for i in range(5):
        res = eng.step(frame())
        obj = res.objects[1]
        assert res.frame_index == i
        assert obj.state == ObjectState.TRACKING
        np.testing.assert_allclose(obj.points[0], [10 + i, 20])
        assert obj.mask.shape == (H, W) and obj.mask.dtype == bool and obj.mask.any()
        assert obj.score == pytest.approx(0.75)
        assert set(res.timings) >= {"tracker", "embedding", "decoder", "sampling", "total"}
    assert seg.embeddings_computed == 5  # exactly one embedding per frame


def test_one_embedding_per_frame_with_many_objects_and_others_positives_as_negatives():
    eng, _, seg, _ = make_engine()
    eng.set_prompt(1, points=[[10, 10]], labels=[1])
    eng.set_prompt(2, points=[[40, 30], [5, 40]], labels=[1, 0])
    res = eng.step(frame())
    assert seg.embeddings_computed == 1 and len(seg.calls) == 2
    pts1, lbl1, _ = seg.calls[0]
    # object 1: own positive, then object 2's positive as a negative (its negative is not used)
    np.testing.assert_allclose(pts1, [[10, 10], [40, 30]])
    assert lbl1.tolist() == [1, 0]
    pts2, lbl2, _ = seg.calls[1]
    np.testing.assert_allclose(pts2, [[40, 30], [5, 40], [10, 10]])
    assert lbl2.tolist() == [1, 0, 0]
    assert res.label_image().max() == 2


def test_no_embedding_while_there_is_no_object():
    eng, tracker, seg, _ = make_engine()
    for _ in range(3):
        res = eng.step(frame())
        assert res.objects == {}
    assert seg.embeddings_computed == 0 and len(tracker.frames) == 3  # frames still buffered
    eng.set_prompt(1, points=[[10, 10]], labels=[1], frame_index=1)  # a prompt on a buffered frame
    res = eng.step(frame())
    assert seg.embeddings_computed == 1 and res.objects[1].state == ObjectState.TRACKING
    np.testing.assert_allclose(res.objects[1].points[0], [12, 10])


def test_occluded_object_gets_empty_mask_without_calling_segmenter():
    eng, tracker, seg, _ = make_engine()
    eng.set_prompt(3, points=[[10, 10]], labels=[1])
    eng.step(frame())
    tracker.hidden.add(3)
    res = eng.step(frame())
    assert res.objects[3].state == ObjectState.OCCLUDED
    assert not res.objects[3].mask.any() and res.objects[3].score == 0.0
    assert len(seg.calls) == 1


def test_reinit_resamples_from_mask_every_horizon():
    eng, tracker, seg, sampler = make_engine(reinit=4)
    eng.set_prompt(1, points=[[10, 20]], labels=[1])
    for _ in range(9):
        eng.step(frame())
    # query frame 0 -> re-init at frames 3 and 6 (window of h=4 frames incl. the query frame)
    assert [c[1] for c in tracker.set_calls] == [0, 3, 6]
    assert sampler.calls == 2
    assert tracker.set_calls[1][2] == 2  # 1 positive + 1 negative from the sampler


def test_reinit_on_empty_mask_keeps_points_and_reports_lost():
    eng, tracker, seg, sampler = make_engine(reinit=4)
    eng.set_prompt(1, points=[[10, 20]], labels=[1])
    for _ in range(3):
        eng.step(frame())
    seg.empty = True
    res = eng.step(frame())  # frame 3: re-init due, mask empty
    assert res.objects[1].state == ObjectState.LOST
    assert len(tracker.set_calls) == 1 and sampler.calls == 0  # old points kept
    res = eng.step(frame())
    assert res.objects[1].state == ObjectState.LOST
    np.testing.assert_allclose(res.objects[1].points[0], [14, 20])  # still tracked
    seg.empty = False
    res = eng.step(frame())
    assert res.objects[1].state == ObjectState.TRACKING


def test_mask_prompt_is_sampled_and_used_as_first_prior():
    eng, tracker, seg, sampler = make_engine()
    m = np.zeros((H, W), bool)
    m[10:20, 30:40] = True
    eng.set_prompt(5, mask=m)
    eng.step(frame())
    assert sampler.calls == 1
    _, _, prior = seg.calls[0]
    assert prior is not None and prior.sum() == m.sum()


def test_prompt_on_earlier_buffered_frame_tracks_from_there():
    eng, tracker, seg, _ = make_engine()
    for _ in range(3):
        eng.step(frame())
    eng.set_prompt(1, points=[[10, 10]], labels=[1], frame_index=1)
    res = eng.step(frame())  # frame 3
    np.testing.assert_allclose(res.objects[1].points[0], [12, 10])
    with pytest.raises(KeyError):
        for _ in range(10):
            eng.step(frame())
        eng.set_prompt(2, points=[[1, 1]], labels=[1], frame_index=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=[[np.nan, 1]], labels=[1]), "NaN"),
        (dict(points=[[1, 1]], labels=[0]), "positive"),
        (dict(points=[[1, 1], [2, 2]], labels=[1]), "one entry per point"),
        (dict(points=[[1, 1]], labels=[2]), "1 \\(positive\\) or 0"),
        (dict(points=np.zeros((0, 2)), labels=[]), "no points"),
        (dict(points=[[1, 2, 3]], labels=[1]), "Nx2"),
        (dict(points=[[100, 1]], labels=[1]), "outside"),
        (dict(mask=np.zeros((H, W), bool)), "empty"),
        (dict(mask=np.ones((3, 3), bool)), "frames are"),
        (dict(), "either points"),
    ],
)
def test_malformed_prompts_are_rejected_and_change_nothing(kwargs, match):
    eng, tracker, seg, _ = make_engine()
    eng.set_prompt(1, points=[[10, 10]], labels=[1])
    eng.step(frame())
    with pytest.raises(ValueError, match=match):
        eng.set_prompt(2, **kwargs)
    assert eng.object_ids == [1]
    res = eng.step(frame())
    assert list(res.objects) == [1]


def test_bad_object_id_and_too_many_objects():
    eng, *_ = make_engine()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="object_id"):
            eng.set_prompt(bad, points=[[1, 1]], labels=[1])
    eng.config.engine.max_objects = 2
    eng.set_prompt(1, points=[[1, 1]], labels=[1])
    eng.set_prompt(2, points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="too many"):
        eng.set_prompt(3, points=[[1, 1]], labels=[1])
    eng.set_prompt(2, points=[[2, 2]], labels=[1])  # replacing is fine


def test_replace_and_remove_objects():
    eng, tracker, seg, _ = make_engine()
    eng.set_prompt(1, points=[[10, 10]], labels=[1])
    eng.set_prompt(2, points=[[20, 20]], labels=[1])
    eng.step(frame())
    eng.set_prompt(1, points=[[30, 30], [1, 1]], labels=[1, 0])
    res = eng.step(frame())
    np.testing.assert_allclose(res.objects[1].points, [[30, 30], [1, 1]])
    assert eng.remove_object(2) and not eng.remove_object(2)
    res = eng.step(frame())
    assert list(res.objects) == [1]
    eng.reset()
    assert eng.object_ids == [] and eng.last_frame_index == -1


def test_bad_frames_are_rejected_without_state_change():
    eng, *_ = make_engine()
    eng.step(frame())
    for bad in (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.float32), np.zeros((H + 1, W, 3), np.uint8),
                np.zeros((2, 2, 3), np.uint8), "x"):
        with pytest.raises(ValueError):
            eng.step(bad)
    assert eng.last_frame_index == 0
    assert eng.step(frame()).frame_index == 1


def test_motion_prior_moves_mask_with_points():
    m = np.zeros((H, W), bool)
    m[10:20, 10:20] = True
    src = np.array([[10, 10], [20, 10], [10, 20], [20, 20]], float)
    moved = motion_prior(m, src, src + [5, 3])
    assert moved.sum() == m.sum()
    assert moved[13:23, 15:25].all()
    assert motion_prior(m, src[:0], src[:0]) is m
    one = motion_prior(m, src[:1], src[:1] + [2, 0])
    assert one[10:20, 12:22].all()
