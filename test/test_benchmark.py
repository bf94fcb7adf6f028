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
