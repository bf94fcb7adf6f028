"""SAM-PT's per-point next-window rule in the online PIPS tracker.

(a) the tracker's choice of each point's next window start against a plain reference of SAM-PT's
search (last frame above the threshold, the threshold lowered until one is); (b) the online
positions against a direct computation, window by window, with PipsNet; (c) a threshold of 1.0
chains every window at its last frame; (d) reset() and the work counters; plus the batched
network path (PipsNet.forward_buffer) against PipsNet.forward_features.

Random float64 networks on 64x96 frames with few points and iterations: the mixer dominates the
cost on a CPU.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from sampt_ros.core.backends.pips import PipsConfig
from sampt_ros.core.pips import PipsNet
from sampt_ros.core.pips_tracker import OnlinePipsTracker, next_window_offsets

ITERS = 2
EXACT = 1e-9  # float64 throughout: only summation order differs

from test_pips_tracker import damped_net  # noqa: E402


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- (a) the reference rule ----------------------------------------------------------------------


def reference_next_offset(vis, threshold, step):
    """SAM-PT's search for one point, written as plainly as possible.

    ``vis``: its visibilities on the frames after its window start (c+1 .. c+L). Walk from the
    window's last frame back to c+1 and take the first frame whose visibility is above the
    threshold; when the walk finds none, lower the threshold by ``step`` and walk again.
    Returns the offset from c (1..L). A threshold of 1.0 or more is this project's setting for
    "always the last frame".
    """
    length = len(vis)
    if threshold >= 1.0:
        return length
    level = threshold
    while True:
        for offset in range(length, 0, -1):
            if vis[offset - 1] > level:
                return offset
        level -= step


def _sequences(rng):
    """Visibility sequences that exercise every branch of the search."""
    seqs = [rng.uniform(0, 1, 7) for _ in range(200)]
    seqs += [rng.uniform(0.85, 0.95, 7) for _ in range(200)]  # around the first threshold
    seqs += [rng.uniform(0.0, 0.3, 7) for _ in range(100)]  # many lowering rounds
    seqs += [np.full(7, 0.5), np.zeros(7), np.ones(7), np.full(7, 0.9), np.full(7, 0.88)]
    seqs += [np.r_[np.full(6, 0.95), 0.2], np.r_[0.95, np.full(6, 0.2)], np.r_[0.2, 0.91, np.full(5, 0.3)]]
    grid = np.round(0.9 - 0.02 * np.arange(46), 10)  # visibilities on (rounded) threshold levels
    seqs += [rng.choice(grid, 7) for _ in range(100)]
    return np.stack(seqs)


@pytest.mark.parametrize("threshold,step", [(0.9, 0.02), (0.5, 0.1), (0.0, 0.02), (0.97, 0.001), (0.9, 1.0)])
def test_next_window_rule_matches_the_reference(threshold, step):
    vis = _sequences(np.random.default_rng(7))
    expected = np.array([reference_next_offset(v, threshold, step) for v in vis])
    np.testing.assert_array_equal(next_window_offsets(vis, threshold, step), expected)
    assert set(expected) - {7} or threshold == 0.0  # the cases do not all pick the last frame


def test_next_window_rule_special_values():
    vis = np.array([[0.95, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1] * 7, [np.nan] * 7, [0.5, np.nan, 0.2, 0, 0, 0, 0]])
    np.testing.assert_array_equal(next_window_offsets(vis, 1.0, 0.02), [7, 7, 7, 7])  # always the last frame
    np.testing.assert_array_equal(next_window_offsets(vis, 0.9, 0.02), [1, 7, 7, 1])  # NaNs never qualify
    assert next_window_offsets(np.zeros((0, 7)), 0.9, 0.02).shape == (0,)


# -- a network whose visibilities straddle 0.9 -------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    net = damped_net()
    with torch.no_grad():
        # visibility logits spread around logit(0.9), so that points restart on different frames
        net.vis_predictor[0].weight.mul_(VIS_SCALE)
        net.vis_predictor[0].bias.add_(VIS_SHIFT)
    return net


VIS_SCALE = 10.0
VIS_SHIFT = 3.5


@pytest.fixture(scope="module")
def frames():
    """24 smooth random 64x96 RGB frames drifting by 1 px per frame."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60, 3)).astype(np.float32)
    base = F.interpolate(torch.from_numpy(base).permute(2, 0, 1)[None], (120, 160), mode="bilinear")[0]
    base = base.permute(1, 2, 0).numpy()
    return [np.ascontiguousarray(base[t:t + 64, t:t + 96].clip(0, 255).astype(np.uint8)) for t in range(24)]


def _cfg(**kw):
    return PipsConfig(device="cpu", iters=ITERS, **kw)


def _rgbs(frames, indices):
    """HxWx3 uint8 frames -> (1, S, 3, H, W) float64 in 0..255."""
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2)[None].double()


class DirectChains:
    """Every point's online chain computed directly: PipsNet on frames[c..t] padded with frame t,
    one window (start frame) at a time, the next start chosen by :func:`reference_next_offset`.

    ``PipsNet.forward`` is ``encode`` (frame by frame) then ``forward_features``; to save time the
    frames are encoded once here and each window's feature maps stacked for ``forward_features``.
    """

    def __init__(self, net, frames, threshold, step=0.02):
        self.net, self.frames, self.threshold, self.lower_by = net, frames, threshold, step
        self.objects = {}  # id -> dict(starts, queries, template)
        self.fmaps = {}

    def fmap(self, i):
        if i not in self.fmaps:
            with torch.inference_mode():
                self.fmaps[i] = self.net.encode(_rgbs(self.frames, [i]))[0, 0]
        return self.fmaps[i]

    def set(self, oid, points, frame):
        with torch.inference_mode():
            template = self.net.sample_template(self.fmap(frame)[None], torch.from_numpy(points)[None])[0]
        self.objects[oid] = dict(starts=np.full(len(points), frame), queries=points.astype(np.float64).copy(),
                                 template=template)

    def step(self, t):
        """Positions and visibilities on frame t; chains complete windows. Returns {id: (points, vis)}."""
        out = {}
        for oid, ob in self.objects.items():
            n = len(ob["starts"])
            points, vis = ob["queries"].copy(), np.ones(n)
            new_starts, new_queries = ob["starts"].copy(), ob["queries"].copy()
            for c in np.unique(ob["starts"]):
                sel = np.flatnonzero(ob["starts"] == c)
                if c == t:
                    continue
                window = [min(c + s, t) for s in range(8)]
                fmaps = torch.stack([self.fmap(i) for i in window])[None]
                with torch.inference_mode():
                    coords, logits, _ = self.net.forward_features(
                        fmaps, torch.from_numpy(ob["queries"][sel])[None], iters=ITERS, feat_init=ob["template"][sel][None])
                coords, sig = coords[-1, 0].numpy(), _sigmoid(logits[0].numpy())  # (8, n, 2), (8, n)
                points[sel], vis[sel] = coords[t - c], sig[t - c]
                if t == c + 7:
                    for j, p in enumerate(sel):
                        off = reference_next_offset(sig[1:, j], self.threshold, self.lower_by)
                        new_starts[p], new_queries[p] = c + off, coords[off, j]
            ob["starts"], ob["queries"] = new_starts, new_queries
            out[oid] = (points, vis)
        return out


A_POINTS = np.array([[10.0, 12.0], [47.5, 30.25], [80.0, 50.0]])
B_POINTS = np.array([[30.0, 20.0], [60.5, 40.0], [20.0, 45.0]])


def _run_both(net, frames, cfg, n_frames, check_starts=True):
    """Track two objects online and directly; compare every frame. Returns the starts seen per object."""
    tracker = OnlinePipsTracker(cfg, net=net)
    direct = DirectChains(net, frames, cfg.next_window_visibility, cfg.next_window_step)
    seen = {1: set(), 2: set()}
    for t in range(n_frames):
        assert tracker.push_frame(frames[t]) == t
        if t == 0:
            tracker.set_track(1, A_POINTS, 0)
            direct.set(1, A_POINTS, 0)
        if t == 4:  # a second object, prompted on an earlier (still buffered) frame
            tracker.set_track(2, B_POINTS, 2)
            direct.set(2, B_POINTS, 2)
        calls = tracker.stats()["network_calls"]
        res = tracker.track()
        assert tracker.stats()["network_calls"] - calls <= 1  # every window of every object in one call
        ref = direct.step(t)
        for oid, (points, vis) in ref.items():
            np.testing.assert_allclose(res[oid].points, points, rtol=0, atol=EXACT, err_msg=f"frame {t} object {oid}")
            np.testing.assert_allclose(res[oid].visibility, vis, rtol=0, atol=EXACT)
            if check_starts:
                np.testing.assert_array_equal(tracker.window_starts(oid), direct.objects[oid]["starts"])
            seen[oid].update(tracker.window_starts(oid).tolist())
    assert tracker.stats()["feature_maps_computed"] == n_frames
    return tracker, seen


# -- (a) + (b) end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_online_positions_and_window_starts_equal_direct_windows(net, frames):
    tracker, seen = _run_both(net, frames, _cfg(), 17)
    print(f"\n[pips windows] starts seen: {seen}")
    # the rule did something here: points restarted on other frames than their window's last one,
    # and points of one object sat on different start frames
    assert (seen[1] - {0, 7, 14}) and (seen[2] - {2, 9, 16}), seen
    assert any(len(set(tracker.window_starts(k).tolist())) > 1 for k in (1, 2))


def test_window_starts_are_read_only_and_keyed_by_object(net, frames):
    tracker = OnlinePipsTracker(_cfg(), net=net)
    tracker.push_frame(frames[0])
    tracker.set_track(5, A_POINTS, 0)
    starts = tracker.window_starts(5)
    assert starts.tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        starts[0] = 3
    with pytest.raises(KeyError):
        tracker.window_starts(6)


# -- (c) threshold 1.0: today's chaining at the last frame ----------------------------------------


@pytest.mark.slow
def test_threshold_one_chains_every_window_at_its_last_frame(net, frames):
    tracker, seen = _run_both(net, frames, _cfg(next_window_visibility=1.0), 16)
    assert np.array_equal(tracker.window_starts(1), [14, 14, 14])  # 0 -> 7 -> 14
    assert np.array_equal(tracker.window_starts(2), [9, 9, 9])  # 2 -> 9 (16 would come at frame 16)
    assert seen == {1: {0, 7, 14}, 2: {2, 9}}


# -- the worst case: points on 7 different start frames, one network call --------------------------


@pytest.mark.slow
def test_seven_window_starts_run_in_one_network_call(net, frames):
    tracker = OnlinePipsTracker(_cfg(), net=net)
    for t in range(8):
        tracker.push_frame(frames[t])
    rng = np.random.default_rng(1)
    queries = {k: rng.uniform([5, 5], [90, 58], (1 + k % 2, 2)) for k in range(8)}
    for k in range(8):  # objects on frames 0..7 (object 7 on the newest frame needs no network)
        tracker.set_track(k, queries[k], k)
    before = tracker.stats()
    res = tracker.track()
    after = tracker.stats()
    assert after["network_calls"] - before["network_calls"] == 1
    assert after["windows_tracked"] - before["windows_tracked"] == 7
    np.testing.assert_array_equal(res[7].points, queries[7])
    np.testing.assert_array_equal(res[7].visibility, 1.0)
    for k in range(7):
        window = [min(k + s, 7) for s in range(8)]
        with torch.inference_mode():
            coords, logits, _ = net(_rgbs(frames, window), torch.from_numpy(queries[k])[None], iters=ITERS)
        np.testing.assert_allclose(res[k].points, coords[-1, 0, 7 - k].numpy(), rtol=0, atol=EXACT)
        np.testing.assert_allclose(res[k].visibility, _sigmoid(logits[0, 7 - k].numpy()), rtol=0, atol=EXACT)
    # object 0's window (frames 0..7) was complete: it chose its next start already
    assert np.all((tracker.window_starts(0) >= 1) & (tracker.window_starts(0) <= 7))
    assert all(np.all(tracker.window_starts(k) == k) for k in range(1, 8))


# -- (d) reset() and the counters -----------------------------------------------------------------


def test_reset_clears_the_stream_but_keeps_the_counters(net, frames):
    tracker = OnlinePipsTracker(_cfg(), net=net)
    assert set(tracker.stats()) == {"feature_maps_computed", "network_calls", "windows_tracked"}
    assert tracker.device == "cpu" and isinstance(tracker.device, str)
    for t in range(3):
        tracker.push_frame(frames[t])
        if t == 0:
            tracker.set_track(1, A_POINTS, 0)
        tracker.track()
    assert tracker.stats() == {"feature_maps_computed": 3, "network_calls": 2, "windows_tracked": 2}
    tracker.reset()
    assert tracker.newest_frame is None and not tracker.has_frame(0) and not tracker.has_frame(2)
    assert tracker.track() == {}
    with pytest.raises(KeyError):
        tracker.window_starts(1)
    with pytest.raises(KeyError, match="no frames"):
        tracker.set_track(1, A_POINTS, 0)
    assert tracker.stats() == {"feature_maps_computed": 3, "network_calls": 2, "windows_tracked": 2}
    # numbering restarts; a new stream tracks as if the tracker were new
    small = [np.ascontiguousarray(f[:, :72]) for f in frames[3:5]]  # another resolution is fine now
    assert tracker.push_frame(small[0]) == 0
    tracker.set_track(1, A_POINTS[:2], 0)
    assert tracker.push_frame(small[1]) == 1
    res = tracker.track()[1]
    with torch.inference_mode():
        coords, _, _ = net(_rgbs(small, [0, 1, 1, 1, 1, 1, 1, 1]), torch.from_numpy(A_POINTS[:2])[None], iters=ITERS)
    np.testing.assert_allclose(res.points, coords[-1, 0, 1].numpy(), rtol=0, atol=EXACT)
    assert tracker.stats() == {"feature_maps_computed": 5, "network_calls": 3, "windows_tracked": 3}


# -- the batched network path ------------------------------------------------------------------------


def test_forward_buffer_equals_forward_features_per_window(net, frames):
    """Points from four different windows (with padding) in one call equal each window run on its own."""
    with torch.inference_mode():
        fmaps = net.encode(_rgbs(frames, range(8)))[0]  # (8, 128, 16, 24)
        volume = [torch.cat([lvl.permute(1, 0, 2, 3), torch.zeros_like(lvl[:1]).permute(1, 0, 2, 3)], 1)[None]
                  for lvl in net.feature_pyramid(fmaps)]  # (1, 128, 9, h, w): frames 0..7 + a spare
        rng = np.random.default_rng(3)
        windows = [list(range(8)), [3, 4, 5, 6, 7, 7, 7, 7], [6, 7, 7, 7, 7, 7, 7, 7], [1, 2, 3, 4, 5, 6, 7, 7]]
        counts = [2, 1, 3, 2]
        queries = torch.from_numpy(rng.uniform([-5, -5], [100, 70], (sum(counts), 2)))  # some outside the image
        templates = torch.randn(sum(counts), 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        index = torch.tensor([w for w, n in zip(windows, counts) for _ in range(n)])
        coords, logits = net.forward_buffer(volume, index, queries, templates, iters=ITERS)
        assert coords.shape == (ITERS, 8, 8, 2) and logits.shape == (8, 8)
        first = 0
        for w, n in zip(windows, counts):
            c2, v2, _ = net.forward_features(fmaps[w][None], queries[first:first + n][None], iters=ITERS,
                                             feat_init=templates[first:first + n][None])
            torch.testing.assert_close(coords[:, first:first + n], c2[:, 0].transpose(1, 2), rtol=0, atol=EXACT)
            torch.testing.assert_close(logits[first:first + n], v2[0].T, rtol=0, atol=EXACT)
            first += n
        with pytest.raises(ValueError, match="power of two"):
            net.forward_buffer([v[:, :, :8] for v in volume], index, queries, templates)
        with pytest.raises(ValueError, match="frames"):
            net.forward_buffer(volume, index[:, :7], queries, templates)


# -- SAM-PT's rule on the reference vector's visibilities --------------------------------------------


@pytest.mark.slow
@pytest.mark.shared
def test_reference_vector_first_window_restarts_where_the_rule_says():
    root = shared_path("vectors", "pips")
    torch.set_num_threads(2)
    d = dict(np.load(root / "pips_vector.npz"))
    state = torch.load(root / "pips_random_fp16.pt", weights_only=True)
    vnet = PipsNet(stride=4)
    vnet.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    frames = np.ascontiguousarray(d["frames"].transpose(0, 2, 3, 1))
    tracker = OnlinePipsTracker(PipsConfig(device="cpu"), net=vnet.double())  # SAM-PT's 0.9 / 0.02
    for t in range(8):
        tracker.push_frame(frames[t])
    tracker.set_track("obj", d["xy0"], 0)
    res = tracker.track()["obj"]
    assert np.abs(res.points - d["a_coords"][-1, 7]).max() <= 1e-4
    vis = _sigmoid(d["a_vis_logits"][1:].T)  # (16, 7): frames 1..7
    expected = [reference_next_offset(v, 0.9, 0.02) for v in vis]
    np.testing.assert_array_equal(tracker.window_starts("obj"), expected)
    assert set(expected) != {7}  # this vector's points are never above 0.9: the threshold is lowered
