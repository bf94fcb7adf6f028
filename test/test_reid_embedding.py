"""Re-identification on the SAM family's path: the embedding memory through the real engine.

No pretrained SAM exists on these machines, and a random SAM's masks and embeddings say
nothing about appearance, so the segmenter here is a test double of a SAM-family segmenter with
the two things re-identification uses from SAM: an image embedding that encodes appearance
(each 8x8-pixel cell's mean CIE-Lab colour, projected to 16 channels by a fixed random matrix
and a tanh, unit length: what a learned embedding does for colour, without the learning) and
masks from point prompts (the cells whose embedding is within cosine 0.9 of the positive points'
and connected to them). Everything else is real: the engine, the Lucas-Kanade tracker, the query
sampler and :class:`~sampt_ros.core.appearance.EmbeddingMemory` (``reid.kind: embedding``), which
reads the embedding through ``Segmenter.features()`` exactly as it does SAM's.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sampt_ros.core.config import load_config
from sampt_ros.core.engine import SamPtEngine
from sampt_ros.core.factory import build_memory, build_sampler, build_tracker
from sampt_ros.core.metrics import score_reacquisition
from sampt_ros.core.types import FeatureMap, ObjectState, Segmentation
from sampt_ros.tools.synthetic import make_scene

from conftest import REPO


class AppearanceEmbeddingSegmenter:
    """A SAM-family segmenter double whose image embedding encodes appearance (see the module docstring)."""

    uses_prior = False
    device = "cpu"
    cell = 8

    def __init__(self) -> None:
        self.proj = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
        self.embeddings = 0

    def set_image(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        c = self.cell
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32) / 255.0 - 0.5
        gh, gw = -(-h // c), -(-w // c)
        lab = np.pad(lab, ((0, gh * c - h), (0, gw * c - w), (0, 0)), mode="edge")
        cells = lab.reshape(gh, c, gw, c, 3).mean(axis=(1, 3))
        f = np.tanh(4.0 * np.einsum("oc,hwc->ohw", self.proj, cells))
        self.f = f / np.maximum(np.linalg.norm(f, axis=0, keepdims=True), 1e-6)
        self.size = (h, w)
        self.embeddings += 1

    def features(self) -> FeatureMap:
        return FeatureMap(self.f, self.size, self.f.shape[1:])

    def segment(self, requests):
        out = []
        h, w = self.size
        c = self.cell
        for r in requests:
            logits = np.full((h, w), -1.0, np.float32)
            pos = r.points[r.labels == 1]
            if len(pos):
                cx = np.clip((pos[:, 0] / c).astype(int), 0, self.f.shape[2] - 1)
                cy = np.clip((pos[:, 1] / c).astype(int), 0, self.f.shape[1] - 1)
                ref = self.f[:, cy, cx].mean(axis=1)
                ref /= max(float(np.linalg.norm(ref)), 1e-6)
                close = (np.einsum("c,chw->hw", ref, self.f) > 0.9).astype(np.uint8)
                _, comp = cv2.connectedComponents(close, connectivity=4)
                keep = np.isin(comp, [v for v in np.unique(comp[cy, cx]) if v > 0])
                up = np.kron(keep, np.ones((c, c), bool))[:h, :w]
                logits[up] = 1.0
            out.append(Segmentation(logits, 0.9, 0.9))
        return out

    def remove_object(self, object_id: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def stats(self):
        return {"embeddings_computed": self.embeddings}


def run(scenario: str):
    cfg = load_config([REPO / "config" / "sampt.yaml", REPO / "config" / "cpu.yaml"], {"reid.kind": "embedding"})
    segmenter = AppearanceEmbeddingSegmenter()
    engine = SamPtEngine(cfg, build_tracker(cfg), segmenter, build_sampler(cfg), build_memory(cfg))
    scene = make_scene(scenario, size=(427, 240))
    gts, preds, states = [], [], []
    for i in range(len(scene)):
        image, labels = scene.frame(i)
        if i == 0:
            for oid in scene.object_ids:
                engine.set_prompt(oid, mask=labels == oid)
        result = engine.step(image)
        gts.append(labels)
        preds.append(result.label_image(labels.shape))
        states.append({oid: obj.state for oid, obj in result.objects.items()})
    assert segmenter.embeddings == len(scene)  # re-identification added no encoder pass
    return score_reacquisition(gts, preds, states), states


@pytest.mark.parametrize("scenario", ["occluded", "crossing"])
def test_a_hidden_object_is_found_again_with_its_id(scenario):
    scores, states = run(scenario)
    hidden = scores["objects"][1]
    (event,) = hidden["events"]
    assert event["frames_to_reacquire"] is not None and event["frames_to_reacquire"] <= 10
    assert event["J_after_return"] > 0.45  # the double's masks are coarse (8 px cells)
    assert states[-1][1] == ObjectState.TRACKING
    assert all(o["id_swaps"] == 0 for o in scores["objects"].values())
    assert ObjectState.LOST in [s[1] for s in states]  # it was honestly reported lost meanwhile


def test_an_object_that_never_returns_stays_lost_and_takes_nothing():
    scores, states = run("never_returns")
    gone = scores["objects"][1]
    assert gone["final_state"] == "LOST" and gone["false_positive_frames"] == 0
    assert scores["objects"][2]["id_swaps"] == 0
    assert all(s[2] == ObjectState.TRACKING for s in states)
