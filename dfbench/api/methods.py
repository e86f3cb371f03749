"""The method interface.

A method is a class with a ``profiles`` declaration (its defaults per profile, see
:mod:`dfbench.app.config`), the teacher roles it needs, and ``fit(ctx)`` returning an
:class:`Embedder`: the object evaluation asks for retrieval embeddings of test sketches (queries)
and test gallery images (sketches against photos in the default pair). The runner owns seeds, devices, data, teachers, evaluation and records.

Data-free methods do not write their own loop: they subclass :class:`dfbench.train.engine.DataFreeMethod`
and declare an inversion strategy, weighted loss terms, an alignment loss and a schedule.
"""

from __future__ import annotations

from typing import Protocol


class Embedder(Protocol):
    def embed(self, images, modality: str):
        """Retrieval embeddings (B, D) for images (B, 3, S, S) of ``modality``; compared by cosine."""


class Method:
    #: given by the register() call when the registry loads the class (dfbench.api.registry.Entry)
    name: str = ""
    description: str = ""
    #: {"base": {...}, "smoke": {...}, "cpu": {...}, "paper": {...}}: each may hold ``params``
    #: (the method's own options) and overrides of core keys (teachers, students, data, eval).
    profiles: dict = {}
    #: whether the method reads the real train split (only reference bounds may)
    uses_train_data: bool = False

    def teacher_roles(self, params: dict, pair=None) -> set[str]:
        """The teacher roles the method needs with options ``params`` on a benchmark of
        modalities ``pair`` (a :class:`dfbench.api.modalities.ModalityPair`; its keys are the
        roles of the modalities' own classifiers, :func:`dfbench.api.teachers.roles_of`)."""
        raise NotImplementedError

    def fit(self, ctx) -> Embedder:
        raise NotImplementedError
