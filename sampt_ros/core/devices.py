"""Choosing the torch device a component runs on, for every component alike.

Importing this module costs no torch; :func:`resolve_device` imports it when called.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device: str, setting_name: str = "device"):
    """The ``torch.device`` for a device setting.

    ``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` as given. ``setting_name`` (``tracker.pips.device``) names the setting in errors.

    Raises:
        ValueError: a CUDA device without CUDA, or a name torch does not know.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{setting_name} is {device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"{setting_name} {device!r} is not a torch device: {exc}") from None
