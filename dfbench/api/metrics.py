"""Retrieval metrics as registered components (``dfbench_register_metrics``).

A metric is a per-query score computed from where the query's relevant gallery items landed in its
ranking, averaged over the queries: that covers every rank-based retrieval metric with binary
relevance (AP, AP@K, P@K, R@K, nDCG, reciprocal rank, ...). The exact ranking engine
(:func:`dfbench.train.metrics.retrieval_metrics`) computes the ranks once, ties pessimistic (an
irrelevant item with the same similarity ranks first), and hands each registered metric a
:class:`RankedRelevant` per chunk of queries. A record carries the metrics its run computed
(``metrics``): adding a metric never invalidates an old record, and leaderboards show a metric's
column where the records hold it.

The four metrics of the SBIR literature (``mAP@all``, ``mAP@200``, ``P@100``, ``P@200``) are the
core's own: every completed record holds them, and the engine computes them in its fast path
(``computed_by_engine``); their :meth:`RetrievalMetric.per_query` is the reference definition the
tests hold the engine to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class RankedRelevant:
    """The ranking of a chunk of queries, as a metric sees it.

    ``ranks``: (B, R) int64, the 1-based ranks of each query's relevant gallery items, best first;
    entries beyond the query's ``n_relevant`` are padding, ``n_gallery + 1``. ``n_relevant``: (B,)
    int64. ``n_gallery``: the gallery size. A query with no relevant item scores 0 and is never
    passed to a metric."""

    ranks: Any
    n_relevant: Any
    n_gallery: int

    def valid(self):
        """(B, R) bool: the entries that are relevant items, not padding."""
        import torch

        return torch.arange(self.ranks.shape[1], device=self.ranks.device).unsqueeze(0) < self.n_relevant.unsqueeze(1)


class RetrievalMetric:
    """A retrieval metric: :meth:`per_query` gives each query's score (float64), the metric is their
    mean. ``higher_is_better`` orders it; ``bounds`` (low, high; None: unbounded) is the range a
    record's value must lie in to be read; ``description`` is shown by ``dfbench list``."""

    higher_is_better: ClassVar[bool] = True
    bounds: ClassVar[tuple] = (0.0, 1.0)
    #: computed by the exact engine's fast path (the core four); others go through per_query
    computed_by_engine: ClassVar[bool] = False

    def per_query(self, ranked: RankedRelevant):
        raise NotImplementedError

    def in_bounds(self, value: float) -> bool:
        low, high = self.bounds
        return (low is None or value >= low) and (high is None or value <= high)
