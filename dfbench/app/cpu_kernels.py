"""Which vector kernels a CPU run uses: this CPU's own, or those of a smaller instruction set.

Another kind of CPU sums floats in another order, so the same recipe trains other last bits on an
AVX-512 machine than on an AVX2 one (docs/protocol.md, "What reproduces across machines"). torch
(ATen), oneDNN and MKL each dispatch on the CPU's instruction set, and each can be held below it by
an environment variable read once, when torch loads. With the three held at AVX2, a record made on
an AVX2 machine reproduces bit for bit on an AVX-512 one (measured: the digits classifier-only
record of seed 0, teachers trained again, every metric identical; without the limits its teachers
differ and mAP@all by 0.003).

``dfbench --cpu-kernels avx2 run ...`` (or ``DFBENCH_CPU_KERNELS=avx2``) runs with the limits;
``dfbench reproduce`` applies the record's own when this CPU's are larger. Records carry the
capability torch used and the limits set (``env.cpu.limits``).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from dfbench.api.errors import ConfigError
from dfbench.train.reproducibility import LIMIT_VARIABLES, kernel_limits  # noqa: F401 (one list of them)

#: torch's capability names (``torch.backends.cpu.get_cpu_capability()``) from the smallest
ORDER = ("DEFAULT", "AVX2", "AVX512")

#: the environment that holds torch's, oneDNN's and MKL's kernels at a capability (x86-64)
LIMITS = {
    "DEFAULT": {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}

CHOICES = ("native", "avx2", "default")


def native_capability() -> str | None:
    """This CPU's own capability in torch's names, read from ``/proc/cpuinfo`` without loading torch
    (AVX512 needs the F, BW, VL and DQ extensions, as ATen's dispatch does); None off x86-64 Linux."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    return "DEFAULT"


def use(choice: str) -> str | None:
    """Hold the CPU kernels at ``choice`` (``native``, ``avx2`` or ``default``) for this process.

    Returns the capability held to, or None for ``native`` (or a choice at or above this CPU's own).
    Must run before torch loads; :class:`ConfigError` when torch already runs other kernels, when the
    CPU lacks the instruction set or is not x86-64."""
    wanted = str(choice).strip().upper()
    if wanted == "NATIVE":
        return None
    if wanted not in LIMITS:
        raise ConfigError(f"Unknown CPU kernels '{choice}'. Use one of: {', '.join(CHOICES)}.")
    native = native_capability()
    if native is None:
        raise ConfigError(
            f"--cpu-kernels {choice} holds x86-64 kernels (torch, oneDNN, MKL) at {wanted}, but this machine is "
            f"{platform.machine()} (or its CPU features cannot be read): run with --cpu-kernels native."
        )
    if ORDER.index(wanted) > ORDER.index(native):
        raise ConfigError(
            f"--cpu-kernels {choice} asks for {wanted} kernels, but this CPU's are {native}: a CPU runs its own "
            "kernels or smaller ones only. Run with --cpu-kernels native, or on a CPU with these instructions."
        )
    if wanted == native:
        return None
    if "torch" in sys.modules:
        import torch

        running = torch.backends.cpu.get_cpu_capability()
        if running == wanted:
            return wanted
        raise ConfigError(
            f"The CPU kernels can only be chosen before torch loads, and torch already runs {running} kernels in "
            f"this process. Give --cpu-kernels {choice} (or DFBENCH_CPU_KERNELS) to dfbench as its own process."
        )
    os.environ.update(LIMITS[wanted])
    return wanted


def for_record(record_cpu: dict | None) -> str:
    """The ``--cpu-kernels`` choice that runs a record's kernels here: its capability when this CPU's
    are larger and it can be held there, else ``native``."""
    recorded = str((record_cpu or {}).get("capability") or "").upper()
    native = native_capability()
    if recorded in LIMITS and native in ORDER and ORDER.index(recorded) < ORDER.index(native):
        return recorded.lower()
    return "native"
