"""Two-way InfoNCE between paired photo and sketch embeddings (van den Oord et al. 2018; the
MoCo-style variant of the DF-SBIR release, He et al. 2020).

Row i of the photo batch and row i of the sketch batch come from the same noise (a pair). Each
photo is classified against every sketch of the batch plus a queue of earlier sketch embeddings,
and vice versa. Unlike the release, the queue really is updated (first in, first out, any size),
so its negatives are past embeddings rather than the initial noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dfbench.api.alignment import AlignmentLoss
from dfbench.api.options import Options, option


@dataclass
class InfoNCEOptions(Options):
    temperature: float = option(0.07, min=0.0, min_exclusive=True, help="softmax temperature of the similarities")
    queue_size: int = option(0, min=0, help="earlier embeddings kept per modality as extra negatives (0: none)")


class PairedInfoNCE(AlignmentLoss):
    Options = InfoNCEOptions

    def __init__(self, ctx, options, students):
        super().__init__(ctx, options, students)
        self.queues = {"gallery": None, "query": None}  # earlier embeddings of each side

    def state_dict(self) -> dict:
        return {m: (q.cpu() if q is not None else None) for m, q in self.queues.items()}

    def load_state_dict(self, state: dict) -> None:
        self.queues = {m: (q.to(self.ctx.device) if q is not None else None) for m, q in state.items()}

    def _logits(self, q, k, queue):
        logits = q @ k.t()
        if queue is not None:
            logits = torch.cat([logits, q @ queue.t()], dim=1)
        return logits / float(self.options["temperature"])

    def _enqueue(self, modality, emb):
        size = int(self.options["queue_size"])
        if size <= 0:
            return
        old = self.queues[modality]
        new = emb.detach() if old is None else torch.cat([emb.detach(), old])
        self.queues[modality] = new[:size]

    def __call__(self, emb_gallery, emb_query, labels_gallery, labels_query):
        p = F.normalize(emb_gallery, dim=1)
        s = F.normalize(emb_query, dim=1)
        target = torch.arange(p.shape[0], device=p.device)
        loss = 0.5 * (
            F.cross_entropy(self._logits(p, s, self.queues["query"]), target)
            + F.cross_entropy(self._logits(s, p, self.queues["gallery"]), target)
        )
        self._enqueue("gallery", p)
        self._enqueue("query", s)
        return loss
