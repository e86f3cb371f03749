"""Teachers: the frozen classifiers a data-free method learns from.

Roles:
- ``photo``: a classifier trained on photos only; ``sketch``: on sketches only (the paper's setting:
  trained independently, elsewhere);
- ``unified``: one classifier trained on both modalities (the variant the release runs);
- ``modality``: photo (0) vs sketch (1), one logit.

A teacher loader (a plugin) turns the config and the benchmark into a :class:`TeacherSet`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

ROLES = ("photo", "sketch", "unified", "modality")


@dataclass
class TeacherSet:
    """Frozen teachers by role, with their accuracies on the selection split (validation under the
    protocol, else test; fractions in [0, 1])."""

    models: dict  # role -> dfbench.train.models.Classifier (eval mode, no grads)
    accuracy: dict = field(default_factory=dict)  # role -> float or {"photo": .., "sketch": ..}
    info: dict = field(default_factory=dict)  # role -> provenance (cache key, checkpoint path, time)

    def __getitem__(self, role: str):
        return self.models[role]

    def __contains__(self, role: str) -> bool:
        return role in self.models

    def for_modality(self, modality: str, variant: str):
        """The class teacher that judges images of ``modality`` under ``variant``
        (``independent``: the modality's own teacher; ``unified``: the shared one)."""
        return self.models["unified"] if variant == "unified" else self.models[modality]


def roles_for_variant(variant: str, modality: bool = True) -> set[str]:
    from dfbench.api.errors import ConfigError

    if variant not in ("independent", "unified"):
        raise ConfigError(f"Unknown teacher variant '{variant}': use 'independent' or 'unified'.")
    roles = {"unified"} if variant == "unified" else {"photo", "sketch"}
    if modality:
        roles.add("modality")
    return roles


class TeacherLoader:
    """What a registered teacher loader provides: ``load(ctx, roles) -> TeacherSet``.

    ``ctx`` is the :class:`dfbench.api.context.RunContext` (config, device, benchmark, progress,
    cache directory); ``roles`` the subset of :data:`ROLES` the method needs.
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
