"""``triplet-pairs``: paired estimators, encoders aligned by a cross-modal triplet loss.

A data-free method is a declaration over dfbench's shared engine
(:class:`dfbench.engine.DataFreeMethod`): this one reuses the registered ``estimators`` inversion
strategy (two generators fed the same noise, as in DF-SBIR) and names the ``triplet`` alignment
loss of this plugin. What differs from ``dfsbir``:

- the encoders learn a metric directly from the pairs (batch-hard triplets, labels = teacher
  argmax) instead of Proxy-Anchor against the teacher's frozen classifier weights, so nothing ties
  the embeddings to the teacher's proxies;
- therefore no ``adversarial`` synthesis term (it reads the students through those proxies) and the
  ``raw`` readout (L2-normalised embeddings) at every profile.

Every choice is a config key (``dfbench run --method triplet-pairs --print-config``).
"""

from __future__ import annotations

from dfbench.engine import DATA_FREE_BASE, DataFreeMethod

SYNTHESIS_WEIGHTS = {
    "one_hot": 3.0,
    "entropy": 5.0,
    "activation": 0.1,
    "modality": 1.0,
    "class_alignment": 1.0,
    "bn": 0.0,  # BatchNorm-statistics prior: on in the smoke and cpu profiles
}


class TripletPairs(DataFreeMethod):
    profiles = {
        "base": {
            "params": {
                **DATA_FREE_BASE,
                "variant": "unified",
                "weights": SYNTHESIS_WEIGHTS,
                "alignment": {"loss": "triplet", "margin": 0.2, "mining": "hard", "symmetric": True},
                "inversion": {
                    "strategy": "estimators",
                    "z_dim": 256,
                    "width": 32,
                    "steps": 1,
                    "batch_size": 64,
                    "optimizer": {"name": "adam", "lr": 1e-3, "betas": [0.5, 0.999], "weight_decay": 0.0},
                },
                "readout": "raw",
            }
        },
        "smoke": {
            "params": {
                "rounds": 12,
                "batch_size": 32,
                "log_every": 4,
                "replay_size": 256,
                "encoder_steps": 2,
                "weights": {"bn": 1.0},
                "inversion": {"z_dim": 64, "width": 16, "batch_size": 32},
            }
        },
        "cpu": {
            "params": {
                "rounds": 400,
                "encoder_steps": 2,
                "batch_size": 64,
                "replay_size": 4096,
                "fresh_fraction": 0.25,
                "weights": {"bn": 1.0},
                "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
            }
        },
        "paper": {
            "params": {
                "rounds": 2000,
                "encoder_steps": 1,
                "batch_size": 512,
                "optimizer": {"name": "sgd", "lr": 1e-5, "momentum": 0.9, "weight_decay": 0.0},
                "inversion": {
                    "z_dim": 1000,
                    "width": 64,
                    "steps": 500,
                    "batch_size": 512,
                    "optimizer": {"name": "sgd", "lr": 1e-5, "momentum": 0.9},
                },
            }
        },
    }
