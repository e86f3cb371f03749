"""Proxy-Anchor loss (Kim, Kim, Cho, Kwak: "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020).

For cosine similarities s(x, p) between L2-normalised embeddings and proxies:

    L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - margin)))
      + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x,p) + margin)))

P+ are the proxies with a positive in the batch. Proxies are the teachers' frozen head weights
(DF-SBIR): with the unified teacher both modalities share them, so photo and sketch embeddings
are pulled into one space; with independent teachers each modality uses its own teacher's head.

``reduction`` (unified teacher): ``joint`` computes one loss over the concatenated photo+sketch
batch (dfbench's default); ``per-modality`` sums one loss per modality, as the DF-SBIR release does.
Independent teachers always sum one loss per modality (each against its own teacher's proxies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dfbench.api.alignment import AlignmentLoss
from dfbench.api.options import Options, option
from dfbench.api.modalities import pair_of


def proxy_anchor_loss(emb: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, margin: float, alpha: float) -> torch.Tensor:
    cos = F.normalize(emb, dim=1) @ F.normalize(proxies, dim=1).t()  # (B, C)
    pos = F.one_hot(labels, proxies.shape[0]).bool()
    neg = ~pos
    pos_exp = torch.where(pos, torch.exp(-alpha * (cos - margin)), torch.zeros_like(cos))
    neg_exp = torch.where(neg, torch.exp(alpha * (cos + margin)), torch.zeros_like(cos))
    with_pos = pos.any(0)
    n_pos = with_pos.sum().clamp_min(1)
    pos_term = torch.log1p(pos_exp.sum(0))[with_pos].sum() / n_pos
    neg_term = torch.log1p(neg_exp.sum(0)).sum() / proxies.shape[0]
    return pos_term + neg_term


@dataclass
class ProxyAnchorOptions(Options):
    margin: float = option(0.1, min=0.0, help="margin delta of Proxy-Anchor")
    alpha: float = option(32.0, min=0.0, min_exclusive=True, help="scale alpha of Proxy-Anchor")
    reduction: Literal["joint", "per-modality"] = option(
        "joint", help="unified teacher: one loss over the photo+sketch batch, or the sum of one per modality (the DF-SBIR release)"
    )


class ProxyAnchor(AlignmentLoss):
    Options = ProxyAnchorOptions

    def __call__(self, emb_gallery, emb_query, labels_gallery, labels_query):
        m, a = float(self.options["margin"]), float(self.options["alpha"])
        s = self.students
        gk, qk = pair_of(s).keys
        if s.variant == "unified" and self.options.get("reduction", "joint") == "joint":
            emb = torch.cat([emb_gallery, emb_query])
            labels = torch.cat([labels_gallery, labels_query])
            return proxy_anchor_loss(emb, labels, s.proxies(gk), m, a)
        return proxy_anchor_loss(emb_gallery, labels_gallery, s.proxies(gk), m, a) + proxy_anchor_loss(
            emb_query, labels_query, s.proxies(qk), m, a
        )
