"""Training throughput of ``dfsbir`` rounds, and the share of the machine's matmul peak it reaches.

    python benchmarks/bench_train.py                 # cpu profile shapes, on the CPU
    python benchmarks/bench_train.py --profile paper --batch 32 --rounds 3    # paper shapes, smaller batch
    python benchmarks/bench_train.py --device cuda --profile paper           # on a GPU

One round = the estimators' steps plus the encoder steps of the profile. The teachers are randomly
initialised and frozen (throughput does not depend on what they learned), the data is a tiny
``shapes`` set (only its image size matters). For each variant of the execution settings
(``perf.*``, see dfbench/api/perf.py; default: baseline, foreach optimisers, channels-last, both,
torch.compile) it prints seconds per round (timed after warm-up rounds of the same fit, so
compilation is excluded), images per second (synthesised images through estimator steps +
encoder images), achieved FLOP/s (FLOP per round counted once by ``torch.utils.flop_counter``), that
as a fraction of a dense fp32 matmul peak measured in the same run, and the speed-up over the
first variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dfbench  # noqa: E402,F401  (first: dfbench's OpenMP defaults apply before torch loads, as in a run)


def matmul_peak(device, dtype, n: int = 2048, repeats: int = 10) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_context(profile: str, device, overrides: list[str]):
    import torch

    from dfbench.app import config as cfgmod
    from dfbench.api.context import RunContext
    from dfbench.api.datasets import DatasetOptions
    from dfbench.train.models import freeze
    from dfbench.api.plugins import registry
    from dfbench.api.teachers import TeacherSet
    from dfbench_datasets.shapes import ShapesDataset
    from dfbench_teachers.common import build_teacher

    method_cls = registry("methods").load("dfsbir")
    cfg = cfgmod.resolve(
        method="dfsbir", dataset="shapes", profile=profile, seed=0, device=str(device),
        method_profiles=method_cls.profiles, overrides=cfgmod.parse_set(overrides),
    )
    size = int(cfg["data"]["image_size"])
    import tempfile

    bench = ShapesDataset().load(DatasetOptions(image_size=size, cache_dir=Path(tempfile.mkdtemp()), extra={"train_per_class": 2, "test_per_class": 1}))
    ctx = RunContext(config=cfg, device=device, benchmark=bench, cache_dir=Path(tempfile.mkdtemp()))
    torch.manual_seed(0)
    roles = method_cls().teacher_roles(cfg["params"])
    ctx.teachers = TeacherSet({r: freeze(build_teacher(r, cfg["teachers"], bench.num_classes, size).to(device)) for r in roles})
    return ctx, method_cls()


def images_per_round(p: dict) -> int:
    inv = p["inversion"]
    synth = 2 * int(inv["steps"]) * int(inv["batch_size"])  # photo + sketch per estimator step
    enc = 2 * int(p["encoder_steps"]) * int(p["batch_size"])
    return synth + enc


DEFAULT_VARIANTS = (
    "baseline:",
    "foreach:perf.optimizer_impl=foreach",
    "channels-last:perf.channels_last=true",
    "channels-last+foreach:perf.channels_last=true,perf.optimizer_impl=foreach",
    "compile+channels-last:perf.compile=true,perf.channels_last=true",
)


def timed_rounds(profile, device, overrides, rounds, warmup):
    """Seconds per round over ``rounds`` rounds that follow ``warmup`` untimed ones of the same fit
    (so compilation and allocator warm-up stay out of the figure)."""
    ctx, method = build_context(profile, device, overrides + [f"params.rounds={warmup + rounds}", "params.log_every=1"])
    stamps = []
    log = ctx.log_curve

    def stamp(row):
        sync(device)
        stamps.append(time.perf_counter())
        log(row)

    ctx.log_curve = stamp
    method.fit(ctx)
    return (stamps[-1] - stamps[warmup - 1]) / rounds, ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (compilation happens there)")
    ap.add_argument("--batch", type=int, default=None, help="batch of estimator and encoder steps (paper shapes on a CPU need less)")
    ap.add_argument("--steps", type=int, default=None, help="estimator steps per round (the paper profile has 500)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every variant")
    ap.add_argument("--variant", dest="variants", action="append", default=[],
                    help="NAME:KEY=VALUE,... (repeatable); default: baseline, foreach, channels-last, both, compile")
    args = ap.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dfbench.train.reproducibility import choose_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    overrides = list(args.overrides) + ["checkpoint_every=0"]
    if args.batch:
        overrides += [f"params.batch_size={args.batch}", f"params.inversion.batch_size={args.batch}", f"params.replay_size={16 * args.batch}"]
    if args.steps:
        overrides.append(f"params.inversion.steps={args.steps}")
    ctx, method = build_context(args.profile, device, overrides + ["params.rounds=1", "perf.compile=false"])
    p = ctx.params
    with FlopCounterMode(display=False) as counter:
        method.fit(ctx)  # one round: warm-up and FLOP count
    flop_per_round = counter.get_total_flops()
    n_img = images_per_round(p)
    from dfbench.api.perf import wait_policy

    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}); "
          f"OpenMP threads wait: {wait_policy()} (dfbench sets PASSIVE unless you set it, docs/performance.md)")
    print(f"profile: {args.profile}  image size: {ctx.image_size}  estimator steps/round: {p['inversion']['steps']}  "
          f"estimator batch: {p['inversion']['batch_size']}  encoder steps/round: {p['encoder_steps']}  encoder batch: {p['batch_size']}")
    print(f"GFLOP per round: {flop_per_round / 1e9:.2f} (torch.utils.flop_counter)  images per round: {n_img}")
    peak = max(matmul_peak(device, torch.float32) for _ in range(3))
    print(f"fp32 matmul peak GFLOP/s: {peak / 1e9:.1f} (best of 3, 2048 x 2048)")
    if device.type == "cuda":
        print(f"bf16 matmul peak GFLOP/s: {max(matmul_peak(device, torch.bfloat16) for _ in range(3)) / 1e9:.1f}")
    print(f"timed: {args.rounds} rounds after {args.warmup} warm-up rounds, per variant")
    print(f"{'variant':<24} {'s/round':>8} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'speed-up':>9}  applied")
    base = None
    for spec in args.variants or DEFAULT_VARIANTS:
        name, _, sets = spec.partition(":")
        extra = [x for x in sets.split(",") if x]
        sec, vctx = timed_rounds(args.profile, device, overrides + extra, args.rounds, args.warmup)
        base = base or sec
        gflops = flop_per_round / sec / 1e9
        print(f"{name:<24} {sec:8.3f} {n_img / sec:9.1f} {gflops:8.1f} {gflops * 1e9 / peak:8.3f} {base / sec:8.2f}x  {vctx.perf.describe()}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
