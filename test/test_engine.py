"""The online engine's state machine, checked with a scripted tracker and a recording segmenter."""

import numpy as np
import pytest

from sampt_ros.core.config import config_from_dict
from sampt_ros.core.engine import SamPtEngine, motion_prior
from sampt_ros.core.types import ObjectState, Segmentation, TrackedPoints

H, W = 48, 64


class ScriptedTracker:
    """Moves every point by ``velocity`` px per frame; ``hidden`` keys report no visible point."""

    buffer_size = 8
    device = "cpu"

    def __init__(self, velocity=(1.0, 0.0)):
        self.velocity = np.asarray(velocity, float)
        self.frames = []
        self.tracks = {}
        self.hidden = set()
        self.set_calls = []
        self.sizes = []

    def push_frame(self, image):
        self.sizes.append(image.shape[:2])
        self.frames.append(self.frames[-1] + 1 if self.frames else 0)
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
            vis = np.full(len(pts), 0.0 if key in self.hidden else 1.0)
            out[key] = TrackedPoints(moved, vis)
        return out

    def reset(self):
        self.frames, self.tracks = [], {}

    def stats(self):
        return {"frames_prepared": len(self.sizes)}


class RecordingSegmenter:
    """Returns a square around the mean positive point (logit ``strength``); records every request."""

    uses_prior = True
    device = "cpu"

    def __init__(self, shape=(H, W)):
        self.shape = shape
        self.embeddings_computed = 0
        self.calls = []
        self.batches = 0
        self.empty = False
        self.strength = {}
        self.removed = []

    def set_image(self, image):
        assert image.shape[:2] == self.shape
        self.embeddings_computed += 1

    def segment(self, requests):
        self.batches += 1
        out = []
        for r in requests:
            self.calls.append((r.points.copy(), r.labels.copy(), r.prior, r.object_id, r.probe))
            logits = np.full(self.shape, -1.0, np.float32)
            if not self.empty and np.any(r.labels == 1):
                cx, cy = r.points[r.labels == 1].mean(axis=0).round().astype(int)
                logits[max(cy - 4, 0):cy + 5, max(cx - 4, 0):cx + 5] = self.strength.get(r.object_id, 1.0)
            out.append(Segmentation(logits, 0.75))
        return out

    def features(self):
        return None

    def remove_object(self, object_id):
        self.removed.append(object_id)

    def reset(self):
        pass

    def stats(self):
        return {"embeddings_computed": self.embeddings_computed}


class GridSampler:
    """Deterministic stand-in for QuerySampler: the mask's centre as positive, a corner negative."""

    def __init__(self, n_negative=1):
        self.n_negative = n_negative
        self.calls = 0
        self.streams = []

    def sample(self, mask, image=None, stream=()):
        self.calls += 1
        self.streams.append(tuple(stream))
        ys, xs = np.nonzero(mask)
        pos = np.array([[xs.mean(), ys.mean()]])
        neg = np.array([[0.0, 0.0]] * self.n_negative)
        return np.concatenate([pos, neg]), np.array([1] + [0] * self.n_negative)


def make_engine(reinit=0, memory=None, config=None, shape=(H, W), **kw):
    tree = {"engine": {"reinit_horizon": reinit}, "tracker": {"kind": "lk"}, "segmenter": {"kind": "classic"},
            "prompting": {"border_margin": 0.0}}
    for key, value in (config or {}).items():
        tree.setdefault(key, {}).update(value)
    cfg = config_from_dict(tree)
    tracker, seg, sampler = ScriptedTracker(**kw), RecordingSegmenter(shape), GridSampler()
    return SamPtEngine(cfg, tracker, seg, sampler, memory), tracker, seg, sampler


def frame(shape=(H, W)):
    return np.zeros((*shape, 3), np.uint8)


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
    assert seg.embeddings_computed == 1 and len(seg.calls) == 2 and seg.batches == 1  # one call for all objects
    pts1, lbl1, *_ = seg.calls[0]
    # object 1: own positive, then object 2's positive as a negative (its negative is not used)
    np.testing.assert_allclose(pts1, [[10, 10], [40, 30]])
    assert lbl1.tolist() == [1, 0]
    pts2, lbl2, *_ = seg.calls[1]
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
    prior = seg.calls[0][2]
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
    for bad in (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.float32), np.zeros((7, W, 3), np.uint8),
                np.zeros((2, 2, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), "x"):
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


# ------------------------------------------------------------------------------------------ resolution
def test_a_new_frame_size_keeps_every_object_and_says_so():
    eng, tracker, seg, sampler = make_engine()
    m = np.zeros((H, W), bool)
    m[10:20, 30:40] = True
    eng.set_prompt(1, mask=m)
    eng.set_prompt(2, points=[[10, 10]], labels=[1])
    eng.step(frame())
    eng.step(frame())
    seg.shape = (2 * H, 2 * W)
    res = eng.step(frame((2 * H, 2 * W)))  # the camera switched to twice the resolution
    assert any("frame size changed" in w for w in res.warnings)
    assert sorted(res.objects) == [1, 2]
    assert all(o.mask.shape == (2 * H, 2 * W) for o in res.objects.values())
    # each object restarts from its last mask, scaled: object 1 sits where it was, twice as large
    assert res.objects[1].state == ObjectState.TRACKING and res.objects[1].mask[25:35, 65:75].all()
    assert tracker.sizes[-1] == (2 * H, 2 * W)


def test_a_tiny_frame_is_rejected_and_forgets_nothing():
    eng, tracker, seg, sampler = make_engine()
    eng.set_prompt(1, points=[[10, 10]], labels=[1])
    eng.step(frame())
    for side in (1, 7):
        with pytest.raises(ValueError, match="too small"):
            eng.step(np.zeros((side, side, 3), np.uint8))
    res = eng.step(frame())
    assert list(res.objects) == [1] and res.objects[1].state == ObjectState.TRACKING and res.frame_index == 1


def test_processing_size_resizes_for_the_components_and_back_for_the_outputs():
    eng, tracker, seg, sampler = make_engine(config={"engine": {"processing_long_side": 2 * W}}, shape=(2 * H, 2 * W))
    eng.set_prompt(1, points=[[10, 20]], labels=[1])
    res = eng.step(frame())
    assert tracker.sizes == [(2 * H, 2 * W)]
    pts, *_ = seg.calls[0]
    np.testing.assert_allclose(pts[0], [20.5, 40.5])  # pixel centres: (x + 0.5) * 2 - 0.5
    obj = res.objects[1]
    assert obj.mask.shape == (H, W)
    np.testing.assert_allclose(obj.points[0], [10, 20])
    ys, xs = np.nonzero(obj.mask)
    assert abs(xs.mean() - 10) <= 1.0 and abs(ys.mean() - 20) <= 1.0


# ------------------------------------------------------------------------------------------ prompts and overlap
def test_a_mask_prompt_is_the_objects_mask_on_its_own_frame():
    eng, tracker, seg, sampler = make_engine()
    m = np.zeros((H, W), bool)
    m[5:25, 30:33] = True  # not a square: the segmenter would draw a square
    eng.set_prompt(1, mask=m)
    res = eng.step(frame())
    np.testing.assert_array_equal(res.objects[1].mask, m)
    assert res.objects[1].score == 1.0
    assert len(seg.calls) == 1  # the segmenter still saw the prompt (stateful segmenters learn from it)
    res = eng.step(frame())
    assert res.objects[1].mask.sum() == 81  # from then on, the segmenter's mask


@pytest.mark.parametrize("rule, winner", [("confidence", 1), ("id", 2)])
def test_overlaps_go_to_the_most_confident_object_or_the_higher_id(rule, winner):
    eng, tracker, seg, sampler = make_engine(config={"engine": {"overlap": rule}})
    seg.strength = {1: 5.0, 2: 1.0}
    eng.set_prompt(1, points=[[20, 20]], labels=[1])
    eng.set_prompt(2, points=[[24, 20]], labels=[1])
    res = eng.step(frame())
    assert res.label_image()[20, 22] == winner
    assert not (res.objects[1].mask & res.objects[2].mask).any()


def test_every_object_and_every_resampling_draws_its_own_points():
    eng, tracker, seg, sampler = make_engine(reinit=4)
    m = np.zeros((H, W), bool)
    m[10:20, 10:20] = True
    eng.set_prompt(1, mask=m)
    eng.set_prompt(2, mask=np.roll(m, 30, axis=1))
    for _ in range(8):
        eng.step(frame())
    assert sampler.streams == [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]


# ------------------------------------------------------------------------------------------ re-identification
class FakeMemory:
    """Similarity 1 near ``home`` (x, y), 0 elsewhere; proposes ``home`` when asked for candidates."""

    def __init__(self, home=(40, 20)):
        self.home = home
        self.observed = []
        self.searched = []

    def knows(self, object_id):
        return object_id in self.observed

    def observe(self, object_id, ctx, mask):
        self.observed.append(object_id)

    def similarity(self, object_id, ctx, mask):
        ys, xs = np.nonzero(mask)
        near = abs(xs.mean() - self.home[0]) < 6 and abs(ys.mean() - self.home[1]) < 6
        return 1.0 if near else 0.0

    def candidates(self, object_id, ctx, exclude, n, around=None):
        from sampt_ros.core.types import Candidate

        self.searched.append(object_id)
        h, w = exclude.shape
        if not (self.home[0] < w and self.home[1] < h) or exclude[self.home[1], self.home[0]]:
            return []
        return [Candidate(np.array([self.home], float), np.array([1]), None)]

    def remove_object(self, object_id):
        pass

    def reset(self):
        self.observed.clear()

    def stats(self):
        return {"entries": len(self.observed)}


def test_drift_is_not_trusted_occluded_then_lost_then_found_again_with_the_same_id():
    memory = FakeMemory(home=(40, 20))
    eng, tracker, seg, sampler = make_engine(memory=memory, config={"reid": {"kind": "colour", "lost_after": 2, "accept": 0.5}},
                                             velocity=(0.0, 0.0))
    eng.set_prompt(7, points=[[40, 20]], labels=[1])
    res = eng.step(frame())
    assert res.objects[7].state == ObjectState.TRACKING and memory.observed == [7]
    # the track drifts away from where the object is: the masks no longer match its memory
    tracker.tracks[7] = (np.array([[10.0, 30.0]]), tracker.frames[-1])
    memory.home = (55, 40)  # ... and the object is now elsewhere, out of the candidates' reach
    states = []
    real_candidates = memory.candidates
    memory.candidates = lambda *a, **k: []
    for _ in range(4):
        res = eng.step(frame())
        states.append(res.objects[7].state)
        assert not res.objects[7].mask.any() and res.objects[7].score == 0.0
    assert states == [ObjectState.OCCLUDED, ObjectState.OCCLUDED, ObjectState.LOST, ObjectState.LOST]
    calls_before = len(seg.calls)
    memory.candidates = real_candidates
    res = eng.step(frame())
    obj = res.objects[7]
    assert obj.state == ObjectState.TRACKING and obj.reacquired and obj.mask[40, 55]
    probes = [c for c in seg.calls[calls_before:] if c[4]]
    assert probes and probes[0][3] == 7  # a probe request for object 7
    assert tracker.set_calls[-1][0] == 7  # its query points were re-sampled from the new mask
    res = eng.step(frame())
    assert res.objects[7].state == ObjectState.TRACKING and not res.objects[7].reacquired


def test_a_lost_object_does_not_take_a_region_another_object_holds():
    memory = FakeMemory(home=(20, 20))
    eng, tracker, seg, sampler = make_engine(memory=memory, config={"reid": {"kind": "colour", "lost_after": 0}},
                                             velocity=(0.0, 0.0))
    eng.set_prompt(1, points=[[20, 20]], labels=[1])
    eng.set_prompt(2, points=[[50, 35]], labels=[1])
    eng.step(frame())
    tracker.hidden.add(2)  # object 2 disappears; object 1 keeps the place its memory would point at
    memory.similarity = lambda oid, ctx, mask: 1.0
    for _ in range(3):
        res = eng.step(frame())
        assert res.objects[1].state == ObjectState.TRACKING
        assert res.objects[2].state == ObjectState.LOST and not res.objects[2].mask.any()
    assert memory.searched  # object 2 was searched for, and found nothing it may take


def test_without_a_memory_every_non_empty_mask_is_trusted_and_nothing_is_searched():
    eng, tracker, seg, sampler = make_engine(config={"reid": {"lost_after": 1}})
    eng.set_prompt(1, points=[[20, 20]], labels=[1])
    eng.step(frame())
    seg.empty = True
    states = [eng.step(frame()).objects[1].state for _ in range(3)]
    assert states == [ObjectState.OCCLUDED, ObjectState.LOST, ObjectState.LOST]
    seg.empty = False
    assert eng.step(frame()).objects[1].state == ObjectState.TRACKING


def test_an_object_without_a_mask_survives_a_resolution_change_and_can_be_found_again():
    memory = FakeMemory(home=(20, 20))
    eng, tracker, seg, sampler = make_engine(memory=memory, config={"reid": {"kind": "colour", "lost_after": 0}},
                                             velocity=(0.0, 0.0))
    eng.set_prompt(7, points=[[20, 20]], labels=[1])
    eng.step(frame())
    eng._objects[7].mask = None  # e.g. hidden when the camera switched resolution
    seg.shape = (16, 16)
    res = eng.step(frame((16, 16)))
    assert res.objects[7].state == ObjectState.LOST and res.objects[7].points.shape == (0, 2)
    seg.shape = (H, W)
    memory.similarity = lambda oid, ctx, mask: 1.0
    for _ in range(2):
        res = eng.step(frame())  # and back: it is searched for and found, with its id
    assert res.objects[7].state == ObjectState.TRACKING and res.objects[7].mask[20, 20]


def test_warmup_runs_frames_and_forgets_them():
    eng, tracker, seg, sampler = make_engine()
    eng.set_prompt(3, points=[[10, 10]], labels=[1])
    seconds = eng.warmup(size=(H, W), frames=2, objects=2)
    assert seconds >= 0 and seg.embeddings_computed == 2 and eng.object_ids == [] and eng.last_frame_index == -1
    assert eng.device == "cpu"


def test_borrowed_negatives_can_be_capped_evenly():
    eng, tracker, seg, sampler = make_engine(config={"prompting": {"max_borrowed_negatives": 2}})
    eng.set_prompt(1, points=[[10, 10]], labels=[1])
    eng.set_prompt(2, points=[[20, 10], [22, 10], [24, 10], [26, 10], [28, 10]], labels=[1, 1, 1, 1, 1])
    eng.step(frame())
    pts1, lbl1, *_ = seg.calls[0]
    # object 1: its own point, then 2 of object 2's 5 positives (the first and the last)
    np.testing.assert_allclose(pts1, [[10, 10], [20, 10], [28, 10]])
    assert lbl1.tolist() == [1, 0, 0]


def test_the_reinit_frame_is_segmented_again_from_the_new_points():
    # SAM-PT (reinit variant A) segments the re-initialisation frame once more, from the points it
    # has just sampled from the mask, and publishes that mask
    eng, tracker, seg, sampler = make_engine(reinit=4, config={"engine": {"reinit_resegment": True}})
    eng.set_prompt(1, points=[[10, 20]], labels=[1])
    for _ in range(3):
        eng.step(frame())
    n = len(seg.calls)
    res = eng.step(frame())  # frame 3: re-init due
    assert len(seg.calls) == n + 2  # the tracked points, then the new query points
    new_points, new_labels, *_ = seg.calls[-1]
    np.testing.assert_allclose(new_points[0], tracker.tracks[1][0][0])  # the sampled positive
    assert tracker.set_calls[-1][1] == 3
    cx, cy = np.round(new_points[0]).astype(int)
    assert res.objects[1].mask[cy, cx] and res.objects[1].state == ObjectState.TRACKING
    # without it, the published mask is the one from the old points and the segmenter runs once
    eng, tracker, seg, sampler = make_engine(reinit=4)
    eng.set_prompt(1, points=[[10, 20]], labels=[1])
    for _ in range(3):
        eng.step(frame())
    n = len(seg.calls)
    eng.step(frame())
    assert len(seg.calls) == n + 1
