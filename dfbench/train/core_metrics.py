"""The core's four retrieval metrics as registered components (docs/methods.md, "Metrics"):
``mAP@all``, ``mAP@200``, ``P@100``, ``P@200``. The exact engine computes them in its fast path
(:func:`dfbench.train.metrics.retrieval_metrics`); the definitions here are the reference the tests
hold the engine to, query by query (torch is imported when a metric is computed, never when the
plugins load: the CLI starts without it). Registered by the core itself (entry point ``metrics``), so a
plugin's metric is registered exactly the same way."""

from __future__ import annotations

from dfbench import hookimpl
from dfbench.api.metrics import RankedRelevant, RetrievalMetric


def _precisions(ranked: RankedRelevant):
    """j / rank_j of each relevant item (0 for padding), float64."""
    import torch

    j = torch.arange(1, ranked.ranks.shape[1] + 1, device=ranked.ranks.device, dtype=torch.float64).unsqueeze(0)
    return torch.where(ranked.valid(), j / ranked.ranks.to(torch.float64), 0.0)


class MeanAveragePrecision(RetrievalMetric):
    """AP over the whole ranking: (1/R) * sum_j j / rank_j."""

    computed_by_engine = True

    def per_query(self, ranked: RankedRelevant):
        import torch

        return _precisions(ranked).sum(1) / ranked.n_relevant.clamp(min=1).to(torch.float64)


class MeanAveragePrecisionAtK(RetrievalMetric):
    """AP over the top K: the sum of j / rank_j over relevant items ranked in the top K, divided
    by how many are there (0 when none is)."""

    computed_by_engine = True
    k: int = 200

    def per_query(self, ranked: RankedRelevant):
        import torch

        inside = ranked.valid() & (ranked.ranks <= min(self.k, ranked.n_gallery))
        hits = inside.sum(1).to(torch.float64)
        return torch.where(hits > 0, (_precisions(ranked) * inside).sum(1) / hits.clamp(min=1), 0.0)


class PrecisionAtK(RetrievalMetric):
    """Precision in the top K: relevant items ranked in the top min(K, N), divided by min(K, N)."""

    computed_by_engine = True
    k: int = 100

    def per_query(self, ranked: RankedRelevant):
        import torch

        cap = min(self.k, ranked.n_gallery)
        return (ranked.valid() & (ranked.ranks <= cap)).sum(1).to(torch.float64) / cap


class MAP200(MeanAveragePrecisionAtK):
    k = 200


class P100(PrecisionAtK):
    k = 100


class P200(PrecisionAtK):
    k = 200


@hookimpl
def dfbench_register_metrics(register):
    register("mAP@all", MeanAveragePrecision, description="mean over queries of the average precision over the whole gallery ranking")
    register("mAP@200", MAP200, description="mean over queries of the average precision over the top 200")
    register("P@100", P100, description="mean over queries of the share of relevant items in the top 100")
    register("P@200", P200, description="mean over queries of the share of relevant items in the top 200")
