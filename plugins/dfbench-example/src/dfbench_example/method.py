"""``triplet-pairs``: paired estimators, encoders aligned by a cross-modal triplet loss.

A data-free method is a declaration over dfbench's shared engine
(:class:`dfbench.train.engine.DataFreeMethod`): this one reuses the registered ``estimators`` inversion
strategy (two generators fed the same noise, as in DF-SBIR) and names the ``triplet`` alignment
loss of this plugin. What differs from ``dfsbir``:

- the encoders learn a metric directly from the pairs (batch-hard triplets, labels = teacher
  argmax) instead of Proxy-Anchor against the teacher's frozen classifier weights, so nothing ties
  the embeddings to the teacher's proxies;
- therefore no ``adversarial`` synthesis term (it reads the students through those proxies) and the
  ``raw`` readout (L2-normalised embeddings) at every profile.

The profiles are dfsbir's with these changes and nothing else (:func:`on_top_of`): a method
derived from another declares only what differs, so it keeps the other's schedule as that one
improves. Every choice is a config key (``dfbench run --method triplet-pairs --print-config``).
"""

from __future__ import annotations

import copy

from dfbench.train.engine import DataFreeMethod
from dfbench_dfsbir.method import DFSBIR

#: What triplet-pairs changes in dfsbir's ``params``, per profile (None removes a key).
CHANGES = {
    "base": {
        "alignment": {"loss": "triplet", "margin": 0.2, "mining": "hard", "symmetric": True},
        "weights": {"adversarial": None},  # it reads the students through proxies this loss has not
        "readout": "raw",
    },
    # dfsbir retrieves through the teacher's proxies in these two; the triplet encoders have none
    "smoke": {"readout": "raw"},
    "cpu": {"readout": "raw", "weights": {"adversarial": None}},  # dfsbir's cpu weight of the term: not here either
    # dfsbir's paper profile sets Proxy-Anchor's reduction (the release's): not an option of the triplet loss
    "paper": {"alignment": None},
}

#: the keys by which a config section names its component
COMPONENT_KEYS = ("loss", "strategy", "loader")


def on_top_of(profiles: dict, changes: dict) -> dict:
    """A copy of another method's ``profiles`` with ``changes[profile]`` merged into each profile's
    ``params``."""
    out = copy.deepcopy(profiles)
    for profile, params in changes.items():
        layer = out.setdefault(profile, {})
        layer["params"] = _merged(layer.get("params", {}), params)
    return out


def _merged(params: dict, changes: dict) -> dict:
    """``params`` with ``changes`` merged in, key by key: a None value removes the key; a section
    that names another component (``alignment: {loss: triplet, ...}``) replaces the old one whole,
    since its options are the new component's."""
    out = dict(params)
    for key, value in changes.items():
        old = out.get(key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(old, dict) and not _switches_component(old, value):
            out[key] = _merged(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _switches_component(old: dict, new: dict) -> bool:
    return any(k in new and new[k] != old.get(k) for k in COMPONENT_KEYS)


class TripletPairs(DataFreeMethod):
    profiles = on_top_of(DFSBIR.profiles, CHANGES)
