"""Data-parallel runs with ``torchrun`` (PyTorch DistributedDataParallel).

``dfbench run`` started by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``)
trains one run on several processes: the process group is initialised once (``nccl`` on CUDA,
each process on ``cuda:LOCAL_RANK``; ``gloo`` on the CPU), the trainable modules are wrapped in
:class:`torch.nn.parallel.DistributedDataParallel`, every batch of the config is the *global*
batch and each rank draws ``batch / world_size`` of it with its own random streams, evaluation
embeddings are computed on disjoint shards and gathered, and only rank 0 writes checkpoints, the
record, artifacts and pictures. ``docs/scaling.md`` has the full account.

In a single process (no ``torchrun``, or ``WORLD_SIZE=1``) every helper is a no-op that returns
its input: runs are exactly what they are without this module. Nothing here imports torch until
a distributed run actually starts.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager

from dfbench.api.errors import ConfigError, DfbenchError

_state = {"initialised": False, "backend": None, "cpu_group": None, "device": None}


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def requested() -> bool:
    """True when this process was started by ``torchrun`` for more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def world() -> int:
    """Number of processes of this run (1 without ``torchrun``)."""
    if _state["initialised"]:
        import torch.distributed as tdist

        return tdist.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    if _state["initialised"]:
        import torch.distributed as tdist

        return tdist.get_rank()
    return _env_int("RANK", 0) if requested() else 0


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0) if requested() else 0


def is_main() -> bool:
    """True on rank 0 (the only rank that writes files and prints results)."""
    return rank() == 0


def active() -> bool:
    """True when the process group is up and has more than one process."""
    return _state["initialised"] and world() > 1


def backend() -> str | None:
    return _state["backend"]


def init(device):
    """Start the process group once (no-op in a single process) and return this rank's device.

    ``device`` is the run's device as chosen by :func:`dfbench.train.reproducibility.choose_device`; on
    CUDA each rank gets ``cuda:LOCAL_RANK`` and the ``nccl`` backend, on the CPU ``gloo``.
    """
    if not requested():
        return device
    import torch
    import torch.distributed as tdist

    if _state["initialised"]:
        return _state["device"]
    if not tdist.is_available():
        raise DfbenchError("This run was started by torchrun, but this build of torch has no torch.distributed.")
    if getattr(device, "type", str(device)) == "cuda":
        n = torch.cuda.device_count()
        if local_rank() >= n:
            raise ConfigError(
                f"torchrun started local rank {local_rank()} but torch sees {n} CUDA device(s): use "
                f"--nproc_per_node {n} or fewer (one process per GPU)."
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        name = "nccl"
    else:
        device = torch.device("cpu")
        name = "gloo"
    if not tdist.is_initialized():
        if name == "gloo" and not tdist.is_gloo_available():
            raise DfbenchError("A CPU run under torchrun needs the gloo backend, which this build of torch lacks.")
        kwargs = {"device_id": device} if name == "nccl" else {}
        tdist.init_process_group(backend=name, timeout=timeout(), **kwargs)
        atexit.register(destroy)
    _state.update(initialised=True, backend=tdist.get_backend(), device=device)
    # objects (checkpoint states, decisions) travel on the CPU: a gloo group beside nccl
    _state["cpu_group"] = tdist.new_group(backend="gloo", timeout=timeout()) if _state["backend"] == "nccl" else None
    return device


def timeout():
    """How long a rank waits for the others (``$DFBENCH_DIST_TIMEOUT`` minutes, default 120): ranks
    wait while rank 0 trains the teachers when they are not cached yet."""
    from datetime import timedelta

    try:
        minutes = float(os.environ.get("DFBENCH_DIST_TIMEOUT", 120))
    except ValueError:
        raise ConfigError(f"DFBENCH_DIST_TIMEOUT must be a number of minutes, got '{os.environ['DFBENCH_DIST_TIMEOUT']}'.") from None
    return timedelta(minutes=minutes)


def destroy() -> None:
    """Tear the process group down (registered at exit by :func:`init`)."""
    if not _state["initialised"]:
        return
    import torch.distributed as tdist

    _state["initialised"] = False
    if tdist.is_initialized():
        try:
            tdist.destroy_process_group()
        except Exception:  # at exit, never mask the run's own error
            pass


def barrier() -> None:
    if active():
        import torch.distributed as tdist

        tdist.barrier(group=_state["cpu_group"])


@contextmanager
def main_first():
    """Run the body on rank 0 first, then on the other ranks (caches filled once)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not active():
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=src, group=_state["cpu_group"])
    return box[0]


def gather_objects(obj) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0 (None on the others); ``[obj]`` in a single process."""
    if not active():
        return [obj]
    import torch.distributed as tdist

    out = [None] * world() if is_main() else None
    tdist.gather_object(obj, out, dst=0, group=_state["cpu_group"])
    return out


def all_gather_cat(tensor):
    """The rows of every rank's ``tensor`` concatenated in rank order (sizes may differ along dim 0)."""
    if not active():
        return tensor
    import torch
    import torch.distributed as tdist

    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world())]
    tdist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    biggest = max(sizes)
    padded = tensor
    if tensor.shape[0] < biggest:
        pad = tensor.new_zeros((biggest - tensor.shape[0],) + tuple(tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.empty_like(padded) for _ in sizes]
    tdist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def mean_floats(values: dict) -> dict:
    """Each float of ``values`` averaged over the ranks (logged losses: one curve for the run)."""
    if not active() or not values:
        return values
    import torch
    import torch.distributed as tdist

    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_state["device"])
    tdist.all_reduce(t)
    t /= world()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def average_gradients(params) -> None:
    """Average the gradients of parameters outside any DDP wrapper (e.g. an alignment loss's)."""
    if not active():
        return
    import torch.distributed as tdist

    for p in params:
        if p.grad is not None:
            tdist.all_reduce(p.grad)
            p.grad /= world()


def split_batch(global_batch: int, what: str = "batch_size") -> int:
    """This rank's share of a global batch (error when it does not divide evenly)."""
    global_batch, w = int(global_batch), world()
    if w == 1:
        return global_batch
    if global_batch % w:
        raise ConfigError(
            f"{what}={global_batch} is the global batch of all {w} processes and must be divisible by "
            f"the world size {w}: use a multiple of {w} (each process then takes {what} / {w})."
        )
    return global_batch // w


def shard_range(n: int) -> range:
    """This rank's contiguous share of ``range(n)`` (ranks in order cover it exactly once)."""
    w, r = world(), rank()
    return range(n * r // w, n * (r + 1) // w)


def wrap(module, find_unused_parameters: bool = False, broadcast_buffers: bool = True):
    """``module`` in DistributedDataParallel when the run has several processes, else itself.

    Parameters are broadcast from rank 0 when wrapping, and gradients are averaged over the ranks
    in ``backward``. Set ``find_unused_parameters`` only for modules whose forward may leave some
    parameters out of the loss. With ``broadcast_buffers`` (DDP's default) every forward starts
    from rank 0's buffers (BatchNorm running statistics); without it each rank keeps its own until
    :func:`average_batchnorm` makes them one again.
    """
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = _state["device"]
    ids = [device.index] if device.type == "cuda" else None
    return DDP(
        module, device_ids=ids, output_device=ids[0] if ids else None,
        find_unused_parameters=find_unused_parameters, broadcast_buffers=broadcast_buffers,
    )


def average_batchnorm(module) -> None:
    """Average the BatchNorm running statistics of ``module`` over the ranks.

    Each rank's running mean follows its local batches; their average is the running mean of the
    global batches (the update is linear), and the average of the running variances is close to
    the global one. Afterwards every rank holds the same module, which matters where it runs in
    eval mode (the students inside the synthesis loss, evaluation)."""
    if not active():
        return
    import torch
    import torch.distributed as tdist

    stats = [
        t for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for t in (m.running_mean, m.running_var) if t is not None
    ]
    if not stats:
        return
    with torch.no_grad():
        flat = torch.cat([t.reshape(-1) for t in stats])
        tdist.all_reduce(flat)
        flat /= world()
        offset = 0
        for t in stats:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def unwrap(module):
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)


def sync_module(module) -> None:
    """Copy rank 0's parameters and buffers to every rank (frozen modules, e.g. teachers)."""
    if not active():
        return
    import torch
    import torch.distributed as tdist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            tdist.broadcast(t.data, src=0)


def trainable_parts(obj) -> list[str]:
    """Names of ``obj``'s attributes that hold trained state: modules with parameters that require
    gradients, tensors that require gradients, or optimisers."""
    import torch

    names = []
    for k, v in vars(obj).items():
        if isinstance(v, torch.nn.Module) and any(p.requires_grad for p in v.parameters()):
            names.append(k)
        elif isinstance(v, torch.Tensor) and v.requires_grad:
            names.append(k)
        elif isinstance(v, torch.optim.Optimizer):
            names.append(k)
    return names
