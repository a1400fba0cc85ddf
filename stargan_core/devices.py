"""Which device computes: `auto` and the GPUs torch cannot use, and the checks that every
process or worker on this machine gets a GPU of its own."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess

import torch

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA when torch can use a GPU, else the CPU, said loudly (a warning on stderr
    and in the log) when the machine has NVIDIA GPUs that torch cannot use."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    gpus = nvidia_gpus()
    if gpus:
        log.warning(
            "device auto: this machine has %d NVIDIA GPU%s (%s) but this torch cannot use "
            "them (torch %s, built for CUDA %s; %s): it computes on the CPU, many times "
            "slower. Install a torch built for this driver, or give --device cpu to choose "
            "the CPU.", len(gpus), "s" if len(gpus) > 1 else "", "; ".join(gpus),
            torch.__version__, torch.version.cuda or "no CUDA", _cuda_unusable_reason())
    return torch.device("cpu")


@functools.cache
def nvidia_gpus() -> tuple[str, ...]:
    """The NVIDIA GPUs the driver lists (`nvidia-smi -L`), whether or not torch can use them;
    none without the driver."""
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.split(" (UUID")[0] for line in listed.splitlines()
                 if line.startswith("GPU "))


def _cuda_unusable_reason() -> str:
    if torch.version.cuda is None:
        return "a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as error:  # noqa: BLE001 - its message is the reason
        return str(error).strip().splitlines()[0][:300]
    return "CUDA did not initialise"


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively, so that bf16 autocast speeds training up:
    CUDA GPUs from Ampere on, CPUs with AMX or AVX-512 BF16 (elsewhere it is emulated, and
    slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and any(
        getattr(torch.cpu, check, lambda: False)()
        for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(device: torch.device, processes: int, what: str) -> None:
    """Before any work: `processes` processes on this machine can each take a GPU of its own
    on `device`, or a ValueError says what to give instead."""
    if device.type != "cuda" or processes < 2:
        return
    if device.index is not None:
        raise ValueError(
            f"device {device} names one GPU, but {processes} {what} would each need their "
            "own: give --device cuda (process N takes GPU N), and choose the GPUs with "
            "CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus()
    if processes > gpus:
        raise ValueError(
            f"{processes} {what}, but {gpus} GPU{'s' if gpus != 1 else ''} visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
            f"give at most {gpus} processes, or --device cpu")
