"""A weight-free point tracker: pyramidal Lucas-Kanade with a forward-backward check.

:class:`LucasKanadeTracker` implements :class:`sampt_ros.core.types.PointTracker` on the CPU with
OpenCV. It is the tracker of the ``cpu`` profile (no PIPS weights needed).

How it works:

* every pushed frame is converted to grey once and kept in a ring buffer of ``window`` frames;
  all tracks that move between the same two frames are tracked together, in one forward and
  one backward ``cv2.calcOpticalFlowPyrLK`` call, however many objects there are. (OpenCV's
  Python binding cannot take pre-built pyramids, opencv/opencv#4777, so each call rebuilds the
  two pyramids internally: about 0.3 ms per 854x480 frame, cheaper than any Python LK over
  cached pyramids);
* a track holds query points on one buffered frame and its current positions on the last frame
  it was advanced to; :meth:`LucasKanadeTracker.track` advances it frame by frame to the newest
  frame, so a track placed on an earlier buffered frame follows the frames in between;
* each step tracks the points forward and then back (the forward-backward check,
  Kalal et al. 2010): a point is visible when both passes converge, its patch error is small
  and it comes back to within ``fb_threshold`` pixels of where it started;
* points that fail the check are not dropped: they are carried by the motion of the track's
  visible points (a robust similarity transform, or their median shift when fewer than three
  are visible);
* a hidden point is never tracked from a frame where it was hidden (there is nothing of it to
  match there); instead it is looked for again from the last buffered frame where it was
  visible, starting at its carried position, with the same forward-backward check. That is
  how points come back after an occluder has passed.

Coordinates are ``Nx2 float (x, y)`` pixels, the centre of the top-left pixel at (0, 0).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional

import cv2
import numpy as np

from .backends.lk import LkConfig
from .types import TrackedPoints, as_points, as_rgb_image

# Below this many visible points a similarity transform is not estimated (median shift instead).
_MIN_POINTS_FOR_TRANSFORM = 3


@dataclass
class _Track:
    """State of one track.

    ``points`` are the positions on frame ``frame_index`` (the last frame the track was
    advanced to); ``seen_frame``/``seen_points`` where each point was last visible (to find
    it again after an occlusion).
    """

    query_frame: int
    queries: np.ndarray  # Nx2 float64
    frame_index: int
    points: np.ndarray  # Nx2 float64
    visible: np.ndarray  # N bool
    visibility: np.ndarray  # N float64
    seen_frame: np.ndarray  # N int
    seen_points: np.ndarray  # Nx2 float64


class LucasKanadeTracker:
    """Online pyramidal Lucas-Kanade point tracker (implements ``PointTracker``).

    Args:
        cfg: :class:`~sampt_ros.core.backends.lk.LkConfig` (window size, pyramid levels, thresholds).
        window: how many recent frames are buffered (tracks can start on any of them).

    Example::

        tracker = LucasKanadeTracker(LkConfig(), window=8)
        i = tracker.push_frame(frame0)             # HxWx3 uint8 RGB
        tracker.set_track("obj", pts, i)           # Nx2 (x, y) on frame i
        tracker.push_frame(frame1)
        tp = tracker.track()["obj"]                # TrackedPoints on frame1
    """

    def __init__(self, cfg: Optional[LkConfig] = None, window: int = 8) -> None:
        cfg = LkConfig() if cfg is None else cfg
        if not isinstance(cfg, LkConfig):
            raise ValueError(f"cfg must be an LkConfig, got {type(cfg).__name__}")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be a positive int (frames kept), got {window!r}")
        self.cfg = cfg
        self.buffer_size = int(window)
        self._win = (cfg.win_size, cfg.win_size)
        self._criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.iterations, 0.01)
        self._frames: "OrderedDict[int, np.ndarray]" = OrderedDict()  # index -> HxW uint8 grey
        self._tracks: Dict[Hashable, _Track] = {}
        self._next_index = 0
        self._shape: Optional[tuple] = None
        self._frames_prepared = 0
        self._lk_calls = 0

    #: everything runs on the CPU (OpenCV)
    device = "cpu"

    def stats(self) -> Dict[str, float]:
        """``frames_prepared`` (grey conversions: exactly one per pushed frame) and ``lk_calls``
        (one forward + one backward per frame pair with tracks, plus two per group of hidden
        points looked for again)."""
        return {"frames_prepared": self._frames_prepared, "lk_calls": self._lk_calls}

    # ------------------------------------------------------------------ frames
    def push_frame(self, image: np.ndarray) -> int:
        """Add a ``HxWx3 uint8`` RGB frame, convert it to grey once; returns the frame's index.

        Raises ``ValueError`` for a malformed image or one whose size differs from the
        previous frames (call :meth:`reset` when the camera changes).
        """
        image = as_rgb_image(image, min_side=8)
        if self._shape is not None and image.shape[:2] != self._shape:
            raise ValueError(
                f"image size changed from {self._shape} to {image.shape[:2]}; reset() the tracker first"
            )
        self._shape = image.shape[:2]
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        self._frames_prepared += 1
        index = self._next_index
        self._next_index += 1
        self._frames[index] = grey
        while len(self._frames) > self.buffer_size:
            self._frames.popitem(last=False)
        return index

    def has_frame(self, index: int) -> bool:
        """Whether frame ``index`` is still buffered."""
        return index in self._frames

    @property
    def newest_index(self) -> int:
        """Index of the newest pushed frame (-1 before the first)."""
        return self._next_index - 1

    # ------------------------------------------------------------------ tracks
    def set_track(self, key: Hashable, points: np.ndarray, frame_index: int) -> None:
        """Start (or restart) track ``key`` with ``Nx2`` (x, y) query points on buffered frame ``frame_index``.

        Raises ``KeyError`` if the frame is not (or no longer) buffered, ``ValueError`` for
        malformed points.
        """
        queries = as_points(points)
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"frame_index must be an int, got {frame_index!r}")
        frame_index = int(frame_index)
        if frame_index not in self._frames:
            raise KeyError(
                f"frame {frame_index} is not buffered (buffered: "
                f"{list(self._frames)[:1] + ['...'] + list(self._frames)[-1:] if self._frames else 'none'})"
            )
        self._tracks[key] = _Track(
            query_frame=frame_index,
            queries=queries.copy(),
            frame_index=frame_index,
            points=queries.copy(),
            visible=self._inside(queries),
            visibility=self._inside(queries).astype(np.float64),
            seen_frame=np.full(len(queries), frame_index, np.int64),
            seen_points=queries.copy(),
        )

    def remove_track(self, key: Hashable) -> None:
        """Forget track ``key`` (no error if unknown)."""
        self._tracks.pop(key, None)

    def track(self) -> Dict[Hashable, TrackedPoints]:
        """Advance every track to the newest frame; returns ``{key: TrackedPoints}`` there.

        ``points`` are ``Nx2 float (x, y)`` pixels in the newest frame, ``visibility`` ``N float``
        in 0..1: ``1 / (1 + (fb / fb_threshold)^2)`` for a point that passed the forward-backward
        check (so above 0.5 exactly when its error is below the threshold), 0 for one that failed
        or left the image. A track whose query frame is the newest frame returns its queries
        (visibility 1 where inside the image).
        """
        newest = self.newest_index
        behind = []
        for tr in self._tracks.values():
            if tr.frame_index >= newest:
                continue
            if len(tr.points) == 0:
                tr.frame_index = newest
                continue
            if tr.frame_index not in self._frames:
                # The frames since the last update fell out of the buffer (track() was not
                # called for more than `window` frames): continue from the oldest buffered
                # frame, as if the points had not moved meanwhile.
                tr.frame_index = next(iter(self._frames))
            behind.append(tr)
        # Walk the buffered frames once; at each frame pair, every track standing on the
        # earlier frame moves together (one forward + one backward LK call in all).
        if behind:
            for f in range(min(tr.frame_index for tr in behind), newest):
                group = [tr for tr in behind if tr.frame_index == f]
                if group:
                    self._step(group, f, f + 1)
                    for tr in group:
                        tr.frame_index = f + 1
        return {key: TrackedPoints(points=tr.points.copy(), visibility=tr.visibility.copy())
                for key, tr in self._tracks.items()}

    def reset(self) -> None:
        """Forget all frames and tracks (frame numbering restarts at 0)."""
        self._frames.clear()
        self._tracks.clear()
        self._next_index = 0
        self._shape = None

    # ------------------------------------------------------------------ internals
    def _lk(self, src: np.ndarray, dst: np.ndarray, pts: np.ndarray, guess: Optional[np.ndarray] = None):
        """One LK pass between grey images ``src -> dst`` of ``Nx2`` points.

        Returns (``Nx2`` positions, ``N`` converged, ``N`` mean patch error).
        """
        self._lk_calls += 1
        p0 = pts.astype(np.float32).reshape(-1, 1, 2)
        flags = 0
        p1 = None
        if guess is not None:
            p1 = guess.astype(np.float32).reshape(-1, 1, 2).copy()
            flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        p1, status, err = cv2.calcOpticalFlowPyrLK(
            src, dst, p0, p1, winSize=self._win, maxLevel=self.cfg.max_level,
            criteria=self._criteria, flags=flags,
        )
        return p1.reshape(-1, 2).astype(np.float64), status.reshape(-1).astype(bool), err.reshape(-1)

    def _step(self, tracks: List[_Track], src_index: int, dst_index: int) -> None:
        """Move the points of ``tracks`` (all on frame ``src_index``) to ``dst_index``; update visibility."""
        cfg = self.cfg
        src, dst = self._frames[src_index], self._frames[dst_index]
        sizes = [len(tr.points) for tr in tracks]
        p0_all = np.concatenate([tr.points for tr in tracks])
        p1_all, ok_f, err = self._lk(src, dst, p0_all)
        # The backward pass starts from the original positions: a correct track lands there at once.
        p0b, ok_b, _ = self._lk(dst, src, p1_all, guess=p0_all)
        fb_all = np.linalg.norm(p0b - p0_all, axis=1)
        fb_all = np.where(np.isfinite(fb_all), fb_all, np.inf)
        ok_all = ok_f & ok_b & np.isfinite(p1_all).all(axis=1) & (err < cfg.max_error)
        h, w = self._shape
        start = 0
        for tr, n in zip(tracks, sizes):
            sl = slice(start, start + n)
            start += n
            p0, p1, fb, ok = tr.points, p1_all[sl], fb_all[sl], ok_all[sl]
            # Smooth score: 1 at fb = 0, 0.5 at fb = threshold, so visible <=> score > 0.5.
            score = np.where(ok & tr.visible, 1.0 / (1.0 + (fb / cfg.fb_threshold) ** 2), 0.0)
            # A point hidden on the source frame has no valid appearance there to track from:
            # it can only come back through _recover (from the frame where it was last seen).
            visible = ok & (fb < cfg.fb_threshold) & tr.visible
            # The motion of the reliable points carries the others (occluded or lost), so they
            # stay with the object and can be picked up again when it reappears.
            new_pts = np.where(visible[:, None], p1, self._carry(p0, p1, visible))
            self._recover(tr, new_pts, visible, score, dst_index)
            inside = self._inside(new_pts)
            visible &= inside
            score = np.where(inside, score, 0.0)
            # Keep carried points finite and near the image so later steps stay well-posed.
            new_pts[:, 0] = np.clip(new_pts[:, 0], -w, 2 * w)
            new_pts[:, 1] = np.clip(new_pts[:, 1], -h, 2 * h)
            tr.points = new_pts
            tr.visible = visible
            tr.visibility = np.clip(score, 0.0, 1.0)
            tr.seen_frame[visible] = dst_index
            tr.seen_points[visible] = new_pts[visible]

    def _recover(self, tr: _Track, pts: np.ndarray, visible: np.ndarray, score: np.ndarray,
                 dst_index: int) -> None:
        """Look for hidden points again, from the frame where each was last seen.

        Frame-to-frame LK cannot notice a point re-emerging from behind an occluder (the
        previous frame showed the occluder there). Tracking it from the last buffered frame
        where it was visible, starting at its carried position, with the same
        forward-backward check, can. Updates ``pts``, ``visible`` and ``score`` in place.
        """
        cfg = self.cfg
        hidden = ~visible
        for f in np.unique(tr.seen_frame[hidden]):
            f = int(f)
            if f not in self._frames or f >= dst_index - 1:
                continue  # gone from the buffer, or the frame just tracked from
            idx = np.nonzero(hidden & (tr.seen_frame == f))[0]
            seen = tr.seen_points[idx]
            p1, ok_f, err = self._lk(self._frames[f], self._frames[dst_index], seen, guess=pts[idx])
            pb, ok_b, _ = self._lk(self._frames[dst_index], self._frames[f], p1, guess=seen)
            fb = np.linalg.norm(pb - seen, axis=1)
            found = ok_f & ok_b & np.isfinite(fb) & (fb < cfg.fb_threshold) & (err < cfg.max_error)
            pts[idx[found]] = p1[found]
            visible[idx[found]] = True
            score[idx[found]] = 1.0 / (1.0 + (fb[found] / cfg.fb_threshold) ** 2)

    @staticmethod
    def _carry(p0: np.ndarray, p1: np.ndarray, reliable: np.ndarray) -> np.ndarray:
        """Positions of all points moved by the reliable points' motion (``Nx2``)."""
        n_ok = int(reliable.sum())
        if n_ok == 0:
            return p0.copy()
        if n_ok >= _MIN_POINTS_FOR_TRANSFORM:
            src = p0[reliable].astype(np.float32)
            dst = p1[reliable].astype(np.float32)
            m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
            if m is not None and np.all(np.isfinite(m)):
                scale = float(np.hypot(m[0, 0], m[1, 0]))
                if 0.5 < scale < 2.0:  # a wild fit from degenerate points is worse than a shift
                    return p0 @ m[:, :2].T + m[:, 2]
        shift = np.median(p1[reliable] - p0[reliable], axis=0)
        return p0 + shift

    def _inside(self, pts: np.ndarray) -> np.ndarray:
        if self._shape is None or len(pts) == 0:
            return np.zeros(len(pts), bool)
        h, w = self._shape
        return (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
