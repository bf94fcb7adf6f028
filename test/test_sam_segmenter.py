"""Tests of sampt_ros.core.sam_segmenter: SAM-PT's prompt passes, checkpoint loading, tiny SAM."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402

from sampt_ros.core.config import SamConfig  # noqa: E402
from sampt_ros.core.sam_segmenter import (  # noqa: E402
    SamCheckpointError,
    SamSegmenter,
    build_tiny_sam,
    detect_model_type,
    load_sam,
    resolve_device,
)

H, W = 40, 60


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machines are shared; one intra-op thread keeps the tiny model fast and polite.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class RecordingPredictor:
    """Stands in for SamPredictor: records every call, answers with scripted masks.

    ``masks``: a function ``call_index -> HxW bool`` (default: a fixed rectangle).
    The low-resolution logits of call ``k`` are an 8x8 array filled with ``k`` so a test can
    tell which pass's logits were fed back.
    """

    def __init__(self, masks=None, iou=0.8):
        self.images = []
        self.calls = []
        self._masks = masks or (lambda k: _rect(10, 20, 15, 35))
        self._iou = iou

    def set_image(self, image):
        self.images.append(image.copy())

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        k = len(self.calls)
        self.calls.append(
            dict(
                point_coords=None if point_coords is None else np.array(point_coords, copy=True),
                point_labels=None if point_labels is None else np.array(point_labels, copy=True),
                box=None if box is None else np.array(box, copy=True),
                mask_input=None if mask_input is None else np.array(mask_input, copy=True),
                multimask_output=multimask_output,
            )
        )
        iou = self._iou(k) if callable(self._iou) else self._iou
        return self._masks(k)[None], np.array([iou], np.float32), np.full((1, 8, 8), float(k), np.float32)


def _rect(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def _image(h=H, w=W):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _segmenter(iters=3, box=True, **fake):
    pred = RecordingPredictor(**fake)
    seg = SamSegmenter(SamConfig(refinement_iters=iters, refinement_box=box), predictor=pred)
    seg.set_image(_image())
    return seg, pred


POINTS = np.array([[20.0, 12.0], [50.0, 5.0], [30.0, 15.0], [5.0, 35.0], [25.0, 18.0]])
LABELS = np.array([1, 0, 1, 0, 1])


# ---------------------------------------------------------------------------------------------
# (a) the prompt passes
# ---------------------------------------------------------------------------------------------


def test_pass_one_positives_pass_two_all_points_with_pass_one_logits():
    seg, pred = _segmenter(iters=3)
    mask, score = seg.segment(POINTS, LABELS)
    assert len(pred.calls) == 2 + 3 and seg.decoder_calls == 5
    assert all(c["multimask_output"] is False for c in pred.calls)

    first, second = pred.calls[0], pred.calls[1]
    np.testing.assert_array_equal(first["point_coords"], POINTS[LABELS == 1])
    np.testing.assert_array_equal(first["point_labels"], [1, 1, 1])
    assert first["box"] is None and first["mask_input"] is None

    np.testing.assert_array_equal(second["point_coords"], POINTS)
    np.testing.assert_array_equal(second["point_labels"], LABELS)
    assert second["box"] is None
    assert second["mask_input"].shape == (1, 8, 8) and np.all(second["mask_input"] == 0)  # pass 1's logits

    np.testing.assert_array_equal(mask, _rect(10, 20, 15, 35))
    assert mask.dtype == bool and mask.shape == (H, W)
    assert score == pytest.approx(0.8)


def test_refinement_passes_chain_logits_and_give_the_current_masks_box():
    # Each pass returns a different rectangle, so the box of pass k+1 must be pass k's mask's box.
    rects = [(10 + k, 20 + k, 15 + 2 * k, 35 + k) for k in range(20)]
    seg, pred = _segmenter(iters=4, masks=lambda k: _rect(*rects[k]))
    mask, _ = seg.segment(POINTS, LABELS)
    assert len(pred.calls) == 6
    for k in range(2, 6):
        call = pred.calls[k]
        np.testing.assert_array_equal(call["point_coords"], POINTS)
        np.testing.assert_array_equal(call["point_labels"], LABELS)
        assert np.all(call["mask_input"] == k - 1), f"pass {k} must get pass {k - 1}'s logits"
        r0, r1, c0, c1 = rects[k - 1]
        np.testing.assert_array_equal(call["box"], [c0, r0, c1 - 1, r1 - 1])  # x0, y0, x1, y1 inclusive
    np.testing.assert_array_equal(mask, _rect(*rects[5]))  # the last pass's mask


def test_refinement_without_box():
    seg, pred = _segmenter(iters=3, box=False)
    seg.segment(POINTS, LABELS)
    assert len(pred.calls) == 5
    assert all(c["box"] is None for c in pred.calls)
    assert [float(c["mask_input"].max()) for c in pred.calls[1:]] == [0.0, 1.0, 2.0, 3.0]


def test_no_negatives_pass_two_still_uses_the_logits():
    seg, pred = _segmenter(iters=0)
    pts, lab = POINTS[LABELS == 1], np.ones(3, int)
    seg.segment(pts, lab)
    assert len(pred.calls) == 2
    assert pred.calls[0]["mask_input"] is None
    np.testing.assert_array_equal(pred.calls[1]["point_coords"], pts)
    assert pred.calls[1]["mask_input"] is not None and np.all(pred.calls[1]["mask_input"] == 0)


@pytest.mark.parametrize("box", [True, False])
def test_empty_mask_stops_refinement_and_is_returned(box):
    seg, pred = _segmenter(iters=12, box=box, masks=lambda k: _rect(10, 20, 15, 35) if k == 0 else _rect(0, 0, 0, 0))
    mask, score = seg.segment(POINTS, LABELS)
    assert len(pred.calls) == 2 and seg.decoder_calls == 2
    assert mask.shape == (H, W) and not mask.any()
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("iou,expected", [(1.3, 1.0), (-0.2, 0.0), (0.55, 0.55), (float("nan"), 0.0)])
def test_score_is_the_last_passes_iou_clipped(iou, expected):
    # Earlier passes report 0.1: only the last one may count.
    seg, pred = _segmenter(iters=2, iou=lambda k: iou if k == 3 else 0.1)
    _, score = seg.segment(POINTS, LABELS)
    assert score == pytest.approx(expected, abs=1e-6)


def test_one_embedding_per_frame_for_several_objects():
    pred = RecordingPredictor()
    seg = SamSegmenter(SamConfig(refinement_iters=2), predictor=pred)
    frames, objects = 3, 4
    for f in range(frames):
        seg.set_image(_image())
        for _ in range(objects):
            seg.segment(POINTS, LABELS)
    assert len(pred.images) == frames and seg.embeddings_computed == frames
    assert seg.decoder_calls == len(pred.calls) == frames * objects * (2 + 2)


def test_prev_mask_is_ignored():
    seg_a, pred_a = _segmenter()
    seg_b, pred_b = _segmenter()
    out_a = seg_a.segment(POINTS, LABELS)
    out_b = seg_b.segment(POINTS, LABELS, prev_mask=np.ones((H, W), bool))
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert out_a[1] == out_b[1] and len(pred_a.calls) == len(pred_b.calls)


def test_bad_input_is_rejected_with_a_clear_error():
    pred = RecordingPredictor()
    seg = SamSegmenter(SamConfig(), predictor=pred)
    with pytest.raises(RuntimeError, match="before set_image"):
        seg.segment(POINTS, LABELS)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        seg.set_image(np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        seg.set_image(np.zeros((H, W), np.uint8))
    seg.set_image(_image())
    with pytest.raises(ValueError, match="outside the 60x40 image"):
        seg.segment(np.array([[10.0, 10.0], [60.0, 10.0]]), np.array([1, 1]))
    with pytest.raises(ValueError, match="outside"):
        seg.segment(np.array([[10.0, -1.0]]), np.array([1]))
    with pytest.raises(ValueError, match="positive"):
        seg.segment(np.array([[10.0, 10.0]]), np.array([0]))
    with pytest.raises(ValueError, match="one entry per point"):
        seg.segment(POINTS, LABELS[:2])
    with pytest.raises(ValueError, match="Nx2"):
        seg.segment(np.zeros((3, 3)), np.ones(3, int))
    assert pred.calls == [] and seg.decoder_calls == 0
    # The pixel area's edges are inside (centre of the top-left pixel = (0, 0)).
    seg.segment(np.array([[-0.5, -0.5], [W - 0.5, H - 0.5]]), np.array([1, 1]))
    with pytest.raises(ValueError, match="SamConfig"):
        SamSegmenter({"model_type": "tiny"}, predictor=pred)
    with pytest.raises(ValueError, match="predict"):
        SamSegmenter(SamConfig(), predictor=object())


# ---------------------------------------------------------------------------------------------
# (b) loading checkpoints
# ---------------------------------------------------------------------------------------------


def test_missing_checkpoint_names_the_config_key_and_official_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_sam("vit_h", str(tmp_path / "nope.pth"), "cpu")
    msg = str(err.value)
    assert "segmenter.sam.checkpoint" in msg and "sam_vit_h_4b8939.pth" in msg and "nope.pth" in msg
    with pytest.raises(SamCheckpointError, match="allow_random_weights"):
        load_sam("vit_b", "", "cpu")
    with pytest.raises(SamCheckpointError, match="allow_random_weights"):
        SamSegmenter(SamConfig(model_type="tiny", device="cpu"))
    with pytest.raises(ValueError, match="model_type"):
        load_sam("vit_x", None, "cpu", allow_random_weights=True)


def test_not_a_state_dict(tmp_path):
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(SamCheckpointError, match="expected a state dict"):
        load_sam("tiny", str(listed), "cpu")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(SamCheckpointError, match="corrupt or not a torch file"):
        load_sam("tiny", str(garbage), "cpu")
    other = tmp_path / "other.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(4, 3, 3, 3)}, other)
    with pytest.raises(SamCheckpointError, match="not a Segment Anything state dict"):
        load_sam("tiny", str(other), "cpu")


class _Payload:
    """An arbitrary pickled object; weights_only loading must refuse to build it."""

    built = False

    def __reduce__(self):
        return (_mark_built, ())


def _mark_built():
    _Payload.built = True
    return {}


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(SamCheckpointError, match="pickled Python objects besides tensors"):
        load_sam("tiny", str(path), "cpu")
    assert not _Payload.built


def test_tiny_round_trip_is_strict(tmp_path):
    sam = build_tiny_sam(seed=3)
    path = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), path)
    loaded = load_sam("tiny", str(path), "cpu")
    for key, value in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training
    # Wrapped as {"model": ...} (fine-tuning scripts) is accepted too.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": sam.state_dict()}, wrapped)
    assert torch.equal(load_sam("tiny", str(wrapped), "cpu").mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    # strict: a missing key is an error naming it.
    partial_sd = dict(sam.state_dict())
    partial_sd.pop("mask_decoder.iou_token.weight")
    torch.save(partial_sd, tmp_path / "partial.pth")
    with pytest.raises(SamCheckpointError, match="iou_token"):
        load_sam("tiny", str(tmp_path / "partial.pth"), "cpu")


def test_detect_model_type_from_shapes():
    def fake(width, depth):
        sd = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 16, 16)}
        sd.update({f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1) for i in range(depth)})
        return sd

    assert detect_model_type(fake(1280, 32)) == "vit_h"
    assert detect_model_type(fake(1024, 24)) == "vit_l"
    assert detect_model_type(fake(768, 12)) == "vit_b"
    assert detect_model_type(build_tiny_sam().state_dict()) == "tiny"
    with pytest.raises(SamCheckpointError, match="unknown SAM image encoder"):
        detect_model_type(fake(768, 7))
    with pytest.raises(SamCheckpointError, match="MobileSAM"):
        detect_model_type({"image_encoder.layers.0.blocks.0.attn.qkv.weight": torch.empty(1)})


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory):
    """A random vit_b state dict (93.7M params, 375 MB) saved once for the module."""
    sam = load_sam("vit_b", None, "cpu", allow_random_weights=True)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    probe = {k: sam.state_dict()[k].clone() for k in ("image_encoder.pos_embed", "mask_decoder.iou_token.weight")}
    probe["image_encoder.blocks.11.attn.proj.weight"] = sam.image_encoder.blocks[11].attn.proj.weight.detach()[:4].clone()
    del sam
    yield path, probe
    os.remove(path)


@pytest.mark.slow
def test_vit_b_round_trip_and_wrong_model_type(vit_b_checkpoint):
    path, probe = vit_b_checkpoint
    with pytest.raises(SamCheckpointError, match="this looks like vit_b, config says vit_h"):
        load_sam("vit_h", str(path), "cpu")
    with pytest.raises(SamCheckpointError, match="this looks like vit_b, config says tiny"):
        load_sam("tiny", str(path), "cpu")
    sam = load_sam("vit_b", str(path), "auto")
    assert sam.device == resolve_device("auto")
    sd = sam.state_dict()
    assert torch.equal(sd["image_encoder.pos_embed"].cpu(), probe["image_encoder.pos_embed"])
    assert torch.equal(sd["mask_decoder.iou_token.weight"].cpu(), probe["mask_decoder.iou_token.weight"])
    assert torch.equal(sd["image_encoder.blocks.11.attn.proj.weight"][:4].cpu(), probe["image_encoder.blocks.11.attn.proj.weight"])


def test_tiny_state_dict_rejected_as_vit_h(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    with pytest.raises(SamCheckpointError, match="this looks like tiny, config says vit_h"):
        load_sam("vit_h", str(path), "cpu")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_build_tiny_sam_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = build_tiny_sam(0), build_tiny_sam(0), build_tiny_sam(1)
    assert torch.equal(torch.rand(3), expected)
    key = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    assert a.image_encoder.img_size == 256


# ---------------------------------------------------------------------------------------------
# (c) the tiny random SAM end to end on a real-size image
# ---------------------------------------------------------------------------------------------


def _real_image(h=480, w=854):
    """A natural photograph (scikit-image's bundled astronaut) resized to DAVIS' 854x480."""
    data = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    return np.ascontiguousarray(cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA))


def test_tiny_sam_end_to_end_on_a_real_size_image():
    image = _real_image()
    cfg = SamConfig(model_type="tiny", allow_random_weights=True, device="cpu", refinement_iters=12)
    seg = SamSegmenter(cfg)
    objects = {
        1: (np.array([[400.0, 150.0], [420.0, 250.0], [800.0, 40.0]]), np.array([1, 1, 0])),
        2: (np.array([[100.0, 400.0], [853.0, 479.0], [400.0, 150.0]]), np.array([1, 1, 0])),
    }
    for _ in range(2):
        seg.set_image(image)
        for points, labels in objects.values():
            mask, score = seg.segment(points, labels)
            assert mask.shape == (480, 854) and mask.dtype == bool
            assert isinstance(score, float) and 0.0 <= score <= 1.0
    assert seg.embeddings_computed == 2
    assert 2 * 2 * 2 <= seg.decoder_calls <= 2 * 2 * 14


def test_tiny_sam_matches_the_documented_predictor_calls():
    """The segmenter's result equals SAM-PT's pass sequence run by hand on a real SamPredictor."""
    image = _real_image()
    sam = build_tiny_sam(seed=0)
    seg = SamSegmenter(SamConfig(model_type="tiny", refinement_iters=3), predictor=SamPredictor(sam))
    seg.set_image(image)
    points = np.array([[400.0, 150.0], [420.0, 250.0], [800.0, 40.0], [60.0, 300.0]])
    labels = np.array([1, 1, 0, 0])
    mask, score = seg.segment(points, labels)

    ref = SamPredictor(sam)
    ref.set_image(image)
    with torch.inference_mode():
        m, iou, logits = ref.predict(points[:2], labels[:2], multimask_output=False)
        m, iou, logits = ref.predict(points, labels, mask_input=logits, multimask_output=False)
        passes = 2
        for _ in range(3):
            if m[0].sum() < 2:
                break
            ys, xs = np.nonzero(m[0])
            box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], float)
            m, iou, logits = ref.predict(points, labels, box=box, mask_input=logits, multimask_output=False)
            passes += 1
    np.testing.assert_array_equal(mask, m[0])
    assert score == pytest.approx(float(np.clip(iou[0], 0, 1)))
    assert seg.decoder_calls == passes
