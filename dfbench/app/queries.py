"""Per-query outputs beside each record: each test query's AP and its top gallery items.

``<run folder>/queries.csv.gz`` holds one row per query (a test image of the query modality, in the
dataset's order: a sketch in the default pair): ``query`` (its index), ``label`` (its class index),
``AP`` (its average precision: the terms whose mean is the record's mAP@all) and ``top`` (the
indices, among the test images of the gallery modality, of the ``TOP`` most similar ones by cosine,
best first, space separated). Gzipped CSV
keeps it small (about 40 KB for 1,000 queries) and readable by any tool; ``dfbench results
--queries RECORD`` reads it.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

FILE = "queries.csv.gz"
TOP = 10
COLUMNS = ("query", "label", "AP", "top")


def top_gallery(queries, gallery, top: int = TOP, chunk: int = 1024):
    """Indices (Nq, top) of each query's most similar gallery items by cosine, best first."""
    import torch

    q = torch.nn.functional.normalize(queries.float(), dim=1)
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    k = min(top, g.shape[0])
    return torch.cat([(q[i : i + chunk] @ g.t()).topk(k, dim=1).indices.cpu() for i in range(0, q.shape[0], chunk)])


def rows(embeddings: dict, top: int = TOP) -> list[dict]:
    """The per-query rows of a run's evaluation (``embeddings`` as kept by
    :func:`dfbench.train.evaluation.evaluate_embedder`: queries, query_labels, gallery, AP)."""
    ids = top_gallery(embeddings["queries"], embeddings["gallery"], top).tolist()
    labels = embeddings["query_labels"].cpu().tolist()
    aps = embeddings["AP"].tolist()
    return [{"query": i, "label": labels[i], "AP": aps[i], "top": ids[i]} for i in range(len(labels))]


def save(folder: Path, embeddings: dict, top: int = TOP) -> str | None:
    """Write ``folder/queries.csv.gz`` (atomically; the same bytes for the same run) and return its
    name, or None when the evaluation kept no per-query AP."""
    if "AP" not in embeddings:
        return None
    from dfbench.api.fileio import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows(embeddings, top):
        writer.writerow((r["query"], r["label"], f"{r['AP']:.6f}", " ".join(map(str, r["top"]))))
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(folder) / FILE, gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
    return FILE


def load(path: Path) -> list[dict]:
    """The rows of a ``queries.csv.gz`` (AP as float, top as a list of ints)."""
    from dfbench.api.errors import DataError

    try:
        text = gzip.decompress(Path(path).read_bytes()).decode("utf-8")
        reader = csv.DictReader(io.StringIO(text))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"columns {reader.fieldnames}, expected {', '.join(COLUMNS)}")
        return [
            {"query": int(r["query"]), "label": int(r["label"]), "AP": float(r["AP"]), "top": [int(x) for x in r["top"].split()]}
            for r in reader
        ]
    except (OSError, EOFError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Cannot read the per-query outputs {path}: {exc}. Run the method again with --force to rewrite them.") from None
