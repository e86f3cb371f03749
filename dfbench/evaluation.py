"""Evaluation of a trained method: test sketches are the queries, test photos the gallery."""

from __future__ import annotations

import torch


@torch.no_grad()
def embed_set(embedder, imageset, modality: str, device, batch_size: int, task=None) -> tuple[torch.Tensor, torch.Tensor]:
    embs, labels = [], []
    for x, y in imageset.iter_batches(batch_size, device):
        embs.append(embedder.embed(x, modality).float())
        labels.append(y)
        if task is not None:
            task.advance(len(y))
    return torch.cat(embs), torch.cat(labels)


def evaluate_embedder(embedder, benchmark, device, batch_size: int, reporter=None, keep: dict | None = None) -> dict:
    """The four metrics; with ``keep`` (a dict), the embeddings and labels are stored in it."""
    from dfbench.metrics import retrieval_metrics
    from dfbench.progress import Reporter

    reporter = reporter or Reporter(enabled=False)
    queries_set = benchmark.get("test", "sketch")
    gallery_set = benchmark.get("test", "photo")
    with reporter.task("evaluation", total=len(queries_set) + len(gallery_set)) as task:
        q, ql = embed_set(embedder, queries_set, "sketch", device, batch_size, task)
        g, gl = embed_set(embedder, gallery_set, "photo", device, batch_size, task)
        metrics = retrieval_metrics(q, ql, g, gl)
        if keep is not None:
            keep.update(queries=q, query_labels=ql, gallery=g, gallery_labels=gl)
        task.note(f"mAP@all {metrics['mAP@all']:.4f}")
    return metrics
