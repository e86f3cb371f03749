"""The inversion-strategy interface: how a method synthesises training pairs from the teachers.

Synthesis is separated from training (as in Fast-Datafree's ``synthesize()``/``sample()``): a
strategy's ``synthesize(students)`` runs its own optimisation steps and returns one
:class:`SynthBatch` of paired photos and sketches with labels; the engine stores batches in a
:class:`ReplayPool` and samples encoder batches from it. Every strategy returns the same type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dfbench.api.options import DefaultsOf, Options


#: the fields every batch has, and the optional ones (None when a strategy does not fill them)
BATCH_FIELDS = ("photo", "sketch", "photo_labels", "sketch_labels")
OPTIONAL_BATCH_FIELDS = ("photo_logits", "sketch_logits")


@dataclass
class SynthBatch:
    """Paired images (row i of ``photo`` pairs with row i of ``sketch``) and the teacher labels
    of each image. Tensors are detached and live on the run's device.

    ``photo_logits``/``sketch_logits`` (optional, (B, C)): the judging teacher's logits of each
    image, filled by strategies that compute them anyway; losses that need them (knowledge
    distillation) get them from the engine, which computes missing ones.
    """

    photo: torch.Tensor
    sketch: torch.Tensor
    photo_labels: torch.Tensor
    sketch_labels: torch.Tensor
    photo_logits: torch.Tensor | None = None
    sketch_logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.photo.shape[0]

    def index(self, idx: torch.Tensor) -> "SynthBatch":
        return SynthBatch(*(None if t is None else t[idx] for t in self._tensors()))

    def _tensors(self) -> tuple:
        return tuple(getattr(self, k) for k in BATCH_FIELDS + OPTIONAL_BATCH_FIELDS)


def concat_batches(a: SynthBatch, b: SynthBatch) -> SynthBatch:
    """Rows of ``a`` then rows of ``b``; an optional field survives only when both have it."""
    out = []
    for x, y in zip(a._tensors(), b._tensors()):
        out.append(None if x is None or y is None else torch.cat([x, y]))
    return SynthBatch(*out)


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

    Optional fields (teacher logits) are kept when the first batch has them, and dropped from the
    pool as soon as a batch without them arrives."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._data: SynthBatch | None = None
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return self._size

    def _fields(self) -> tuple:
        return tuple(k for k in BATCH_FIELDS + OPTIONAL_BATCH_FIELDS if getattr(self._data, k) is not None)

    def add(self, batch: SynthBatch) -> None:
        if self.capacity <= 0:
            return
        if self._data is None:
            shape = lambda t: (self.capacity,) + tuple(t.shape[1:])  # noqa: E731
            self._data = SynthBatch(*(None if t is None else torch.empty(shape(t), dtype=t.dtype, device=t.device) for t in batch._tensors()))
        for name in OPTIONAL_BATCH_FIELDS:
            if getattr(batch, name) is None:
                setattr(self._data, name, None)
        n = min(len(batch), self.capacity)
        idx = (torch.arange(n) + self._next) % self.capacity
        idx = idx.to(batch.photo.device)
        for name in self._fields():
            getattr(self._data, name)[idx] = getattr(batch, name)[-n:]
        self._next = (self._next + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def sample(self, n: int, generator: torch.Generator) -> SynthBatch:
        idx = torch.randint(0, self._size, (n,), generator=generator).to(self._data.photo.device)
        return self._data.index(idx)

    def state_dict(self) -> dict:
        if self._data is None:
            return {"size": 0}
        return {"size": self._size, "next": self._next, "data": {k: getattr(self._data, k).cpu() for k in self._fields()}}

    def load_state_dict(self, state: dict, device) -> None:
        if not state.get("size"):
            return
        data = state["data"]
        self._data = SynthBatch(*(data[k].to(device) if k in data else None for k in BATCH_FIELDS + OPTIONAL_BATCH_FIELDS))
        self._size, self._next = state["size"], state["next"]
