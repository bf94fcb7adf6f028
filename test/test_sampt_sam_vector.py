"""SAM-PT's per-frame prompting reproduces shared/vectors/sampt_sam through ``segment_frame`` (the
engine's own path: resize, prompting rules, batched SAM passes, resize back, composition) with
the ``paper`` profile.

The vector was computed by SysCV/sam-pt's own code with a tiny seeded SAM whose weights it ships
(see its README). Required, as the vector's README says: equal label images (at 1024x576 and,
through the resolution setting, at DAVIS' 854x480), equal ``-inf`` patterns, pass counts and
refinement boxes; finite logits, IoU and per-pass IoU within 1e-4; per-pass areas within 50 px.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from conftest import shared_path  # noqa: E402
from sampt_ros.core import prompting  # noqa: E402
from sampt_ros.core.config import config_dir, load_config  # noqa: E402
from sampt_ros.core.sam_segmenter import SamSegmenter, segment_frame  # noqa: E402

pytestmark = [pytest.mark.shared, pytest.mark.slow]

TOL = 1e-4


@pytest.fixture(scope="module")
def vector():
    root = shared_path("vectors", "sampt_sam")
    meta = json.loads((root / "sampt_sam.json").read_text())
    with np.load(root / "sampt_sam.npz") as z:
        data = {k: z[k] for k in z.files}
    return root, meta, data


@pytest.fixture(scope="module")
def predictor(vector):
    """The vector's tiny SAM, built as its README says, weights loaded strictly (float16 -> float32)."""
    from segment_anything import SamPredictor
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    root, meta, _ = vector
    a = meta["sam_builder"]
    ie = dict(a["image_encoder"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    pe = dict(a["prompt_encoder"], image_embedding_size=tuple(a["prompt_encoder"]["image_embedding_size"]),
              input_image_size=tuple(a["prompt_encoder"]["input_image_size"]))
    md = dict(a["mask_decoder"])
    md["transformer"] = TwoWayTransformer(**md["transformer"])
    sam = Sam(image_encoder=ImageEncoderViT(**ie), prompt_encoder=PromptEncoder(**pe), mask_decoder=MaskDecoder(**md),
              pixel_mean=a["pixel_mean"], pixel_std=a["pixel_std"]).eval()
    sd = torch.load(root / "sam_tiny_fp16.pt", weights_only=True)
    sam.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return SamPredictor(sam)


@pytest.fixture(scope="module")
def cfg():
    return load_config([f"{config_dir()}/sampt.yaml", f"{config_dir()}/paper.yaml"])


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the vector was computed with one thread (summation order)
    yield
    torch.set_num_threads(old)


def _tracks(data, f, points=None):
    """Frame ``f``'s tracks as the tracker outputs them (objects 1, 2 = the vector's 0, 1)."""
    traj = data["trajectories"][f] if points is None else points
    return {k + 1: (traj[k], data["point_labels"][k].astype(np.int64), data["visibilities"][f, k].astype(np.float64))
            for k in range(traj.shape[0])}


def _frame(data, f):
    return np.ascontiguousarray(data["frames"][f].transpose(1, 2, 0))


def test_visibility_and_border_rule_match(vector, cfg):
    """The engine's prompting rules (threshold, 1% border) give the vector's visible points."""
    _, _, data = vector
    p = cfg.prompting
    for f in range(4):
        for k in range(2):
            tp = prompting.TrackedPoints(data["trajectories"][f, k].astype(np.float64),
                                         data["visibilities"][f, k].astype(np.float64))
            vis = prompting.visible_points(tp, (576, 1024), p.visibility_threshold, p.border_margin)
            np.testing.assert_array_equal(vis, data["visibilities_after_border_rule"][f, k] == 1, err_msg=f"{f}/{k}")


def test_reproduces_the_vector_through_segment_frame(vector, predictor, cfg, capsys):
    _, _, data = vector
    assert cfg.segmenter.decoder.batching == "exact" and cfg.engine.processing_long_side == 1024
    worst = {"logits": 0.0, "iou": 0.0, "pass_iou": 0.0, "pass_area": 0}
    for f in range(4):
        trace: list = []
        label, logits, iou = segment_frame(predictor, _frame(data, f), _tracks(data, f), cfg, trace=trace)
        assert label.dtype == np.uint8 and label.shape == (576, 1024)
        np.testing.assert_array_equal(label, data["label_image"][f], err_msg=f"label_image frame {f}")
        called = [k for k in range(2) if data["n_passes"][f, k] > 0]
        assert len(trace) == len(called), f"frame {f}: SAM called for {len(trace)} objects, vector {len(called)}"
        for k in range(2):
            ours, ref = logits[k + 1], data["logits"][k, f]
            assert ours.dtype == np.float32 and ours.shape == ref.shape
            np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref), err_msg=f"-inf pattern {f}/{k}")
            fin = np.isfinite(ref)
            if fin.any():
                worst["logits"] = max(worst["logits"], float(np.abs(ours[fin] - ref[fin]).max()))
            r_iou = float(data["iou"][f, k])
            if np.isinf(r_iou):
                assert iou[k + 1] == r_iou
            else:
                worst["iou"] = max(worst["iou"], abs(iou[k + 1] - r_iou))
        for t, k in zip(trace, called):
            n = int(data["n_passes"][f, k])
            assert t["passes"] == n, f"frame {f} object {k}: {t['passes']} passes, vector {n}"
            worst["pass_iou"] = max(worst["pass_iou"], float(np.abs(np.array(t["iou"]) - data["pass_iou"][f, k, :n]).max()))
            worst["pass_area"] = max(worst["pass_area"], int(np.abs(np.array(t["area"]) - data["pass_area"][f, k, :n]).max()))
            for j in range(n):
                ref_box = data["pass_box"][f, k, j]
                if np.isnan(ref_box).all():
                    assert t["box"][j] is None, f"frame {f} object {k} pass {j}: box given, vector has none"
                else:
                    np.testing.assert_array_equal(t["box"][j], ref_box, err_msg=f"box {f}/{k}/{j}")
    with capsys.disabled():
        print(f"\nsampt_sam vector: largest differences: logits {worst['logits']:.3g}, iou {worst['iou']:.3g}, "
              f"pass iou {worst['pass_iou']:.3g}, pass area {worst['pass_area']} px")
    assert worst["logits"] <= TOL and worst["iou"] <= TOL and worst["pass_iou"] <= TOL
    assert worst["pass_area"] <= 50


def test_reproduces_label_image_eval_from_the_original_frames(vector, predictor, cfg):
    """The original 854x480 DAVIS frames, tracks at 854x480: ``engine.processing_long_side: 1024``
    resizes them to the vector's frames, and the logits come back to 854x480 for composition.

    Frame 0 is the query frame: sam-pt's evaluation replaces its logits with +/-1e8 from the query
    masks (the engine likewise publishes a mask prompt as the object's mask on its own frame); the
    test applies that replacement to frame 0 and compares all four frames.
    """
    from sampt_ros.tools.eval import read_rgb

    root = shared_path("data", "davis2016", "JPEGImages", "480p", "dog")
    _, _, data = vector
    proc, orig = (576, 1024), (480, 854)
    for f in range(4):
        image = read_rgb(root / f"{f:05d}.jpg")
        assert image.shape[:2] == orig
        np.testing.assert_array_equal(prompting.resize_long_side(image, 1024), _frame(data, f))
        points = np.stack([prompting.scale_points(data["trajectories"][f, k].astype(np.float64), proc, orig)
                           for k in range(2)])
        label, logits, _ = segment_frame(predictor, image, _tracks(data, f, points), cfg)
        assert label.shape == orig
        if f == 0:
            masks = torch.nn.functional.interpolate(torch.from_numpy(data["query_masks"].astype(np.float32))[None],
                                                    orig, mode="nearest")[0].numpy() > 0.5
            logits = {k + 1: prompting.prompt_logits(masks[k]) for k in range(2)}
            label = prompting.compose_labels(logits, orig, cfg.engine.overlap).astype(np.uint8)
        np.testing.assert_array_equal(label, data["label_image_eval"][f], err_msg=f"label_image_eval frame {f}")


def test_batched_exact_equals_one_object_at_a_time(vector, predictor, cfg):
    """``batching: exact`` groups objects per prompt length; one object per segment() call is the
    per-object path. The logits agree within float summation order."""
    _, _, data = vector
    seg = SamSegmenter(cfg, predictor=predictor)
    f = 2
    seg.set_image(_frame(data, f))
    tracks = {oid: prompting.TrackedPoints(p.astype(np.float64), v) for oid, (p, _, v) in _tracks(data, f).items()}
    labels = {oid: lab for oid, (_, lab, _) in _tracks(data, f).items()}
    requests, _ = prompting.build_requests(tracks, labels, (576, 1024), cfg.prompting)
    batch = [r for _, r in sorted(requests.items()) if r is not None]
    together = seg.segment(batch)
    alone = [seg.segment([r])[0] for r in batch]
    for a, b in zip(together, alone):
        assert abs(a.predicted_iou - b.predicted_iou) <= 1e-5
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=0)
