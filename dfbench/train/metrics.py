"""Retrieval metrics of category-level sketch-based image retrieval (SBIR).

Every query (a sketch embedding) is ranked against the whole gallery (photo embeddings) by cosine
similarity; a gallery item is *relevant* to a query when it has the query's label. The metrics:

``mAP@all``
    Mean over queries of the average precision over the whole ranking,
    ``AP = (1/R) * sum_{j=1..R} j / rank_j`` where the relevant items are sorted by rank, ``rank_j``
    is the rank (1-based) of the j-th of them and ``R`` the number of relevant gallery items.
``mAP@K`` (``mAP@200`` by default)
    The same sum restricted to the relevant items ranked in the top ``K``, normalised by how many
    relevant items the top ``K`` holds (0 when it holds none).
``P@K`` (``P@100``, ``P@200`` by default)
    Fraction of the top ``K`` that is relevant; ``K`` is capped at the gallery size.

Conventions
-----------
* **Queries without relevant items.** A query whose label does not occur in the gallery (``R = 0``)
  scores 0 on every metric and still counts in the means (it is not dropped): a model cannot make
  such a query look good, and the denominator is always the number of queries.
* **Ties are pessimistic.** Items with exactly equal similarity are ordered irrelevant-first, so a
  model that collapses embeddings (many equal scores) is never rewarded for it. For the relevant
  items sorted by decreasing score, ``rank_j = j + #{irrelevant items with score >= s_j}``; the
  ``@K`` metrics use the same ordering.
* **Precision.** Inputs are converted to float32 (``dtype``) and, unless ``normalize=False``,
  L2-normalised; the similarities are float32 dot products and the ranking is decided on those
  exact float32 values. Sums of ``j / rank_j`` are accumulated in float64. On CUDA, enabling TF32
  matmuls (``torch.backends.cuda.matmul.allow_tf32``) lowers the similarity precision.
* **Determinism.** Similarities are always computed in row blocks of a fixed size
  (:data:`MATMUL_BLOCK` queries, the last block zero-padded) so that a query's scores are the same
  bits whatever the chunking (BLAS picks kernels, hence summation orders, by matrix shape);
  :func:`retrieval_metrics` therefore gives identical results for every ``chunk_size`` and memory
  budget, and agrees with :func:`reference_metrics`, which shares that routine, on every tie.

Algorithm of :func:`retrieval_metrics`
--------------------------------------
Every metric follows from the exact pessimistic rank of each relevant item,
``rank_j = j + #{irrelevant items with score >= s_j}``: ``mAP@K`` and ``P@K`` only keep the relevant
items with ``rank_j <= K`` (no top-K selection is needed). Queries are processed in chunks (bounded
memory); for a chunk, the similarity rows ``S`` are computed, and for each query only its ``R``
relevant scores are gathered and sorted (``R`` is about ``N / classes``). What remains is to count,
for every relevant score (threshold), the gallery items scoring at least that much -- without
sorting any row:

1. Each score is mapped to one of ``~16 R`` uniform bins spanning the row's relevant-score range by a
   monotone float expression (``x <= y`` implies ``bin(x) <= bin(y)``); thresholds take the bins of
   their relevant items.
2. A bin holding no threshold lies strictly between two consecutive thresholds: all its items have
   the same count ``p`` of thresholds at or below them (the number of thresholds in lower bins), so
   the bin is counted at once from a per-row histogram (``scatter_add``).
3. Items in a bin that holds a threshold (about 10% of a row: the relevant items plus their close
   neighbours) are placed exactly: ``p = below + [t <= x]`` for a bin holding a single threshold
   ``t``, a vectorised binary search among the thresholds of the bin otherwise.
4. A reverse cumulative sum over ``p`` gives ``#{items with score >= s_j}``; subtracting the relevant
   items at or above ``s_j`` leaves the irrelevant ones, hence ``rank_j``.

All counts are exact integers, so the result equals the brute-force definition, ties included. Cost
per query: ``O(N + R log R)`` elementwise work plus the matmul, against ``O(N log N)`` for a full
sort; measured on CPU at about 2-2.2x the time of the matmul alone for 1,000-10,000 queries x
10,000-100,000 photos (see ``benchmarks/bench_eval.py`` and ``docs/performance.md``). On CPU, chunks
are small enough (:data:`_CPU_RANK_ITEMS`) for the ranking temporaries to stay in cache. The work
is many vectorised passes over each chunk: on an oversubscribed machine, where every parallel torch call waits for its
slowest, preempted thread, fewer torch threads are faster.

Memory: ``max_memory_bytes`` bounds the similarity rows and ranking temporaries of a chunk (with a
floor of one matmul block, ``MATMUL_BLOCK * N * 4`` bytes); float32, L2-normalised copies of the
embeddings come on top of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from dfbench.api.errors import DataError

__all__ = [
    "MATMUL_BLOCK",
    "retrieval_metrics",
    "reference_metrics",
    "evaluate_arrays",
]

#: Queries per matmul call. Fixed (the last block is zero-padded) so that BLAS picks the same kernel
#: for every block and a query's similarity row is bit-identical whatever the chunking.
MATMUL_BLOCK = 256

#: Histogram bins per relevant item (see the module docstring). More bins: fewer items need exact
#: placement, but a larger histogram per query.
_BINS_PER_THRESHOLD = 16

_DEFAULT_MEMORY = 512 * 2**20


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise DataError(f"{name} is a numpy array of Python objects; pass a numeric array (e.g. x.astype('float32')).")
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{name} could not be converted to an array ({exc}); pass a torch tensor or a numpy array.") from None


def _check_embeddings(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2:
        raise DataError(
            f"{name} must be a 2-D array of shape (N, D) (one embedding per row), got shape {tuple(x.shape)}. "
            "Reshape it, e.g. x.reshape(len(x), -1)."
        )
    if not (x.dtype.is_floating_point):
        raise DataError(
            f"{name} must hold floating-point embeddings, got dtype {x.dtype}. Convert it with x.astype('float32')."
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {tuple(x.shape)}); it needs at least one row and one column.")


def _raise_if_not_finite(x: torch.Tensor, name: str) -> None:
    finite_rows = torch.isfinite(x).all(dim=1)
    if not bool(finite_rows.all()):
        bad = int((~finite_rows).sum())
        raise DataError(
            f"{name} contains NaN or infinite values ({bad} of {x.shape[0]} rows); the model that produced them "
            "probably diverged. Fix the embeddings (or drop those rows and their labels) and evaluate again."
        )


def _finite_normalized(x: torch.Tensor, name: str, normalize: bool, dtype) -> torch.Tensor:
    """``x`` as ``dtype``, L2-normalised per row if asked; raises DataError on NaN/inf entries.

    With ``normalize`` the finiteness check rides on the row norms (NaN/inf entries make them
    non-finite), saving passes over the data; rows of huge but finite values fall back to float64.
    """
    x = x.to(dtype)
    if not normalize:
        _raise_if_not_finite(x, name)
        return x.contiguous()
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):
        _raise_if_not_finite(x, name)
        norms = torch.linalg.vector_norm(x.double(), dim=1, keepdim=True)  # float32 overflow only
        return (x.double() / norms.clamp_min(1e-12)).to(dtype).contiguous()
    return (x / norms.clamp_min(1e-12)).contiguous()


def _check_labels(y: torch.Tensor, name: str, n: int, emb_name: str) -> torch.Tensor:
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise DataError(f"{name} must be a 1-D array of N integer labels, got shape {tuple(y.shape)}.")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(
            f"{name} must hold integer class labels, got dtype {y.dtype}. If they are whole numbers stored as "
            "floats, convert them with y.astype('int64'); if they are class names, map them to integers first."
        )
    if y.shape[0] != n:
        raise DataError(
            f"{name} has {y.shape[0]} labels but {emb_name} has {n} rows; there must be exactly one label per "
            "embedding, in the same order."
        )
    return y.to(torch.int64)


def _prepare(queries, query_labels, gallery, gallery_labels, normalize: bool, device, dtype):
    q = _as_tensor(queries, "queries")
    g = _as_tensor(gallery, "gallery")
    ql = _as_tensor(query_labels, "query_labels")
    gl = _as_tensor(gallery_labels, "gallery_labels")
    _check_embeddings(q, "queries")
    _check_embeddings(g, "gallery")
    if q.shape[1] != g.shape[1]:
        raise DataError(
            f"queries have dimension {q.shape[1]} but gallery items have dimension {g.shape[1]}; both must come "
            "from the same embedding space (same model head)."
        )
    ql = _check_labels(ql, "query_labels", q.shape[0], "queries")
    gl = _check_labels(gl, "gallery_labels", g.shape[0], "gallery")
    if device is None:
        device = q.device
    device = torch.device(device)
    q = _finite_normalized(q.to(device), "queries", normalize, dtype)
    g = _finite_normalized(g.to(device), "gallery", normalize, dtype)
    if not normalize:
        # |q . g| <= |q| |g|: make sure no similarity can overflow (an infinite score has no rank)
        bound = float(torch.linalg.vector_norm(q, dim=1).max()) * float(torch.linalg.vector_norm(g, dim=1).max())
        if not bound < torch.finfo(dtype).max / 2:
            raise DataError(
                f"With normalize=False the dot products of these embeddings can overflow {dtype} (largest norms "
                f"multiply to {bound:.3g}). Rescale the embeddings, or use cosine similarity (normalize=True)."
            )
    return q, ql.to(device), g, gl.to(device)


def _check_ks(ks: Iterable[int], name: str) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"{name} must contain positive integers, got {k!r}.")
        out.append(int(k))
    return out


def _similarity_rows(q_rows: torch.Tensor, gallery: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``q_rows @ gallery.T`` in fixed blocks of :data:`MATMUL_BLOCK` rows (last one zero-padded).

    BLAS libraries choose kernels (and so the summation order) by matrix shape; keeping the shape
    fixed makes each query's row of similarities the same bits whatever rows it is computed with.
    """
    b, d = q_rows.shape
    n = gallery.shape[0]
    if out is None:
        out = torch.empty((b, n), dtype=q_rows.dtype, device=q_rows.device)
    gt = gallery.t()
    for s in range(0, b, MATMUL_BLOCK):
        e = min(s + MATMUL_BLOCK, b)
        if e - s == MATMUL_BLOCK:
            torch.mm(q_rows[s:e], gt, out=out[s:e])
        else:
            block = q_rows.new_zeros((MATMUL_BLOCK, d))
            block[: e - s] = q_rows[s:e]
            out[s:e] = torch.mm(block, gt)[: e - s]
    return out


# --------------------------------------------------------------------------------------------------
# Fast exact metrics
# --------------------------------------------------------------------------------------------------


def _bins(x: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor, m: int, out: torch.Tensor) -> torch.Tensor:
    """Monotone map of scores to bins ``0..m+2``: ``clamp(x * scale + (1 - lo * scale), 0, m + 2)``
    (then truncated), in two passes over ``x`` (one ``addcmul``, one clamp).

    Only monotonicity matters for exactness (``x <= y`` implies ``bin(x) <= bin(y)``): with a
    non-negative per-row ``scale`` and a per-row offset, ``x * scale + offset`` is monotone in ``x``
    whether it is computed with one rounding (fused) or two, and the thresholds' bins are read back
    from the items' bins, never recomputed. No NaN can arise: ``scale = m / (hi - lo)`` is finite
    (:func:`_chunk_ranks` replaces a non-finite one by 1), and so is the offset, since
    ``|lo| / (hi - lo)`` is at most about ``2**24`` for distinct float32 ``lo < hi``; ``x * scale``
    may overflow to an infinity, which the clamp maps to an end bin.
    """
    offset = torch.addcmul(torch.ones_like(lo), lo, scale, value=-1.0)
    torch.addcmul(offset, x, scale, out=out)
    out.clamp_(0.0, float(m + 2))
    return out


def _n_bins(n: int, rmax: int) -> int:
    return int(min(max(_BINS_PER_THRESHOLD * rmax, 64), max(n, 64)))


def _chunk_ranks(
    s: torch.Tensor,
    rel_cols: torch.Tensor,
    n_rel: torch.Tensor,
    sel_budget: int,
    work: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact pessimistic ranks of the relevant items of each row of ``s``.

    ``s``: (B, N) similarities; ``rel_cols``: (B, Rmax) gallery columns of each row's relevant items
    (padding beyond ``n_rel``); ``n_rel``: (B,) int64. Returns ``(j, rank)``, both (B, Rmax) int64 in
    *ascending* score order: entry ``i < n_rel[b]`` is the relevant item with the (i+1)-th lowest score,
    ``j = n_rel - i`` its position among relevant items by decreasing score and ``rank`` its rank in
    the pessimistic ordering. Entries ``i >= n_rel[b]`` are padding (``j = 0``, ``rank = 1``).
    """
    b, n = s.shape
    rmax = rel_cols.shape[1]
    dev = s.device
    ar = torch.arange(rmax, device=dev)
    valid = ar.unsqueeze(0) < n_rel.unsqueeze(1)  # (B, Rmax)

    # Sorted relevant scores (the thresholds), +inf padding at the end.
    a = s.gather(1, rel_cols).masked_fill_(~valid, math.inf)
    a = a.sort(dim=1).values

    # Per-row uniform bins over [lowest, highest] relevant score.
    has = n_rel > 0
    lo = torch.where(has, a[:, 0], torch.zeros((), device=dev, dtype=a.dtype))
    hi = a.gather(1, (n_rel - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    hi = torch.where(has, hi, torch.ones((), device=dev, dtype=a.dtype))
    m = _n_bins(n, rmax)
    width = hi - lo
    scale = float(m) / width
    scale = torch.where((width > 0) & torch.isfinite(scale), scale, torch.ones_like(scale))
    nb = m + 3  # bins 0..m+2

    dbuf = _workspace(work, "d", (b, n), s.dtype, dev)
    vbuf = _workspace(work, "v", (b, n), torch.int64, dev)
    _bins(s, lo.unsqueeze(1), scale.unsqueeze(1), m, out=dbuf)
    vbuf.copy_(dbuf)  # values in [0, m+2]: truncation == floor
    hist = torch.zeros((b, nb), dtype=torch.int64, device=dev)
    hist.scatter_add_(1, vbuf, _ones(work, dev).expand(b, n))

    # Thresholds per bin (a threshold's bin is its relevant item's bin), and thresholds in lower bins:
    # for a bin holding no threshold, the exact number of thresholds <= each of its items.
    per_bin = torch.zeros((b, nb), dtype=torch.int64, device=dev)
    per_bin.scatter_add_(1, vbuf.gather(1, rel_cols), valid.to(torch.int64))
    marked = per_bin > 0
    below = per_bin.cumsum(1).sub_(per_bin)

    # cnt[b, p] = number of items with exactly p thresholds <= their score (p in 0..Rmax).
    cnt = torch.zeros((b, rmax + 1), dtype=torch.int64, device=dev)
    n_sel = (hist * marked).sum(1)
    cnt.scatter_add_(1, below, hist.masked_fill_(marked, 0))

    # Items in marked bins are placed exactly, in row groups of bounded size. Most marked bins hold one
    # threshold t, so p = below + [t <= x] (two table look-ups); the few items of bins holding several
    # are placed by a vectorised binary search among the thresholds of their own bin. Gathers
    # (torch.gather) rather than advanced indexing: several times faster on CPU.
    kmax = int(per_bin.max())
    first_thr = a.gather(1, below.clamp(max=rmax - 1))  # (B, nb): first threshold of each bin
    dest_base = below.add(torch.arange(b, device=dev).unsqueeze(1), alpha=rmax + 1)  # flat index into cnt
    first_thr, dest_base = first_thr.reshape(-1), dest_base.reshape(-1)
    cnt_flat = cnt.reshape(-1)
    mbuf = _workspace(work, "m", (b, n), torch.bool, dev)
    torch.gather(marked, 1, vbuf, out=mbuf)
    for r0, r1 in _row_groups(n_sel, sel_budget):
        flat = mbuf[r0:r1].reshape(-1).nonzero().squeeze(1)
        if flat.numel() == 0:
            continue
        x = s[r0:r1].reshape(-1).gather(0, flat)
        gbin = vbuf[r0:r1].reshape(-1).gather(0, flat)
        rows = flat.div_(n, rounding_mode="floor").add_(r0)  # row within the chunk
        gbin.add_(rows, alpha=nb)
        dest = dest_base.gather(0, gbin)
        dest.add_(first_thr.gather(0, gbin) <= x)
        if kmax > 1:
            multi = (per_bin.reshape(-1).gather(0, gbin) > 1).nonzero().squeeze(1)
            if multi.numel():
                gm, rm = gbin[multi], rows[multi]
                lo_i = below.reshape(-1)[gm]
                hi_i = lo_i + per_bin.reshape(-1)[gm]
                pu = _upper_bound(a.reshape(-1), rm * rmax, lo_i, hi_i, x[multi], kmax, rmax)
                dest[multi] = rm * (rmax + 1) + pu
                del gm, rm, lo_i, hi_i, pu
            del multi
        cnt_flat.index_add_(0, dest, _ones(work, dev).view(1).expand(dest.numel()))
        del flat, x, gbin, rows, dest

    # all_ge[i] = #{items with score >= a_i} = #{items with p >= i + 1}; minus the relevant ones.
    tail = cnt.flip(1).cumsum(1).flip(1)
    all_ge = tail[:, 1:]
    rel_ge = n_rel.unsqueeze(1) - torch.searchsorted(a, a, right=False)
    j = n_rel.unsqueeze(1) - ar.unsqueeze(0)
    rank = j + (all_ge - rel_ge)
    j = j.masked_fill_(~valid, 0)
    rank = rank.masked_fill_(~valid, 1)
    return j, rank


def _upper_bound(a_flat, off, lo, hi, x, kmax: int, rmax: int) -> torch.Tensor:
    """Vectorised ``searchsorted(right=True)``: first index in ``[lo, hi)`` with ``a > x`` (ranges <= kmax)."""
    for _ in range(kmax.bit_length()):  # ceil(log2(kmax + 1)) halvings empty any range of <= kmax
        active = lo < hi
        mid = (lo + hi).div_(2, rounding_mode="floor")
        right = (a_flat[off + mid.clamp(max=rmax - 1)] <= x) & active
        lo = torch.where(right, mid + 1, lo)
        hi = torch.where(active & ~right, mid, hi)
    return lo


def _row_groups(n_sel: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Split rows into consecutive groups holding at most ``budget`` selected items (or one row)."""
    counts = n_sel.tolist()
    if sum(counts) <= budget:
        return [(0, len(counts))] if counts else []
    groups, start, total = [], 0, 0
    for i, c in enumerate(counts):
        if i > start and total + c > budget:
            groups.append((start, i))
            start, total = i, 0
        total += c
    groups.append((start, len(counts)))
    return groups


def _workspace(work: dict, key: str, shape: tuple, dtype, device) -> torch.Tensor:
    """A buffer reused across chunks (first-touch page faults of fresh large tensors cost as much as the work)."""
    numel = int(np.prod(shape))
    buf = work.get(key)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        buf = torch.empty(max(numel, 1), dtype=dtype, device=device)
        work[key] = buf
    return buf[:numel].view(shape)


def _ones(work: dict, device) -> torch.Tensor:
    if "ones" not in work:
        work["ones"] = torch.ones((1, 1), dtype=torch.int64, device=device)
    return work["ones"]


# Bytes of temporaries per selected item in the exact-placement step (index, row, value, bounds,
# midpoints, masks of the binary search).
_SEL_BYTES = 96


def _bytes_per_row(n: int, rmax: int) -> int:
    """Ranking temporaries per query row, similarities excluded: bins 4 + bin indices 8 + mask 1 per
    gallery item; histogram, thresholds per bin, cumulative counts, tables per bin; ~20 int64/float
    temporaries per relevant item. Selected items are budgeted separately (:data:`_SEL_BYTES`)."""
    return n * 13 + (_n_bins(n, rmax) + 3) * 56 + rmax * 160 + 256


#: On CPU, gallery items (rows x gallery size) ranked per chunk when ``chunk_size`` is not given: the
#: ranking is a dozen elementwise passes over a chunk, so a chunk whose bins, bin indices and masks
#: (~13 bytes per item, ~7 MB here) stay in the CPU caches between passes is ranked ~1.5-2x faster
#: than one streamed from memory (measured for 5,000-100,000 photos in ``benchmarks/bench_eval.py``).
#: The matmul still runs on whole units. GPUs keep the large chunks (fewer kernel launches).
_CPU_RANK_ITEMS = 2**19


def _plan(n: int, rmax: int, max_memory_bytes: int, chunk_size: int | None, cpu: bool = False) -> tuple[int, int, int]:
    """``(unit, chunk, sel_budget)``: similarity rows per matmul unit, ranking rows per chunk, and the
    selected-item budget of the exact placement.

    A unit is a whole number of :data:`MATMUL_BLOCK` rows whose similarities are computed together;
    chunks of rows are ranked from it (several per unit when memory is tight, so no matmul is ever
    padded beyond the last block). Three quarters of ``max_memory_bytes`` go to similarities and
    per-row temporaries, one quarter to the exact placement. Peak memory is about
    ``max(max_memory_bytes, MATMUL_BLOCK * n * 4 bytes + one row's temporaries)``: a matmul block is
    the smallest unit. Large chunks mean fewer (parallel) torch calls per query; on CPU (``cpu``) the
    ranking chunk is capped at about :data:`_CPU_RANK_ITEMS` gallery items, so that it stays in cache.
    """
    sel_budget = max(n, max_memory_bytes // 4 // _SEL_BYTES)
    budget = max_memory_bytes * 3 // 4
    per_row = _bytes_per_row(n, rmax)
    if chunk_size is not None:
        chunk = int(chunk_size)
        return -(-chunk // MATMUL_BLOCK) * MATMUL_BLOCK, chunk, sel_budget
    rows = budget // (per_row + n * 4)
    if rows >= MATMUL_BLOCK:
        unit = chunk = rows - rows % MATMUL_BLOCK
    else:
        unit, chunk = MATMUL_BLOCK, min(max(1, (budget - MATMUL_BLOCK * n * 4) // per_row), MATMUL_BLOCK)
    if cpu:
        chunk = min(chunk, max(4, _CPU_RANK_ITEMS // n))
    return unit, chunk, sel_budget


@torch.no_grad()
def retrieval_metrics(
    queries,
    query_labels,
    gallery,
    gallery_labels,
    *,
    ks: Sequence[int] = (100, 200),
    map_ks: Sequence[int] = (200,),
    normalize: bool = True,
    chunk_size: int | None = None,
    max_memory_bytes: int = _DEFAULT_MEMORY,
    device=None,
    dtype: torch.dtype = torch.float32,
    per_query: dict | None = None,
    extra: dict | None = None,
) -> dict[str, float]:
    """Exact SBIR metrics: ``mAP@all``, ``mAP@K`` for ``K`` in ``map_ks``, ``P@K`` for ``K`` in ``ks``,
    and each metric of ``extra`` ({name: :class:`dfbench.api.metrics.RetrievalMetric`}), computed from
    the same exact ranks (a query with no relevant gallery item scores 0 on every metric).

    With ``per_query`` (a dict), each query's average precision (the terms of mAP@all, float64, on
    the CPU) is stored in it under ``"AP"``.

    ``queries`` (Nq x D) and ``gallery`` (N x D) are float tensors or numpy arrays, the labels
    integer vectors. Everything runs on ``device`` (default: the device of ``queries``; CPU for numpy
    input), vectorised in torch, in chunks of ``chunk_size`` queries (default: as many as fit in
    ``max_memory_bytes`` of temporaries). Cosine similarity in float32 (``dtype``) unless
    ``normalize=False`` (plain dot products). See the module docstring for the exact definitions, the
    pessimistic tie rule and the handling of queries whose class is absent from the gallery.
    """
    ks = _check_ks(ks, "ks")
    map_ks = _check_ks(map_ks, "map_ks")
    q, ql, g, gl = _prepare(queries, query_labels, gallery, gallery_labels, normalize, device, dtype)
    dev = q.device
    nq, n = q.shape[0], g.shape[0]

    # Classes of the gallery; table[c] lists the gallery columns of class c (padded with 0).
    classes, g_cls, sizes = torch.unique(gl, return_inverse=True, return_counts=True)
    n_cls = classes.numel()
    rmax_all = int(sizes.max())
    order = torch.argsort(g_cls, stable=True)
    starts = sizes.cumsum(0) - sizes
    pos = torch.arange(n, device=dev) - starts[g_cls[order]]
    table = torch.zeros((n_cls + 1, rmax_all), dtype=torch.int64, device=dev)  # last row: absent class
    table[g_cls[order], pos] = order
    sizes_ext = torch.cat([sizes, sizes.new_zeros(1)])

    # Class of each query (n_cls where its label is absent from the gallery).
    qi = torch.searchsorted(classes, ql).clamp_(max=n_cls - 1)
    q_cls = torch.where(classes[qi] == ql, qi, torch.full_like(qi, n_cls))
    q_rel = sizes_ext[q_cls]

    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise DataError(f"chunk_size must be a positive number of queries, got {chunk_size!r}.")
    unit, chunk, sel_budget = _plan(n, rmax_all, int(max_memory_bytes), chunk_size, cpu=dev.type == "cpu")

    # Process queries sorted by R so that each chunk pads to a similar number of relevant items.
    q_order = torch.argsort(q_rel, stable=True)
    caps = {k: min(k, n) for k in set(ks) | set(map_ks)}
    ap_all = torch.zeros(nq, dtype=torch.float64, device=dev)
    ap_k = {k: torch.zeros(nq, dtype=torch.float64, device=dev) for k in map_ks}
    hits_k = {k: torch.zeros(nq, dtype=torch.float64, device=dev) for k in ks}
    extra = dict(extra or {})
    extra_q = {name: torch.zeros(nq, dtype=torch.float64, device=dev) for name in extra}
    work: dict = {}
    for u0 in range(0, nq, unit):
        uidx = q_order[u0 : u0 + unit]
        if int(q_rel[uidx].max()) == 0:
            continue  # no query of the unit has a relevant item: all its metrics are 0
        s_unit = _similarity_rows(q[uidx], g, out=_workspace(work, "s", (uidx.numel(), n), q.dtype, dev))
        for c0 in range(0, uidx.numel(), chunk):
            idx = uidx[c0 : c0 + chunk]
            n_rel = q_rel[idx]
            rmax = int(n_rel.max())
            if rmax == 0:
                continue
            rel_cols = table[q_cls[idx], :rmax]
            j, rank = _chunk_ranks(s_unit[c0 : c0 + chunk], rel_cols, n_rel, sel_budget, work)
            # Sum j / rank in ascending-score order with a prefix sum read at the last relevant item:
            # the padding (zeros after it) cannot change the float64 result, whatever the chunk's Rmax.
            prec = j.to(torch.float64) / rank.to(torch.float64)
            last = (n_rel - 1).clamp(min=0).unsqueeze(1)
            has = n_rel > 0
            denom = n_rel.clamp(min=1).to(torch.float64)
            ap_all[idx] = torch.where(has, prec.cumsum(1).gather(1, last).squeeze(1) / denom, 0.0)
            for k in set(ks) | set(map_ks):
                inside = (rank <= caps[k]) & (j > 0)
                hits = inside.sum(1).to(torch.float64)
                if k in hits_k:
                    hits_k[k][idx] = hits
                if k in ap_k:
                    sk = (prec * inside).cumsum(1).gather(1, last).squeeze(1)
                    ap_k[k][idx] = torch.where(hits > 0, sk / hits.clamp(min=1), 0.0)
            if extra:
                _extra_scores(extra, extra_q, idx, j, rank, n_rel, n)
            del j, rank, prec
        del s_unit
    out = {"mAP@all": float(ap_all.mean())}
    for k in map_ks:
        out[f"mAP@{k}"] = float(ap_k[k].mean())
    for k in ks:
        out[f"P@{k}"] = float((hits_k[k] / caps[k]).mean())
    for name in extra:
        out[name] = float(extra_q[name].mean())
    if per_query is not None:
        per_query["AP"] = ap_all.cpu()
    return out


def _extra_scores(extra: dict, scores: dict, idx, j, rank, n_rel, n: int) -> None:
    """Each registered metric's per-query scores of a chunk (rows ``idx``), from the engine's ranks
    (ascending-score order, padding j = 0) turned into the metric's view: relevant items' ranks,
    best first, padding ``n + 1`` (:class:`dfbench.api.metrics.RankedRelevant`)."""
    from dfbench.api.metrics import RankedRelevant

    ranks = torch.where(j > 0, rank, torch.full_like(rank, n + 1)).sort(dim=1).values
    ranked = RankedRelevant(ranks, n_rel, n)
    has = n_rel > 0
    for name, metric in extra.items():
        value = metric.per_query(ranked).to(torch.float64)
        if value.shape != (idx.numel(),):
            raise ValueError(f"The metric '{name}' returned per-query scores of shape {tuple(value.shape)} for "
                             f"{idx.numel()} queries; per_query must return one score per query.")
        scores[name][idx] = torch.where(has, value, 0.0)


def registered_extra_metrics() -> dict:
    """{name: metric instance} of every registered metric the engine's fast path does not compute
    (those plugins add); the core four are computed by :func:`retrieval_metrics` itself."""
    from dfbench.api.plugins import registry

    reg = registry("metrics")
    out = {}
    for name in reg.names():
        cls = reg.load(name)
        if not getattr(cls, "computed_by_engine", False):
            out[name] = cls()
    return out


# --------------------------------------------------------------------------------------------------
# Brute-force reference
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def reference_metrics(
    queries,
    query_labels,
    gallery,
    gallery_labels,
    *,
    ks: Sequence[int] = (100, 200),
    map_ks: Sequence[int] = (200,),
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    chunk_size: int | None = None,
    max_memory_bytes: int | None = None,
    device=None,
) -> dict[str, float]:
    """Obviously-correct per-query implementation of the same metrics (slow; tests and benchmarks).

    For each query: fully sort the gallery by (decreasing score, irrelevant before relevant), then
    walk the ranking accumulating precision at each relevant item. Shares only the input handling
    and the similarity routine with :func:`retrieval_metrics` (so both see identical scores). Runs on
    CPU; ``chunk_size``, ``max_memory_bytes`` and ``device`` are accepted for call compatibility and
    ignored (the full query x gallery similarity matrix is held in memory).
    """
    ks = _check_ks(ks, "ks")
    map_ks = _check_ks(map_ks, "map_ks")
    q, ql, g, gl = _prepare(queries, query_labels, gallery, gallery_labels, normalize, "cpu", dtype)
    sims = _similarity_rows(q, g).numpy()
    ql = ql.numpy()
    gl = gl.numpy()
    n = len(gl)
    positions = np.arange(1, n + 1)
    ap_all, ap_k, p_k = [], {k: [] for k in map_ks}, {k: [] for k in ks}
    for i in range(len(ql)):
        rel = gl == ql[i]
        # np.lexsort: last key is primary. Primary: -score ascending (best first); ties: rel False first.
        order = np.lexsort((rel, -sims[i]))
        rel_sorted = rel[order]
        hits = np.cumsum(rel_sorted)  # relevant items seen so far, item by item
        precision = hits / positions  # precision at every rank
        r = int(rel_sorted.sum())
        ap_all.append(float(precision[rel_sorted].sum() / r) if r else 0.0)
        for k in map_ks:
            kk = min(k, n)
            top = rel_sorted[:kk]
            m = int(top.sum())
            ap_k[k].append(float(precision[:kk][top].sum() / m) if m else 0.0)
        for k in ks:
            kk = min(k, n)
            p_k[k].append(float(rel_sorted[:kk].sum()) / kk)
    out = {"mAP@all": float(np.mean(ap_all))}
    for k in map_ks:
        out[f"mAP@{k}"] = float(np.mean(ap_k[k]))
    for k in ks:
        out[f"P@{k}"] = float(np.mean(p_k[k]))
    return out


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _load_npy(path, role: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise DataError(f"The {role} file '{p}' does not exist. Check the path (it should be a .npy file written with numpy.save).")
    if p.is_dir():
        raise DataError(f"The {role} path '{p}' is a folder; pass the .npy file inside it.")
    with open(p, "rb") as fh:
        head = fh.read(6)
    if head[:4] == b"PK\x03\x04":
        raise DataError(
            f"The {role} file '{p}' is a .npz archive (numpy.savez); save each array to its own .npy file with "
            "numpy.save and pass those."
        )
    if head != b"\x93NUMPY":
        raise DataError(
            f"The {role} file '{p}' could not be read: it is not a .npy file (no numpy header). Write it with "
            "numpy.save(path, array) -- not as text, a pickle or a torch file."
        )
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(
                f"The {role} file '{p}' holds Python objects (an object array), which dfbench does not load. "
                "Save a plain numeric array instead: numpy.save(path, array.astype('float32')) for embeddings, "
                ".astype('int64') for labels."
            ) from None
        raise DataError(
            f"The {role} file '{p}' could not be read as a .npy array ({exc}). It may be truncated or corrupt; "
            "write it again with numpy.save."
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"The {role} file '{p}' could not be read as a .npy array ({type(exc).__name__}: {exc}). It may be "
            "truncated or corrupt; write it again with numpy.save."
        ) from None
    return arr


def _validate_pair(emb: np.ndarray, labels: np.ndarray, role: str, emb_path, lab_path) -> np.ndarray:
    if emb.ndim != 2:
        raise DataError(
            f"The {role} embeddings in '{emb_path}' must be a 2-D array (N embeddings x D dimensions), got "
            f"shape {emb.shape}. Flatten them to one row per image, e.g. x.reshape(len(x), -1)."
        )
    if not np.issubdtype(emb.dtype, np.floating):
        raise DataError(
            f"The {role} embeddings in '{emb_path}' have dtype {emb.dtype}; they must be floating point. "
            "Convert them with x.astype('float32') before saving."
        )
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataError(f"The {role} embeddings in '{emb_path}' are empty (shape {emb.shape}); export at least one embedding.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"The {role} labels in '{lab_path}' must be a 1-D array of N integers, got shape {labels.shape}. "
            "Save one class index per embedding, e.g. numpy.save(path, labels.reshape(-1))."
        )
    if not (np.issubdtype(labels.dtype, np.integer)) or labels.dtype == np.bool_:
        raise DataError(
            f"The {role} labels in '{lab_path}' have dtype {labels.dtype}; they must be integers. If they are "
            "whole numbers stored as floats, save labels.astype('int64'); if they are class names, map them "
            "to integer indices (the same mapping for queries and gallery)."
        )
    if labels.shape[0] != emb.shape[0]:
        raise DataError(
            f"The {role} labels in '{lab_path}' have {labels.shape[0]} entries but the embeddings in '{emb_path}' "
            f"have {emb.shape[0]} rows; there must be exactly one label per embedding, in the same order. "
            "Check that both files come from the same export."
        )
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"The {role} embeddings in '{emb_path}' contain NaN or infinite values in {len(bad)} of {emb.shape[0]} "
            f"rows (first: row {int(bad[0])}). The model that produced them probably diverged; fix the export "
            "(or drop those rows and their labels) and evaluate again."
        )
    return labels


def evaluate_arrays(
    query_path,
    query_labels_path,
    gallery_path,
    gallery_labels_path,
    **kwargs,
) -> dict[str, Any]:
    """Load four .npy files (query / gallery embeddings and labels), validate them and score them.

    Raises :class:`dfbench.api.errors.DataError` (a :class:`~dfbench.api.errors.DfbenchError`) with an
    actionable message for missing, unreadable or malformed files. ``kwargs`` go to
    :func:`retrieval_metrics` (``device``, ``ks``, ``map_ks``, ``normalize``, ...). Returns the
    metrics plus ``n_queries``, ``n_gallery`` and ``dim``.
    """
    q = _load_npy(query_path, "query embeddings")
    ql = _load_npy(query_labels_path, "query labels")
    g = _load_npy(gallery_path, "gallery embeddings")
    gl = _load_npy(gallery_labels_path, "gallery labels")
    ql = _validate_pair(q, ql, "query", query_path, query_labels_path)
    gl = _validate_pair(g, gl, "gallery", gallery_path, gallery_labels_path)
    if q.shape[1] != g.shape[1]:
        raise DataError(
            f"The query embeddings ('{query_path}') have dimension {q.shape[1]} but the gallery embeddings "
            f"('{gallery_path}') have dimension {g.shape[1]}; both must come from the same model's embedding "
            "space. Export them with the same network head."
        )
    result: dict[str, Any] = dict(retrieval_metrics(q, ql, g, gl, **kwargs))
    result["n_queries"] = int(q.shape[0])
    result["n_gallery"] = int(g.shape[0])
    result["dim"] = int(q.shape[1])
    return result
