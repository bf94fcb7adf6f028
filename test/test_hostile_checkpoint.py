"""Item 8: a checkpoint that is not one gets a plain message: what is wrong with the file, no torch
advice to load it with ``weights_only=False``, no terminal escape codes."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from sampt_ros.core.pips import load_pips_checkpoint  # noqa: E402


def _clean(text: str) -> None:
    assert "\x1b" not in text, repr(text)
    assert "weights_only" not in text.replace("weights-only", ""), text
    assert "\n" not in text and len(text) < 500, text


def test_random_bytes_pips_checkpoint_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "model-000200000.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError) as info:
        load_pips_checkpoint(path)
    text = str(info.value)
    print(text)
    _clean(text)
    assert "corrupt or not a torch file" in text and "PIPS" in text
    assert "pickled" not in text


class _NotATensor:  # a pickled object that weights_only loading refuses
    pass


def test_pickled_objects_pips_checkpoint_is_refused_without_torch_advice(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(2)}, "extra": _NotATensor()}, path)
    with pytest.raises(ValueError) as info:
        load_pips_checkpoint(path)
    text = str(info.value)
    print(text)
    _clean(text)
    assert "pickled Python objects besides tensors" in text and "could run code" in text


def test_truncated_torch_file_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError) as info:
        load_pips_checkpoint(path)
    text = str(info.value)
    print(text)
    _clean(text)
    assert "corrupt" in text
