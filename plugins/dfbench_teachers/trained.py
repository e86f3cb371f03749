"""The ``trained`` teacher loader: trains each role's classifier on the train split, once.

Teachers are cached under ``<cache>/teachers/<key>.pt``, keyed by everything that changes the
trained weights: the dataset (name, classes, image counts, image size, and the content revision
or generator of its data, so a data root with the same layout but other images trains its own
teachers), the role, the teacher config, the seed, the device type and torch's CPU thread count
(the order of floating-point sums), and written atomically.

The key names a recipe, not the bits it gives: the same recipe trained on another kind of CPU (its
vector kernels sum in another order) gives another teacher. So a teacher missing from the cache is
looked up, by the same key, in the teacher store (``leaderboards/teachers``, or ``$DFBENCH_TEACHERS``:
the teachers the committed leaderboards ran on, pinned with ``benchmarks/pin_teachers.py``) before it
is trained; every record carries its teachers' weight digests, so rows run on different teachers
are never compared as if they shared them (``dfbench.app.records.same_teachers``).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings

import torch

from dfbench.api.locations import teacher_store
from dfbench.api.options import canonical_json
from dfbench.api.fileio import atomic_torch_save
from dfbench.train.models import freeze
from dfbench.api.rng import Streams, stream_seed
from dfbench.api.safeload import UnreadableTorchFile, load_torch_file
from dfbench.api.teachers import TeacherLoader, TeacherSet
from dfbench_teachers.common import build_teacher, evaluate_teacher, overlap_classes, pretrained_identity, role_config, train_teacher
from dfbench_teachers.options import PROFILES, TeacherOptions
from dfbench.api.modalities import pair_of

CACHE_VERSION = 4  # 3: the data's content revision, the device type and the thread count entered the key;
# 4: initialisation and training order drawn from named random streams (dfbench.api.rng)
#: the provenance fields of ``Benchmark.info`` that name the data's content
CONTENT_KEYS = ("generator", "seed", "fingerprint", "revision")


def trained_on(device) -> str:
    """What a teacher was trained on: the device type and, on the CPU, the model and the vector
    kernels torch dispatched to (AVX2, AVX512, ...)."""
    from dfbench.train.reproducibility import cpu_kind

    if getattr(device, "type", str(device)) == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    kind = cpu_kind()
    return f"cpu: {kind['model']}, {kind['capability']}"


def cache_key(ctx, role: str) -> str:
    tcfg = role_config(ctx.config["teachers"], role)
    if tcfg.get("weights", "none") == "none":
        tcfg.pop("weights", None)  # keys made before pretrained weights existed stay valid
    else:
        tcfg["weights"] = pretrained_identity(ctx.config["teachers"], role)["weights"]  # the file's digest, not its path
    if tcfg.get("optimizer", "adamw") == "adamw":
        tcfg.pop("optimizer", None)  # keys made before the optimizer was an option stay valid
    bench = ctx.benchmark
    ident = {
        "v": CACHE_VERSION,
        "dataset": ctx.config["dataset"],
        "classes": bench.classes,
        "counts": bench.counts(),
        "dataset_info": {k: v for k, v in bench.info.items() if k in CONTENT_KEYS},
        # the split seed enters only when it is the run's (keys made before it existed stay valid)
        "data": {k: v for k, v in ctx.config["data"].items() if k != "root" and not (k == "split_seed" and v == "data")},
        "role": role,
        "teacher": tcfg,
        "seed": ctx.seed,
        "device": getattr(ctx.device, "type", str(ctx.device)),
        "torch_threads": torch.get_num_threads(),
    }
    digest = hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]
    return f"{ctx.config['dataset']}-{tcfg['arch']}-{role}-s{ctx.seed}-{digest}"


class TrainedTeachers(TeacherLoader):
    Options = TeacherOptions
    profiles = PROFILES

    def load(self, ctx, roles):
        models, accuracy, info = {}, {}, {}
        tcfg = ctx.config["teachers"]
        for role in sorted(roles):
            key = cache_key(ctx, role)
            path = ctx.cache_dir / "teachers" / f"{key}.pt"
            model = build_teacher(role, tcfg, ctx.num_classes, ctx.image_size)
            entry, source = None, "cache"
            store = teacher_store()
            if not path.is_file() and store is not None and (store / f"{key}.pt").is_file():
                path, source = store / f"{key}.pt", "store"  # the pinned teacher: read, never written
            if path.is_file():
                try:
                    entry = load_torch_file(path)
                    model.load_state_dict(entry["state_dict"])
                except (UnreadableTorchFile, KeyError, TypeError, RuntimeError) as exc:
                    warnings.warn(f"ignoring the cached teacher {path} ({exc}); training it again", stacklevel=2)
                    entry = None  # unreadable cache: train again
            if entry is None:
                start = time.perf_counter()
                stream = pair_of(ctx).stream_name(role)  # named by side: the modalities' names draw no numbers
                seed = stream_seed(ctx.seed, f"teachers/{stream}/order")  # the training order (batches, augmentation)
                # class teachers start from one shared initialisation unless shared_init is off, as
                # the paper's teachers were all fine-tuned from one pretrained network
                shared = tcfg.get("shared_init", True) and role != "modality"
                with Streams(ctx.seed).scope("teachers/init" if shared else f"teachers/{stream}/init"):
                    model = build_teacher(role, tcfg, ctx.num_classes, ctx.image_size)
                epochs = role_config(tcfg, role)["epochs"]
                with ctx.reporter.task(f"teacher {role}", total=int(epochs)) as task:
                    classes = None
                    if float(tcfg.get("class_overlap", 1.0)) < 1.0:
                        classes = overlap_classes(ctx.num_classes, tcfg["class_overlap"], ctx.seed, pair_of(ctx))
                    train_teacher(model, role, ctx.benchmark, tcfg, ctx.device, seed, task, classes)
                    acc = evaluate_teacher(model, role, ctx.benchmark, ctx.device)
                    task.note(f"{ctx.benchmark.selection_split} acc {acc['all']:.3f}")
                entry = {
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "accuracy": acc,
                    "train_seconds": time.perf_counter() - start,
                    "key": key,
                    "trained_on": trained_on(ctx.device),
                }
                atomic_torch_save(entry, path)
                cached, source = False, "trained"
            else:
                cached = True
            models[role] = freeze(model.to(ctx.device))
            accuracy[role] = entry["accuracy"]
            info[role] = {"cache": str(path), "cached": cached, "source": source, "train_seconds": round(float(entry["train_seconds"]), 2),
                          **({"trained_on": entry["trained_on"]} if entry.get("trained_on") else {}),
                          **({"pretrained": pre["weights"]} if (pre := pretrained_identity(tcfg, role)) else {})}
        return TeacherSet(models=models, accuracy=accuracy, info=info)
