"""Device selection: ``auto`` picks CUDA when present; nothing assumes a GPU."""

from __future__ import annotations

import torch

from p2p_eval.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` to a torch.device, checking availability."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return device
