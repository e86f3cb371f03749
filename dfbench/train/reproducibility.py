"""Seeds, determinism and the device, chosen once per run."""

from __future__ import annotations

import os
import platform
import random


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with ``seed``."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic(device) -> None:
    """Deterministic kernels where torch has them. On the CPU dfbench runs are bit-for-bit
    repeatable; on CUDA some kernels stay nondeterministic (never promised)."""
    import torch

    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def choose_device(requested: str = "auto"):
    """``auto`` picks CUDA when available, else the CPU."""
    import torch

    from dfbench.api.errors import ConfigError

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {requested} was requested but torch sees no CUDA device (torch "
            f"{torch.__version__}). Use --device cpu or auto, or install a CUDA build of torch."
        )
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ConfigError(f"Unknown device '{requested}'. Use auto, cpu, cuda or cuda:N.")
    return torch.device(requested)


def torch_generator(seed: int, device=None):
    import torch

    g = torch.Generator(device=device if device is not None and getattr(device, "type", device) != "cpu" else "cpu")
    g.manual_seed(seed)
    return g


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the variables that hold torch's, oneDNN's and MKL's CPU kernels below the CPU's own
#: (:mod:`dfbench.app.cpu_kernels`)
LIMIT_VARIABLES = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def kernel_limits() -> dict:
    """Those of :data:`LIMIT_VARIABLES` set in this process's environment."""
    return {k: os.environ[k] for k in LIMIT_VARIABLES if os.environ.get(k)}


def cpu_kind() -> dict:
    """The CPU's model and the vector kernels torch dispatches to (AVX2, AVX512, ...): another kind
    of CPU sums in another order, so the same recipe trains other last bits on it. ``limits``: the
    variables that held the kernels below the CPU's own, when any was set."""
    import torch

    kind = {"model": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability()}
    limits = kernel_limits()
    if limits:
        kind["limits"] = limits
    return kind
