"""Evaluation of a trained method: a split's images of the benchmark's query modality are the
queries, those of its gallery modality the gallery (sketches against photos in the default pair;
the test split for a run's result, read once; the validation split for every choice before it)."""

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


@torch.no_grad()
def embed_shard(embedder, imageset, modality: str, device, batch_size: int, task=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Data-parallel runs: this rank embeds its contiguous share of ``imageset``; the shares of
    all ranks are gathered, so every rank returns what :func:`embed_set` returns (same order)."""
    from dfbench.train import distributed as dist

    share = dist.shard_range(len(imageset))
    embs, labels = [], []
    for start in range(share.start, share.stop, batch_size):
        idx = list(range(start, min(share.stop, start + batch_size)))
        embs.append(embedder.embed(imageset.batch(idx, device), modality).float())
        labels.append(imageset.labels[start : start + len(idx)].to(device))
        if task is not None:
            task.advance(len(idx))
    if not embs:  # fewer images than ranks: an empty share with the right width
        embs.append(embedder.embed(imageset.batch([0], device), modality).float()[:0])
        labels.append(imageset.labels[:0].to(device))
    return dist.all_gather_cat(torch.cat(embs)), dist.all_gather_cat(torch.cat(labels))


def evaluate_embedder(embedder, benchmark, device, batch_size: int, reporter=None, keep: dict | None = None, split: str = "test",
                      extra: dict | None = None) -> dict:
    """The four metrics on ``split`` (the query modality's images the queries, the gallery
    modality's the gallery: ``benchmark.modalities``), and those of
    ``extra`` ({name: registered metric}, :func:`dfbench.train.metrics.registered_extra_metrics`);
    with ``keep`` (a dict), the embeddings, labels and each query's AP (``"AP"``) are stored in it."""
    from dfbench.train.metrics import retrieval_metrics
    from dfbench.api.progress import Reporter

    from dfbench.train import distributed as dist

    reporter = reporter or Reporter(enabled=False)
    from dfbench.api.modalities import pair_of

    pair = pair_of(benchmark)
    qkey, gkey = pair.query.key, pair.gallery.key
    queries_set = benchmark.get(split, qkey)
    gallery_set = benchmark.get(split, gkey)
    if dist.active():  # each rank embeds a shard; the metrics are computed once, on rank 0
        total = len(dist.shard_range(len(queries_set))) + len(dist.shard_range(len(gallery_set)))
        with reporter.task("evaluation", total=total) as task:
            q, ql = embed_shard(embedder, queries_set, qkey, device, batch_size, task)
            g, gl = embed_shard(embedder, gallery_set, gkey, device, batch_size, task)
            metrics = dist.broadcast_object({k: float(v) for k, v in retrieval_metrics(q, ql, g, gl, per_query=keep, extra=extra).items()} if dist.is_main() else None)
            if keep is not None:
                keep.update(queries=q, query_labels=ql, gallery=g, gallery_labels=gl)
            task.note(f"mAP@all {metrics['mAP@all']:.4f}")
        return metrics
    with reporter.task("evaluation", total=len(queries_set) + len(gallery_set)) as task:
        q, ql = embed_set(embedder, queries_set, qkey, device, batch_size, task)
        g, gl = embed_set(embedder, gallery_set, gkey, device, batch_size, task)
        metrics = retrieval_metrics(q, ql, g, gl, per_query=keep, extra=extra)
        if keep is not None:
            keep.update(queries=q, query_labels=ql, gallery=g, gallery_labels=gl)
        task.note(f"mAP@all {metrics['mAP@all']:.4f}")
    return metrics
