"""SamSegmenter: SAM-PT's passes batched over objects, against the official predictor run one object
at a time; batching modes, box sources, the IoU cut-off, checkpoints, features, precision, warm-up."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402

from sampt_ros.core.config import load_config  # noqa: E402
from sampt_ros.core.sam_segmenter import (  # noqa: E402
    SamCheckpointError,
    SamSegmenter,
    build_tiny_sam,
    detect_model_type,
    load_sam,
    resolve_device,
    segment_frame,
)
from sampt_ros.core.types import SegmentRequest  # noqa: E402

H, W = 480, 854

from conftest import torch_threads  # noqa: E402


@pytest.fixture(autouse=True)
def _two_threads():
    yield from torch_threads(2)


def _cfg(**decoder):
    over = {"segmenter.sam.model_type": "tiny", "segmenter.sam.allow_random_weights": True,
            "segmenter.sam.checkpoint": "", "segmenter.sam.device": "cpu"}
    for key, value in decoder.items():
        section = "sampling" if key == "n_negative" else "segmenter.decoder"
        over[f"{section}.{key}"] = value
    return load_config(["config/sampt.yaml", "config/paper.yaml"], over)


def _image(h=H, w=W):
    """A natural photograph (scikit-image's astronaut) at DAVIS' 854x480."""
    data = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    return np.ascontiguousarray(cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_sam(seed=0)


def _requests(seed=1, n=8):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(1, 10))
        pts = rng.uniform([0, 0], [W - 1, H - 1], (m, 2))
        lab = (rng.random(m) < 0.7).astype(np.int64)
        out.append(SegmentRequest(k + 1, pts, lab))
    out.append(SegmentRequest(99, np.array([[300.0, 200.0], [500.0, 100.0]]), np.array([0, 0])))  # no positive
    return out


def reference(predictor: SamPredictor, points, labels, iters, two_pass=True, threshold=0.0):
    """SAM-PT's passes for one object with the official predictor (written from sam-pt's description:
    positives, then all points + pass-1 logits, then refinements with the box of the previous mask,
    stopping below 2 pixels; boxes mapped into SAM's input frame as SamPredictor.predict does)."""
    tr, size = predictor.transform, predictor.original_size
    coords = torch.as_tensor(tr.apply_coords(points, size), dtype=torch.float)[None]
    labs = torch.as_tensor(labels, dtype=torch.int)[None]
    pos = labs[0] == 1
    with torch.inference_mode():
        if two_pass:
            _, _, low = predictor.predict_torch(coords[:, pos], labs[:, pos], None, None, False, True)
            full, iou, low = predictor.predict_torch(coords, labs, None, low, False, True)
        else:
            full, iou, low = predictor.predict_torch(coords, labs, None, None, False, True)
        passes = 1 + int(two_pass)
        for _ in range(iters):
            m = full[0, 0] > 0
            if m.sum() < 2:
                break
            yx = m.nonzero()
            box = torch.tensor([[yx[:, 1].min(), yx[:, 0].min(), yx[:, 1].max(), yx[:, 0].max()]], dtype=torch.float)
            box = tr.apply_boxes_torch(box, size)
            full, iou, low = predictor.predict_torch(coords, labs, box, low, False, True)
            passes += 1
    logits = full[0, 0].numpy()
    value = float(iou[0, 0])
    if threshold > 0 and value < threshold:
        logits = np.full_like(logits, -np.inf)
    return logits, value, passes


# ------------------------------------------------------------------------------------------ passes
@pytest.mark.parametrize("iters", [0, 3])
def test_exact_batching_equals_the_official_predictor_one_object_at_a_time(tiny, iters):
    image = _image()
    seg = SamSegmenter(_cfg(refinement_iters=iters, iou_threshold=0.0, batching="exact"), predictor=SamPredictor(tiny))
    seg.set_image(image)
    reqs = _requests()
    answers = seg.segment(reqs)
    ref = SamPredictor(tiny)
    ref.set_image(image)
    for req, ans in zip(reqs, answers):
        logits, iou, _ = reference(ref, req.points, req.labels, iters)
        np.testing.assert_allclose(ans.logits, logits, atol=1e-5, rtol=0)
        assert ans.predicted_iou == pytest.approx(iou, abs=1e-6)
        assert ans.score == pytest.approx(min(max(iou, 0.0), 1.0), abs=1e-6)
        assert ans.logits.dtype == np.float32 and ans.logits.shape == (H, W)
    # one decoder call per prompt length and pass, whatever the number of objects
    n_all = {len(r.points) for r in reqs}
    n_pos = {int((r.labels == 1).sum()) for r in reqs}
    assert seg.stats()["decoder_calls"] == len(n_pos) + len(n_all) * (1 + iters)
    assert seg.stats()["prompt_passes"] == 2 + iters and seg.stats()["segmentations"] == len(reqs)


def test_padded_batching_makes_one_call_per_pass_and_its_difference_is_measured(tiny, capsys):
    """``padded``: one decoder call per pass. SAM's decoder attends to the -1 "not a point" tokens, so
    masks move a little where prompt lengths differ: measured here on a random tiny SAM (its logits sit
    near 0, the worst case for mask agreement; the vector's tiny SAM: see test_sampt_sam_vector)."""
    image = _image()
    reqs = _requests()
    out = {}
    for mode in ("exact", "padded"):
        seg = SamSegmenter(_cfg(refinement_iters=3, iou_threshold=0.0, batching=mode), predictor=SamPredictor(tiny))
        seg.set_image(image)
        out[mode] = seg.segment(reqs)
        if mode == "padded":
            assert seg.stats()["decoder_calls"] == 2 + 3
    diff = max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(out["exact"], out["padded"]))
    ious = []
    for a, b in zip(out["exact"], out["padded"]):
        ma, mb = a.logits > 0, b.logits > 0
        ious.append(float((ma & mb).sum() / max((ma | mb).sum(), 1)))
    with capsys.disabled():
        print(f"\npadded vs per-object (random tiny SAM, 9 objects, 1-9 points): max logit difference {diff:.3g}, "
              f"mask IoU min {min(ious):.3f} mean {np.mean(ious):.3f}")
    assert diff < 1.0
    # prompts of one length need no padding: padded is then the per-object path
    same = [SegmentRequest(k, r.points[:1], np.array([1])) for k, r in enumerate(reqs[:4], start=1)]
    res = {}
    for mode in ("exact", "padded"):
        seg = SamSegmenter(_cfg(refinement_iters=2, iou_threshold=0.0, batching=mode), predictor=SamPredictor(tiny))
        seg.set_image(image)
        res[mode] = seg.segment(same)
    for a, b in zip(res["exact"], res["padded"]):
        np.testing.assert_array_equal(a.logits, b.logits)


def test_without_sampled_negatives_one_first_pass_with_all_points(tiny):
    """sam-pt with ``negative_points_per_mask == 0`` runs one first pass with every point."""
    image = _image()
    seg = SamSegmenter(_cfg(refinement_iters=2, iou_threshold=0.0, n_negative=0), predictor=SamPredictor(tiny))
    assert not seg.two_pass
    seg.set_image(image)
    reqs = _requests(seed=3, n=3)
    answers = seg.segment(reqs)
    ref = SamPredictor(tiny)
    ref.set_image(image)
    for req, ans in zip(reqs, answers):
        logits, iou, _ = reference(ref, req.points, req.labels, 2, two_pass=False)
        np.testing.assert_allclose(ans.logits, logits, atol=1e-5, rtol=0)
    assert seg.stats()["prompt_passes"] == 1 + 2


def test_iou_cut_off_empties_the_mask_but_reports_the_iou(tiny):
    image = _image()
    reqs = _requests(n=3)
    seg = SamSegmenter(_cfg(refinement_iters=1, iou_threshold=0.0), predictor=SamPredictor(tiny))
    seg.set_image(image)
    raw = [a.predicted_iou for a in seg.segment(reqs)]
    cut = float(np.median(raw))
    seg = SamSegmenter(_cfg(refinement_iters=1, iou_threshold=cut), predictor=SamPredictor(tiny))
    seg.set_image(image)
    for r, ans in zip(raw, seg.segment(reqs)):
        assert ans.predicted_iou == pytest.approx(r, abs=1e-6)
        assert np.isneginf(ans.logits).all() == (r < cut)


def test_empty_request_is_not_sent_and_no_request_no_call(tiny):
    seg = SamSegmenter(_cfg(refinement_iters=2), predictor=SamPredictor(tiny))
    with pytest.raises(RuntimeError, match="before set_image"):
        seg.segment([SegmentRequest(1, np.array([[1.0, 1.0]]), np.array([1]))])
    seg.set_image(_image(64, 96))
    assert seg.segment([]) == []
    ans = seg.segment([SegmentRequest(1, np.zeros((0, 2)), np.zeros(0, np.int64))])[0]
    assert np.isneginf(ans.logits).all() and ans.logits.shape == (64, 96) and ans.score == 0.0
    assert np.isneginf(ans.predicted_iou) and seg.stats()["decoder_calls"] == 0
    with pytest.raises(ValueError, match="one entry per point"):
        seg.segment([SegmentRequest(1, np.zeros((2, 2)), np.array([1]))])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        seg.set_image(np.zeros((10, 10, 3), np.float32))


def test_low_res_box_source_refines_from_the_256_logits(tiny):
    """``box_source: low_res``: the box comes from the low-resolution logits in SAM's input frame
    (cells of 4 input pixels for a 1024 input; 4 here too: 256 px input, 64x64 logits)."""
    image = _image()
    reqs = _requests(n=3)
    traces = {}
    for src in ("full", "low_res"):
        seg = SamSegmenter(_cfg(refinement_iters=2, iou_threshold=0.0, box_source=src), predictor=SamPredictor(tiny))
        seg.trace = []
        seg.set_image(image)
        seg.segment(reqs)
        traces[src] = seg.trace
    scale = 256 / W  # image px -> input px
    for full, low in zip(traces["full"], traces["low_res"]):
        if full["passes"] > 2 and low["passes"] > 2:
            # the first refinement's box: same mask, read at two resolutions (within one cell and a pixel)
            np.testing.assert_allclose(low["box"][2], full["box"][2] * scale, atol=4 + 1)


def test_prompt_encoding_without_boolean_indexing_is_bitwise_sam(tiny):
    """The adapter embeds points with torch.where (no host synchronisation); SAM's prompt encoder
    uses boolean indexing. Same numbers, with and without SAM's padding token."""
    seg = SamSegmenter(_cfg(), predictor=SamPredictor(tiny))
    rng = np.random.default_rng(0)
    coords = torch.tensor(rng.uniform(0, 255, (3, 5, 2)), dtype=torch.float32)
    labels = torch.tensor([[1, 0, 1, -1, -1], [0, 0, 0, 0, 1], [1, -1, -1, -1, -1]], dtype=torch.int32)
    for pad in (True, False):
        ours = seg.adapter._embed_points(coords, labels, pad)
        official = tiny.prompt_encoder._embed_points(coords, labels, pad)
        assert torch.equal(ours, official)


def test_segment_frame_composes_at_the_input_size(tiny):
    image = _image()
    cfg = _cfg(refinement_iters=1, iou_threshold=0.0)
    tracks = {
        1: (np.array([[400.0, 150.0], [420.0, 250.0], [5.0, 5.0]]), np.array([1, 1, 0]), np.array([1.0, 0.9, 1.0])),
        2: (np.array([[100.0, 400.0], [853.0, 479.0]]), np.array([1, 1]), np.array([0.2, 1.0])),
        3: (np.array([[600.0, 300.0]]), np.array([1]), np.array([0.1])),
    }
    label, logits, iou = segment_frame(SamPredictor(tiny), image, tracks, cfg)
    assert label.shape == (H, W) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, 2, 3}
    # objects 2 and 3 have no visible point of their own (visibility 0.2 / 0.1, a point on the 1%
    # border); object 1's visible positives are their negatives, so SAM-PT still prompts them
    assert all(np.isfinite(iou[k]) for k in (1, 2, 3))
    assert (label == 1).any() or np.isneginf(logits[1]).all() or not (logits[1] > 0).any()
    tracks[1] = (tracks[1][0], tracks[1][1], np.zeros(3))  # nothing visible anywhere: no SAM call
    label, logits, iou = segment_frame(SamPredictor(tiny), image, tracks, cfg)
    assert all(np.isneginf(iou[k]) and np.isneginf(logits[k]).all() for k in (1, 2, 3)) and not label.any()
    for oid, lg in logits.items():
        assert lg.shape == (H, W) and lg.dtype == np.float32
    with pytest.raises(ValueError, match="1..255"):
        segment_frame(SamPredictor(tiny), image, {300: tracks[1]}, cfg)


# ------------------------------------------------------------------------------------------ protocol
def test_features_reset_device_and_counters(tiny):
    seg = SamSegmenter(_cfg(), predictor=SamPredictor(tiny))
    assert seg.features() is None and seg.device == "cpu" and seg.family == "sam"
    seg.set_image(_image())
    fm = seg.features()
    assert tuple(fm.features.shape) == (32, 16, 16) and fm.image_size == (H, W)
    assert fm.valid_size == (9, 16)  # 480/854 of the 16-cell grid, rounded up
    assert isinstance(fm.features, torch.Tensor)  # stays on the device
    seg.reset()
    assert seg.features() is None
    with pytest.raises(RuntimeError):
        seg.segment([SegmentRequest(1, np.array([[1.0, 1.0]]), np.array([1]))])
    assert seg.stats()["embeddings_computed"] == 1


def test_warmup_leaves_counters_and_image_alone(tiny):
    seg = SamSegmenter(_cfg(refinement_iters=1), predictor=SamPredictor(tiny))
    seconds = seg.warmup((120, 160), objects=2, frames=1)
    assert seconds > 0 and seg.stats()["embeddings_computed"] == 0 and seg.features() is None


def test_bf16_autocast_runs_on_the_cpu_and_stays_close(tiny):
    image = _image()
    reqs = _requests(n=2)
    out = {}
    for prec in ("fp32", "bf16"):
        cfg = load_config(["config/sampt.yaml", "config/paper.yaml"],
                          {"segmenter.sam.precision": prec, "segmenter.decoder.refinement_iters": 0,
                           "segmenter.decoder.iou_threshold": 0.0})
        seg = SamSegmenter(cfg, predictor=SamPredictor(tiny))
        seg.set_image(image)
        out[prec] = seg.segment(reqs)
    for a, b in zip(out["fp32"], out["bf16"]):
        assert b.logits.dtype == np.float32
        assert float(np.abs(a.logits - b.logits).max()) < 0.5


def test_precision_and_device_settings_are_checked():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        load_config(["config/sampt.yaml"], {"segmenter.sam.precision": "fp16", "segmenter.sam.device": "cpu"})
    with pytest.raises(ValueError, match="precision"):
        load_config(["config/sampt.yaml"], {"segmenter.sam.precision": "int8"})
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


# ------------------------------------------------------------------------------------------ checkpoints
def test_missing_checkpoint_names_the_setting_and_the_official_file(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_sam("vit_h", str(tmp_path / "nope.pth"), "cpu")
    msg = str(err.value)
    assert "segmenter.sam.checkpoint" in msg and "sam_vit_h_4b8939.pth" in msg and "nope.pth" in msg
    with pytest.raises(SamCheckpointError, match="allow_random_weights"):
        load_sam("vit_b", "", "cpu")
    with pytest.raises(ValueError, match="model_type"):
        load_sam("vit_x", None, "cpu", allow_random_weights=True)


def test_unreadable_and_unsafe_files_are_refused(tmp_path):
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(SamCheckpointError, match="state dict"):
        load_sam("tiny", str(listed), "cpu")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(SamCheckpointError, match="corrupt or not a torch file"):
        load_sam("tiny", str(garbage), "cpu")
    other = tmp_path / "other.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(4, 3, 3, 3)}, other)
    with pytest.raises(SamCheckpointError, match="not a SAM-family state dict"):
        load_sam("tiny", str(other), "cpu")


class _Payload:
    built = False

    def __reduce__(self):
        return (_mark_built, ())


def _mark_built():
    _Payload.built = True
    return {}


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(SamCheckpointError, match="pickled Python objects"):
        load_sam("tiny", str(path), "cpu")
    assert not _Payload.built


def test_tiny_round_trip_is_strict_and_wrong_models_are_named(tmp_path):
    sam = build_tiny_sam(seed=3)
    path = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), path)
    loaded = load_sam("tiny", str(path), "cpu")
    for key, value in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.save({"model": sam.state_dict()}, tmp_path / "wrapped.pth")
    load_sam("tiny", str(tmp_path / "wrapped.pth"), "cpu")
    partial_sd = dict(sam.state_dict())
    partial_sd.pop("mask_decoder.iou_token.weight")
    torch.save(partial_sd, tmp_path / "partial.pth")
    with pytest.raises(SamCheckpointError, match="iou_token"):
        load_sam("tiny", str(tmp_path / "partial.pth"), "cpu")
    with pytest.raises(SamCheckpointError, match="Segment Anything tiny checkpoint, not Segment Anything vit_h"):
        load_sam("vit_h", str(path), "cpu")


def test_detect_model_type_from_shapes():
    def fake(width, depth, hq=False):
        sd = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 16, 16)}
        sd.update({f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1) for i in range(depth)})
        if hq:
            sd["mask_decoder.hf_token.weight"] = torch.empty(1, 256)
        return sd

    assert detect_model_type(fake(1280, 32)) == "vit_h"
    assert detect_model_type(fake(1024, 24)) == "vit_l"
    assert detect_model_type(fake(768, 12)) == "vit_b"
    assert detect_model_type(build_tiny_sam().state_dict()) == "tiny"
    with pytest.raises(SamCheckpointError, match="HQ-SAM vit_h"):
        detect_model_type(fake(1280, 32, hq=True))
    with pytest.raises(SamCheckpointError, match="MobileSAM"):
        detect_model_type({"image_encoder.layers.0.blocks.0.conv1.c.weight": torch.empty(1)})


@pytest.mark.slow
def test_vit_b_random_round_trip(tmp_path):
    sam = load_sam("vit_b", None, "cpu", allow_random_weights=True)
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    probe = sam.image_encoder.blocks[11].attn.proj.weight.detach()[:4].clone()
    del sam
    with pytest.raises(SamCheckpointError, match="this is a Segment Anything vit_b checkpoint, not Segment Anything vit_h"):
        load_sam("vit_h", str(path), "cpu")
    loaded = load_sam("vit_b", str(path), "cpu")
    assert torch.equal(loaded.image_encoder.blocks[11].attn.proj.weight[:4], probe)
