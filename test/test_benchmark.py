"""sampt-benchmark: the generated input, the report's timings and its once-per-frame counts."""

import json

import numpy as np
import pytest

from sampt_ros.tools import benchmark as bm


def test_moving_textures_is_deterministic_and_moves():
    seq = bm.MovingTextures((200, 120), n_objects=3, seed=1)
    img0, lab0 = seq.frame(0)
    again, lab_again = bm.MovingTextures((200, 120), n_objects=3, seed=1).frame(0)
    assert img0.shape == (120, 200, 3) and img0.dtype == np.uint8
    assert lab0.shape == (120, 200) and lab0.dtype == np.uint16
    assert np.array_equal(img0, again) and np.array_equal(lab0, lab_again)
    assert set(np.unique(lab0)) <= {0, 1, 2, 3} and (lab0 > 0).sum() > 100
    img9, lab9 = seq.frame(9)
    assert not np.array_equal(lab0, lab9)  # objects move
    assert img0.std() > 10  # textured, so point trackers have something to follow


def test_parse_size():
    assert bm.parse_size("854x480") == (854, 480)
    for bad in ("854", "axb", "10x10"):
        with pytest.raises(bm.EvalError):
            bm.parse_size(bad)


def test_counters_finds_work_counters():
    class Seg:
        embeddings_computed = 4
        decoder_calls = 12
        segmentations = 3
        flag_calls = True  # bools are not counts
        name = "x"

    assert bm.counters(Seg()) == {"decoder_calls": 12, "embeddings_computed": 4, "segmentations": 3}


def test_benchmark_prints_stages_fps_memory_and_once_per_frame_counts(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bm.main(["--profile", "cpu", "--size", "320x240", "--frames", "6", "--warmup", "2", "--objects", "2",
                  "--json", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    for needle in ("tracker (push_frame + track)", "image embedding", "decoder passes", "query sampling",
                   "engine step total", "draw_overlay", "FPS", "peak RSS", "segmenter.embeddings_computed",
                   "once per frame"):
        assert needle in text, needle
    report = json.loads(out.read_text())
    assert report["frames"] == 6 and report["warmup"] == 2
    assert report["input"] == {"kind": "generated", "objects": 2, "seed": 0, "width": 320, "height": 240}
    # exactly one image embedding and one tracker frame preparation per measured frame
    assert report["counts"]["segmenter.embeddings_computed"]["measured"] == 6
    assert report["counts"]["segmenter.embeddings_computed"]["total"] == 8
    assert report["counts"]["tracker.frames_prepared"]["measured"] == 6
    assert all(v.startswith("OK") for v in report["checks"].values()), report["checks"]
    # one segment() per object per frame (both objects stay in view)
    assert report["counts"]["segmenter.segmentations"]["per_frame"] == pytest.approx(2.0)
    med = report["median_ms"]
    assert med["step"] > 0 and med["embedding"] > 0 and med["tracker"] > 0
    assert med["step"] >= med["embedding"] and report["fps"] > 0
    assert report["peak_rss_mib"] > 10
    assert report["device"]["segmenter"].startswith("cpu")


@pytest.mark.shared
def test_benchmark_on_a_real_davis_sequence(davis_root, capsys):
    rc = bm.main(["--profile", "cpu", "--davis", str(davis_root), "--sequence", "blackswan", "--frames", "3",
                  "--warmup", "1", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "DAVIS blackswan, 854x480, 1 object(s)" in text
    assert "segmenter.embeddings_computed: OK (3 for 3 frames)" in text


def test_benchmark_errors_exit_2(tmp_path, capsys):
    assert bm.main(["--profile", "cpu", "--davis", str(tmp_path)]) == 2
    assert "--sequence" in capsys.readouterr().err
    assert bm.main(["--profile", "cpu", "--frames", "0"]) == 2
    assert bm.main(["--profile", "nope"]) == 2
    assert bm.main(["--profile", "cpu", "--davis", str(tmp_path), "--sequence", "x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not a DAVIS-layout folder" in err


def test_counters_prefer_the_protocols_stats():
    class Seg:
        decoder_calls = 99  # an attribute that stats() supersedes

        def stats(self):
            return {"decoder_calls": 3, "embeddings_computed": 2, "ratio": 0.5, "flag": True}

    assert bm.counters(Seg()) == {"decoder_calls": 3, "embeddings_computed": 2}


def test_json_flag_prints_one_summary_line_last(capsys):
    rc = bm.main(["--profile", "cpu", "--size", "160x120", "--frames", "2", "--warmup", "1", "--objects", "2",
                  "--json", "--no-progress"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["objects"] == 2 and summary["embeddings_per_frame"] == 1.0 and summary["frames"] == 2
    assert set(summary["ms"]) == {"embedding", "tracker", "decoder", "sampling", "total"}
    assert summary["ms"]["total"] > 0 and summary["peak_rss_mib"] > 10 and summary["timing"] == "host clock"


@pytest.mark.slow
@pytest.mark.parametrize("objects", [1, 4])
def test_random_weights_sam_decodes_every_object_of_a_pass_in_one_call(objects, capsys):
    """random_weights: batching padded, 12 refinement passes: 14 decoder calls per frame for any number
    of objects, one image embedding per frame."""
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    rc = bm.main(["--profile", "random_weights", "--size", "160x120", "--frames", "2", "--warmup", "1",
                  "--objects", str(objects), "--json", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["objects"] == objects
    assert summary["decoder_calls_per_frame"] == 14.0 and summary["embeddings_per_frame"] == 1.0


def test_parse_objects():
    assert bm.parse_objects("8", 32) == [8]
    assert bm.parse_objects("1,2,4,8", 32) == [1, 2, 4, 8]
    for bad in ("", "a", "1,,2", "0", "33", "1,1", "-1"):
        with pytest.raises(bm.EvalError):
            bm.parse_objects(bad, 32)


def test_several_object_counts_in_one_process_with_interleaved_decoder_replay(tmp_path, capsys):
    """--objects 1,3: one report and one summary line per count (the engine built once), then the
    decoder alone on each count's recorded inputs, the counts interleaved, as the last line."""
    out = tmp_path / "bench.json"
    rc = bm.main(["--profile", "cpu", "--size", "160x120", "--frames", "3", "--warmup", "1", "--objects", "1,3",
                  "--decoder-rounds", "3", "--json", str(out), "--no-progress"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    first, second, last = (json.loads(line) for line in lines[-3:])
    assert (first["objects"], second["objects"]) == (1, 3)
    assert first["embeddings_per_frame"] == second["embeddings_per_frame"] == 1.0
    scaling = last["decoder_scaling"]
    assert scaling["objects"] == [1, 3] and scaling["rounds"] == 3 and scaling["frames"] == {"1": 3, "3": 3}
    assert all(ms > 0 for ms in scaling["ms"]) and scaling["ratio"][0] == 1.0
    assert scaling["ratio"][1] == pytest.approx(scaling["ms"][1] / scaling["ms"][0], rel=1e-2)
    assert "decoder alone, recorded frames replayed 3 rounds" in "\n".join(lines)
    whole = json.loads(out.read_text())
    assert [r["input"]["objects"] for r in whole["runs"]] == [1, 3] and whole["decoder_scaling"] == scaling


def test_recorder_keeps_measured_frames_and_unwraps(tmp_path):
    """The recorder sees the measured frames only (one set_image and its segment calls each) and
    leaves the segmenter as it found it; the replay calls set_image before each frame's requests."""
    from sampt_ros.tools.eval import resolve_config

    config, _ = resolve_config(["cpu"], [])
    engine = bm._build("engine", config)
    seg = engine.segmenter
    rec = bm.DecoderRecorder()
    bm.run_benchmark(config, frames=2, warmup=2, size=(160, 120), objects=2, engine=engine, progress=False,
                     recorder=rec)
    assert "set_image" not in vars(seg) and "segment" not in vars(seg)  # no wrapper left on the instance
    assert len(rec.frames) == 2
    for image, calls in rec.frames:
        assert image.shape == (120, 160, 3) and len(calls) >= 1
        assert sorted(r.object_id for r in calls[0]) == [1, 2]

    seen = []

    class Probe:
        def set_image(self, image):
            seen.append(("image", image.shape))

        def segment(self, requests):
            seen.append(("segment", len(requests)))
            return []

    s = bm.decoder_scaling({2: rec.frames, 1: rec.frames[:1]}, Probe(), rounds=2)
    assert s["objects"] == [1, 2] and s["frames"] == {"1": 1, "2": 2}
    assert seen[0] == ("image", (120, 160, 3)) and seen[1][0] == "segment"
    assert sum(1 for kind, _ in seen if kind == "image") == 2 * (1 + 2)
    with pytest.raises(bm.EvalError):
        bm.decoder_scaling({1: rec.frames}, Probe(), rounds=1)


def test_benchmark_object_list_errors_exit_2(tmp_path, capsys):
    assert bm.main(["--profile", "cpu", "--objects", "1,x"]) == 2
    assert bm.main(["--profile", "cpu", "--objects", "1", "--decoder-rounds", "2"]) == 2
    assert bm.main(["--profile", "cpu", "--objects", "1,2", "--decoder-rounds", "-1"]) == 2
    assert bm.main(["--profile", "cpu", "--davis", str(tmp_path), "--sequence", "x", "--objects", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "two or more object counts" in err and "with --davis" in err


def test_wrap_methods_restores_class_methods_and_instance_attributes():
    class Comp:
        def step(self):
            return "class"

    comp = Comp()
    comp.hook = lambda: "instance"
    calls = []

    def make(fn):
        def wrapped():
            calls.append(fn.__name__ if hasattr(fn, "__name__") else "?")
            return fn()
        return wrapped

    restore = bm._wrap_methods({(comp, "step"): make, (comp, "hook"): make, (comp, "missing"): make,
                                (None, "step"): make})
    assert comp.step() == "class" and comp.hook() == "instance" and len(calls) == 2
    inner = bm._wrap_methods({(comp, "step"): make})  # nested wrapping, undone innermost first
    inner()
    restore()
    assert "step" not in vars(comp) and comp.step() == "class"
    assert comp.hook() == "instance" and len(calls) == 2


@pytest.mark.parametrize("profile,tracker,segmenter", [("jetson", "pips", "sam_hq"), ("paper", "pips", "sam"),
                                                       ("cpu", None, None)])
def test_random_weights_overrides_free_the_profiles_models_and_keep_their_work(profile, tracker, segmenter):
    """--random-weights: the profile's own models without checkpoints, every point visible and no mask
    emptied (random scores would skip the decoder's work); the user's --set still wins."""
    from sampt_ros.tools.eval import resolve_config

    config, _ = resolve_config([profile], [])
    extra = bm.random_weight_overrides(config)
    timed, _ = resolve_config([profile], extra + ["segmenter.decoder.refinement_iters=2"])
    d = timed.to_dict()
    for family, kind in (("tracker", tracker), ("segmenter", segmenter)):
        if kind is not None:
            assert d[family]["kind"] == kind
            assert d[family][kind]["checkpoint"] == "" and d[family][kind]["allow_random_weights"] is True
    assert timed.prompting.visibility_threshold == 0.0 and timed.prompting.border_margin == 0.0
    assert timed.segmenter.decoder.iou_threshold == 0.0 and timed.segmenter.decoder.refinement_iters == 2
    assert bm._random_weights(d) is (tracker is not None)
    assert bm._random_weights(config.to_dict()) is False


def test_random_weights_flag_runs_a_model_profile_without_checkpoints(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    rc = bm.main(["--profile", "paper", "--random-weights", "--set", "segmenter.sam.model_type=tiny",
                  "engine.processing_long_side=0", "segmenter.decoder.refinement_iters=1", "--size", "96x64",
                  "--frames", "1", "--warmup", "1", "--json", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["profile"] == "paper" and summary["random_weights"] is True and summary["gpu"] is None
    assert summary["embeddings_per_frame"] == 1.0 and summary["decoder_calls_per_frame"] == 3.0


def test_gpu_table_script_runs_each_profile_and_survives_a_failing_one(tmp_path):
    """scripts/gpu_table.sh (the prepared device check), here with the weight-free profile and a
    profile that does not exist: the good one's lines come out, the bad one is named, exit 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHON=sys.executable, FRAMES="1", PROFILES="nope cpu")
    run = subprocess.run(["bash", str(root / "scripts" / "gpu_table.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    assert "gpu_table: nope failed" in run.stderr and "config file not found: nope" in run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [d.get("objects") for d in lines[:4]] == [1, 2, 4, 8]
    assert all(d["profile"] == "cpu" and d["random_weights"] is False for d in lines[:4])
    assert lines[4]["decoder_scaling"]["objects"] == [1, 2, 4, 8]
    assert json.loads((tmp_path / "cpu.json").read_text())["decoder_scaling"]["rounds"] == 3
