"""Composited re-acquisition sequences (real objects pasted over real footage): deterministic, exact
label maps, and the events each scenario promises (hidden behind the wall, out of the view and
back, covered by a crossing object, gone for good).

The DAVIS-based tests use four short train sequences of ../shared at 214x120, 40 frames, and skip
with the reason when ../shared is absent."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from sampt_ros.tools.composite import (
    KINDS,
    CompositeScene,
    SpriteBank,
    _fit,
    _line,
    _pingpong,
    analyse_root,
    choose_sources,
    main,
    manifest_entry,
    plan_scenario,
)
from sampt_ros.tools.eval import read_label_map

SEQS = ["rollerblade", "soccerball", "surf", "mallard-fly"]
SIZE = (214, 120)
N = 40
FLAT = {1: (255, 0, 0), 2: (0, 0, 255)}


def test_pingpong_plays_forward_and_back():
    assert _pingpong(4, 9, 0) == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert _pingpong(4, 3, 5) == [1, 0, 1]
    assert _pingpong(1, 3, 2) == [0, 0, 0]


def test_line_holds_at_bounds():
    pts = _line(50.0, 10.0, 5.0, 0.0, 100.0, 31)
    xs = dict(pts)
    assert xs[0.0] == 0.0 and xs[10.0] == 50.0 and xs[20.0] == 100.0 and xs[30.0] == 100.0
    assert all(0.0 <= x <= 100.0 for _, x in pts)


def test_fit_crops_to_aspect():
    img = np.zeros((480, 854, 3), np.uint8)
    img[:, :107] = 255  # a band on the left, cut off when cropping to 4:3
    out = _fit(img, 320, 240)
    assert out.shape == (240, 320, 3) and out.max() == 0


@pytest.fixture(scope="module")
def root():
    return shared_path("data", "davis2016-train")


@pytest.fixture(scope="module")
def scenes(root):
    return {k: plan_scenario(k, root, size=SIZE, n_frames=N, seed=0, sequences=SEQS) for k in KINDS}


def _phases(scene, oid):
    return [s.phase for s in scene.object_stats()[oid]]


def test_sources_are_distinct_and_cut_from_other_sequences(root, scenes):
    infos = analyse_root(root, SEQS)
    assert all(info.objects for info in infos.values())
    for kind, scene in scenes.items():
        sc = scene.scenario
        objs = [o.sequence for o in sc.objects]
        assert len(set(objs)) == len(objs)
        assert sc.background not in objs, kind
        for o in sc.objects:  # only usable source frames, every one with its mask
            usable = next(s for s in infos[o.sequence].objects if s.object_id == o.source_id).frames
            assert set(o.frames) <= set(usable)
        for wl in sc.walls:
            assert wl.sequence not in objs and wl.spec.height > 1.0
    a, b = choose_sources("wall", infos, 0, 0), choose_sources("wall", infos, 0, 1)
    assert a != b


def test_deterministic(root, scenes):
    for kind in ("wall", "cross"):
        again = plan_scenario(kind, root, size=SIZE, n_frames=N, seed=0, sequences=SEQS, bank=SpriteBank(root))
        assert again.scenario == scenes[kind].scenario
        assert json.dumps(manifest_entry(again), sort_keys=True) == json.dumps(manifest_entry(scenes[kind]),
                                                                                sort_keys=True)
        for i in (0, N // 2, N - 1):
            (ia, la), (ib, lb) = scenes[kind].frame(i), again.frame(i)
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(la, lb)
    other = plan_scenario("wall", root, size=SIZE, n_frames=N, seed=1, sequences=SEQS)
    assert other.scenario != scenes["wall"].scenario


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_exactly_the_pasted_visible_pixels(root, scenes, kind):
    scene = scenes[kind]
    flat = CompositeScene(scene.scenario, root, SIZE, bank=scene.bank, flat=FLAT)
    for i in range(N):
        image, labels, stats = scene.render(i)
        assert image.shape == (SIZE[1], SIZE[0], 3) and labels.dtype == np.uint8
        # objects painted in flat colours (background and walls black): the label map is
        # exactly where each colour ended up
        fimg, flab, _ = flat.render(i)
        np.testing.assert_array_equal(flab, labels)
        drawn = np.zeros_like(labels)
        for oid, colour in FLAT.items():
            drawn[np.all(fimg == np.array(colour, np.uint8), axis=2)] = oid
        np.testing.assert_array_equal(drawn, labels, err_msg=f"{kind} frame {i}")
        # an independent composition of the layers on a padded canvas: ids and colours
        pad = 400
        canvas = np.zeros((SIZE[1] + 2 * pad, SIZE[0] + 2 * pad), np.uint8)
        rgb = np.zeros((SIZE[1] + 2 * pad, SIZE[0] + 2 * pad, 3), np.uint8)
        for layer in scene.layers(i):
            hh, ww = layer.cover.shape
            sl = (slice(layer.y0 + pad, layer.y0 + pad + hh), slice(layer.x0 + pad, layer.x0 + pad + ww))
            canvas[sl][layer.cover] = layer.key if layer.kind == "object" else 0
            rgb[sl][layer.cover] = layer.rgb[layer.cover]
        inner = (slice(pad, pad + SIZE[1]), slice(pad, pad + SIZE[0]))
        np.testing.assert_array_equal(canvas[inner], labels)
        on = labels > 0
        np.testing.assert_array_equal(image[on], rgb[inner][on])
        counts = np.bincount(labels.ravel(), minlength=3)
        for oid, st in stats.items():
            assert st.visible == counts[oid] and st.visible <= st.in_view


def test_every_object_fully_visible_in_the_first_frame(scenes):
    for kind, scene in scenes.items():
        for oid in scene.object_ids:
            assert _phases(scene, oid)[0] == "full", kind


def test_wall_hides_the_object_completely_then_it_comes_out(scenes):
    scene = scenes["wall"]
    st = scene.object_stats()[1]
    ph = _phases(scene, 1)
    hidden = [i for i, p in enumerate(ph) if p == "hidden"]
    assert len(hidden) >= 3 and hidden == list(range(hidden[0], hidden[-1] + 1))
    assert all(st[i].visible == 0 and st[i].in_view > 0 and "wall" in st[i].covered_by for i in hidden)
    assert ph[-1] == "full" and "out" not in ph
    assert all(not scene.frame(i)[1].any() for i in hidden)


def test_exit_leaves_the_view_and_comes_back(scenes):
    scene = scenes["exit"]
    ph = _phases(scene, 1)
    out = [i for i, p in enumerate(ph) if p == "out"]
    assert len(out) >= 5 and out == list(range(out[0], out[-1] + 1))
    assert ph[-1] == "full" and "hidden" not in ph


def test_cross_covers_the_object_behind(scenes):
    scene = scenes["cross"]
    st = scene.object_stats()
    hidden = [i for i, s in enumerate(st[1]) if s.phase == "hidden"]
    assert hidden and all(2 in st[1][i].covered_by for i in hidden)
    assert all(s.phase == "full" for s in st[2])  # the one in front is never covered
    assert _phases(scene, 1)[-1] == "full"


def test_gone_never_comes_back(scenes):
    scene = scenes["gone"]
    st = scene.object_stats()
    vis = [s.visible for s in st[1]]
    first = vis.index(0)
    assert 0 < first < N - 5 and all(v == 0 and s.in_view == 0 for v, s in zip(vis[first:], st[1][first:]))
    assert all(s.phase == "full" for s in st[2])


def test_cli_writes_davis_layout_and_manifest(root, scenes, tmp_path, capsys):
    rc = main([str(root), str(tmp_path), "--scenarios", "wall,gone", "--size", "214x120", "--frames", str(N),
               "--sequences", ",".join(SEQS)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wall-0" in text and "sources: objects" in text
    manifest = json.loads((tmp_path / "composite.json").read_text())
    assert sorted(manifest) == ["gone-0", "wall-0"]
    assert manifest["wall-0"]["events"]["1"]["hidden"]
    for name in manifest:
        scene = scenes[name.split("-")[0]]
        jpgs = sorted((tmp_path / "JPEGImages" / "480p" / name).glob("*.jpg"))
        pngs = sorted((tmp_path / "Annotations" / "480p" / name).glob("*.png"))
        assert len(jpgs) == len(pngs) == N and pngs[0].name == "00000.png"
        for i in (0, N // 2, N - 1):
            with Image.open(pngs[i]) as im:
                assert im.mode == "P"
            np.testing.assert_array_equal(read_label_map(pngs[i]), scene.frame(i)[1])
