"""OnlinePipsTracker: online windows, padding, chaining, buffering, validation.

The first test replays the PIPS reference vector (../shared/vectors/pips) online; the others
use small random float64 networks on 64x96 frames so they run without ../shared. Most tests here
chain windows at their last frame (``next_window_visibility: 1.0``); SAM-PT's per-point rule is
tested in test_pips_windows.py.
"""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from sampt_ros.core.backends.pips import PipsConfig
from sampt_ros.core.pips import PipsNet
from sampt_ros.core.pips_tracker import OnlinePipsTracker

TOL = 1e-4
CPU = PipsConfig(device="cpu", next_window_visibility=1.0)  # windows chained at their last frame


def _window(frames, indices):
    """HxWx3 uint8 frames -> (1, S, 3, H, W) float64 in 0..255."""
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2)[None].double()


class _EncodeCounter:
    """Wraps net.encode to count the frames it encodes."""

    def __init__(self, net):
        self.frames = 0
        self._encode = net.encode
        net.encode = self

    def __call__(self, rgbs):
        self.frames += rgbs.shape[0] * rgbs.shape[1]
        return self._encode(rgbs)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- the reference vector, online --------------------------------------------------------------


def test_online_tracker_reproduces_reference_vector():
    root = shared_path("vectors", "pips")
    torch.set_num_threads(2)
    d = dict(np.load(root / "pips_vector.npz"))
    state = torch.load(root / "pips_random_fp16.pt", weights_only=True)
    net = PipsNet(stride=4)
    net.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    net = net.double()
    frames = np.ascontiguousarray(d["frames"].transpose(0, 2, 3, 1))  # (16, H, W, 3) uint8

    # Case b of the vector is exactly the online chain: it starts on frame 7 from case a's
    # final positions there, with case a's template.
    np.testing.assert_array_equal(d["b_xy_start"], d["a_coords"][-1, 7])

    pad_points = d["xy0"][:4] + 1.5
    with torch.inference_mode():  # frame 3 tracked with the window padded by repeating it
        direct, direct_vis, _ = net(_window(frames, [0, 1, 2, 3, 3, 3, 3, 3]), torch.from_numpy(pad_points)[None])

    tracker = OnlinePipsTracker(CPU, net=net)
    counter = _EncodeCounter(tracker.net)
    for t in range(15):
        assert tracker.push_frame(frames[t]) == t
        if t == 0:
            tracker.set_track("obj", d["xy0"], 0)
            res = tracker.track()["obj"]  # query frame == newest: the queries, visibility 1
            np.testing.assert_array_equal(res.points, d["xy0"])
            assert np.all(res.visibility == 1.0)
        if t == 3:
            # a second track on the (earlier, still buffered) frame 0, batched with "obj"
            tracker.set_track("pad", pad_points, 0)
            calls = tracker.stats()["network_calls"]
            res = tracker.track()
            assert tracker.stats()["network_calls"] == calls + 1  # one call for both tracks
            np.testing.assert_allclose(res["pad"].points, direct[-1, 0, 3].numpy(), rtol=0, atol=1e-8)
            np.testing.assert_allclose(res["pad"].visibility, _sigmoid(direct_vis[0, 3].numpy()), rtol=0, atol=1e-8)
            tracker.remove_track("pad")
        if t == 7:
            res = tracker.track()["obj"]
            err_a = np.abs(res.points - d["a_coords"][-1, 7]).max()
            np.testing.assert_allclose(res.visibility, _sigmoid(d["a_vis_logits"][7]), rtol=0, atol=TOL)
            assert np.all(tracker.window_starts("obj") == 7)  # chained at the window's last frame
    res = tracker.track()["obj"]
    err_b = np.abs(res.points - d["b_coords"][-1, 7]).max()
    np.testing.assert_allclose(res.visibility, _sigmoid(d["b_vis_logits"][7]), rtol=0, atol=TOL)
    print(f"\n[pips online] max |err| frame 7 (case a): {err_a:.2e} px, frame 14 (chained, case b): {err_b:.2e} px")
    assert err_a <= TOL and err_b <= TOL
    assert tracker.stats()["feature_maps_computed"] == 15 and counter.frames == 15  # once per pushed frame
    assert tracker.stats()["network_calls"] == 3  # frames 3, 7 and 14: nothing recomputed for the chain
    assert not tracker.has_frame(6) and tracker.has_frame(7) and tracker.has_frame(14)
    with pytest.raises(KeyError, match="not buffered"):
        tracker.set_track("late", d["xy0"], 6)


# -- small random networks (no ../shared needed) ------------------------------------------------


def damped_net() -> "PipsNet":
    """A seeded random float64 PipsNet whose final update layer is damped (as the reference vector
    does): undamped random updates are chaotic, amplifying summation-order differences far beyond
    what the tests compare."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = PipsNet(stride=4).double().eval()
    with torch.no_grad():
        net.delta_block.to_delta[-1].weight.mul_(0.02)
        net.delta_block.to_delta[-1].bias.mul_(0.02)
    return net


@pytest.fixture(scope="module")
def tiny_net():
    return damped_net()


@pytest.fixture(scope="module")
def frames():
    """12 smooth random 64x96 RGB frames that drift by 1 px per frame."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60, 3)).astype(np.float32)
    base = F.interpolate(torch.from_numpy(base).permute(2, 0, 1)[None], (96, 140), mode="bilinear")[0]
    base = base.permute(1, 2, 0).numpy()
    return [np.ascontiguousarray(base[t:t + 64, t:t + 96].clip(0, 255).astype(np.uint8)) for t in range(12)]


QUERIES = np.array([[10.0, 12.0], [47.5, 30.25], [80.0, 50.0]])


def test_padding_and_one_encoder_run_per_frame(tiny_net, frames):
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    counter = _EncodeCounter(tiny_net)
    try:
        for t in range(4):
            tracker.push_frame(frames[t])
            if t == 0:
                tracker.set_track(1, QUERIES, 0)
            res = tracker.track()[1]
        assert counter.frames == 4 and tracker.stats()["feature_maps_computed"] == 4
        assert tracker.stats()["network_calls"] == 3  # frame 0 needs none
        with torch.inference_mode():
            coords, vis, _ = tiny_net(_window(frames, [0, 1, 2, 3, 3, 3, 3, 3]), torch.from_numpy(QUERIES)[None])
        np.testing.assert_allclose(res.points, coords[-1, 0, 3].numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.visibility, _sigmoid(vis[0, 3].numpy()), rtol=0, atol=1e-9)
        assert res.points.shape == (3, 2) and res.visibility.shape == (3,) and res.visibility.dtype == np.float64
        assert not hasattr(res, "visible")  # the engine applies the visibility threshold
    finally:
        del tiny_net.encode  # drop the instance attribute set by the counter


def test_chaining_at_threshold_one_starts_the_next_window_at_the_last_frame(tiny_net, frames):
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    for t in range(9):
        tracker.push_frame(frames[t])
        if t == 0:
            tracker.set_track("a", QUERIES, 0)
        if t in (7, 8):
            res = tracker.track()["a"]
        if t == 7:
            at7 = res.points.copy()
    assert np.all(tracker.window_starts("a") == 7) and tracker.stats()["network_calls"] == 2
    with torch.inference_mode():
        first, _, template = tiny_net(_window(frames, range(8)), torch.from_numpy(QUERIES)[None])
        np.testing.assert_allclose(at7, first[-1, 0, 7].numpy(), rtol=0, atol=1e-9)
        second, vis, _ = tiny_net(_window(frames, [7, 8, 8, 8, 8, 8, 8, 8]), first[-1, :, 7], feat_init=template)
    np.testing.assert_allclose(res.points, second[-1, 0, 1].numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.visibility, _sigmoid(vis[0, 1].numpy()), rtol=0, atol=1e-9)


def test_chain_happens_even_without_track_calls(tiny_net, frames):
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    for t in range(10):
        tracker.push_frame(frames[t])
        if t == 0:
            tracker.set_track("a", QUERIES, 0)
    # frame 7's positions were computed by the push of frame 8 (frame 0 was about to be evicted)
    assert np.all(tracker.window_starts("a") == 7) and tracker.stats()["network_calls"] == 1
    assert np.isfinite(tracker.track()["a"].points).all() and tracker.stats()["network_calls"] == 2


def test_set_track_on_earlier_buffered_frame_batches_tracks(tiny_net, frames):
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    for t in range(6):
        tracker.push_frame(frames[t])
    other = np.array([[30.0, 20.0], [60.0, 40.0]])
    tracker.set_track("x", QUERIES, 2)
    tracker.set_track("y", other, 2)
    tracker.set_track("now", other, 5)
    res = tracker.track()
    assert tracker.stats()["network_calls"] == 1  # x and y share frame 2; "now" needs no network
    np.testing.assert_array_equal(res["now"].points, other)
    assert np.all(res["now"].visibility == 1.0)
    both = np.concatenate([QUERIES, other])
    with torch.inference_mode():
        coords, vis, _ = tiny_net(_window(frames, [2, 3, 4, 5, 5, 5, 5, 5]), torch.from_numpy(both)[None])
    np.testing.assert_allclose(np.concatenate([res["x"].points, res["y"].points]), coords[-1, 0, 3].numpy(),
                               rtol=0, atol=1e-9)
    assert tracker.track() is not None and tracker.stats()["network_calls"] == 1  # cached for the same frame
    # restarting a track (re-init) on the newest frame
    tracker.set_track("x", other, 5)
    np.testing.assert_array_equal(tracker.track()["x"].points, other)
    tracker.remove_track("x")
    tracker.remove_track("unknown")
    assert set(tracker.track()) == {"y", "now"}


def test_buffer_eviction_and_errors(tiny_net, frames):
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    assert tracker.buffer_size == 8 and tracker.newest_frame is None
    with pytest.raises(KeyError, match="no frames"):
        tracker.set_track("a", QUERIES, 0)
    for t in range(10):
        tracker.push_frame(frames[t])
    assert [tracker.has_frame(i) for i in (0, 1, 2, 9, 10)] == [False, False, True, True, False]
    with pytest.raises(KeyError, match=r"frame 1 is not buffered \(buffered: 2..9\)"):
        tracker.set_track("a", QUERIES, 1)
    with pytest.raises(KeyError):
        tracker.set_track("a", QUERIES, 10)
    for bad in (np.zeros(3), np.zeros((2, 3)), [[1.0, np.nan]], [[np.inf, 0.0]], "points"):
        with pytest.raises(ValueError):
            tracker.set_track("a", bad, 5)
    for bad_index in ("5", 5.0, True, None):
        with pytest.raises(ValueError, match="frame_index"):
            tracker.set_track("a", QUERIES, bad_index)
    assert tracker.track() == {}  # nothing was added by the failures
    for bad_image in (frames[0][..., 0], frames[0].astype(np.float32), frames[0][..., :2], [[0]]):
        with pytest.raises(ValueError):
            tracker.push_frame(bad_image)
    with pytest.raises(ValueError, match="frame size changed"):
        tracker.push_frame(frames[0][:32])
    assert tracker.newest_frame == 9  # failed pushes changed nothing
    tracker.set_track("empty", np.zeros((0, 2)), 9)
    tracker.push_frame(frames[10])
    res = tracker.track()["empty"]
    assert res.points.shape == (0, 2) and res.visibility.shape == (0,) and tracker.stats()["network_calls"] == 0
    tracker.reset()
    assert tracker.newest_frame is None and tracker.track() == {} and not tracker.has_frame(9)
    assert tracker.push_frame(frames[0][:32]) == 0  # a new size is fine after reset()


def test_odd_image_size_is_padded_without_moving_points(tiny_net, frames):
    small = [np.ascontiguousarray(f[:50, :70]) for f in frames[:3]]
    tracker = OnlinePipsTracker(CPU, net=tiny_net)
    for f in small:
        tracker.push_frame(f)
    tracker.set_track("a", QUERIES[:2], 0)
    res = tracker.track()["a"]
    # the network saw the frames edge-padded to 64x72 (multiples of 8, at least 64)
    padded = [np.pad(f, ((0, 14), (0, 2), (0, 0)), mode="edge") for f in small]
    with torch.inference_mode():
        coords, _, _ = tiny_net(_window(padded, [0, 1, 2, 2, 2, 2, 2, 2]), torch.from_numpy(QUERIES[:2])[None])
    np.testing.assert_allclose(res.points, coords[-1, 0, 2].numpy(), rtol=0, atol=1e-9)


def test_max_side_resizes_and_maps_points_back(tiny_net, frames):
    big = [np.ascontiguousarray(np.repeat(np.repeat(f, 2, 0), 2, 1)) for f in frames[:2]]  # 128x192
    tracker = OnlinePipsTracker(CPU, net=tiny_net, max_side=96)
    for f in big:
        tracker.push_frame(f)
    queries = QUERIES * 2 + 0.5  # pixel centres of the 2x image: x_small = (x + 0.5) / 2 - 0.5
    tracker.set_track("a", queries, 0)
    res = tracker.track()["a"]
    small = torch.from_numpy(np.stack(big)).permute(0, 3, 1, 2).double()
    small = F.interpolate(small, (64, 96), mode="bilinear", align_corners=False, antialias=True)[None]
    small = small[:, [0, 1, 1, 1, 1, 1, 1, 1]]
    with torch.inference_mode():
        coords, _, _ = tiny_net(small, torch.from_numpy((queries + 0.5) / 2 - 0.5)[None])
    np.testing.assert_allclose(res.points, (coords[-1, 0, 1].numpy() + 0.5) * 2 - 0.5, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="max_side"):
        OnlinePipsTracker(CPU, net=tiny_net, max_side=10)


def test_construction_checks(tiny_net, tmp_path, caplog):
    with pytest.raises(ValueError, match="set tracker.pips.checkpoint"):
        OnlinePipsTracker(PipsConfig(device="cpu"))
    with pytest.raises(FileNotFoundError, match="aharley/pips"):
        OnlinePipsTracker(PipsConfig(device="cpu", checkpoint=str(tmp_path / "missing.pth")))
    with pytest.raises(ValueError, match="window"):
        OnlinePipsTracker(CPU, window=6, net=tiny_net)
    with pytest.raises(ValueError, match="stride"):
        OnlinePipsTracker(PipsConfig(device="cpu", stride=8), net=tiny_net)
    with pytest.raises(ValueError, match="PipsConfig"):
        OnlinePipsTracker({"device": "cpu"}, net=tiny_net)
    with caplog.at_level(logging.WARNING):
        half = OnlinePipsTracker(PipsConfig(device="cpu", half=True), net=tiny_net)
    assert not half._autocast and "needs CUDA" in caplog.text
    assert OnlinePipsTracker(PipsConfig(device="auto"), net=tiny_net).device == (
        "cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="tracker.pips.device .* no CUDA device"):
            OnlinePipsTracker(PipsConfig(device="cuda"), net=tiny_net)


def test_random_weights_only_when_allowed_and_reproducible():
    cfg = PipsConfig(device="cpu", allow_random_weights=True)
    state = torch.random.get_rng_state()
    a, b = OnlinePipsTracker(cfg), OnlinePipsTracker(cfg)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert a.net.stride == 4 and next(a.net.parameters()).dtype == torch.float32
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
