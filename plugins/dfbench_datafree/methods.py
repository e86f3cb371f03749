"""Eight data-free distillation methods, adapted to data-free SBIR as declarations over the shared
engine (:class:`dfbench.train.engine.DataFreeMethod`).

Common adaptation (docs/datafree.md has the full account): every method inverts one teacher per
modality (``variant: independent``: the photo and the sketch classifier, trained apart), pairs
photos with sketches by class (the same target class on both sides where the method has class
targets, the teachers' argmax labels otherwise), trains the two encoders with the shared
alignment loss (Proxy-Anchor with the teachers' frozen head weights as proxies, as ``dfsbir``),
and measures student/teacher disagreement through the frozen teacher heads
(``Students.class_logits``). Retrieval uses the ``proxy`` readout in every profile: with
independent teachers the two encoders are pulled towards two different proxy sets, so their raw
embeddings share no space, while their cosines to the proxies live in the shared label space.

Profiles:

- ``paper``: the scale of the CMI benchmark protocol (Fang et al. 2021, CIFAR-10), which ran all
  of these methods under one schedule: batches of 256, 80,000 student steps (200 epochs of 400),
  each method's generator/student step ratio and synthesis iterations, and its learning rates.
- ``cpu``: small generators and schedules sized for about ten minutes per run on a 2-core CPU
  (estimated from smoke timings; see docs/datafree.md).
- ``smoke``: seconds; checks that everything runs.
"""

from __future__ import annotations

import copy

from dfbench.train.engine import DATA_FREE_BASE, DataFreeMethod
from dfbench_inversions.generators import ModalityGenerators
from dfbench_inversions.pixels import PixelInversion

ALIGNMENT = {"loss": "proxy-anchor", "margin": 0.1, "alpha": 32.0}


def _base(strategy_cls, inversion: dict, weights: dict, **params) -> dict:
    """A method's ``base`` params: the engine defaults, independent teachers, the shared
    alignment loss, every option of its strategy (so each can be set with --set)."""
    inv = {"strategy": strategy_cls.name, **copy.deepcopy(strategy_cls.defaults)}
    for key, value in inversion.items():
        inv[key] = {**inv[key], **value} if isinstance(value, dict) and isinstance(inv.get(key), dict) else value
    return {
        "params": {
            **copy.deepcopy(DATA_FREE_BASE),
            "variant": "independent",
            "alignment": dict(ALIGNMENT),
            "readout": "proxy",
            "inversion": inv,
            "weights": dict(weights),
            **params,
        }
    }


def _online(n_student_steps: int, batch: int) -> dict:
    """Schedule keys of the online generator methods (DFAD, ZSKT, DFQ): the round's
    ``samples`` fresh batches sit in a pool of exactly that size, and every encoder step draws
    its batch from them (fresh_fraction 1: nothing older is replayed)."""
    return {"encoder_steps": n_student_steps, "replay_size": n_student_steps * batch, "fresh_fraction": 1.0, "batch_size": batch}


# -- generator methods -----------------------------------------------------------------------

SMOKE_GEN = {"z_dim": 32, "width": 8, "batch_size": 32}
CPU_GEN = {"z_dim": 128, "width": 16, "batch_size": 64}
PAPER_GEN = {"z_dim": 256, "width": 64, "batch_size": 256}
#: The BatchNorm-statistics penalty of the small CPU teachers is an order of magnitude larger than
#: the references' (hundreds on noise, tens after inversion): at the references' weight of 10 it
#: drowns the class term (DeepInversion batches then reach ~40% teacher accuracy on their targets
#: after 100 steps, against ~90% at weight 1). The smoke and cpu profiles of the methods whose
#: references weigh it 10 (DeepInversion, ADI, Fast) use 1; the paper profile keeps 10.
SMALL_TEACHER_BN = {"bn": 1.0}


class DAFL(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {"targets": "none", "steps": 1, "samples": 0},
            {"one_hot": 1.0, "entropy": 5.0, "activation": 0.1},
        ),
        "smoke": {"params": {"rounds": 12, "batch_size": 32, "log_every": 4, "inversion": SMOKE_GEN}},
        "cpu": {"params": {"rounds": 1200, "batch_size": 64, "log_every": 50, "inversion": CPU_GEN}},
        "paper": {"params": {"rounds": 80000, "batch_size": 256, "log_every": 200, "inversion": PAPER_GEN}},
    }


class DFAD(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {"targets": "none", "steps": 1, "samples": 5},
            {"adversarial_l1": 1.0},
            **_online(5, 64),
        ),
        "smoke": {"params": {"rounds": 4, "log_every": 2, **_online(5, 32), "inversion": SMOKE_GEN}},
        "cpu": {"params": {"rounds": 240, "log_every": 10, **_online(5, 64), "inversion": CPU_GEN}},
        "paper": {"params": {"rounds": 16000, "log_every": 100, **_online(5, 256), "inversion": PAPER_GEN}},
    }


class ZSKT(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {"targets": "none", "steps": 1, "samples": 10},
            {"adversarial_kl": 1.0},
            **_online(10, 64),
        ),
        "smoke": {"params": {"rounds": 2, "log_every": 1, **_online(10, 32), "inversion": SMOKE_GEN}},
        "cpu": {"params": {"rounds": 120, "log_every": 5, **_online(10, 64), "inversion": CPU_GEN}},
        "paper": {"params": {"rounds": 8000, "log_every": 50, **_online(10, 256), "inversion": PAPER_GEN}},
    }


class DFQ(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {"targets": "none", "steps": 1, "samples": 5},
            {"bn": 1.0, "one_hot": 1.0, "balance": 20.0, "adversarial_kl": 1.0},
            **_online(5, 64),
        ),
        "smoke": {"params": {"rounds": 4, "log_every": 2, **_online(5, 32), "inversion": SMOKE_GEN}},
        "cpu": {"params": {"rounds": 230, "log_every": 10, **_online(5, 64), "inversion": CPU_GEN}},
        "paper": {
            "params": {
                "rounds": 16000,
                "log_every": 100,
                **_online(5, 256),
                "inversion": {**PAPER_GEN, "optimizer": {"lr": 1e-4}},
            }
        },
    }


class CMI(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {
                "targets": "random",
                "learnable_z": True,
                "reinit": True,
                "steps": 200,
                "jitter": 4,
                "flip": True,
                "crop_scale": 0.25,
                "temperature": 0.1,
            },
            {"bn": 1.0, "one_hot": 1.0, "adversarial_kl_masked": 0.5, "contrastive": 0.8},
            fresh_fraction=0.25,
        ),
        "smoke": {
            "params": {
                "rounds": 3,
                "batch_size": 32,
                "encoder_steps": 4,
                "replay_size": 256,
                "log_every": 1,
                "inversion": {**SMOKE_GEN, "steps": 4, "memory_size": 128, "negatives": 64},
            }
        },
        "cpu": {
            "params": {
                "rounds": 28,
                "batch_size": 64,
                "encoder_steps": 40,
                "replay_size": 4096,
                "log_every": 2,
                "inversion": {**CPU_GEN, "steps": 20, "memory_size": 1280, "negatives": 512},
            }
        },
        "paper": {
            "params": {
                "rounds": 200,
                "batch_size": 256,
                "encoder_steps": 400,
                "replay_size": 8192,
                "log_every": 5,
                "inversion": {**PAPER_GEN, "steps": 200, "memory_size": 40960, "negatives": 4096},
            }
        },
    }


class Fast(DataFreeMethod):
    profiles = {
        "base": _base(
            ModalityGenerators,
            {
                "targets": "random",
                "learnable_z": True,
                "z_lr": 0.015,
                "meta": "reptile",
                "steps": 2,
                "jitter": 4,
                "flip": True,
                "bn_momentum": 0.9,
                "optimizer": {"lr": 5e-3},
            },
            {"bn": 10.0, "one_hot": 0.5, "adversarial_kl_masked": 1.0},
            fresh_fraction=0.25,
        ),
        "smoke": {
            "params": {
                "rounds": 6,
                "batch_size": 32,
                "encoder_steps": 2,
                "replay_size": 256,
                "log_every": 2,
                "weights": SMALL_TEACHER_BN,
                "inversion": SMOKE_GEN,
            }
        },
        "cpu": {
            "params": {
                "rounds": 170,
                "batch_size": 64,
                "encoder_steps": 10,
                "replay_size": 4096,
                "log_every": 10,
                "weights": SMALL_TEACHER_BN,
                "inversion": CPU_GEN,
            }
        },
        "paper": {
            "params": {
                "rounds": 220,
                "batch_size": 256,
                "encoder_steps": 400,
                "replay_size": 8192,
                "log_every": 5,
                "inversion": PAPER_GEN,
            }
        },
    }


# -- pixel methods ---------------------------------------------------------------------------

DEEPINV_WEIGHTS = {"one_hot": 1.0, "bn": 10.0, "tv": 0.05, "l2": 0.001}


def deepinversion_profiles(weights: dict, cpu_rounds: int) -> dict:
    return {
        "base": _base(
            PixelInversion,
            {"targets": "balanced", "jitter": 2, "flip": True, "bn_first_layer_scale": 10.0, "optimizer": {"lr": 0.1}},
            weights,
            fresh_fraction=0.25,
        ),
        "smoke": {
            "params": {
                "rounds": 3,
                "batch_size": 32,
                "encoder_steps": 4,
                "replay_size": 256,
                "log_every": 1,
                "weights": SMALL_TEACHER_BN,
                "inversion": {"batch_size": 32, "steps": 5},
            }
        },
        "cpu": {
            "params": {
                "rounds": cpu_rounds,
                "batch_size": 64,
                "encoder_steps": 40,
                "replay_size": 4096,
                "log_every": 2,
                "weights": SMALL_TEACHER_BN,
                "inversion": {"batch_size": 64, "steps": 50},
            }
        },
        "paper": {
            "params": {
                "rounds": 200,
                "batch_size": 256,
                "encoder_steps": 400,
                "replay_size": 8192,
                "log_every": 5,
                "inversion": {"batch_size": 256, "steps": 2000},
            }
        },
    }


class DeepInversion(DataFreeMethod):
    profiles = deepinversion_profiles(DEEPINV_WEIGHTS, cpu_rounds=24)


class ADI(DataFreeMethod):
    # each inversion step also runs the students: fewer rounds for the same CPU time
    profiles = deepinversion_profiles({**DEEPINV_WEIGHTS, "adversarial_js": 0.2}, cpu_rounds=19)
