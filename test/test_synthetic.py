"""The synthetic sequences: deterministic, exact ground truth; the original partly occluded
sequence and the re-acquisition scenarios (full occlusion, leaving the view, crossing)."""

import cv2
import numpy as np
import pytest
from PIL import Image

from sampt_ros.core.metrics import score_reacquisition
from sampt_ros.tools.eval import read_label_map
from sampt_ros.tools.synthetic import (
    EXTENDED_SET,
    SCENARIOS,
    MultiObjectScene,
    ObjectSpec,
    Scenario,
    SyntheticScene,
    SyntheticSpec,
    WallSpec,
    main,
    make_scene,
    render_scenario,
    write_davis,
    write_scenarios,
)

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
        with Image.open(anns[i]) as im:
            assert im.mode == "P"  # DAVIS 2017 layout: pixel value = object id
            png = np.array(im)
        assert set(np.unique(png).tolist()) <= {0, 1}
        np.testing.assert_array_equal(png == 1, mask)
        np.testing.assert_array_equal(read_label_map(anns[i]), mask.astype(np.uint16))
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
    assert main([str(tmp_path), "--frames", "4", "--size", "320x240", "--seed", "2"]) == 0  # the demo scenario
    assert len(list((tmp_path / "JPEGImages" / "480p" / "demo").glob("*.jpg"))) == 4
    assert main([str(tmp_path), "--scenario", "crossing", "--frames", "5", "--size", "320x180", "--name", "x"]) == 0
    labels = read_label_map(tmp_path / "Annotations" / "480p" / "x" / "00000.png")
    assert labels.shape == (180, 320) and set(np.unique(labels).tolist()) == {0, 1, 2}
    assert "object 2:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "big"])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--scenario", "nope"])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--scenario", "all", "--name", "x"])


# ---------------------------------------------------------------------------- scenarios
SMALL = (427, 240)
FLAT = {1: (255, 0, 255), 2: (0, 255, 255), 3: (255, 255, 0)}  # colours no other layer has (no 255 channel)


def _run(runs, phase):
    """The (first, last) of the only run of ``phase``."""
    found = [(a, b) for p, a, b in runs if p == phase]
    assert len(found) == 1, runs
    return found[0]


def test_registry():
    assert set(SCENARIOS) == {"demo", "partial", "occluded", "exit_return", "crossing", "never_returns"}
    assert set(EXTENDED_SET) == set(SCENARIOS) - {"partial"}
    for name, sc in SCENARIOS.items():
        assert sc.name == name and sc.description
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scene("nope")
    with pytest.raises(ValueError, match="repeat"):
        Scenario("x", "", 10, objects=(ObjectSpec(1, ((0, 0.5, 0.5),)), ObjectSpec(1, ((0, 0.5, 0.5),))))
    with pytest.raises(ValueError, match="increase"):
        ObjectSpec(1, ((0.5, 0.5, 0.5), (0.2, 0.1, 0.1)))
    with pytest.raises(ValueError, match="palette"):
        ObjectSpec(1, ((0, 0.5, 0.5),), palette="grey")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_render_deterministically(name):
    a, b = make_scene(name, SMALL), make_scene(name, SMALL)
    other = make_scene(name, SMALL, seed=1)
    assert a.object_ids == SCENARIOS[name].object_ids and len(a) == SCENARIOS[name].n_frames
    for i in (0, len(a) // 2, len(a) - 1):
        (ia, la), (ib, lb) = a.frame(i), b.frame(i)
        assert ia.shape == (240, 427, 3) and ia.dtype == np.uint8 and la.shape == (240, 427) and la.dtype == np.uint8
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
        assert np.mean(ia != other.frame(i)[0]) > 0.5
    assert set(np.unique(a.frame(0)[1]).tolist()) == {0, *a.object_ids}  # every object visible at the start


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"partial"}))
@pytest.mark.parametrize("size", [SMALL, (854, 480)])
def test_labels_are_exactly_the_visible_object_pixels(name, size):
    """Paint each object a flat colour nothing else has: label k must be exactly those pixels."""
    scene = make_scene(name, size)
    for oid, (texture, _shape) in scene.sprites.items():
        texture[:] = FLAT[oid]
    step = 3 if size == SMALL else 11
    for i in range(0, len(scene), step):
        image, labels = scene.frame(i)
        for oid in scene.object_ids:
            drawn = np.all(image == np.array(FLAT[oid], np.uint8), axis=2)
            np.testing.assert_array_equal(labels == oid, drawn, err_msg=f"{name} frame {i} object {oid}")


def test_walls_are_opaque_and_drawn_in_front():
    scene = make_scene("occluded", SMALL)
    scene.wall_textures[0][:] = (250, 0, 0)
    for i in range(0, len(scene), 5):
        image, labels = scene.frame(i)
        x0, y0, x1, y1 = scene.wall_rect(0, i)
        wall = np.zeros(labels.shape, bool)
        wall[max(y0, 0):y1, max(x0, 0):x1] = True
        np.testing.assert_array_equal(np.all(image == (250, 0, 0), axis=2), wall)
        assert not labels[wall].any()


def test_occluded_object_is_completely_hidden_for_15_to_25_frames_then_back():
    for size in (SMALL, (854, 480)):
        scene = make_scene("occluded", size)
        phases = scene.phases()[1]
        a, b = _run(phases, "hidden")
        assert 15 <= b - a + 1 <= 25
        assert not any(p == "out" for p, _, _ in phases)
        assert phases[-1][0] == "full" and phases[-1][2] - phases[-1][1] >= 20  # well visible after
        for i in range(a, b + 1):
            assert not (scene.frame(i)[1] == 1).any()
        assert all("wall" in s.covered_by for s in scene.object_stats()[1][a:b + 1])
    # the same events at both sizes
    assert _run(make_scene("occluded", SMALL).phases()[1], "hidden") == (a, b)


def test_exit_return_object_leaves_the_view_and_comes_back():
    scene = make_scene("exit_return", SMALL)
    phases = scene.phases()[1]
    a, b = _run(phases, "out")
    assert 20 <= b - a + 1 <= 30
    assert [p for p, _, _ in phases] == ["full", "partial", "out", "partial", "full"]
    assert phases[-1][2] - phases[-1][1] >= 30
    assert not any(s.covered_by for s in scene.object_stats()[1])  # nothing hides it: only the edge
    assert _run(make_scene("exit_return", (854, 480)).phases()[1], "out") == (a, b)


def test_crossing_objects_pass_one_in_front_of_the_other():
    scene = make_scene("crossing", SMALL)
    stats = scene.object_stats()
    phases = scene.phases()
    a, b = _run(phases[1], "hidden")
    assert b - a + 1 >= 3  # the one behind is completely covered for a few frames
    assert all(s.covered_by == (2,) for s in stats[1][a:b + 1])
    assert phases[2] == [("full", 0, len(scene) - 1)]  # the one in front is never covered
    assert phases[1][0][0] == "full" and phases[1][-1][0] == "full"  # both continue
    # they really cross: object 1 starts left of object 2 and ends right of it
    x1 = [scene.object_pose(1, i)[0] for i in (0, len(scene) - 1)]
    x2 = [scene.object_pose(2, i)[0] for i in (0, len(scene) - 1)]
    assert x1[0] < x2[0] and x1[1] > x2[1]


def test_z_order_decides_who_is_in_front():
    base = SCENARIOS["crossing"]
    o1, o2 = base.objects
    swapped = Scenario("swapped", "", base.n_frames,
                       objects=(ObjectSpec(1, o1.path, o1.palette, o1.size, z=5), o2))
    scene = MultiObjectScene(swapped, SMALL)
    assert scene.phases()[1] == [("full", 0, len(scene) - 1)]
    assert any(p == "partial" for p, _, _ in scene.phases()[2])


def test_a_moving_wall_hides_a_still_object():
    sc = Scenario("mw", "", 30, objects=(ObjectSpec(1, ((0.0, 0.5, 0.5),), size=0.5, turn_deg=0, pulse=0),),
                  walls=(WallSpec(((0.0, -0.3, 0.5), (1.0, 1.3, 0.5)), 0.4, 1.2),))
    phases = MultiObjectScene(sc, SMALL).phases()[1]
    assert [p for p, _, _ in phases] == ["full", "partial", "hidden", "partial", "full"]
    assert MultiObjectScene(sc, SMALL, occlusion=False).phases()[1] == [("full", 0, 29)]


def test_never_returns_object_leaves_for_good_while_the_other_stays():
    scene = make_scene("never_returns", SMALL)
    phases = scene.phases()
    a, b = _run(phases[1], "out")
    assert b == len(scene) - 1 and b - a + 1 >= 40
    assert phases[2] == [("full", 0, len(scene) - 1)]


def test_demo_scenario():
    scene = make_scene("demo")
    assert (scene.width, scene.height, len(scene)) == (854, 480, 150) and scene.object_ids == [1, 2]
    phases = scene.phases()
    a, b = _run(phases[1], "hidden")  # object 1 behind the wall
    assert 15 <= b - a + 1 <= 25
    assert not any(p == "out" for p, _, _ in phases[1])
    c, d = _run(phases[2], "out")  # object 2 out of the view
    assert 20 <= d - c + 1 <= 32
    assert not any(p == "hidden" for p, _, _ in phases[2])
    for oid in (1, 2):
        full = sum(q - p + 1 for ph, p, q in phases[oid] if ph == "full")
        assert full >= 0.4 * len(scene), (oid, phases[oid])
        assert phases[oid][0][0] == "full" and phases[oid][-1][0] == "full"
    # the small render has the same events (+-1 frame at the edges of runs)
    small = make_scene("demo", SMALL).phases()
    for oid, phase in ((1, "hidden"), (2, "out")):
        sa, sb = _run(small[oid], phase)
        ba, bb = _run(phases[oid], phase)
        assert abs(sa - ba) <= 1 and abs(sb - bb) <= 1


def test_objects_and_background_are_clearly_distinct_colours():
    for name in ("demo", "crossing", "never_returns"):
        scene = make_scene(name, SMALL)
        image, labels = scene.frame(0)
        means = {oid: image[labels == oid].reshape(-1, 3).mean(0) for oid in scene.object_ids}
        bg = image[labels == 0].reshape(-1, 3).mean(0)
        for oid, m in means.items():
            assert np.linalg.norm(m - bg) > 80, (name, oid, m, bg)
        if len(means) == 2:
            assert np.linalg.norm(means[1] - means[2]) > 80, (name, means)


def test_ground_truth_scored_against_itself_shows_the_scenario_events():
    """The metrics see the scenarios' events: one return for an occluded object, none for one that leaves."""
    _, labels = render_scenario("occluded")
    o = score_reacquisition(labels, labels)["objects"][1]
    (e,) = o["events"]
    a, b = _run(make_scene("occluded", SMALL).phases()[1], "hidden")
    assert e["disappeared"] <= a and e["reappeared"] > b  # absent covers the hidden span (slivers too)
    assert e["frames_to_reacquire"] == 0 and e["J_after_return"] == 1.0
    _, labels = render_scenario("never_returns")
    res = score_reacquisition(labels, labels)
    assert res["objects"][1]["events"] == [] and res["objects"][1]["left_at"] is not None
    assert res["objects"][2]["gt_timeline"] == [("VISIBLE", 0, len(labels) - 1)]


def test_write_scenarios_one_davis_folder(tmp_path):
    folders = write_scenarios(tmp_path, ["crossing", "partial"], size=(320, 180), n_frames=6)
    assert sorted(folders) == ["crossing", "partial"]
    for name in folders:
        scene = make_scene(name, (320, 180), 6)
        anns = sorted((tmp_path / "Annotations" / "480p" / name).glob("*.png"))
        assert len(anns) == 6 and len(list(folders[name].glob("*.jpg"))) == 6
        for i in (0, 5):
            with Image.open(anns[i]) as im:
                assert im.mode == "P"
            np.testing.assert_array_equal(read_label_map(anns[i]), scene.frame(i)[1])
    with pytest.raises(ValueError, match="unknown scenario"):
        write_scenarios(tmp_path, ["crossing", "nope"])


def test_render_scenario_and_shorter_renders_keep_the_story():
    frames, labels = render_scenario("exit_return", n_frames=50)
    assert len(frames) == len(labels) == 50 and frames[0].shape == (240, 427, 3)
    phases = make_scene("exit_return", SMALL, 50).phases()[1]
    assert [p for p, _, _ in phases] == ["full", "partial", "out", "partial", "full"]
    # the partial scenario is the original sequence
    part = make_scene("partial", (320, 240), 10, seed=3)
    legacy = SyntheticScene(SyntheticSpec(width=320, height=240, n_frames=10, seed=3))
    image, labels = part.frame(4)
    np.testing.assert_array_equal(image, legacy.frame(4)[0])
    np.testing.assert_array_equal(labels, legacy.frame(4)[1].astype(np.uint8))
