"""The two student encoders (photo, sketch), their proxies and their retrieval readout.

Proxies are the frozen final-layer weights of the teacher that judges each modality (one shared
set for the unified teacher, one per modality for independent teachers). Students predict classes
as ``scale * cos(embedding, proxy)`` (the Proxy-Anchor scale); this is what adversarial terms and
the ``proxy`` readout use.

Readouts (how an embedding becomes the vector that retrieval compares by cosine):
- ``raw``: the L2-normalised embedding (the paper's retrieval);
- ``proxy``: the softmax of the scaled cosines to the proxies: a point in the shared label space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfbench.datasets import MODALITIES
from dfbench.errors import ConfigError
from dfbench.models import Encoder

READOUTS = ("raw", "proxy")


class Students(nn.Module):
    def __init__(self, ctx, variant: str, scale: float = 32.0, init_from_teachers: bool = False):
        super().__init__()
        scfg = ctx.config["students"]
        teachers = ctx.teachers
        self.variant = variant
        self.scale = float(scale)
        embed_dim = {m: teachers.for_modality(m, variant).feature_dim for m in MODALITIES}
        self.encoders = nn.ModuleDict(
            {
                m: Encoder(scfg["arch"], embed_dim[m], image_size=ctx.image_size, width=scfg["width"], feature_dim=scfg["feature_dim"])
                for m in MODALITIES
            }
        )
        if init_from_teachers:
            for m in MODALITIES:
                teacher = teachers.for_modality(m, variant)
                enc = self.encoders[m]
                try:
                    enc.backbone.load_state_dict(teacher.backbone.state_dict())
                except RuntimeError as exc:
                    raise ConfigError(
                        "params.init_from_teachers needs students of the teachers' architecture "
                        f"(students.arch/width/feature_dim = teachers'): {exc}"
                    ) from None
                with torch.no_grad():
                    enc.embed.weight.copy_(torch.eye(enc.embed.out_features, enc.embed.in_features))
                    enc.embed.bias.zero_()
        for m in MODALITIES:
            w = teachers.for_modality(m, variant).head.weight.detach().clone()
            self.register_buffer(f"proxies_{m}", w)
        self.to(ctx.device)

    def proxies(self, modality: str) -> torch.Tensor:
        return getattr(self, f"proxies_{modality}")

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.encoders[modality](x)

    def class_logits_from_embedding(self, emb: torch.Tensor, modality: str) -> torch.Tensor:
        return self.scale * F.normalize(emb, dim=1) @ F.normalize(self.proxies(modality), dim=1).t()

    def class_logits(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.class_logits_from_embedding(self(x, modality), modality)


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
            return F.softmax(self.students.class_logits_from_embedding(emb, modality), dim=1)
        return F.normalize(emb, dim=1)
