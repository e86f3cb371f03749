"""Teachers: the frozen classifiers a data-free method learns from.

Roles:
- each modality's key (``photo`` and ``sketch`` in the default pair): a classifier trained on that
  modality only (the paper's setting: trained independently, elsewhere);
- ``unified``: one classifier trained on both modalities (the variant the release runs);
- ``modality``: the gallery modality (0) vs the query modality (1), one logit.

A teacher loader (a plugin) turns the config and the benchmark into a :class:`TeacherSet`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from dfbench.api.modalities import DEFAULT_PAIR, ModalityPair

#: the roles every pair has besides its modalities' own classifiers (:func:`roles_of`)
SHARED_ROLES = ("unified", "modality")


def roles_of(pair=None) -> tuple[str, ...]:
    """Every teacher role of a benchmark with modalities ``pair`` (the default pair when None):
    one classifier per modality, the unified one and the modality classifier."""
    return tuple(pair or DEFAULT_PAIR) + SHARED_ROLES


#: the roles of the default pair
ROLES = roles_of()


@dataclass
class TeacherSet:
    """Frozen teachers by role, with their accuracies on the selection split (validation under the
    protocol, else test; fractions in [0, 1])."""

    models: dict  # role -> dfbench.train.models.Classifier (eval mode, no grads)
    accuracy: dict = field(default_factory=dict)  # role -> float or {modality key: ..} (the unified one)
    info: dict = field(default_factory=dict)  # role -> provenance (cache key, checkpoint path, time)
    modalities: ModalityPair = DEFAULT_PAIR  # the benchmark's (the runner sets it)

    def __getitem__(self, role: str):
        return self.models[role]

    def __contains__(self, role: str) -> bool:
        return role in self.models

    def for_modality(self, modality: str, variant: str):
        """The class teacher that judges images of ``modality`` under ``variant``
        (``independent``: the modality's own teacher; ``unified``: the shared one)."""
        return self.models["unified"] if variant == "unified" else self.models[modality]


def roles_for_variant(variant: str, modality: bool = True, pair=None) -> set[str]:
    """The roles a method of teacher ``variant`` needs on a benchmark of modalities ``pair``."""
    from dfbench.api.errors import ConfigError

    if variant not in ("independent", "unified"):
        raise ConfigError(f"Unknown teacher variant '{variant}': use 'independent' or 'unified'.")
    roles = {"unified"} if variant == "unified" else set(pair or DEFAULT_PAIR)
    if modality:
        roles.add("modality")
    return roles


class TeacherLoader:
    """What a registered teacher loader provides: ``load(ctx, roles) -> TeacherSet``.

    ``ctx`` is the :class:`dfbench.api.context.RunContext` (config, device, benchmark, progress,
    cache directory); ``roles`` the subset of the benchmark's roles (:func:`roles_of`) the method needs.
    """

    #: given by the register() call when the registry loads the class (dfbench.api.registry.Entry)
    name: str = ""
    description: str = ""

    def load(self, ctx, roles: set[str]) -> TeacherSet:
        raise NotImplementedError


class TeacherPasses:
    """Counts the images the teachers see (forward passes through their backbones), the unit of a
    data-free run's compute budget (``params.budget``; docs/protocol.md, "Equal budgets").

    Every teacher forward pass of the training loop counts, whatever calls it (synthesis terms,
    labelling, logits for the encoder loss); monitoring (curve evaluation, synthesis measures) runs
    inside :meth:`paused` and does not. Counting reads only tensor shapes: no host synchronisation."""

    def __init__(self, teachers: TeacherSet):
        self.images = 0
        self._paused = 0
        self._handles = [getattr(m, "backbone", m).register_forward_pre_hook(self._count) for m in teachers.models.values()]

    def _count(self, module, args) -> None:
        if not self._paused and args:
            self.images += int(args[0].shape[0])

    @contextlib.contextmanager
    def paused(self):
        """Passes inside this block are monitoring: not counted."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
