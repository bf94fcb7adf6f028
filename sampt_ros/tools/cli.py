"""What the command-line tools share."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Tuple

__all__ = ["parse_size", "size_argument", "rss_kib"]


def parse_size(text: str, option: str = "--size", min_side: int = 8, max_side: int = 8192) -> Tuple[int, int]:
    """``"854x480"`` -> ``(854, 480)`` (width, height).

    Raises:
        ValueError: not ``WxH``, or a side outside ``min_side..max_side`` (the message names ``option``).
    """
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{option} must look like 854x480, got {text!r}") from None
    if not (min_side <= w <= max_side and min_side <= h <= max_side):
        raise ValueError(f"{option} must be within {min_side}x{min_side}..{max_side}x{max_side}, got {text}")
    return w, h


def size_argument(text: str) -> Tuple[int, int]:
    """:func:`parse_size` as an argparse ``type=`` (its message shown as the usage error)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rss_kib(pid: int) -> Tuple[int, int]:
    """``(VmRSS, VmHWM)``: a process' resident and peak resident memory in KiB (Linux ``/proc``;
    ``(0, 0)`` when it is gone or there is no ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    vals = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)
