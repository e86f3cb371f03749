"""``triplet``: a cross-modal triplet loss over the synthesised photo/sketch pairs.

Anchors are the embeddings of one modality, positives and negatives those of the other
(sketch -> photo is the retrieval direction; with ``symmetric`` photo -> sketch is added and the
two are averaged). Distances are cosine distances ``1 - cos`` between L2-normalised embeddings,
in [0, 2]. For anchor i:

- positives: the other modality's items with the same label, and always item i itself (the two
  halves of a pair come from the same noise even when the teachers disagree on its class);
- negatives: every other item of another label.

``mining: hard`` (Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017): per anchor, ``relu(max d(pos) - min d(neg) + margin)``, averaged over
the anchors that have a negative. ``mining: all``: every valid (anchor, positive, negative)
triplet, averaged over those with a non-zero loss (memory B^3: small batches only).

A batch with a single label has no negatives: the loss is 0 (with a graph, so ``backward`` works).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dfbench.api.alignment import AlignmentLoss
from dfbench.api.options import Options, option
from dfbench.api.errors import ConfigError

MINING = ("hard", "all")


def cosine_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Na, Nb) cosine distances between the rows of ``a`` and ``b``."""
    return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()


def triplet_loss(
    anchors: torch.Tensor,
    others: torch.Tensor,
    labels_a: torch.Tensor,
    labels_o: torch.Tensor,
    margin: float,
    mining: str = "hard",
) -> torch.Tensor:
    """The triplet loss of ``anchors`` against ``others`` (row i of both is a pair)."""
    if anchors.shape[0] != others.shape[0]:
        raise ValueError(f"triplet_loss needs paired rows, got {anchors.shape[0]} and {others.shape[0]}")
    dist = cosine_distances(anchors, others)
    n = dist.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    pos = (labels_a[:, None] == labels_o[None, :]) | eye
    neg = ~pos
    has_neg = neg.any(1)
    if not bool(has_neg.any()):
        return dist.sum() * 0.0
    if mining == "hard":
        d_pos = dist.masked_fill(~pos, float("-inf")).amax(1)
        d_neg = dist.masked_fill(~neg, float("inf")).amin(1)
        per_anchor = torch.where(has_neg, F.relu(d_pos - d_neg + margin), torch.zeros_like(d_pos))
        return per_anchor.sum() / has_neg.sum()
    if mining == "all":
        valid = pos[:, :, None] & neg[:, None, :]  # (anchor, positive, negative)
        losses = F.relu(dist[:, :, None] - dist[:, None, :] + margin) * valid
        active = (losses > 0).sum().clamp_min(1)
        return losses.sum() / active
    raise ConfigError(f"Unknown triplet mining '{mining}': use one of {', '.join(MINING)}.")


@dataclass
class TripletOptions(Options):
    margin: float = option(0.2, min=0.0, help="triplet margin on cosine distances")
    mining: str = option("hard", choices=MINING, help="hard: the hardest positive and negative per anchor; all: every valid triplet")
    symmetric: bool = option(True, help="sketch anchors and photo anchors alike")


class CrossModalTriplet(AlignmentLoss):
    Options = TripletOptions

    def __init__(self, ctx, options, students):
        super().__init__(ctx, options, students)
        if options["mining"] not in MINING:
            raise ConfigError(
                f"params.alignment.mining must be one of {', '.join(MINING)}, got {options['mining']!r}."
            )
        margin = options["margin"]
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
            raise ConfigError(f"params.alignment.margin must be a number >= 0, got {margin!r}.")

    def __call__(self, emb_gallery, emb_query, labels_gallery, labels_query):
        margin, mining = float(self.options["margin"]), self.options["mining"]
        loss = triplet_loss(emb_query, emb_gallery, labels_query, labels_gallery, margin, mining)
        if self.options["symmetric"]:
            back = triplet_loss(emb_gallery, emb_query, labels_gallery, labels_query, margin, mining)
            loss = 0.5 * (loss + back)
        return loss
