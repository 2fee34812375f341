"""Device and precision selection: ``auto`` picks CUDA when present, and bf16 where it is native; nothing
assumes a GPU."""

from __future__ import annotations

from pathlib import Path

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


def check_gpus(ids: list[str]) -> list[str]:
    """``ids`` (``--gpus 0,1``) when each is a CUDA device of this machine; one UserError line otherwise."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for gpu in ids:
        if not gpu.isdigit() or int(gpu) >= count:
            have = f"GPUs 0..{count - 1}" if count else "no CUDA GPU"
            raise UserError(f"--gpus {','.join(ids)}: {gpu!r} is not a GPU of this machine ({have}); give GPU ids "
                            "like 0,1 or leave --gpus out to run on --device")
    return ids


#: Training precisions: ``auto`` (see :func:`resolve_precision`), ``fp32``, ``bf16`` (autocast, fp32 weights).
PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU runs bf16 arithmetic natively: the x86 flags ``avx512_bf16`` or ``amx_bf16`` in
    ``/proc/cpuinfo`` (Linux; elsewhere False). Without them bf16 autocast is emulated and slower than fp32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split()))
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` / ``bf16`` as asked; ``auto``: bf16 where it is native (CUDA with bf16 support, a CPU with
    AVX512-BF16 or AMX), else fp32. ``benchmarks/amp_quality.py`` measured that bf16 costs no quality
    (``reports/amp_quality/``) and ``benchmarks/perf/train_step.py`` what it gains."""
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; use {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
