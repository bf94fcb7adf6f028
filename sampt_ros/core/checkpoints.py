"""Reading model checkpoints safely: one loader for every model (SAM family, PIPS).

``torch.load(weights_only=True)`` accepts tensors and plain containers only, so a checkpoint
cannot run code while it is read. This module turns every way a file can fail into one
:class:`CheckpointError` whose message says which setting to fix and why, in plain words:
no torch stack traces, no advice to disable the safety check, no terminal escape codes.
"""

from __future__ import annotations

import os
import re
import zipfile
from typing import Any, Dict, Iterable, Mapping, Optional

__all__ = ["CheckpointError", "read_state_dict", "clean_message"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PICKLE_PROTOCOL_OPCODE = 0x80  # torch's legacy (pre-zip) format starts with a pickle PROTO opcode


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe, or belongs to another model."""


def clean_message(text: str, limit: int = 300) -> str:
    """One bounded line: terminal escape codes removed, whitespace collapsed, cut at ``limit``."""
    text = " ".join(_ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_torch_file(path: str) -> bool:
    """Whether the file has the layout torch.save writes (a zip archive, or a legacy pickle)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == _PICKLE_PROTOCOL_OPCODE


def read_state_dict(path: str, what: str, setting: str, unwrap: Iterable[str] = ("model", "state_dict")
                    ) -> Dict[str, Any]:
    """Read a state dict (``name -> tensor``) from ``path`` without running any pickled code.

    Args:
        path: the checkpoint file (``~`` expanded).
        what: the model, for messages (``"SAM vit_h"``, ``"PIPS"``).
        setting: the config key that names the file, for messages (``segmenter.sam.checkpoint``).
        unwrap: keys of a one-entry wrapper dict (``{"model": state_dict}``) to look inside; the
            official files are bare dicts or such wrappers.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a torch file, holds objects other than tensors, or not a state dict.
    """
    import torch

    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} checkpoint not found: {path!r} (set {setting})")
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path}: not a {what} checkpoint: the file is corrupt or not a torch file "
                              f"(set {setting} to the official file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - malformed files raise anything from the unpickler
        text = str(exc)
        if "weights only load failed" in text.lower() or "unsupported global" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global ([\w.]+)", text)
            detail = f" (it needs {found.group(1)})" if found else ""
            reason = ("it holds pickled Python objects besides tensors" + detail +
                      "; such files are refused because loading them could run code")
        else:
            first = text.strip().splitlines()[0] if text.strip() else ""
            reason = f"the file is corrupt or truncated ({type(exc).__name__}: {clean_message(first, 160)})"
        raise CheckpointError(f"{path}: cannot be read as a {what} checkpoint: {reason}") from None
    for key in unwrap:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping) and (
                len(obj) == 1 or not any(isinstance(v, torch.Tensor) for v in obj.values())):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a {what} state dict (a dict of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: expected a {what} state dict (a dict of tensors); {len(bad)} entries are "
                              f"not tensors, e.g. {clean_message(repr(bad[0]), 80)}")
    return dict(obj)


def describe_keys(keys: Iterable[str], n: int = 3) -> str:
    """A short sample of state-dict keys for messages."""
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + f" ({len(keys)} keys)"


def optional_path(path: Optional[str]) -> Optional[str]:
    """``None`` for an empty setting, else the expanded path."""
    return os.path.expanduser(path) if path else None
