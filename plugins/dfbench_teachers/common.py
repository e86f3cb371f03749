"""Building, training and evaluating teacher classifiers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dfbench.api.modalities import pair_of
from dfbench.train.models import build_classifier, freeze


def teacher_outputs(role: str, num_classes: int) -> int:
    return 1 if role == "modality" else num_classes


MODALITY_KEYS = ("modality_arch", "modality_width", "modality_epochs", "modality_weights")


def role_config(tcfg: dict, role: str) -> dict:
    """The teacher config that applies to ``role``: the modality classifier has its own
    architecture, width and epochs; the class teachers ignore those keys."""
    cfg = {k: v for k, v in tcfg.items() if k not in MODALITY_KEYS + ("loader", "checkpoints")}
    if role == "modality":
        cfg.pop("class_overlap", None)
        cfg.pop("shared_init", None)
        cfg.update(arch=tcfg["modality_arch"], width=tcfg["modality_width"], epochs=tcfg["modality_epochs"],
                   weights=tcfg.get("modality_weights", "none"))
    return cfg


def weights_option(role: str) -> str:
    """The option that names the initial weights of ``role``'s backbone."""
    return "teachers.modality_weights" if role == "modality" else "teachers.weights"


def pretrained_identity(tcfg: dict, role: str) -> dict:
    """What a teacher's initial weights add to its cache key: nothing for ``none`` (keys made
    before pretraining existed stay valid), else the option and the file's SHA-256."""
    from dfbench.train.pretrained import resolve

    cfg = role_config(tcfg, role)
    source = resolve(cfg["arch"], cfg.get("weights"), weights_option(role))
    return {} if source is None else {"weights": source.describe()}


def build_teacher(role: str, tcfg: dict, num_classes: int, image_size: int):
    tcfg = role_config(tcfg, role)
    return build_classifier(
        tcfg["arch"],
        teacher_outputs(role, num_classes),
        image_size=image_size,
        width=tcfg["width"],
        feature_dim=tcfg["feature_dim"],
        weights=tcfg.get("weights"),
        where=weights_option(role),
    )


def overlap_classes(num_classes: int, overlap: float, seed: int, pair=None) -> dict:
    """Classes each modality's teacher learns when they share only a fraction ``overlap`` of them
    (the paper's partial-overlap experiment): ``round(overlap * C)`` shared classes, the others
    split evenly between the gallery modality's and the query modality's own (photo-only and
    sketch-only in the default pair), by a permutation seeded with ``seed``."""
    from dfbench.api.errors import ConfigError

    if not 0.0 < float(overlap) <= 1.0:
        raise ConfigError(f"teachers.class_overlap must be in (0, 1], got {overlap}.")
    from dfbench.api.rng import stream_seed

    gen = torch.Generator().manual_seed(stream_seed(seed, "teachers/class-overlap"))
    order = torch.randperm(num_classes, generator=gen).tolist()
    shared = max(1, round(float(overlap) * num_classes))
    rest = order[shared:]
    half = (len(rest) + 1) // 2
    g, q = pair.keys if pair is not None else pair_of(None).keys
    return {g: set(order[:shared] + rest[:half]), q: set(order[:shared] + rest[half:])}


def role_data(benchmark, role: str, split: str, classes: dict | None = None):
    """[(image set, constant label or None, allowed classes or None)] the teacher of ``role``
    learns from (``split='train'``) or is tested on. ``classes`` (from :func:`overlap_classes`)
    limits what each modality's teacher sees in training."""
    pair = pair_of(benchmark)
    g, q = pair.keys
    sets = {m: benchmark.get(split, m) for m in pair}
    allowed = classes if (classes is not None and split == "train") else {g: None, q: None}
    if role in pair:
        return [(sets[role], None, allowed[role])]
    if role == "unified":
        return [(sets[g], None, allowed[g]), (sets[q], None, allowed[q])]
    return [(sets[g], 0, None), (sets[q], 1, None)]  # modality: constant labels, gallery 0, query 1


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 3) -> torch.Tensor:
    """Random translation (reflect-pad and crop, one offset per sample) and horizontal flip."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen).tolist()  # drawn on the CPU: same on every device
    out = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offs)])
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _gather(parts, device):
    """All training images of a role, as a uint8 tensor on ``device`` and int64 labels."""
    xs, ys = [], []
    for imageset, const, allowed in parts:
        labels = imageset.labels
        idx = list(range(len(imageset))) if allowed is None else [i for i, y in enumerate(labels.tolist()) if y in allowed]
        xs.append(imageset.load_uint8(idx))
        ys.append(labels[idx].clone() if const is None else torch.full((len(idx),), const, dtype=torch.int64))
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


def make_optimizer(model, tcfg: dict):
    """The teacher optimizer ``tcfg['optimizer']`` names: AdamW (decoupled weight decay), or SGD with
    momentum 0.9 and L2 weight decay."""
    lr, decay = float(tcfg["lr"]), float(tcfg["weight_decay"])
    if tcfg.get("optimizer", "adamw") == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)


def train_teacher(model, role: str, benchmark, tcfg: dict, device, seed: int, task=None, classes: dict | None = None):
    """Train ``model`` for ``tcfg['epochs']`` epochs (``tcfg['optimizer']``, one-cycle schedule, augmentation)."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    x_all, y_all = _gather(role_data(benchmark, role, "train", classes), device)
    n = len(x_all)
    bs = int(tcfg["batch_size"])
    steps_per_epoch = max(1, n // bs)
    tcfg = role_config(tcfg, role)
    epochs = int(tcfg["epochs"])
    opt = make_optimizer(model, tcfg)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(tcfg["lr"]), total_steps=epochs * steps_per_epoch, pct_start=0.15)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for step in range(steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs]
            x = x_all[idx].float().div_(127.5).sub_(1.0)
            if tcfg.get("augment", True):
                x = _augment(x, gen)
            y = y_all[idx]
            out = model(x)
            if role == "modality":
                loss = F.binary_cross_entropy_with_logits(out.squeeze(1), y.float())
            else:
                loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if not torch.isfinite(loss):  # one check per epoch: never cache a diverged teacher
            from dfbench.api.errors import TrainingDivergedError

            raise TrainingDivergedError(
                f"Training the {role} teacher diverged (loss {float(loss)}). Lower teachers.lr "
                f"(now {tcfg['lr']}) and run again."
            )
        if task is not None:
            task.advance(1)
    return freeze(model)


@torch.no_grad()
def evaluate_teacher(model, role: str, benchmark, device, batch_size: int = 512) -> dict:
    """Accuracy of a teacher on the benchmark's selection split (validation under the protocol,
    else test): one fraction per modality it sees, and the overall one."""
    model.eval()
    result = {}
    correct_all = total_all = 0
    split = benchmark.selection_split
    g, q = pair_of(benchmark).keys
    for imageset, const, _ in role_data(benchmark, role, split):
        modality = g if imageset is benchmark.get(split, g) else q
        correct = 0
        for x, y in imageset.iter_batches(batch_size, device):
            out = model(x)
            if role == "modality":
                pred = (out.squeeze(1) > 0).long()
                y = torch.full_like(y, const)
            else:
                pred = out.argmax(1)
            correct += int((pred == y).sum())
        result[modality] = correct / max(1, len(imageset))
        correct_all += correct
        total_all += len(imageset)
    result["all"] = correct_all / max(1, total_all)
    return result
