"""The SAM-family backends (segment_anything, segment_anything_hq incl. Light HQ-SAM, sam2): registered,
imported only when chosen, loading official-layout checkpoints strictly and safely with errors that
name the model a wrong file belongs to, batched like SAM, and end to end through sampt-eval with tiny
random configurations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sampt_ros.core import registry
from sampt_ros.core.config import load_config

torch = pytest.importorskip("torch")

#: (segmenter.kind, tiny model type, package)
TINY = [("sam", "tiny", "segment_anything"), ("sam_hq", "tiny", "segment_anything_hq"),
        ("sam_hq", "tiny_light", "segment_anything_hq"), ("sam2", "tiny", "sam2")]

from conftest import torch_threads  # noqa: E402


@pytest.fixture(autouse=True)
def _two_threads():
    yield from torch_threads(2)


def _cfg(kind, model_type, **extra):
    over = {"segmenter.kind": kind, f"segmenter.{kind}.model_type": model_type,
            f"segmenter.{kind}.allow_random_weights": True, f"segmenter.{kind}.checkpoint": "",
            f"segmenter.{kind}.device": "cpu", "segmenter.decoder.iou_threshold": 0.0,
            "segmenter.decoder.refinement_iters": 2}
    over.update(extra)
    return load_config(["config/sampt.yaml", "config/paper.yaml"], over)


def _image(h=120, w=200):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], -1) + rng.integers(0, 20, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_registered_with_their_sections_and_packages():
    seg = registry.backends("segmenter")
    assert {"sam", "sam_hq", "sam2"} <= set(seg)
    assert seg["sam_hq"].requires == ("torch", "segment_anything_hq", "timm")
    assert seg["sam2"].requires == ("torch", "sam2")
    cfg = load_config(["config/sampt.yaml"])
    for kind in ("sam", "sam_hq", "sam2"):
        section = getattr(cfg.segmenter, kind)
        assert section.path == f"segmenter.{kind}" and section.precision == "fp32"


def test_the_cpu_profile_never_imports_torch_or_a_sam_package():
    code = ("import sys; from sampt_ros.core.config import load_config; from sampt_ros.core import factory;"
            "e = factory.build_engine(load_config(['config/sampt.yaml', 'config/cpu.yaml']));"
            "print([m for m in ('torch', 'segment_anything', 'segment_anything_hq', 'sam2', 'timm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("kind,model_type,package", TINY)
def test_tiny_backend_batched_equals_one_object_at_a_time(kind, model_type, package):
    pytest.importorskip(package)
    from sampt_ros.core import factory
    from sampt_ros.core.types import SegmentRequest

    seg = factory.build_segmenter(_cfg(kind, model_type))
    assert seg.family == kind and seg.device == "cpu"
    image = _image()
    seg.set_image(image)
    reqs = [SegmentRequest(1, np.array([[50.0, 40.0], [60.0, 60.0], [150.0, 100.0]]), np.array([1, 1, 0])),
            SegmentRequest(2, np.array([[150.0, 30.0], [20.0, 100.0], [50.0, 40.0]]), np.array([1, 0, 0])),
            SegmentRequest(3, np.array([[100.0, 60.0]]), np.array([0]))]
    together = seg.segment(reqs)
    alone = [seg.segment([r])[0] for r in reqs]
    for a, b in zip(together, alone):
        assert a.logits.shape == image.shape[:2] and a.logits.dtype == np.float32
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=0)
        assert a.predicted_iou == pytest.approx(b.predicted_iou, abs=1e-5)
    fm = seg.features()
    assert fm is not None and fm.image_size == image.shape[:2]
    assert 1 <= fm.valid_size[0] <= fm.features.shape[-2] and 1 <= fm.valid_size[1] <= fm.features.shape[-1]


@pytest.mark.parametrize("kind,model_type,package", TINY)
def test_checkpoint_round_trip_is_strict(tmp_path, kind, model_type, package):
    pytest.importorskip(package)
    from sampt_ros.core.backends import _sam_common
    from sampt_ros.core.sam_segmenter import build_predictor

    cfg = _cfg(kind, model_type)
    model = build_predictor(cfg, kind).model
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "model.pt"
    torch.save({"model": sd} if kind == "sam2" else sd, path)  # SAM 2's files wrap the state dict
    loaded = build_predictor(_cfg(kind, model_type, **{f"segmenter.{kind}.checkpoint": str(path)}), kind).model
    for key, value in sd.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    broken = dict(sd)
    key = sorted(k for k in broken if "mask_decoder" in k)[0]
    broken.pop(key)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(_sam_common.SamCheckpointError, match="missing"):
        build_predictor(_cfg(kind, model_type, **{f"segmenter.{kind}.checkpoint": str(tmp_path / "broken.pt")}), kind)


def test_light_hq_sam_may_lack_only_the_unused_classifier_head(tmp_path):
    pytest.importorskip("segment_anything_hq")
    from sampt_ros.core.sam_segmenter import build_predictor

    cfg = _cfg("sam_hq", "tiny_light")
    sd = build_predictor(cfg, "sam_hq").model.state_dict()
    headless = {k: v for k, v in sd.items() if not k.startswith(("image_encoder.head.", "image_encoder.norm_head."))}
    assert len(headless) < len(sd)
    torch.save(headless, tmp_path / "light.pt")
    build_predictor(_cfg("sam_hq", "tiny_light", **{"segmenter.sam_hq.checkpoint": str(tmp_path / "light.pt")}),
                    "sam_hq")


def test_a_wrong_file_names_the_model_it_belongs_to(tmp_path):
    pytest.importorskip("segment_anything_hq")
    pytest.importorskip("sam2")
    from sampt_ros.core.backends._sam_common import SamCheckpointError
    from sampt_ros.core.sam_segmenter import build_predictor

    files = {}
    for kind, model_type, _ in TINY:
        sd = build_predictor(_cfg(kind, model_type), kind).model.state_dict()
        files[(kind, model_type)] = tmp_path / f"{kind}_{model_type}.pt"
        torch.save(sd, files[(kind, model_type)])

    def load(kind, model_type, path):
        build_predictor(_cfg(kind, model_type, **{f"segmenter.{kind}.checkpoint": str(path)}), kind)

    with pytest.raises(SamCheckpointError, match=r"HQ-SAM tiny checkpoint, not Segment Anything tiny .*segmenter.kind: sam_hq"):
        load("sam", "tiny", files[("sam_hq", "tiny")])
    with pytest.raises(SamCheckpointError, match=r"Segment Anything tiny checkpoint, not HQ-SAM tiny .*segmenter.kind: sam\b"):
        load("sam_hq", "tiny", files[("sam", "tiny")])
    with pytest.raises(SamCheckpointError, match=r"SAM 2.1 tiny checkpoint, not HQ-SAM tiny_light .*segmenter.kind: sam2"):
        load("sam_hq", "tiny_light", files[("sam2", "tiny")])
    with pytest.raises(SamCheckpointError, match=r"HQ-SAM tiny_light checkpoint, not SAM 2.1 tiny"):
        load("sam2", "tiny", files[("sam_hq", "tiny_light")])
    with pytest.raises(SamCheckpointError, match=r"set segmenter.sam_hq.model_type: tiny_light"):
        load("sam_hq", "tiny", files[("sam_hq", "tiny_light")])
    # SAM 2 (2.0) files lack 2.1's parameters
    sd = torch.load(files[("sam2", "tiny")], weights_only=True)
    old = {k: v for k, v in sd.items() if k not in ("no_obj_embed_spatial",) and not k.startswith("obj_ptr_tpos_proj")}
    torch.save(old, tmp_path / "sam2_0.pt")
    with pytest.raises(SamCheckpointError, match=r"SAM 2 \(2.0\) tiny checkpoint, not SAM 2.1 tiny"):
        load("sam2", "tiny", tmp_path / "sam2_0.pt")


def test_official_shapes_are_identified():
    from sampt_ros.core.backends._sam_common import identify

    def vit(width, depth, hq):
        sd = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 16, 16)}
        sd.update({f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1) for i in range(depth)})
        if hq:
            sd["mask_decoder.hf_token.weight"] = torch.empty(1, 256)
        return sd

    def hiera(width, depth, v21=True):
        sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.empty(width, 3, 7, 7)}
        sd.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.empty(1) for i in range(depth)})
        if v21:
            sd["no_obj_embed_spatial"] = torch.empty(1, 64)
        return sd

    tinyvit = {"image_encoder.patch_embed.seq.0.c.weight": torch.empty(32, 3, 3, 3),
               "image_encoder.layers.0.blocks.0.conv1.c.weight": torch.empty(1)}
    assert identify(vit(1280, 32, True)) == ("sam_hq", "vit_h")
    assert identify(vit(1024, 24, True)) == ("sam_hq", "vit_l")
    assert identify(vit(768, 12, False)) == ("sam", "vit_b")
    assert identify(dict(tinyvit, **{"mask_decoder.hf_token.weight": torch.empty(1)})) == ("sam_hq", "vit_tiny")
    assert identify(tinyvit) == ("mobile_sam", "vit_t")
    assert identify(hiera(96, 12)) == ("sam2", "hiera_t")
    assert identify(hiera(96, 16)) == ("sam2", "hiera_s")
    assert identify(hiera(112, 24)) == ("sam2", "hiera_b+")
    assert identify(hiera(144, 48)) == ("sam2", "hiera_l")
    assert identify(hiera(144, 48, v21=False)) == ("sam2.0", "hiera_l")


def test_gpu_execution_settings_apply_to_the_encoder():
    pytest.importorskip("segment_anything")
    from sampt_ros.core.backends.sam import SamConfig, load_model

    model = load_model(SamConfig(model_type="tiny", allow_random_weights=True, device="cpu", channels_last=True,
                                 compile_encoder=True))
    assert type(model.image_encoder).__name__ == "OptimizedModule"  # compiled lazily at the first frame
    w = model.image_encoder._orig_mod.patch_embed.proj.weight
    assert w.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("kind,model_type,package", TINY)
def test_sampt_eval_davis_end_to_end(davis_root, tmp_path, kind, model_type, package):
    """``sampt-eval davis ... --config random_weights`` with each backend's tiny random model (3 frames
    here; the issue's 10-frame run is in docs/sam_family.md)."""
    pytest.importorskip(package)
    from sampt_ros.tools import eval as sampt_eval

    out = tmp_path / "out"
    rc = sampt_eval.main(["davis", str(davis_root), "--sequences", "blackswan", "--max-frames", "3",
                          "--config", "random_weights", "--out", str(out), "--no-progress", "--set",
                          f"segmenter.kind={kind}", f"segmenter.{kind}.model_type={model_type}",
                          f"segmenter.{kind}.allow_random_weights=true", f"segmenter.{kind}.checkpoint="])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"]["blackswan"]["frames"] == 3
    assert summary["config"]["segmenter"]["kind"] == kind
