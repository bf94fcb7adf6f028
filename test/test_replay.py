"""Replay and report: numbers on constructed results, and real replays through the node over DDS."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sampt_ros.tools import bags, replay, report
from sampt_ros.tools.report import FrameRecord
from sampt_ros.tools.synthetic import SyntheticSpec, write_davis

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- pure numbers
def test_latency_fps_and_drops_from_records():
    recs = []
    for i in range(10):
        r = FrameRecord(index=i, stamp_ns=i * 100, sent_s=10.0 + i)
        if i != 4:  # frame 4: only the mask arrived -> dropped (and partial)
            r.mask_s = r.sent_s + 0.010 * (i + 1)
            r.tracked_s = r.sent_s + 0.005
        else:
            r.mask_s = r.sent_s + 0.5
        recs.append(r)
    recs.append(FrameRecord(index=10, stamp_ns=1000))  # never sent
    s = report.summarize(recs, {"J": 0.5, "F": 0.25, "JF": 0.375}, mode="lockstep")
    assert (s["frames"], s["frames_sent"], s["frames_received"], s["dropped"], s["partial"]) == (11, 10, 9, 1, 1)
    lat = np.array([10.0 * (i + 1) for i in range(10) if i != 4])  # ms: the later of the two outputs
    assert s["latency_ms"]["p50"] == pytest.approx(np.percentile(lat, 50))
    assert s["latency_ms"]["p95"] == pytest.approx(np.percentile(lat, 95))
    assert s["latency_ms"]["p99"] == pytest.approx(np.percentile(lat, 99))
    assert s["latency_ms"]["max"] == pytest.approx(100.0)
    assert s["fps"] == pytest.approx(9 / (19.1 - 10.0))  # received / (last receipt - first send)
    assert (s["J"], s["F"], s["JF"], s["mode"]) == (0.5, 0.25, 0.375, "lockstep")
    empty = report.summarize([FrameRecord(0, 0, sent_s=1.0)], None)
    assert empty["latency_ms"]["p50"] is None and empty["fps"] is None and empty["JF"] is None


def test_cdr_header_stamp_without_decoding():
    store = bags.typestore()
    for stamp in (0, 1, 1_700_000_000_033_333_333):
        raw = bytes(store.serialize_cdr(bags.image_to_msg(store, np.zeros((2, 2), np.uint8), stamp), bags.IMAGE_TYPE))
        assert replay.cdr_header_stamp_ns(raw) == stamp


def _gt_bag(tmp_path, n=6, storage="sqlite3"):
    """A bag with n frames and square GT masks; returns (path, stamps, gts)."""
    store = bags.typestore()
    stamps = bags.frame_stamps_ns(n, 30.0)
    gts = []
    with bags.BagWriter(tmp_path / "in.bag", storage) as bag:
        bag.write(bags.PROMPT_TOPIC, bags.prompt_to_msg(store, 1, [[20, 20]], [1], stamps[0]), stamps[0])
        for i, s in enumerate(stamps):
            gt = np.zeros((48, 64), np.uint8)
            gt[10 + i:30 + i, 10:30] = 1
            gts.append(gt)
            bag.write(bags.IMAGE_TOPIC, bags.image_to_msg(store, np.full((48, 64, 3), 40 * i % 255, np.uint8), s), s)
            bag.write(bags.GT_TOPIC, bags.image_to_msg(store, gt, s, encoding="mono8"), s)
    return tmp_path / "in.bag", stamps, gts


def test_scores_of_known_replay_results(tmp_path):
    """Perfect masks score 1; half-size masks score J = 0.5; a dropped frame scores as an empty mask."""
    path, stamps, gts = _gt_bag(tmp_path)
    seq = bags.load_sequence(path)
    recs = [FrameRecord(i, s, sent_s=float(i)) for i, s in enumerate(stamps)]
    perfect = {s: g.copy() for s, g in zip(stamps, gts)}
    res = replay.score(recs, seq, perfect)
    assert res["J"] == pytest.approx(1.0) and res["F"] == pytest.approx(1.0) and res["JF"] == pytest.approx(1.0)
    half = {}
    for s, g in zip(stamps, gts):
        h = g.copy()
        ys, xs = np.nonzero(g)
        h[:, xs.min() + 10:] = 0  # keep the left half (10 of 20 columns)
        half[s] = h
    res = replay.score(recs, seq, half)
    assert res["J"] == pytest.approx(0.5)
    assert 0 < res["F"] < 1
    # frames 1..4 are scored (first and last excluded); drop frame 2 -> J = 3/4
    dropped = dict(perfect)
    del dropped[stamps[2]]
    res = replay.score(recs, seq, dropped)
    assert res["J"] == pytest.approx(0.75)
    no_gt = bags.BagSequence(images=seq.images, prompts=seq.prompts, gt={})
    assert replay.score(recs, no_gt, perfect) is None


def _outputs_bag(path, stamps, masks, store, drop=()):
    pt = store.types["geometry_msgs/msg/Point"]
    with bags.BagWriter(path) as bag:
        for i, (s, m) in enumerate(zip(stamps, masks)):
            if i in drop:
                continue
            bag.write(report.MASK_TOPIC, bags.image_to_msg(store, m, s, encoding="mono8"), s + 1000)
            ys, xs = np.nonzero(m)
            obj = store.types["sampt_ros/msg/TrackedObject"](
                object_id=1, state=0, score=0.9, points=[pt(x=float(xs.mean()), y=float(ys.mean()), z=0.0)],
                labels=np.array([1], np.int8), visible=np.array([True]), visibility=np.array([1.0], np.float32),
                centroid=pt(x=float(xs.mean()), y=float(ys.mean()), z=0.0), has_3d=False, points_3d=[],
                centroid_3d=pt(x=0.0, y=0.0, z=0.0))
            msg = store.types[bags.TRACKED_TYPE](header=bags._header(store, s, "camera"), frame_index=i, objects=[obj])
            bag.write(report.TRACKED_TOPIC, msg, s + 2000)


def test_report_files_and_overlay_video(tmp_path):
    store = bags.typestore()
    path, stamps, gts = _gt_bag(tmp_path)
    _outputs_bag(tmp_path / "out.bag", stamps, gts, store, drop={3})
    frames = list(report.overlay_frames_from_bags(path, tmp_path / "out.bag"))
    assert len(frames) == 6 and frames[3][1] is None
    res0 = frames[0][1]
    assert list(res0.objects) == [1]
    np.testing.assert_array_equal(res0.objects[1].mask, gts[0].astype(bool))
    assert res0.objects[1].state == 0 and res0.objects[1].points.shape == (1, 2)
    n = report.write_overlay_video(tmp_path / "v.mp4", frames, fps=10)
    assert n == 6
    import imageio.v2 as imageio

    video = [f for f in imageio.get_reader(str(tmp_path / "v.mp4"))]
    assert len(video) == 6 and video[0].shape == (48, 64, 3)
    # the overlay tints the mask: the frame differs from the plain input inside the GT
    plain = frames[0][0]
    inside = gts[0].astype(bool)
    assert np.abs(video[0][inside].astype(int) - plain[inside]).mean() > 10
    recs = [FrameRecord(i, s, sent_s=float(i), mask_s=i + 0.02, tracked_s=i + 0.03, J=1.0, F=1.0)
            for i, s in enumerate(stamps)]
    summary = report.summarize(recs, {"J": 1.0, "F": 1.0, "JF": 1.0}, name="t", config={"a": 1})
    paths = report.write_report(tmp_path / "rep", summary, recs)
    data = json.loads(Path(paths["json"]).read_text())
    assert data["JF"] == 1.0 and data["latency_ms"]["p50"] == pytest.approx(30.0)
    assert len(data["per_frame"]) == 6 and data["per_frame"][0]["latency_ms"] == pytest.approx(30.0)
    md = Path(paths["markdown"]).read_text()
    assert "| J&F | 100.0 % |" in md and "| latency p50 | 30.0 ms |" in md
    for key in ("latency_plot", "score_plot"):
        assert Path(paths[key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.main(["video", str(path), str(tmp_path / "out.bag"), str(tmp_path / "v2.mp4")]) == 0


def test_per_object_reacquisition_in_the_report(tmp_path, capsys):
    """States from tracked_objects + masks from the mask topic -> per-object timeline, returns,
    re-acquisition, in summary, report.json, report.md and the printed summary."""
    store = bags.typestore()
    n, shape = 8, (48, 64)
    stamps = bags.frame_stamps_ns(n, 30.0)
    gts = []
    with bags.BagWriter(tmp_path / "in.bag") as bag:
        for i, s in enumerate(stamps):
            gt = np.zeros(shape, np.uint8)
            if i not in (3, 4):  # object 1 is gone in frames 3-4
                gt[5:20, 5 + i:20 + i] = 1
            gt[30:45, 40:60] = 2
            gts.append(gt)
            if i == 0:
                for oid in (1, 2):
                    bag.write(bags.PROMPT_TOPIC, bags.prompt_to_msg(store, oid, None, None, s, mask=gt == oid), s)
            bag.write(bags.IMAGE_TOPIC, bags.image_to_msg(store, np.zeros(shape + (3,), np.uint8), s), s)
            bag.write(bags.GT_TOPIC, bags.image_to_msg(store, gt, s, encoding="mono8"), s)
    seq = bags.load_sequence(tmp_path / "in.bag")
    states1 = [0, 0, 0, 1, 2, 2, 0]  # TRACKING, OCCLUDED, LOST; frame 7 gets no output at all
    outputs = {"mask": [], "tracked_objects": []}
    for i, s in enumerate(stamps[:7]):
        pred = gts[i].copy()
        if i == 5:
            pred[pred == 1] = 0  # back in the ground truth, not yet in the prediction
        outputs["mask"].append((0, bytes(store.serialize_cdr(bags.image_to_msg(store, pred, s, encoding="mono8"),
                                                             bags.IMAGE_TYPE))))
        objs = [SimpleNamespace(object_id=1, state=states1[i]), SimpleNamespace(object_id=2, state=0)]
        outputs["tracked_objects"].append((0, _tracked_cdr(store, s, i, objs)))
    masks, tracked = replay.decode_outputs(outputs, store)
    recs = [FrameRecord(i, s, sent_s=float(i), mask_s=i + 0.01, tracked_s=i + 0.01) for i, s in enumerate(stamps)]
    recs[7].mask_s = recs[7].tracked_s = None
    scores = replay.score(recs, seq, masks, store, tracked=tracked)
    o1, o2 = scores["objects"][1], scores["objects"][2]
    assert o1["timeline"] == [("TRACKING", 0, 2), ("OCCLUDED", 3, 3), ("LOST", 4, 5), ("TRACKING", 6, 6),
                              ("NONE", 7, 7)]
    (e,) = o1["events"]
    assert (e["disappeared"], e["reappeared"], e["reacquired_frame"], e["frames_to_reacquire"]) == (3, 5, 6, 1)
    assert e["J_after_return"] == pytest.approx(1 / 3)  # frames 5, 6, 7: 0, 1, 0 (7 dropped)
    assert o1["final_state"] == "NONE" and o1["prompted_at"] == 0 and o2["prompted_at"] == 0
    assert o2["timeline"] == [("TRACKING", 0, 6), ("NONE", 7, 7)] and o2["events"] == []
    assert o1["J"] == pytest.approx(5 / 6)  # frames 1..6 (DAVIS): 1, 1, 1 (both empty), 1, 0, 1
    assert scores["reacquisition"]["events"] == 1 and scores["reacquisition"]["reacquired"] == 1
    assert scores["J"] == pytest.approx((5 / 6 + 1.0) / 2)
    # no states (no tracked outputs): J and F per object only
    bare = replay.score(recs, seq, masks, store)
    assert bare["reacquisition"] is None and "timeline" not in bare["objects"][1]
    assert bare["J"] == scores["J"]

    summary = report.summarize(recs, scores, name="objs", mode="lockstep")
    assert summary["objects"] is scores["objects"] and summary["reacquisition"]["events"] == 1
    paths = report.write_report(tmp_path / "rep", summary, recs, plots=False)
    data = json.loads(Path(paths["json"]).read_text())
    assert data["objects"]["1"]["events"][0]["reacquired_frame"] == 6
    assert data["objects"]["2"]["timeline"] == [["TRACKING", 0, 6], ["NONE", 7, 7]]
    md = Path(paths["markdown"]).read_text()
    line = ("object 1: TRACKING 0-2 | OCCLUDED 3-3 | LOST 4-5 | TRACKING 6-6 | NONE 7-7 "
            "(came back at 5, re-acquired after 1 frames, J after return 0.33)")
    assert "## Objects" in md and f"- {line}" in md
    assert "| 1 | 83.3 % |" in md
    capsys.readouterr()
    replay.print_summary(summary, paths)
    text = capsys.readouterr().out
    assert line in text and "re-acquisition: 1/1 returns re-acquired (after 1.0 frames on average)" in text


def _tracked_cdr(store, stamp, index, objects):
    """A TrackedObjects message with the given (object_id, state) objects, as CDR bytes."""
    pt = store.types["geometry_msgs/msg/Point"]
    cls = store.types["sampt_ros/msg/TrackedObject"]
    defaults = {"score": 0.9, "points": [], "labels": np.zeros(0, np.int8), "visible": np.zeros(0, bool),
                "visibility": np.zeros(0, np.float32), "centroid": pt(x=0.0, y=0.0, z=0.0), "has_3d": False,
                "points_3d": [], "centroid_3d": pt(x=0.0, y=0.0, z=0.0)}
    fields = [f for f in cls.__dataclass_fields__ if f not in ("object_id", "state")]
    objs = [cls(object_id=o.object_id, state=o.state, **{f: defaults[f] for f in fields if f in defaults})
            for o in objects]
    msg = store.types[bags.TRACKED_TYPE](header=bags._header(store, stamp, "camera"), frame_index=index, objects=objs)
    return bytes(store.serialize_cdr(msg, bags.TRACKED_TYPE))


def test_params_file_round_trips_the_config(tmp_path):
    import yaml

    from sampt_ros.core.config import config_from_dict

    config, files = replay.resolved_config(["cpu"], ["engine.reinit_horizon=4"])
    assert files[0].endswith("sampt.yaml") and files[1].endswith("cpu.yaml")
    path = replay.write_params_file(config, tmp_path / "p.yaml", {"node.mode": "lockstep"})
    tree = yaml.safe_load(path.read_text())
    flat = tree["/**"]["ros__parameters"]
    assert flat["node.mode"] == "lockstep" and flat["engine.reinit_horizon"] == 4
    again = config_from_dict(tree)
    assert again.to_dict()["engine"] == config.to_dict()["engine"]
    assert again.tracker == config.tracker and again.segmenter == config.segmenter


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert replay.main([str(tmp_path / "nope"), "--lockstep", "--no-video", "--out", str(tmp_path / "o")]) == 2
    assert "not a rosbag2 folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        replay.main([str(tmp_path), "--config", "cpu"])  # --config needs --launch-node
    with pytest.raises(SystemExit):
        replay.main([str(tmp_path), "--rate", "0"])


# ---------------------------------------------------------------------------- through the node (DDS)
def _need_ros():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Jazzy wheels) not installed")
    try:
        import sampt_ros.msg  # noqa: F401
    except ImportError:
        pytest.skip("generated sampt_ros messages not installed (run scripts/build_msgs.sh .venv)")
    try:
        import sampt_ros.ros.node  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the node does not import: {exc}")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    write_davis(root, SyntheticSpec(width=320, height=240, n_frames=40, seed=0, name="syn"))
    return root


@pytest.mark.ros
@pytest.mark.slow
def test_lockstep_replay_equals_eval_and_loses_nothing(tmp_path, synthetic_root):
    """The acceptance check on the synthetic sequence: replay J&F == sampt-eval J&F, all frames answered."""
    _need_ros()
    import io

    buf = io.StringIO()
    result = replay.compare_davis(synthetic_root, tmp_path, sequences=["syn"], config_files=["cpu"],
                                  progress=False, stream=buf)
    (row,) = result["rows"]
    assert row["sent"] == row["received"] == row["frames"] == 40, buf.getvalue()
    assert row["diff"] <= 0.005, buf.getvalue()
    assert row["replay_JF"] > 0.3  # a real tracking result, not an empty one
    assert not row["warnings"]
    assert result["ok"]
    assert (tmp_path / "compare.md").read_text().strip().endswith("PASS")
    rep = json.loads((tmp_path / "replay" / "syn" / "report.json").read_text())
    assert rep["dropped"] == 0 and rep["latency_ms"]["p50"] > 0
    # the per-object figures come from the same code path: the replay's equal sampt-eval's
    ev = json.loads((tmp_path / "eval" / "summary.json").read_text())["sequences"]["syn"]["objects"]
    assert rep["objects"]["1"]["timeline"] == ev["1"]["timeline"]
    assert rep["objects"]["1"]["J_all_frames"] == pytest.approx(ev["1"]["J_all_frames"], abs=0.005)
    assert (tmp_path / "replay" / "syn" / "outputs.bag" / "metadata.yaml").is_file()


@pytest.mark.ros
@pytest.mark.slow
def test_lockstep_replay_one_davis_sequence(tmp_path, davis_root):
    """One real DAVIS sequence: the bag replayed through the node scores like sampt-eval."""
    _need_ros()
    import io

    buf = io.StringIO()
    result = replay.compare_davis(davis_root, tmp_path, sequences=["car-shadow"], config_files=["cpu"],
                                  progress=False, stream=buf)
    (row,) = result["rows"]
    assert row["sent"] == row["received"] == row["frames"] == 40, buf.getvalue()
    assert row["diff"] <= 0.005, buf.getvalue()


@pytest.mark.ros
@pytest.mark.slow
def test_real_time_replay_reports_drops_and_latency(tmp_path, synthetic_root):
    """A 30 Hz bag at 1x into a live node: every frame is accounted for (answered or dropped)."""
    _need_ros()
    bag = tmp_path / "rt.bag"
    bags.davis_to_bag(synthetic_root, "syn", bag, rate=30.0, config_files=["cpu"])
    res = replay.run_replay(bag, tmp_path / "rt", lockstep=False, rate=1.0, launch_node=True, config_files=["cpu"],
                            video=False)
    s = res.summary
    assert s["mode"] == "real-time" and s["frames_sent"] == 40
    assert s["frames_received"] + s["dropped"] == 40 and s["frames_received"] > 0
    lat = s["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert s["wall_s"] >= 39 / 30.0 * 0.95  # it really paced itself at the bag's rate
    sent = [r.sent_s for r in res.records]
    gaps = np.diff(sent)
    assert np.median(gaps) == pytest.approx(1 / 30.0, abs=0.01)


@pytest.mark.ros
@pytest.mark.slow
def test_demo_replays_the_multi_object_scenario_and_prints_each_timeline(tmp_path, capsys):
    """sampt-demo (small and short): both objects prompted, every frame answered, one timeline
    line per object with its return."""
    _need_ros()
    from sampt_ros.tools import demo

    rc = demo.main(["--out", str(tmp_path), "--size", "427x240", "--frames", "60", "--no-video", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "2 prompt(s)" in text and "frames sent 60, received 60, dropped 0" in text
    assert "object 1: " in text and "object 2: " in text and text.count("came back at") >= 2, text
    rep = json.loads((tmp_path / "replay" / "report.json").read_text())
    assert sorted(rep["objects"]) == ["1", "2"] and rep["reacquisition"]["events"] == 2
