"""The two student encoders (one per modality of the benchmark), their proxies and their retrieval readout.

Proxies are the frozen final-layer weights of the teacher that judges each modality (one shared
set for the unified teacher, one per modality for independent teachers). Students predict classes
(``class_logits``: what adversarial terms and distillation losses use) through a ``head``:
- ``cosine`` (dfbench's default): ``scale * cos(embedding, proxy)`` (the Proxy-Anchor scale);
- ``linear`` (the public release): the teacher's classifier head, weights and bias, on the raw
  embedding, ``W e + b``.
The ``proxy`` readout always uses the scaled cosines.

Readouts (how an embedding becomes the vector that retrieval compares by cosine):
- ``raw``: the L2-normalised embedding (the paper's retrieval);
- ``proxy``: the softmax of the scaled cosines to the proxies: a point in the shared label space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfbench.api.modalities import pair_of
from dfbench.api.errors import ConfigError
from dfbench.train.models import Encoder

READOUTS = ("raw", "proxy")
HEADS = ("cosine", "linear")


class Students(nn.Module):
    def __init__(self, ctx, variant: str, scale: float = 32.0, init_from_teachers: bool = False, head: str = "cosine"):
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"Unknown student head '{head}': use one of {', '.join(HEADS)}.")
        scfg = ctx.config["students"]
        teachers = ctx.teachers
        self.variant = variant
        self.modalities = pair_of(ctx)  # the benchmark's modalities: an encoder for each
        keys = self.modalities.keys
        self.scale = float(scale)
        self.head = head
        embedding_layer = bool(scfg.get("embedding_layer", True))
        embed_dim = {m: teachers.for_modality(m, variant).feature_dim for m in keys}
        self.encoders = nn.ModuleDict(
            {
                m: Encoder(scfg["arch"], embed_dim[m], image_size=ctx.image_size, width=scfg["width"],
                           feature_dim=scfg["feature_dim"], embedding_layer=embedding_layer,
                           weights=scfg.get("weights"))
                for m in keys
            }
        )
        if init_from_teachers:
            for m in keys:
                teacher = teachers.for_modality(m, variant)
                enc = self.encoders[m]
                try:
                    enc.backbone.load_state_dict(teacher.backbone.state_dict())
                except RuntimeError as exc:
                    raise ConfigError(
                        "params.init_from_teachers needs students of the teachers' architecture "
                        f"(students.arch/width/feature_dim = teachers'): {exc}"
                    ) from None
                if enc.embed is not None:  # an identity embedding layer: the teacher's features as they are
                    with torch.no_grad():
                        enc.embed.weight.copy_(torch.eye(enc.embed.out_features, enc.embed.in_features))
                        enc.embed.bias.zero_()
        for m in keys:
            teacher_head = teachers.for_modality(m, variant).head
            self.register_buffer(f"proxies_{m}", teacher_head.weight.detach().clone())
            if head == "linear":
                self.register_buffer(f"bias_{m}", teacher_head.bias.detach().clone())
        self.to(ctx.device)

    def proxies(self, modality: str) -> torch.Tensor:
        return getattr(self, f"proxies_{modality}")

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.encoders[modality](x)

    def cosine_logits(self, emb: torch.Tensor, modality: str) -> torch.Tensor:
        """``scale * cos(embedding, proxy)``: the ``proxy`` readout's logits."""
        return _cosine_logits(self, emb, modality)

    def class_logits_from_embedding(self, emb: torch.Tensor, modality: str) -> torch.Tensor:
        """The students' class prediction through their ``head`` (cosine or the teacher's linear head)."""
        if getattr(self, "head", "cosine") == "linear":
            return F.linear(emb, self.proxies(modality), getattr(self, f"bias_{modality}"))
        return _cosine_logits(self, emb, modality)

    def class_logits(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.class_logits_from_embedding(self(x, modality), modality)


def _cosine_logits(students, emb: torch.Tensor, modality: str) -> torch.Tensor:
    return students.scale * F.normalize(emb, dim=1) @ F.normalize(students.proxies(modality), dim=1).t()


class StudentEmbedder:
    """Turns trained students into the retrieval embeddings of a readout."""

    def __init__(self, students: Students, readout: str):
        if readout not in READOUTS:
            raise ConfigError(f"Unknown readout '{readout}': use one of {', '.join(READOUTS)}.")
        self.students = students
        self.readout = readout

    @torch.no_grad()
    def embed(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        self.students.eval()
        emb = self.students(images, modality)
        if self.readout == "proxy":
            return F.softmax(self.students.cosine_logits(emb, modality), dim=1)
        return F.normalize(emb, dim=1)
