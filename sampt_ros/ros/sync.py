"""A small approximate-time matcher, used when ROS 2 ``message_filters`` is not installed.

It pairs messages of several inputs whose stamps lie within ``slop`` seconds of each other,
the job ``message_filters.ApproximateTimeSynchronizer`` does in a full ROS install. The
policy is simpler than ROS 1's approximate-time algorithm but has the properties the node
needs: each emitted set has one message per input, all stamps within ``slop`` of the first
input's stamp (the image), sets come out in increasing stamp order, no message is used twice,
and a bounded number of messages is kept per input. A set is emitted as soon as every input
has a partner within ``slop`` (no waiting for a possibly closer one: the frame's latency
matters more than the last millisecond of alignment).

ROS-free: messages are opaque; ``stamp_of(msg) -> int nanoseconds`` reads their stamp.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Deque, List, Sequence


class ApproxTimeMatcher:
    """Match messages of ``n_inputs`` inputs by stamp.

    Args:
        n_inputs: number of inputs (>= 2). Input 0 is the pivot (the colour image): each
            emitted set is built around one of its messages.
        queue_size: messages kept per input while waiting for partners (>= 1).
        slop: largest allowed stamp difference to the pivot, in seconds (>= 0).
        stamp_of: ``msg -> int`` stamp in nanoseconds.
        callback: called with one message per input, in input order, for every matched set.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float,
                 stamp_of: Callable[[Any], int], callback: Callable[..., None]) -> None:
        if n_inputs < 2:
            raise ValueError(f"n_inputs must be >= 2, got {n_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop >= 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self._queues: List[Deque[Any]] = [collections.deque(maxlen=queue_size) for _ in range(n_inputs)]
        self._slop_ns = int(round(slop * 1e9))
        self._stamp_of = stamp_of
        self._callback = callback
        self._lock = threading.Lock()
        self._last_emitted = None  # pivot stamp of the newest emitted set

    def add(self, index: int, msg: Any) -> None:
        """Feed one message of input ``index``; may call the callback (on this thread)."""
        matched = []
        with self._lock:
            stamp = self._stamp_of(msg)
            if self._last_emitted is not None and index == 0 and stamp <= self._last_emitted:
                return  # an image older than one already used: it can never be emitted in order
            self._queues[index].append(msg)
            matched = self._match()
        for group in matched:
            self._callback(*group)

    def _match(self) -> List[Sequence[Any]]:
        out = []
        while self._queues[0]:
            pivot = self._queues[0][0]
            t0 = self._stamp_of(pivot)
            group = [pivot]
            waiting = False
            for q in self._queues[1:]:
                best, best_dt = None, None
                for m in q:
                    dt = abs(self._stamp_of(m) - t0)
                    if best_dt is None or dt < best_dt:
                        best, best_dt = m, dt
                later = any(self._stamp_of(m) > t0 for m in q)
                if best is not None and best_dt <= self._slop_ns:
                    # emit at once (as ROS 2's Python ApproximateTimeSynchronizer does): waiting for
                    # a possibly closer partner would delay every frame by one partner period
                    group.append(best)
                elif not later:
                    waiting = True  # a partner for this pivot may still come
                    break
                else:
                    group = None  # partners already passed this pivot without a close one
                    break
            if waiting:
                break
            self._queues[0].popleft()
            if group is None:
                continue  # drop this pivot, try the next image
            out.append(group)
            self._last_emitted = t0
            for q, m in zip(self._queues[1:], group[1:]):
                # messages up to the used one can only pair with older images: drop them
                t_used = self._stamp_of(m)
                while q and self._stamp_of(q[0]) <= t_used:
                    q.popleft()
        return out
