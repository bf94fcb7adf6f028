"""The synthetic demo sequence: deterministic, moving/turning/occluded, with exact masks."""

import cv2
import numpy as np
import pytest
from PIL import Image

from sampt_ros.tools.synthetic import SyntheticScene, SyntheticSpec, main, write_davis

MAGENTA = np.array([255, 0, 255], np.uint8)


def test_same_seed_same_pixels_other_seed_differs():
    a = SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=10, seed=3))
    b = SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=10, seed=3))
    c = SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=10, seed=4))
    for i in (0, 5, 9):
        (ia, ma), (ib, mb), (ic, _) = a.frame(i), b.frame(i), c.frame(i)
        assert ia.shape == (240, 320, 3) and ia.dtype == np.uint8
        assert ma.shape == (240, 320) and ma.dtype == bool
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)
        assert np.mean(ia != ic) > 0.5


@pytest.mark.parametrize("size", [(854, 480), (640, 480)])
def test_masks_are_exactly_the_visible_object_pixels(size):
    """Paint the object flat magenta (a colour nothing else has): the mask must be exactly those pixels."""
    scene = SyntheticScene(SyntheticSpec(width=size[0], height=size[1], n_frames=120, seed=0))
    scene.object_texture[:] = MAGENTA
    for i in range(0, 120, 7):
        image, mask = scene.frame(i)
        drawn = np.all(image == MAGENTA, axis=2)
        assert mask.any(), f"frame {i}: object not visible"
        np.testing.assert_array_equal(mask, drawn, err_msg=f"frame {i}")


def test_object_moves_turns_scales_and_is_partly_occluded():
    scene = SyntheticScene(SyntheticSpec(n_frames=120, seed=0))
    poses = [scene.object_pose(i) for i in range(120)]
    xs = [p[0] for p in poses]
    angles = [p[2] for p in poses]
    scales = [p[3] for p in poses]
    assert max(xs) - min(xs) > 0.3 * 854
    assert max(angles) - min(angles) > 90
    assert max(scales) / min(scales) > 1.3
    occluded = []
    for i in range(120):
        _, _, cover, _, occ = scene.layers(i)
        visible = cover & ~occ
        assert visible.any(), f"frame {i}: object fully hidden"
        assert not cover[0].any() and not cover[-1].any(), "object leaves the frame"
        frac = 1 - visible.sum() / cover.sum()
        occluded.append(frac)
    occluded = np.array(occluded)
    assert (occluded > 0.05).sum() >= 10  # a real occlusion phase
    assert occluded.max() < 0.9  # partial, never complete
    assert occluded[:20].max() == 0 and occluded[-20:].max() == 0


def test_no_occlusion_option():
    scene = SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=30, occlusion=False))
    assert all(scene.occluder_pose(i) is None for i in range(30))


def test_write_davis_layout_and_exact_png(tmp_path):
    spec = SyntheticSpec(width=320, height=240, n_frames=12, seed=1, name="syn")
    img_dir = write_davis(tmp_path, spec)
    frames = sorted(img_dir.glob("*.jpg"))
    anns = sorted((tmp_path / "Annotations" / "480p" / "syn").glob("*.png"))
    assert [f.name for f in frames] == [f"{i:05d}.jpg" for i in range(12)]
    assert [a.stem for a in anns] == [f.stem for f in frames]
    scene = SyntheticScene(spec)
    for i in (0, 6, 11):
        image, mask = scene.frame(i)
        png = np.array(Image.open(anns[i]))
        assert set(np.unique(png).tolist()) <= {0, 255}
        np.testing.assert_array_equal(png == 255, mask)
        jpg = cv2.cvtColor(cv2.imread(str(frames[i])), cv2.COLOR_BGR2RGB)
        assert jpg.shape == image.shape
        assert np.abs(jpg.astype(int) - image).mean() < 6  # JPEG q95
    # a shorter re-render removes the stale frames
    write_davis(tmp_path, SyntheticSpec(width=320, height=240, n_frames=5, seed=1, name="syn"))
    assert len(list(img_dir.glob("*.jpg"))) == 5 and len(list(anns[0].parent.glob("*.png"))) == 5


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="n_frames"):
        SyntheticSpec(n_frames=1)
    with pytest.raises(ValueError, match="frame size"):
        SyntheticSpec(width=10)
    with pytest.raises(ValueError, match="name"):
        SyntheticSpec(name="a/b")
    with pytest.raises(IndexError):
        SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=5)).frame(5)


def test_cli(tmp_path, capsys):
    assert main([str(tmp_path), "--frames", "4", "--size", "320x240", "--seed", "2"]) == 0
    assert len(list((tmp_path / "JPEGImages" / "480p" / "synthetic").glob("*.jpg"))) == 4
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "big"])
