"""Execution settings of the training loop: how the same computation runs, not what it computes.

The ``perf`` section of a config::

    perf:
      amp: off             # off | bf16: bf16 autocast of synthesis and encoder steps (CUDA only)
      channels_last: false # channels-last memory format for every conv net of the run
      compile: false       # torch.compile the encoders (Module.compile: state dicts keep their keys)
      optimizer_impl: default  # default | foreach | fused: the optimiser's kernels
      threads: null        # torch CPU threads for the run (null: torch's default, the core count)

On the CPU a run is bit-for-bit repeatable at a given thread count; another count changes the
last bits of reductions, so suites whose records must reproduce set ``threads`` (the record's
``env.torch_threads`` says what was used).

``channels_last``, ``compile`` and ``optimizer_impl`` only change the memory layout, kernels and
fusion of the same fp32 arithmetic; like the device, they are left out of the config hash (a run
with them belongs to the same leaderboard row) and the record still shows them. ``amp: bf16``
lowers the precision, so it enters the hash. On a CPU ``amp`` has no effect: the run is fp32 and the
record's ``env.amp`` says so.

Measured by ``benchmarks/bench_train.py`` (``--set perf.compile=true`` and so on); see
docs/scaling.md for the figures.

**Waiting threads (issue 31).** torch's CPU kernels run on OpenMP (libgomp), whose threads spin
while they wait for each other. On idle cores that saves a little; as soon as other work shares the
cores, the spinning threads take the cores from the work they wait for and a run becomes several
times slower (docs/performance.md, ``benchmarks/bench_contention.py``). :func:`set_env_defaults`
therefore sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep) when the user has set neither
``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``; libgomp reads them once, when torch loads, so
``import dfbench`` calls it before anything imports torch. It changes how threads wait, not what
they compute: a run's metrics are bit-identical with and without it
(``tests/test_perf_contention.py``), and it is not part of the config hash.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

from dfbench.api.errors import ConfigError

#: what :func:`set_env_defaults` sets, unless the user set one of :data:`WAIT_VARIABLES`
ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
#: the variables through which a user chooses how OpenMP threads wait
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def set_env_defaults(environ=None) -> bool:
    """Set :data:`ENV_DEFAULTS` in ``environ`` (``os.environ``) if the user set none of
    :data:`WAIT_VARIABLES` and torch is not imported yet (after that, libgomp has read its settings
    and a variable set now would only misreport them). Returns whether it set them."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or any(v in environ for v in WAIT_VARIABLES):
        return False
    environ.update(ENV_DEFAULTS)
    return True


def wait_policy() -> str:
    """How this process's OpenMP threads wait, in words (for notes and benchmark output)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    if "GOMP_SPINCOUNT" in os.environ:
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "OpenMP's default (spin)"


def busy_note(threads: int, cores: int | None = None, load: float | None = None) -> str | None:
    """A one-line note when the machine is oversubscribed at start (one-minute load average above
    the core count): how busy, and the thread count and wait policy this run uses. None otherwise."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this platform
            return None
    if load <= cores:
        return None
    return (f"Note: the machine is busy (load average {load:.1f} on {cores} cores): this run uses {threads} torch "
            f"thread{'s' if threads != 1 else ''} and {wait_policy()} (set perf.threads or OMP_WAIT_POLICY to change them).")


AMP_MODES = ("off", "bf16")
OPTIMIZER_IMPLS = ("default", "foreach", "fused")
DEFAULTS = {"amp": "off", "channels_last": False, "compile": False, "optimizer_impl": "default", "threads": None}


@dataclass(frozen=True)
class Perf:
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    optimizer_impl: str = "default"
    device_type: str = "cpu"
    threads: int | None = None

    @classmethod
    def from_config(cls, section: dict | None, device) -> "Perf":
        s = {**DEFAULTS, **(section or {})}
        if s["amp"] not in AMP_MODES:
            raise ConfigError(f"perf.amp must be one of {', '.join(AMP_MODES)}, got '{s['amp']}'.")
        if s["optimizer_impl"] not in OPTIMIZER_IMPLS:
            raise ConfigError(f"perf.optimizer_impl must be one of {', '.join(OPTIMIZER_IMPLS)}, got '{s['optimizer_impl']}'.")
        for key in ("channels_last", "compile"):
            if not isinstance(s[key], bool):
                raise ConfigError(f"perf.{key} must be true or false, got {s[key]!r}.")
        threads = s["threads"]
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"perf.threads must be null or a positive number of threads, got {threads!r}.")
        return cls(s["amp"], s["channels_last"], s["compile"], s["optimizer_impl"], getattr(device, "type", str(device)), threads)

    def apply_threads(self) -> None:
        """Set torch's CPU thread count to ``threads`` (when set), for this run and those after it in
        the process (a suite sets it for every run)."""
        if self.threads is not None:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)

    @property
    def amp_active(self) -> bool:
        return self.amp == "bf16" and self.device_type == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA when ``amp: bf16``; otherwise a no-op context."""
        if not self.amp_active:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)

    def prepare(self, *modules) -> None:
        """Channels-last memory format for the given modules (in place), when asked for."""
        if not self.channels_last:
            return
        import torch

        for m in modules:
            if isinstance(m, torch.nn.Module):
                m.to(memory_format=torch.channels_last)

    def compile_modules(self, modules) -> None:
        """``Module.compile()`` each module in place (keys of state dicts are unchanged)."""
        if self.compile:
            for m in modules:
                m.compile()

    def optimizer_kwargs(self) -> dict:
        if self.optimizer_impl == "foreach":
            return {"foreach": True}
        if self.optimizer_impl == "fused":
            return {"fused": True}
        return {}

    def describe(self) -> dict:
        return {
            "amp": "bf16" if self.amp_active else "off",
            "channels_last": self.channels_last,
            "compile": self.compile,
            "optimizer_impl": self.optimizer_impl,
            "threads": self.threads,
        }


def modules_of(obj) -> list:
    """The ``nn.Module`` attributes of ``obj`` (an inversion strategy: its estimators, generators)."""
    import torch

    return [v for v in vars(obj).values() if isinstance(v, torch.nn.Module)]
