"""Modalities: what the two sides of a cross-modal benchmark hold.

A benchmark pairs two modalities: the **query** side (what a user searches with) and the
**gallery** side (what is searched). A dataset plugin declares them
(:attr:`dfbench.api.datasets.DatasetPlugin.modalities`), once, as a mapping from each side's
**key** to what it holds::

    {"spoken":  {"role": "query",   "name": "spoken digit",  "plural": "spoken digits",  "kind": "audio", "channels": 1},
     "written": {"role": "gallery", "name": "written digit", "plural": "written digits", "kind": "image", "channels": 1}}

The key is how every interface that moves data addresses that side: the benchmark's image sets
(``benchmark.get(split, key)``), the teachers by role (``teachers[key]``), synthesised batches
(``batch.images[key]``), the students' encoders and the records' per-modality fields. Nothing
outside a dataset plugin names a modality: the core reads the keys from the pair
(:class:`ModalityPair`), and code that needs one side asks for it by role
(``pair.query.key``, ``pair.gallery.key``).

Every tensor a network sees is a float image (3, S, S) in [-1, 1], whatever the modality's kind
(an audio clip enters as its spectrogram image): one network can read both sides (the unified
teacher). ``channels`` says how many of the three carry information: 3 for colour, 1 for a grey
image replicated over the three (sketches, spectrograms); synthesis produces that many.

The engine walks the two sides in one fixed order, gallery first (:attr:`ModalityPair.keys`): its
random draws follow that order, so a run is reproducible whatever the keys are called.
"""

from __future__ import annotations

from dataclasses import dataclass

QUERY = "query"
GALLERY = "gallery"
#: the two sides of a pair, in the order the engine walks them
SIDES = (GALLERY, QUERY)
KINDS = ("image", "audio", "text", "video", "other")

#: the default pair (sketch queries against a photo gallery, the paper's setting): its only
#: declaration; a dataset that declares nothing is this pair
DEFAULT_DECLARATION = {
    "sketch": {"role": QUERY, "name": "sketch", "plural": "sketches", "kind": "image", "channels": 1},
    "photo": {"role": GALLERY, "name": "photo", "plural": "photos", "kind": "image", "channels": 3},
}


@dataclass(frozen=True)
class Modality:
    """One side of a pair: its key, its role and what it holds."""

    key: str
    role: str  # QUERY or GALLERY
    name: str
    plural: str
    kind: str = "image"
    channels: int = 3
    shown_as: str | None = None  # how it enters the networks, when not as itself ("log-mel spectrogram image")

    def declaration(self) -> dict:
        out = {"role": self.role, "name": self.name, "plural": self.plural, "kind": self.kind, "channels": self.channels}
        if self.shown_as:
            out["as"] = self.shown_as
        return out


@dataclass(frozen=True)
class ModalityPair:
    """The two modalities of a benchmark, one per side."""

    gallery: Modality
    query: Modality

    @property
    def keys(self) -> tuple[str, str]:
        """The sides' keys in the engine's order: gallery, query."""
        return (self.gallery.key, self.query.key)

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return 2

    def __contains__(self, key) -> bool:
        return key in self.keys

    def __getitem__(self, key: str) -> Modality:
        for m in (self.gallery, self.query):
            if m.key == key:
                return m
        raise KeyError(f"no modality {key!r} in this benchmark (it has {', '.join(self.keys)})")

    def side(self, role: str) -> Modality:
        if role not in SIDES:
            raise KeyError(f"no side {role!r}: a pair has {', '.join(SIDES)}")
        return self.query if role == QUERY else self.gallery

    def other(self, key: str) -> str:
        """The key of the other side."""
        return self.keys[1] if key == self.keys[0] else self.keys[0]

    def index(self, key: str) -> int:
        """0 for the gallery side, 1 for the query side: the modality classifier's label."""
        return self.keys.index(key)

    def stream_name(self, key: str) -> str:
        """The name random streams of the side ``key`` is on use (``teachers/<name>/order``): the
        default pair's key for that side, whatever this pair calls it, so that a run's random
        draws do not depend on the names a dataset gives its modalities (and default-pair runs
        keep the streams they always had)."""
        return DEFAULT_PAIR.side(self[key].role).key if key in self else key

    def declaration(self) -> dict:
        """The declaration (query side first), as records carry it (``data.modalities``)."""
        return {self.query.key: self.query.declaration(), self.gallery.key: self.gallery.declaration()}

    @classmethod
    def parse(cls, declared, where: str = "the dataset") -> "ModalityPair":
        """The pair ``declared`` describes (a :data:`DEFAULT_DECLARATION`-shaped mapping, or a pair);
        raises :class:`ValueError` saying what is wrong."""
        if isinstance(declared, ModalityPair):
            return declared
        if not isinstance(declared, dict) or len(declared) != 2:
            raise ValueError(f"{where} must declare two modalities as {{key: {{role, name, ...}}}}, got {declared!r}")
        sides: dict = {}
        for key, d in declared.items():
            if not isinstance(key, str) or not key or not isinstance(d, dict):
                raise ValueError(f"{where}: modality {key!r} must be a non-empty name with a mapping of what it holds")
            role = d.get("role")
            if role not in SIDES or role in sides:
                raise ValueError(f"{where}: one modality must have role 'query' and the other 'gallery' (got {role!r} for {key!r})")
            kind = str(d.get("kind", "image"))
            if kind not in KINDS:
                raise ValueError(f"{where}: modality {key!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
            channels = d.get("channels", 3)
            if channels not in (1, 3):
                raise ValueError(f"{where}: modality {key!r} has channels {channels!r}; use 3 (colour) or 1 (grey)")
            name = str(d.get("name", key))
            sides[role] = Modality(key=key, role=role, name=name, plural=str(d.get("plural", name + "s")), kind=kind,
                                   channels=int(channels), shown_as=d.get("as"))
        return cls(gallery=sides[GALLERY], query=sides[QUERY])


DEFAULT_PAIR = ModalityPair.parse(DEFAULT_DECLARATION, "the default pair")


def declared_pair(dataset_class, name: str) -> ModalityPair:
    """The pair a dataset class declares (its ``modalities``; the default pair when it declares
    none); :class:`ValueError` naming the dataset when the declaration does not parse."""
    return ModalityPair.parse(getattr(dataset_class, "modalities", None) or DEFAULT_DECLARATION, f"dataset '{name}'")


def pair_of(obj) -> ModalityPair:
    """The pair of a benchmark, a run context or anything holding one (``.modalities`` or
    ``.benchmark.modalities``); the default pair when it holds none."""
    for candidate in (getattr(obj, "modalities", None), getattr(getattr(obj, "benchmark", None), "modalities", None)):
        if isinstance(candidate, ModalityPair):
            return candidate
    return DEFAULT_PAIR
