"""SAM-PT's rules (issue 8, items 1-5 and 7), each through the engine: a tracker replaying the
sampt_sam vector's trajectories and the real SamSegmenter with the vector's tiny SAM, configured by
the ``paper`` profile. With every rule as sam-pt has it the engine's label images are the vector's;
turning one rule off changes what the test names.

Item 6 (re-initialisation frame) is the engine's (test_engine.py).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from sampt_ros.core import factory  # noqa: E402
from sampt_ros.core.config import config_dir, load_config  # noqa: E402
from sampt_ros.core.engine import SamPtEngine  # noqa: E402
from sampt_ros.core.sam_segmenter import SamSegmenter  # noqa: E402
from sampt_ros.core.types import TrackedPoints  # noqa: E402

from test_sampt_sam_vector import predictor, vector  # noqa: E402,F401 - module fixtures
from conftest import torch_threads  # noqa: E402

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _one_thread():
    yield from torch_threads(1)


class ReplayTracker:
    """Replays the vector's trajectories: the i-th pushed frame gets vector frame ``order[i]``'s points
    and visibilities (``visibility`` maps the vector's booleans to the tracker's scores)."""

    buffer_size = 8
    device = "cpu"

    def __init__(self, data, order, visibility=(0.0, 1.0)):
        self.data, self.order, self.visibility = data, list(order), visibility
        self.sizes, self.tracks, self.count = [], set(), 0

    def push_frame(self, image):
        self.sizes.append(image.shape[:2])
        self.count += 1
        return self.count - 1

    def has_frame(self, index):
        return 0 <= index < self.count and index > self.count - 1 - self.buffer_size

    def set_track(self, object_id, points, frame_index):
        self.tracks.add(object_id)

    def remove_track(self, object_id):
        self.tracks.discard(object_id)

    def track(self):
        f = self.order[self.count - 1]
        lo, hi = self.visibility
        return {oid: TrackedPoints(self.data["trajectories"][f, oid - 1].astype(np.float64),
                                   np.where(self.data["visibilities"][f, oid - 1], hi, lo))
                for oid in sorted(self.tracks)}

    def reset(self):
        self.tracks, self.count = set(), 0

    def stats(self):
        return {"frames_prepared": self.count}


def run(vector, predictor, order=(0, 1, 2, 3), overrides=None, images=None, visibility=(0.0, 1.0)):
    """The engine over vector frames ``order``; returns (label images, per-frame requests, results, tracker)."""
    _, _, data = vector
    cfg = load_config([f"{config_dir()}/sampt.yaml", f"{config_dir()}/paper.yaml"], overrides or {})
    seg = SamSegmenter(cfg, predictor=predictor)
    requests = []
    plain = seg.segment

    def recording(batch):
        requests[-1].extend((r.object_id, r.points.copy(), r.labels.copy()) for r in batch)
        return plain(batch)

    seg.segment = recording
    tracker = ReplayTracker(data, order, visibility)
    engine = SamPtEngine(cfg, tracker, seg, factory.build_sampler(cfg), None)
    for k in range(2):
        engine.set_prompt(k + 1, points=data["trajectories"][0, k], labels=data["point_labels"][k].astype(np.int64))
    labels, results = [], []
    for i, f in enumerate(order):
        image = images[i] if images is not None else np.ascontiguousarray(data["frames"][f].transpose(1, 2, 0))
        requests.append([])
        res = engine.step(image)
        labels.append(res.label_image(image.shape[:2]))
        results.append(res)
    return labels, requests, results, tracker


def test_all_rules_as_sam_pt_reproduce_the_vector(vector, predictor):
    _, _, data = vector
    labels, _, results, _ = run(vector, predictor)
    for f in range(4):
        np.testing.assert_array_equal(labels[f], data["label_image"][f], err_msg=f"frame {f}")


def test_1_visibility_threshold_is_0_5(vector, predictor):
    """Points the tracker scores 0.6 are prompts at SAM-PT's 0.5; at 0.9 (the old rule) they are not."""
    _, _, data = vector
    labels, reqs, results, _ = run(vector, predictor, order=(2,), visibility=(0.3, 0.6))
    np.testing.assert_array_equal(labels[0], data["label_image"][2])
    vis = data["visibilities_after_border_rule"][2] == 1
    for k in range(2):
        np.testing.assert_array_equal(results[0].objects[k + 1].visible, vis[k])
    labels9, reqs9, results9, _ = run(vector, predictor, order=(2,), visibility=(0.3, 0.6),
                                      overrides={"prompting.visibility_threshold": 0.9})
    assert reqs9 == [[]] and not labels9[0].any()
    assert not any(results9[0].objects[k].visible.any() for k in (1, 2))


def test_2_iou_cut_off_empties_low_iou_masks(vector, predictor):
    """Frame 0, object 1: predicted IoU 0.692 < 0.7: no mask with the cut-off, a mask without it."""
    _, _, data = vector
    labels, _, results, _ = run(vector, predictor, order=(0,))
    assert not (labels[0] == 1).any() and results[0].objects[1].state.name != "TRACKING"
    labels0, _, results0, _ = run(vector, predictor, order=(0,), overrides={"segmenter.decoder.iou_threshold": 0.0})
    assert (labels0[0] == 1).sum() > 1000 and results0[0].objects[1].state.name == "TRACKING"


def test_3_overlaps_go_to_the_most_confident_object(vector, predictor):
    """Frame 2: 671 pixels where both objects are positive; the higher logit wins (not the higher id)."""
    _, _, data = vector
    labels, _, _, _ = run(vector, predictor, order=(2,))
    np.testing.assert_array_equal(labels[0], data["label_image"][2])
    both = (data["logits"][0, 2] > 0) & (data["logits"][1, 2] > 0)
    assert both.sum() == 671
    first_wins = both & (data["logits"][0, 2] > data["logits"][1, 2])
    assert first_wins.any() and (labels[0][first_wins] == 1).all()
    by_id, _, _, _ = run(vector, predictor, order=(2,), overrides={"engine.overlap": "id"})
    assert (by_id[0][both] == 2).all() and not np.array_equal(by_id[0], labels[0])


def test_4_points_within_1_percent_of_the_border_are_not_visible(vector, predictor):
    """Frame 2: object 2's points at x = 6, y = 573, x = 1026.5 and object 1's negative at y = 2 are
    reported visible by the tracker; the border rule drops them from the prompts (and from the other
    object's negatives); x = 13 (1.27 %) stays."""
    _, _, data = vector
    _, reqs, results, _ = run(vector, predictor, order=(2,))
    traj = data["trajectories"][2]
    dropped = [traj[0, 8], traj[1, 0], traj[1, 1], traj[1, 2]]
    for oid, pts, _ in reqs[0]:
        for p in dropped:
            assert not np.any(np.all(np.isclose(pts, p), axis=1)), (oid, p)
    assert np.any(np.all(np.isclose(dict((o, p) for o, p, _ in reqs[0])[2], traj[1, 3]), axis=1))
    np.testing.assert_array_equal(results[0].objects[2].visible, data["visibilities_after_border_rule"][2, 1] == 1)
    labels0, reqs0, _, _ = run(vector, predictor, order=(2,), overrides={"prompting.border_margin": 0.0})
    assert sum(len(p) for _, p, _ in reqs0[0]) > sum(len(p) for _, p, _ in reqs[0])
    assert not np.array_equal(labels0[0], data["label_image"][2])


def test_5_frames_are_processed_at_a_long_side_of_1024(vector, predictor):
    """The original 854x480 DAVIS frames: the tracker and SAM see 1024x576 (the vector's frames); the
    outputs come back to 854x480 and equal the vector's label_image_eval (frames 1-3; frame 0 of
    label_image_eval is the query masks, an evaluation convention)."""
    from conftest import shared_path
    from sampt_ros.tools.eval import read_rgb

    _, _, data = vector
    root = shared_path("data", "davis2016", "JPEGImages", "480p", "dog")
    images = [read_rgb(root / f"{f:05d}.jpg") for f in range(4)]
    labels, _, _, tracker = run(vector, predictor, images=images)
    assert tracker.sizes == [(576, 1024)] * 4
    for f in (1, 2, 3):
        assert labels[f].shape == (480, 854)
        np.testing.assert_array_equal(labels[f], data["label_image_eval"][f], err_msg=f"frame {f}")
    native, _, _, tracker0 = run(vector, predictor, order=(1, 2), images=images[1:3],
                                 overrides={"engine.processing_long_side": 0})
    assert tracker0.sizes == [(480, 854)] * 2


def test_7_objects_without_a_visible_positive_are_still_prompted(vector, predictor):
    """Frame 1: object 2 has only its negative point; frame 3: object 1 has no visible point but object
    2's positives make its prompt. SAM-PT prompts both (pass 1 then has no positive point); with
    ``require_own_positive`` they get no SAM call."""
    _, _, data = vector
    _, reqs, _, _ = run(vector, predictor, order=(1, 3))
    f1 = {oid: lab for oid, _, lab in reqs[0]}
    f3 = {oid: lab for oid, _, lab in reqs[1]}
    assert set(f1) == {2} and not (f1[2] == 1).any()
    assert set(f3) == {1, 2} and not (f3[1] == 1).any() and len(f3[1]) == 7
    _, reqs_own, _, _ = run(vector, predictor, order=(1, 3), overrides={"prompting.require_own_positive": True})
    assert reqs_own[0] == [] and {oid for oid, _, _ in reqs_own[1]} == {2}
