"""PipsNet against the PIPS reference vector (../shared/vectors/pips), plus checkpoint loading.

The vector was computed by the official model in float64 with seeded random weights; our
network must reproduce every iteration's coordinates to 1e-4 px and the visibility logits
and template features to 1e-4. Run with ``-s`` to see the largest errors.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from sampt_ros.core.pips import PIPS_NUM_PARAMS, PipsNet, _local_correlation, load_pips_checkpoint

TOL = 1e-4


def _tiny_double_net(seed: int = 0) -> PipsNet:
    torch.manual_seed(seed)
    return PipsNet(stride=4).double().eval()


# -- the reference vector ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vector():
    root = shared_path("vectors", "pips")
    state = torch.load(root / "pips_random_fp16.pt", weights_only=True)
    data = dict(np.load(root / "pips_vector.npz"))
    return state, data


@pytest.fixture(scope="module")
def vector_run(vector):
    """Both cases of the vector through our network, float64."""
    torch.set_num_threads(2)
    state, d = vector
    net = PipsNet(stride=4)
    net.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    net = net.double().eval()
    frames = torch.from_numpy(d["frames"]).double()
    with torch.inference_mode():
        a = net(frames[None, 0:8], torch.from_numpy(d["xy0"])[None], iters=6)
        b = net(
            frames[None, 7:15], torch.from_numpy(d["b_xy_start"])[None], iters=6,
            feat_init=torch.from_numpy(d["a_feat"])[None],
        )
    return {k: [t.numpy() for t in v] for k, v in (("a", a), ("b", b))}


def _report(case, coords, ref_coords, logits, ref_logits, feat=None, ref_feat=None):
    per_iter = np.abs(coords - ref_coords).reshape(coords.shape[0], -1).max(axis=1)
    logit_err = float(np.abs(logits - ref_logits).max())
    feat_err = float(np.abs(feat - ref_feat).max()) if feat is not None else None
    print(f"\n[pips vector case {case}] max |coords err| per iteration (px): "
          + ", ".join(f"{e:.2e}" for e in per_iter)
          + f"; logits {logit_err:.2e}" + (f"; feat {feat_err:.2e}" if feat_err is not None else ""))
    return per_iter, logit_err, feat_err


def test_case_a_fresh_window(vector, vector_run):
    _, d = vector
    coords, logits, feat = vector_run["a"]
    assert coords.shape == (6, 1, 8, 16, 2) and logits.shape == (1, 8, 16) and feat.shape == (1, 16, 128)
    per_iter, logit_err, feat_err = _report(
        "a", coords[:, 0], d["a_coords"], logits[0], d["a_vis_logits"], feat[0], d["a_feat"]
    )
    assert np.all(per_iter <= TOL), per_iter
    assert logit_err <= TOL and feat_err <= TOL
    # the query frame stays at the queries
    np.testing.assert_array_equal(coords[:, 0, 0], np.broadcast_to(d["xy0"], (6, 16, 2)))


def test_case_b_chained_window(vector, vector_run):
    _, d = vector
    coords, logits, feat = vector_run["b"]
    per_iter, logit_err, _ = _report("b", coords[:, 0], d["b_coords"], logits[0], d["b_vis_logits"])
    assert np.all(per_iter <= TOL), per_iter
    assert logit_err <= TOL
    # a given template is passed through unchanged (this is what chains windows)
    np.testing.assert_array_equal(feat[0], d["a_feat"])


def test_vector_state_dict_matches_official_names_and_shapes(vector):
    state, _ = vector
    ours = PipsNet(stride=4).state_dict()
    assert list(ours) == list(state)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}
    assert sum(v.numel() for v in state.values()) == PIPS_NUM_PARAMS


def test_vector_weights_load_strictly_from_file(vector, tmp_path):
    state, _ = vector
    path = tmp_path / "model-000200000.pth"
    torch.save({"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)
    net = PipsNet.from_checkpoint(path, "cpu")
    assert not net.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k].float(), rtol=0, atol=0)


# -- without ../shared -----------------------------------------------------------------------


def test_parameter_count_and_dtype_switch():
    net = PipsNet(stride=4)
    assert sum(p.numel() for p in net.parameters()) == PIPS_NUM_PARAMS == 28_677_713
    assert len(net.state_dict()) == 200
    assert all(p.dtype == torch.float64 for p in net.double().parameters())
    with pytest.raises(ValueError, match="stride"):
        PipsNet(stride=3)


def _write_checkpoint(path, state, wrapped=True):
    obj = {"model_state_dict": state, "optimizer_state_dict": {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3)}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}],
    }} if wrapped else state
    torch.save(obj, path)


@pytest.fixture(scope="module")
def small_state():
    """A float16 copy of a random PipsNet state dict (halves the file written per test)."""
    torch.manual_seed(1)
    return {k: v.half() for k, v in PipsNet(stride=4).state_dict().items()}


def test_checkpoint_official_layout_and_bare_and_module_prefix(tmp_path, small_state):
    for name, obj, wrapped in (
        ("official.pth", small_state, True),
        ("bare.pth", small_state, False),
        ("ddp.pth", {"module." + k: v for k, v in small_state.items()}, False),
    ):
        _write_checkpoint(tmp_path / name, obj, wrapped)
        loaded = load_pips_checkpoint(tmp_path / name)
        assert list(loaded) == list(small_state)
        net = PipsNet.from_checkpoint(tmp_path / name)
        torch.testing.assert_close(net.vis_predictor[0].weight, small_state["vis_predictor.0.weight"].float())


def test_checkpoint_missing_file_says_where_to_get_it(tmp_path):
    path = tmp_path / "nowhere" / "model-000200000.pth"
    with pytest.raises(FileNotFoundError) as info:
        load_pips_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "aharley/pips" in msg and "tracker.pips.checkpoint" in msg
    with pytest.raises(FileNotFoundError, match="aharley/pips"):
        PipsNet.from_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no PIPS checkpoint"):
        load_pips_checkpoint("")


class _Payload:
    """Pickling this would run project code on load; weights_only must refuse it."""


def test_checkpoint_not_pips(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="not a PIPS checkpoint"):
        load_pips_checkpoint(junk)
    code = tmp_path / "code.pth"
    torch.save({"model_state_dict": _Payload()}, code)
    with pytest.raises(ValueError, match="cannot be read as a PIPS checkpoint.*pickled") as info:
        load_pips_checkpoint(code)
    assert "weights_only=False" not in str(info.value)  # no advice to load it unsafely
    other = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="not a PIPS checkpoint.*encoder.weight"):
        load_pips_checkpoint(other)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match="PIPS state dict.*got list"):
        load_pips_checkpoint(listing)


def test_checkpoint_key_and_shape_mismatch_names_keys(tmp_path, small_state):
    broken = dict(small_state)
    del broken["norm.weight"]
    broken["vis_predictor.0.weight"] = torch.zeros(2, 128)
    broken["extra.bias"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    _write_checkpoint(path, broken)
    with pytest.raises(ValueError) as info:
        load_pips_checkpoint(path)
    msg = str(info.value)
    assert "norm.weight" in msg and "extra.bias" in msg and "vis_predictor.0.weight" in msg


def _dense_correlation(pyramid, feats, coords, radius=3):
    """The published form: the full correlation volume, then a bilinear 7x7 sample of it (x-major)."""
    b, s, n, c = feats.shape
    out = []
    d = torch.arange(-radius, radius + 1, dtype=coords.dtype)
    for level, fmaps in enumerate(pyramid):
        h, w = fmaps.shape[-2:]
        corr = torch.matmul(feats, fmaps.reshape(b, s, c, h * w)) / math.sqrt(c)  # (B, S, N, HW)
        corr = corr.reshape(b * s * n, 1, h, w)
        centre = coords.reshape(b * s * n, 1, 1, 2) / 2**level
        ox, oy = torch.meshgrid(d, d, indexing="ij")
        xy = centre + torch.stack([ox, oy], -1)
        grid = torch.stack([2 * xy[..., 0] / (w - 1) - 1, 2 * xy[..., 1] / (h - 1) - 1], -1)
        out.append(F.grid_sample(corr, grid, align_corners=True).reshape(b, s, n, -1))
    return torch.cat(out, -1)


def test_local_correlation_equals_dense_volume_sampling():
    g = torch.Generator().manual_seed(0)
    fmaps = torch.randn(1, 8, 16, 16, 24, generator=g, dtype=torch.float64)
    pyramid = PipsNet.feature_pyramid(fmaps)
    feats = torch.randn(1, 8, 5, 16, generator=g, dtype=torch.float64)
    # inside, on the border and outside the map
    coords = torch.rand(1, 8, 5, 2, generator=g, dtype=torch.float64) * torch.tensor([30.0, 22.0]) - 3.0
    torch.testing.assert_close(_local_correlation(pyramid, feats, coords),
                               _dense_correlation(pyramid, feats, coords), rtol=0, atol=1e-12)


def test_split_forward_equals_forward_and_points_are_independent():
    torch.set_num_threads(2)
    net = _tiny_double_net()
    g = torch.Generator().manual_seed(3)
    rgbs = torch.rand(1, 8, 3, 64, 96, generator=g, dtype=torch.float64) * 255
    queries = torch.rand(1, 4, 2, generator=g, dtype=torch.float64) * torch.tensor([95.0, 63.0])
    with torch.inference_mode():
        coords, vis, feat = net(rgbs, queries, iters=3)
        assert coords.shape == (3, 1, 8, 4, 2) and vis.shape == (1, 8, 4) and feat.shape == (1, 4, 128)
        fmaps = net.encode(rgbs)
        assert fmaps.shape == (1, 8, 128, 16, 24)
        c2, v2, f2 = net.forward_features(fmaps, queries, iters=3, pyramid=net.feature_pyramid(fmaps))
        torch.testing.assert_close(c2, coords, rtol=0, atol=1e-12)
        torch.testing.assert_close(v2, vis, rtol=0, atol=1e-12)
        # the template sampled internally is what sample_template gives, and feeding it back is a no-op
        torch.testing.assert_close(f2, net.sample_template(fmaps[:, 0], queries), rtol=0, atol=0)
        c3, v3, _ = net.forward_features(fmaps, queries, iters=3, feat_init=f2)
        torch.testing.assert_close(c3, coords, rtol=0, atol=1e-12)
        # points do not interact: a subset gives the same tracks
        c4, v4, _ = net.forward_features(fmaps, queries[:, 1:3], iters=3)
        torch.testing.assert_close(c4, coords[:, :, :, 1:3], rtol=0, atol=1e-9)
        torch.testing.assert_close(v4, vis[:, :, 1:3], rtol=0, atol=1e-9)
        assert torch.equal(coords[:, 0, 0], queries[0].expand(3, 4, 2))
        with pytest.raises(ValueError, match="B, 8"):
            net(rgbs[:, :7], queries)
        with pytest.raises(ValueError, match="feat_init"):
            net.forward_features(fmaps, queries, feat_init=f2[:, :2])
