"""The inversion-strategy interface: how a method synthesises training pairs from the teachers.

Synthesis is separated from training (as in Fast-Datafree's ``synthesize()``/``sample()``): a
strategy's ``synthesize(students)`` runs its own optimisation steps and returns one
:class:`SynthBatch` of paired images of the benchmark's two modalities with labels; the engine stores batches in a
:class:`ReplayPool` and samples encoder batches from it. Every strategy returns the same type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dfbench.api.options import DefaultsOf, Options


@dataclass
class SynthBatch:
    """Paired images of the benchmark's two modalities, keyed by modality key (row i of every
    modality is one pair), and the teacher labels of each image. Tensors are detached and live on
    the run's device.

    ``logits`` (optional, {key: (B, C)}): the judging teacher's logits of each image, filled by
    strategies that compute them anyway; losses that need them (knowledge distillation) get them
    from the engine, which computes missing ones. Build one with :meth:`of`.
    """

    images: dict  # {modality key: (B, 3, S, S)}
    labels: dict  # {modality key: (B,) int64}
    logits: dict | None = None  # {modality key: (B, C)}

    @classmethod
    def of(cls, pair, images, labels, logits=None) -> "SynthBatch":
        """The batch of ``pair``'s modalities (:class:`dfbench.api.modalities.ModalityPair`, or its
        keys) from per-key mappings, in the pair's order; ``logits`` is kept only when every
        modality has them."""
        keys = tuple(pair)
        kept = None
        if logits is not None and all(logits.get(k) is not None for k in keys):
            kept = {k: logits[k] for k in keys}
        return cls({k: images[k] for k in keys}, {k: labels[k] for k in keys}, kept)

    @property
    def keys(self) -> tuple:
        return tuple(self.images)

    def __len__(self) -> int:
        return next(iter(self.images.values())).shape[0]

    @property
    def device(self):
        return next(iter(self.images.values())).device

    def index(self, idx: torch.Tensor) -> "SynthBatch":
        return self.map(lambda t: t[idx])

    def map(self, fn) -> "SynthBatch":
        """The batch with ``fn`` applied to every tensor."""
        logits = None if self.logits is None else {k: fn(t) for k, t in self.logits.items()}
        return SynthBatch({k: fn(t) for k, t in self.images.items()}, {k: fn(t) for k, t in self.labels.items()}, logits)

    def fields(self) -> dict:
        """Every tensor by a flat name (``images/<key>``, ``labels/<key>``, ``logits/<key>``)."""
        out = {f"images/{k}": t for k, t in self.images.items()}
        out.update({f"labels/{k}": t for k, t in self.labels.items()})
        if self.logits is not None:
            out.update({f"logits/{k}": t for k, t in self.logits.items()})
        return out

    @classmethod
    def from_fields(cls, fields: dict) -> "SynthBatch":
        parts: dict = {"images": {}, "labels": {}, "logits": {}}
        for name, t in fields.items():
            part, key = name.split("/", 1)
            parts[part][key] = t
        return cls(parts["images"], parts["labels"], parts["logits"] or None)


def concat_batches(a: SynthBatch, b: SynthBatch) -> SynthBatch:
    """Rows of ``a`` then rows of ``b``; logits survive only when both have them."""
    logits = None
    if a.logits is not None and b.logits is not None:
        logits = {k: torch.cat([a.logits[k], b.logits[k]]) for k in a.logits}
    return SynthBatch({k: torch.cat([a.images[k], b.images[k]]) for k in a.images},
                      {k: torch.cat([a.labels[k], b.labels[k]]) for k in a.labels}, logits)


class InversionStrategy:
    """A registered inversion strategy.

    ``Options`` declares its options (``params.inversion`` in a method's config, besides
    ``strategy``: a :class:`dfbench.api.options.Options` dataclass; ``defaults`` is derived from it); the
    constructor receives the run context, the typed options, the non-zero loss-term weights and the
    teacher variant.
    """

    #: given by the register() call when the registry loads the class (dfbench.api.registry.Entry)
    name: str = ""
    description: str = ""
    Options = Options
    defaults = DefaultsOf()

    def __init__(self, ctx, options: dict, weights: dict, variant: str):
        self.ctx = ctx
        self.options = options
        self.weights = weights
        self.variant = variant

    @property
    def term_inputs(self) -> dict:
        """Keyword arguments of :class:`dfbench.train.terms.SynthesisState` that the method's ``params``
        set for every strategy (``entropy_log_base``): pass them on, ``SynthesisState(..., **self.term_inputs)``."""
        params = getattr(self.ctx, "params", None) or {}
        return {"entropy_log_base": params.get("entropy_log_base", "e")}

    def synthesize(self, students) -> SynthBatch:
        raise NotImplementedError

    def distribute(self, wrap) -> None:
        """Called once by the engine in a data-parallel run (``torchrun``), never in a single
        process: wrap the modules that ``synthesize`` trains with ``wrap(module)`` (it returns a
        DistributedDataParallel; see :func:`dfbench.train.distributed.wrap` for its options) and use the
        wrappers in the training forward passes; keep the unwrapped modules for ``state_dict`` and
        the optimisers. ``options["batch_size"]`` is
        already this rank's share of the global batch, and the strategy's ``torch.Generator``
        attributes are already reseeded per rank. A strategy without trainable modules needs
        nothing here; one with trainable modules that keeps this default cannot run distributed
        (the engine says so)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ReplayPool:
    """A ring buffer of synthesised pairs on the run's device (the newest ``capacity`` pairs).

    Teacher logits are kept when the first batch has them, and dropped from the pool as soon as a
    batch without them arrives."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._data: dict | None = None  # flat field name -> (capacity, ...) tensor
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return self._size

    def add(self, batch: SynthBatch) -> None:
        if self.capacity <= 0:
            return
        fields = batch.fields()
        if self._data is None:
            self._data = {k: torch.empty((self.capacity,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for k, t in fields.items()}
        if batch.logits is None:
            self._data = {k: t for k, t in self._data.items() if not k.startswith("logits/")}
        n = min(len(batch), self.capacity)
        idx = (torch.arange(n) + self._next) % self.capacity
        idx = idx.to(batch.device)
        for name, store in self._data.items():
            store[idx] = fields[name][-n:]
        self._next = (self._next + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def sample(self, n: int, generator: torch.Generator) -> SynthBatch:
        device = next(iter(self._data.values())).device
        idx = torch.randint(0, self._size, (n,), generator=generator).to(device)
        return SynthBatch.from_fields({k: t[idx] for k, t in self._data.items()})

    def state_dict(self) -> dict:
        if self._data is None:
            return {"size": 0}
        return {"size": self._size, "next": self._next, "data": {k: t.cpu() for k, t in self._data.items()}}

    def load_state_dict(self, state: dict, device) -> None:
        if not state.get("size"):
            return
        self._data = {k: t.to(device) for k, t in state["data"].items()}
        self._size, self._next = state["size"], state["next"]
