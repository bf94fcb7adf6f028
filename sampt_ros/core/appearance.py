"""Appearance memories: what each object looks like, to trust its masks and to find it again.

Two :class:`~sampt_ros.core.types.AppearanceMemory` implementations, chosen by ``reid.kind``:

* :class:`ColourMemory` (``colour``, weight-free): each entry holds the object's colour
  distribution (a quantised CIE-Lab histogram) and that of the background around it at the
  time. A mask's similarity is the share of its pixels whose colour is more likely on the
  object than around it, weighed with how much its colour histogram overlaps the
  remembered ones. Candidates for a lost object are the peaks of the per-pixel colour
  log-likelihood ratio, box-filtered at the object's remembered size (a back-projection).
* :class:`EmbeddingMemory` (``embedding``, SAM family): each entry is the mean of the frame's
  image embedding under the mask (PerSAM's target feature) and the mean outside it. A mask's
  similarity is the cosine of its mean embedding to the remembered features against that to
  the remembered background; candidates are the peaks of the cosine-similarity map over the
  embedding grid. No encoder pass is added: the segmenter computed the embedding anyway.

Both keep a bounded number of entries per object: the first (the prompt: the one view the user
vouched for) is kept for good, the others are replaced oldest first, so memory stays flat on
endless streams.

Conventions: images ``HxWx3 uint8`` RGB at the processing size; masks ``HxW bool``; points
``Nx2 float (x, y)`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Generic, List, Optional, Tuple, TypeVar

import cv2
import numpy as np

from .types import POSITIVE, Candidate, FrameContext, mask_centroid

E = TypeVar("E")

# The colour log-likelihood ratio is clipped so one rare colour cannot decide alone.
_MAX_LLR = 4.0


class EntryStore(Generic[E]):
    """Per-object entries, at most ``capacity`` each: the first is kept, the rest rotate."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._entries: Dict[int, List[E]] = {}
        self._next: Dict[int, int] = {}

    def add(self, object_id: int, entry: E) -> None:
        entries = self._entries.setdefault(object_id, [])
        if len(entries) < self.capacity:
            entries.append(entry)
            return
        if self.capacity == 1:
            return  # the anchor stays
        # rotate over slots 1..capacity-1, oldest first
        slot = 1 + self._next.get(object_id, 0) % (self.capacity - 1)
        entries[slot] = entry
        self._next[object_id] = self._next.get(object_id, 0) + 1

    def get(self, object_id: int) -> List[E]:
        return self._entries.get(object_id, [])

    def remove(self, object_id: int) -> None:
        self._entries.pop(object_id, None)
        self._next.pop(object_id, None)

    def clear(self) -> None:
        self._entries.clear()
        self._next.clear()

    def count(self) -> int:
        return sum(len(v) for v in self._entries.values())


def _peaks(score: np.ndarray, n: int, radius: int, floor: float) -> List[Tuple[int, int, float]]:
    """Up to ``n`` local maxima ``(x, y, value)`` of ``score`` above ``floor``, at least ``radius`` apart."""
    work = score.copy()
    h, w = work.shape
    out = []
    for _ in range(n):
        _, value, _, (x, y) = cv2.minMaxLoc(work)
        if not np.isfinite(value) or value <= floor:
            break
        out.append((int(x), int(y), float(value)))
        cv2.circle(work, (int(x), int(y)), max(int(radius), 1), float(floor) - 1.0, thickness=-1)
    return out


# ------------------------------------------------------------------------------------------ colour
@dataclass
class _ColourEntry:
    fg: np.ndarray  # bins^3 float32, sums to 1: the object's colours
    bg: np.ndarray  # bins^3 float32, sums to 1: the colours around it
    area: float  # pixels at the processing size


class ColourMemory:
    """Weight-free appearance memory on colour (implements ``AppearanceMemory``).

    Args:
        cfg: the ``reid.colour`` section (histogram bins, working size, ring width, weights).
        entries: entries kept per object (``reid.entries``).
    """

    def __init__(self, cfg, entries: int = 8) -> None:
        self.cfg = cfg
        self._store: EntryStore[_ColourEntry] = EntryStore(entries)
        self._counts = {"observed": 0, "searches": 0, "candidates": 0}

    # -------------------------------------------------------------- per-frame preparation
    def _prepared(self, ctx: FrameContext) -> Tuple[np.ndarray, float]:
        """``(hxw int32 colour bin per pixel at the working size, working px per image px)``, once per frame."""
        key = "colour_memory"
        if key not in ctx.cache:
            image = ctx.image
            h, w = image.shape[:2]
            scale = min(1.0, self.cfg.work_size / float(max(h, w)))
            if scale < 1.0:
                image = cv2.resize(image, (max(8, int(round(w * scale))), max(8, int(round(h * scale)))),
                                   interpolation=cv2.INTER_AREA)
                scale = image.shape[1] / float(w)
            bins = self.cfg.bins
            q = (cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.int32) * bins) >> 8
            ctx.cache[key] = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2], scale)
        return ctx.cache[key]

    def _work_mask(self, mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
        if mask.shape == shape:
            return mask
        small = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 128
        if mask.any() and not small.any():
            small = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return small

    def _hist(self, index: np.ndarray, sel: np.ndarray) -> np.ndarray:
        n = self.cfg.bins ** 3
        hist = np.bincount(index[sel], minlength=n).astype(np.float32)
        return hist / max(float(hist.sum()), 1.0)

    def _ring(self, mask: np.ndarray) -> np.ndarray:
        r = max(2, int(round(self.cfg.ring * np.sqrt(max(np.count_nonzero(mask), 1)))))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        return (cv2.dilate(mask.astype(np.uint8), k) > 0) & ~mask

    def _models(self, object_id: int) -> Tuple[np.ndarray, np.ndarray]:
        entries = self._store.get(object_id)
        fg = np.mean([e.fg for e in entries], axis=0)
        bg = np.mean([e.bg for e in entries], axis=0)
        return fg, bg

    def _llr(self, object_id: int) -> np.ndarray:
        """Per colour bin: log(P(colour | object) / P(colour | around it)), clipped."""
        fg, bg = self._models(object_id)
        eps = 1.0 / fg.size
        return np.clip(np.log(fg + eps) - np.log(bg + eps), -_MAX_LLR, _MAX_LLR).astype(np.float32)

    # -------------------------------------------------------------- the protocol
    def knows(self, object_id: int) -> bool:
        return bool(self._store.get(object_id))

    def observe(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> None:
        index, _ = self._prepared(ctx)
        small = self._work_mask(mask, index.shape)
        if not small.any():
            return
        ring = self._ring(small)
        if not ring.any():
            ring = ~small
        self._store.add(object_id, _ColourEntry(self._hist(index, small), self._hist(index, ring),
                                                float(np.count_nonzero(mask))))
        self._counts["observed"] += 1

    def similarity(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> float:
        """Share of the mask's pixels more likely object than surroundings, weighed with the histogram overlap.

        ``object_share ** a * bhattacharyya ** b`` (``a``, ``b``: ``reid.colour.share_weight``,
        ``overlap_weight``); 1 for an object not remembered yet, 0 for an empty mask.
        """
        if not self.knows(object_id):
            return 1.0
        index, _ = self._prepared(ctx)
        small = self._work_mask(mask, index.shape)
        if not small.any():
            return 0.0
        llr = self._llr(object_id)
        share = float(np.mean(llr[index[small]] > 0.0))
        hist = self._hist(index, small)
        overlap = max(float(np.sum(np.sqrt(hist * e.fg))) for e in self._store.get(object_id))
        return float(share ** self.cfg.share_weight * overlap ** self.cfg.overlap_weight)

    def candidates(self, object_id: int, ctx: FrameContext, exclude: np.ndarray, n: int,
                   around: Optional[np.ndarray] = None) -> List[Candidate]:
        """Where the object's colours gather, at its remembered size.

        Without ``around``: the peaks of the per-pixel colour log-likelihood ratio (object vs its
        surroundings) averaged over a window of the object's remembered size (a back-projection);
        each candidate is a positive point at the peak's blob of object-like pixels, with that
        blob as the prior. With ``around``: one candidate, the object-like pixels connected to the
        current mask within the object's size of it (the part of the object the mask missed).
        """
        if not self.knows(object_id):
            return []
        self._counts["searches"] += 1
        index, scale = self._prepared(ctx)
        h, w = index.shape
        llr = self._llr(object_id)[index]
        if exclude is not None and exclude.any():
            llr[self._work_mask(exclude, (h, w))] = -_MAX_LLR
        area = np.median([e.area for e in self._store.get(object_id)]) * scale * scale
        side = max(3, int(round(np.sqrt(max(area, 1.0)))))
        if around is not None:
            out = self._grow(llr, self._work_mask(around, (h, w)), side, scale, ctx.image.shape[:2])
        else:
            out = self._search(llr, side, n, scale, ctx.image.shape[:2])
        self._counts["candidates"] += len(out)
        return out

    def _search(self, llr: np.ndarray, side: int, n: int, scale: float, size: Tuple[int, int]) -> List[Candidate]:
        """Up to ``n`` distinct places: each the strongest remaining peak of the object-size density,
        its object-like pixels within the object's radius as the prior; around each the density is
        cleared so the next candidate is somewhere else."""
        h, w = llr.shape
        density = cv2.blur(llr, (side, side), borderType=cv2.BORDER_CONSTANT)
        # the share of object-like pixels in a window of the object's size, as the peak's weight
        share = cv2.blur((llr > 0).astype(np.float32), (side, side), borderType=cv2.BORDER_CONSTANT)
        radius = max(2, int(round(0.7 * side)))  # an object of the remembered area, with some slack
        out: List[Candidate] = []
        for _ in range(4 * n):
            if len(out) >= n:
                break
            _, value, _, (x, y) = cv2.minMaxLoc(density)
            if not value > 0.0:
                break
            cv2.circle(density, (x, y), side, -_MAX_LLR, thickness=-1)  # the next peak is elsewhere
            if share[y, x] < self.cfg.min_share:
                continue
            disk = np.zeros((h, w), np.uint8)
            cv2.circle(disk, (x, y), radius, 1, thickness=-1)
            region = (disk > 0) & (llr > 0)
            region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            count, comp = cv2.connectedComponents(region, connectivity=8)
            if count <= 1:
                continue
            ys, xs = np.nonzero(comp)
            nearest = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))  # the blob nearest the peak
            blob = comp == comp[ys[nearest], xs[nearest]]
            out.append(self._candidate(blob, (xs[nearest], ys[nearest]), scale, size))
        return out

    def _grow(self, llr: np.ndarray, current: np.ndarray, side: int, scale: float, size: Tuple[int, int]
              ) -> List[Candidate]:
        if not current.any():
            return []
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * side + 1, 2 * side + 1))
        window = cv2.dilate(current.astype(np.uint8), k) > 0
        region = ((llr > 0) & window) | current
        region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        region |= current
        count, comp = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
        touching = np.unique(comp[current])
        blob = np.isin(comp, touching[touching > 0])
        if np.count_nonzero(blob) <= np.count_nonzero(current):
            return []
        return [self._candidate(blob, mask_centroid(current), scale, size)]

    def _candidate(self, blob: np.ndarray, near: Tuple[float, float], scale: float, size: Tuple[int, int]
                   ) -> Candidate:
        """A candidate from a working-size blob: a positive point inside it (its centre if that is
        inside, else the blob pixel nearest ``near``) and the blob, at the image size, as prior."""
        H, W = size
        by, bx = np.nonzero(blob)
        cx, cy = bx.mean(), by.mean()
        if blob[int(round(cy)), int(round(cx))]:
            px, py = cx, cy
        else:
            i = int(np.argmin((bx - near[0]) ** 2 + (by - near[1]) ** 2))
            px, py = bx[i], by[i]
        point = np.array([[(px + 0.5) / scale - 0.5, (py + 0.5) / scale - 0.5]])
        prior = cv2.resize(blob.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
        return Candidate(points=point, labels=np.array([POSITIVE]), prior=prior)

    def remove_object(self, object_id: int) -> None:
        self._store.remove(object_id)

    def reset(self) -> None:
        self._store.clear()

    def stats(self) -> Dict[str, float]:
        n = self._store.count()
        return {**self._counts, "entries": n, "bytes": n * 2 * 4 * self.cfg.bins ** 3}


# ------------------------------------------------------------------------------------------ embedding
@dataclass
class _EmbeddingEntry:
    fg: Any  # C float, unit length: the mean embedding under the mask
    bg: Any  # C float, unit length: the mean embedding outside it
    area: float


class EmbeddingMemory:
    """Appearance memory on the segmenter's image embedding (implements ``AppearanceMemory``).

    Args:
        cfg: the ``reid.embedding`` section (temperature, candidate floor).
        entries: entries kept per object (``reid.entries``).

    Works on numpy arrays or torch tensors (kept on their device); the frame's features come
    from :meth:`Segmenter.features` through :class:`FrameContext`.
    """

    def __init__(self, cfg, entries: int = 8) -> None:
        self.cfg = cfg
        self._store: EntryStore[_EmbeddingEntry] = EntryStore(entries)
        self._counts = {"observed": 0, "searches": 0, "candidates": 0}

    @staticmethod
    def _backend(x):
        try:
            import torch

            if isinstance(x, torch.Tensor):
                return torch
        except ImportError:  # pragma: no cover - numpy features without torch
            pass
        return None

    def _grid(self, ctx: FrameContext):
        """``(C x h x w features over the image's cells, h, w)`` or None without features."""
        fm = ctx.features
        if fm is None:
            return None
        key = "embedding_memory"
        if key not in ctx.cache:
            hv, wv = fm.valid_size
            feats = fm.features[:, :hv, :wv]
            torch = self._backend(feats)
            if torch is not None:
                feats = feats.float()
                norm = torch.linalg.vector_norm(feats, dim=0, keepdim=True).clamp_min(1e-6)
            else:
                feats = np.asarray(feats, np.float32)
                norm = np.maximum(np.linalg.norm(feats, axis=0, keepdims=True), 1e-6)
            ctx.cache[key] = (feats / norm, hv, wv)
        return ctx.cache[key]

    @staticmethod
    def _cells(mask: np.ndarray, hv: int, wv: int) -> np.ndarray:
        """``hv x wv float32``: the share of each grid cell covered by the ``HxW`` mask.

        ``hv x wv`` is the embedding's valid region (the image's cells, padding cut off), so the
        whole mask maps onto it."""
        return cv2.resize(mask.astype(np.float32), (wv, hv), interpolation=cv2.INTER_AREA)

    def _mean(self, feats, weights: np.ndarray):
        torch = self._backend(feats)
        if torch is not None:
            w = torch.as_tensor(weights, device=feats.device, dtype=feats.dtype)
            v = (feats * w).sum(dim=(1, 2)) / w.sum().clamp_min(1e-6)
            return v / torch.linalg.vector_norm(v).clamp_min(1e-6)
        v = (feats * weights).sum(axis=(1, 2)) / max(float(weights.sum()), 1e-6)
        return v / max(float(np.linalg.norm(v)), 1e-6)

    def _dot(self, a, b) -> float:
        torch = self._backend(a)
        return float((a * b).sum().item()) if torch is not None else float(np.dot(a, b))

    def knows(self, object_id: int) -> bool:
        return bool(self._store.get(object_id))

    def observe(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> None:
        grid = self._grid(ctx)
        if grid is None:
            return
        feats, hv, wv = grid
        cells = self._cells(mask, hv, wv)
        if cells.sum() <= 0:
            return
        self._store.add(object_id, _EmbeddingEntry(self._mean(feats, cells), self._mean(feats, 1.0 - cells),
                                                   float(np.count_nonzero(mask))))
        self._counts["observed"] += 1

    def _floor(self, entries: List[_EmbeddingEntry]) -> float:
        """The least cosine to the object's features that still looks like it: how alike the object's
        own entries are (their mean cosine to the first) minus ``max_drop``."""
        anchor = entries[0].fg
        own = float(np.mean([self._dot(e.fg, anchor) for e in entries]))
        return own - self.cfg.max_drop

    def similarity(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> float:
        """``sigmoid((fg - max(bg + margin, floor)) / temperature)`` with ``fg`` / ``bg`` the mask's
        best cosine to the object's / its backgrounds' remembered features: high only when the
        mask looks like the object in absolute terms (``floor``, see :meth:`_floor`) and more like
        it than like what surrounded it."""
        grid = self._grid(ctx)
        if grid is None or not self.knows(object_id):
            return 1.0
        feats, hv, wv = grid
        cells = self._cells(mask, hv, wv)
        if cells.sum() <= 0:
            return 0.0
        v = self._mean(feats, cells)
        entries = self._store.get(object_id)
        fg = max(self._dot(v, e.fg) for e in entries)
        bg = max(self._dot(v, e.bg) for e in entries)
        threshold = max(bg + self.cfg.min_margin, self._floor(entries))
        return float(1.0 / (1.0 + np.exp(-(fg - threshold) / self.cfg.temperature)))

    def candidates(self, object_id: int, ctx: FrameContext, exclude: np.ndarray, n: int,
                   around: Optional[np.ndarray] = None) -> List[Candidate]:
        """Peaks of the cosine similarity to the object's features (minus its background's).

        With ``around``, only cells within the object's remembered size of that mask count.
        """
        grid = self._grid(ctx)
        if grid is None or not self.knows(object_id):
            return []
        self._counts["searches"] += 1
        feats, hv, wv = grid
        entries = self._store.get(object_id)
        torch = self._backend(feats)
        if torch is not None:
            fg = torch.stack([e.fg for e in entries])  # K x C
            bg = torch.stack([e.bg for e in entries])
            sim_fg = torch.einsum("kc,chw->khw", fg, feats).amax(dim=0)
            sim_bg = torch.einsum("kc,chw->khw", bg, feats).amax(dim=0)
            sim_fg, sim_bg = sim_fg.float().cpu().numpy(), sim_bg.float().cpu().numpy()
        else:
            fg = np.stack([e.fg for e in entries])
            bg = np.stack([e.bg for e in entries])
            sim_fg = np.einsum("kc,chw->khw", fg, feats).max(axis=0)
            sim_bg = np.einsum("kc,chw->khw", bg, feats).max(axis=0)
        score = sim_fg - np.maximum(sim_bg + self.cfg.min_margin, self._floor(entries))
        H, W = ctx.image.shape[:2]
        if exclude is not None and exclude.any():
            held = self._cells(exclude, hv, wv) > 0.5
            score = np.where(held, -np.inf, score)
        area = np.median([e.area for e in entries])
        radius = max(1, int(round(0.5 * np.sqrt(area) * wv / W)))
        if around is not None:
            near = cv2.dilate((self._cells(around, hv, wv) > 0).astype(np.uint8),
                              np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)) > 0
            score = np.where(near, score, -np.inf)
        out: List[Candidate] = []
        for x, y, _ in _peaks(score.astype(np.float32), n, radius, 0.0):
            px, py = (x + 0.5) * W / wv - 0.5, (y + 0.5) * H / hv - 0.5
            low = np.unravel_index(int(np.argmin(np.where(np.isfinite(score), score, np.inf))), score.shape)
            nx, ny = (low[1] + 0.5) * W / wv - 0.5, (low[0] + 0.5) * H / hv - 0.5
            out.append(Candidate(points=np.array([[px, py], [nx, ny]]), labels=np.array([POSITIVE, 0]), prior=None))
        self._counts["candidates"] += len(out)
        return out

    def remove_object(self, object_id: int) -> None:
        self._store.remove(object_id)

    def reset(self) -> None:
        self._store.clear()

    def stats(self) -> Dict[str, float]:
        return {**self._counts, "entries": self._store.count()}
