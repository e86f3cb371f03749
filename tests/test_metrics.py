"""Retrieval metrics: exactness against a brute-force reference, the pessimistic tie rule, chunking,
input types, normalisation, and loading/validating .npy files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfbench.api.errors import DfbenchError
from dfbench.train.metrics import evaluate_arrays, reference_metrics, retrieval_metrics

KEYS = ("mAP@all", "mAP@200", "P@100", "P@200")


def _scores(values, labels, query_label=0):
    """One query whose similarity to gallery item i is exactly values[i] (1-D, normalize=False)."""
    q = torch.ones(1, 1)
    g = torch.tensor(values, dtype=torch.float32).reshape(-1, 1)
    return q, torch.tensor([query_label]), g, torch.tensor(labels)


def _both(*args, **kw):
    """Fast and reference metrics; asserts they agree to 1e-9 and returns the fast ones."""
    fast = retrieval_metrics(*args, **kw)
    ref = reference_metrics(*args, **kw)
    assert fast.keys() == ref.keys()
    for k in ref:
        assert fast[k] == pytest.approx(ref[k], abs=1e-9), (k, fast, ref)
    return fast


def _random(seed, nq, n, d, n_cls, absent=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(nq, d, generator=g)
    x = torch.randn(n, d, generator=g)
    ql = torch.randint(0, n_cls + absent, (nq,), generator=g)  # labels >= n_cls are absent from the gallery
    gl = torch.randint(0, n_cls, (n,), generator=g)
    return q, ql, x, gl


def _assert_close(a, b, tol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= tol, (k, a[k], b[k])


# ------------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------------


def test_hand_computed_rel_irr_rel():
    # ranking: rel (3), irr (2), rel (1)
    m = _both(*_scores([3.0, 2.0, 1.0], [0, 1, 0]), normalize=False, ks=(1, 2, 3), map_ks=(1, 2, 3))
    assert m["mAP@all"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["mAP@1"] == pytest.approx(1.0)  # top 1 holds one relevant item, at rank 1
    assert m["mAP@2"] == pytest.approx(1.0)  # top 2: rel, irr -> (1/1) / 1
    assert m["mAP@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["P@1"] == pytest.approx(1.0)
    assert m["P@2"] == pytest.approx(0.5)
    assert m["P@3"] == pytest.approx(2 / 3)


def test_hand_computed_irr_first():
    # ranking: irr (5), rel (4), irr (3), irr (2), rel (1)
    m = _both(*_scores([5.0, 4.0, 3.0, 2.0, 1.0], [1, 0, 1, 1, 0]), normalize=False, ks=(2, 4), map_ks=(1, 4))
    assert m["mAP@all"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert m["mAP@1"] == 0.0  # no relevant item in the top 1
    assert m["mAP@4"] == pytest.approx(1 / 2)
    assert m["P@2"] == pytest.approx(1 / 2)
    assert m["P@4"] == pytest.approx(1 / 4)


def test_hand_computed_partial_tie_is_pessimistic():
    # scores 2 | 1 1 1 | 0 with labels rel | rel irr rel | irr: among the tied items the irrelevant
    # one ranks first, so the order is rel(1) irr(2) rel(3) rel(4) irr(5).
    args = _scores([2.0, 1.0, 1.0, 1.0, 0.0], [0, 0, 1, 0, 1])
    m = _both(*args, normalize=False, ks=(1, 2, 3, 5), map_ks=(2, 3, 200))
    assert m["mAP@all"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    assert m["mAP@2"] == pytest.approx(1.0)
    assert m["mAP@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["mAP@200"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    assert m["P@1"] == 1.0
    assert m["P@2"] == pytest.approx(1 / 2)  # K = 2 cuts the tie group: the irrelevant item is taken first
    assert m["P@3"] == pytest.approx(2 / 3)
    assert m["P@5"] == pytest.approx(3 / 5)


def test_extreme_score_ranges_stay_exact():
    # unnormalised scores spanning almost the whole float32 range (relevant scores +-1.6e38, the
    # largest the overflow guard admits), and relevant scores one float apart (a range of one ulp)
    values = [1.6e38, -1.6e38, 5e36, -5e36, 0.0, 8e36, -8e36, 5.0]
    labels = [0, 0, 1, 0, 1, 1, 0, 1]
    m = _both(*_scores(values, labels), normalize=False, ks=(1, 2, 3), map_ks=(2, 8))
    # order: 1.6e38 rel, 8e36 irr, 5e36 irr, 5 irr, 0 irr, -5e36 rel, -8e36 rel, -1.6e38 rel
    assert m["mAP@all"] == pytest.approx((1 / 1 + 2 / 6 + 3 / 7 + 4 / 8) / 4)
    assert m["P@1"] == 1.0 and m["P@3"] == pytest.approx(1 / 3)
    big = 1e30
    up = float(torch.nextafter(torch.tensor(big), torch.tensor(2 * big)))
    values = [up, big, up, big, 2 * big, 0.5 * big]
    labels = [0, 0, 1, 1, 1, 0]
    m = _both(*_scores(values, labels), normalize=False, ks=(1, 2, 3), map_ks=(6,))
    # order (ties irrelevant first): 2e30 irr, up irr, up rel, big irr, big rel, 0.5e30 rel
    assert m["mAP@all"] == pytest.approx((1 / 3 + 2 / 5 + 3 / 6) / 3)


def test_all_tied_scores_give_the_pessimistic_value():
    # every item scores the same: irrelevant ones first, so the relevant ones take ranks N-R+1..N
    m = _both(*_scores([1.0, 1.0, 1.0], [0, 1, 1]), normalize=False, ks=(1, 2, 3), map_ks=(2, 3))
    assert m["mAP@all"] == pytest.approx(1 / 3)
    assert m["mAP@2"] == 0.0 and m["mAP@3"] == pytest.approx(1 / 3)
    assert (m["P@1"], m["P@2"]) == (0.0, 0.0) and m["P@3"] == pytest.approx(1 / 3)

    # many queries, identical gallery embeddings: AP = (1/R) sum_j j / (N - R + j)
    n, d = 60, 8
    gl = torch.arange(n) % 4
    g = torch.ones(n, d)
    q = torch.randn(10, d)
    ql = torch.arange(10) % 5  # label 4 is absent: AP 0
    m = _both(q, ql, g, gl, ks=(10, 100), map_ks=(20, 45, 100))
    expected = []
    for lab in ql.tolist():
        r = int((gl == lab).sum())
        expected.append(sum(j / (n - r + j) for j in range(1, r + 1)) / r if r else 0.0)
    assert m["mAP@all"] == pytest.approx(float(np.mean(expected)))
    assert m["P@10"] == 0.0 and m["mAP@20"] == 0.0 and m["mAP@45"] == 0.0
    assert m["P@100"] == pytest.approx(float(np.mean([(gl == lab).sum().item() / n for lab in ql.tolist()])))


def test_perfect_ranking_is_one():
    n_cls, per = 5, 40
    centers = torch.eye(n_cls, 16)
    gl = torch.arange(n_cls).repeat_interleave(per)
    g = centers[gl] + 0.01 * torch.randn(len(gl), 16)
    ql = torch.arange(n_cls).repeat(3)
    q = centers[ql]
    m = _both(q, ql, g, gl, ks=(1, 40, 100), map_ks=(40, 200))
    assert m["mAP@all"] == pytest.approx(1.0) and m["mAP@40"] == pytest.approx(1.0) and m["mAP@200"] == pytest.approx(1.0)
    assert m["P@1"] == 1.0 and m["P@40"] == 1.0
    assert m["P@100"] == pytest.approx(per / 100)


def test_absent_class_counts_as_zero_and_k_capped_at_gallery_size():
    q, ql, g, gl = _scores([3.0, 2.0, 1.0], [0, 1, 0])
    q2 = torch.ones(2, 1)
    ql2 = torch.tensor([0, 7])  # label 7 has no gallery item
    m = _both(q2, ql2, g, gl, normalize=False, ks=(100,), map_ks=(200,))
    assert m["mAP@all"] == pytest.approx(((1 + 2 / 3) / 2 + 0.0) / 2)
    assert m["P@100"] == pytest.approx((2 / 3 + 0.0) / 2)  # K = 100 capped at the 3 gallery items
    assert m["mAP@200"] == pytest.approx(((1 + 2 / 3) / 2) / 2)


def test_default_keys():
    m = retrieval_metrics(*_random(0, 20, 300, 8, 5))
    assert list(m) == list(KEYS)
    assert all(isinstance(v, float) for v in m.values())


# ------------------------------------------------------------------------------------------------
# Against the reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,nq,n,d,n_cls,absent",
    [
        (0, 50, 300, 16, 7, 2),
        (1, 40, 100, 8, 30, 5),  # few relevant items per class, some classes empty
        (2, 30, 20, 4, 3, 1),  # K > gallery size
        (3, 120, 1500, 32, 10, 0),
        (4, 64, 500, 3, 2, 1),  # two big classes
        (5, 33, 257, 5, 1, 0),  # a single class: everything relevant
        (6, 17, 1, 4, 1, 1),  # a gallery of one item
    ],
)
def test_random_data_matches_reference(seed, nq, n, d, n_cls, absent):
    q, ql, g, gl = _random(seed, nq, n, d, n_cls, absent)
    kw = dict(ks=(1, 5, 100, 200, 5000), map_ks=(1, 10, 200, 5000))
    for normalize in (True, False):
        fast = retrieval_metrics(q, ql, g, gl, normalize=normalize, **kw)
        ref = reference_metrics(q, ql, g, gl, normalize=normalize, **kw)
        _assert_close(fast, ref, 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [1, 2, 4])
def test_many_ties_match_reference(seed, levels):
    # embeddings quantised to a few values: scores take few distinct values, huge tie groups
    q, ql, g, gl = _random(seed, 60, 400, 4, 6, 1)
    q, g = (q * levels).round(), (g * levels).round()
    kw = dict(ks=(1, 7, 100, 200), map_ks=(5, 200))
    for normalize in (True, False):
        _assert_close(retrieval_metrics(q, ql, g, gl, normalize=normalize, **kw), reference_metrics(q, ql, g, gl, normalize=normalize, **kw), 1e-9)


def test_duplicated_gallery_items_with_different_labels():
    # every photo appears under every label: each relevant item ties with C-1 irrelevant copies
    g0 = torch.randn(30, 8)
    n_cls = 4
    g = g0.repeat(n_cls, 1)
    gl = torch.arange(n_cls).repeat_interleave(len(g0))
    q = torch.randn(25, 8)
    ql = torch.randint(0, n_cls, (25,))
    m = _both(q, ql, g, gl, ks=(1, 4, 100), map_ks=(4, 200))
    assert m["P@1"] == 0.0 and m["P@4"] == pytest.approx(0.25)  # the top tie group: 3 irrelevant copies first
    # relevant item j (by score) sits at rank C*j: AP = (1/R) sum_j j / (C j) = 1/C
    assert m["mAP@all"] == pytest.approx(1 / n_cls)


def test_dense_clusters_of_distinct_scores():
    # Many distinct but very close scores next to far outliers: many thresholds share a histogram bin,
    # which exercises the exact placement inside a bin (binary search among several thresholds).
    rng = np.random.default_rng(0)
    n = 3000
    vals = 1.0 + rng.integers(0, 200, n) * 2.0**-20
    vals[:5] = [-1000.0, 1000.0, -500.0, 800.0, 0.0]
    gl = rng.integers(0, 3, n)
    q = torch.ones(6, 1)
    ql = torch.tensor([0, 1, 2, 0, 1, 5])
    g = torch.tensor(vals, dtype=torch.float32).reshape(-1, 1)
    _both(q, ql, g, torch.tensor(gl), normalize=False, ks=(1, 50, 100, 200, 2999), map_ks=(3, 200, 1000))


def test_unbalanced_classes_and_queries_sorted_by_class_size():
    rng = np.random.default_rng(3)
    sizes = [1, 2, 700, 5, 90]
    gl = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    g = rng.standard_normal((len(gl), 6)).astype(np.float32)
    ql = rng.integers(0, len(sizes) + 1, 80)
    q = rng.standard_normal((80, 6)).astype(np.float32)
    for cs in (None, 1, 9):
        fast = retrieval_metrics(q, ql, g, gl, chunk_size=cs)
        _assert_close(fast, reference_metrics(q, ql, g, gl), 1e-9)


# ------------------------------------------------------------------------------------------------
# Invariances
# ------------------------------------------------------------------------------------------------


def test_chunked_equals_unchunked_exactly():
    for q, ql, g, gl in (_random(7, 41, 700, 12, 9, 2), _random(8, 23, 300, 3, 4, 0)):
        for quant in (False, True):
            if quant:
                q, g = (q * 2).round(), (g * 2).round()
            kw = dict(ks=(1, 10, 100, 200), map_ks=(10, 200))
            full = retrieval_metrics(q, ql, g, gl, **kw)
            for cs in (1, 3, 7, 41, 1000):  # 7 does not divide 41 or 23
                assert retrieval_metrics(q, ql, g, gl, chunk_size=cs, **kw) == full, cs
            # a tiny memory budget: one-row chunks; with chunk_size 13 the exact placement of
            # marked-bin items runs in several row groups
            assert retrieval_metrics(q, ql, g, gl, max_memory_bytes=1, **kw) == full
            assert retrieval_metrics(q, ql, g, gl, chunk_size=13, max_memory_bytes=1, **kw) == full


def test_chunking_with_many_queries_in_several_matmul_blocks():
    # more queries than one matmul block (MATMUL_BLOCK rows), chunk sizes that straddle blocks
    from dfbench.train.metrics import MATMUL_BLOCK

    q, ql, g, gl = _random(19, MATMUL_BLOCK * 2 + 37, 900, 16, 12, 1)
    full = retrieval_metrics(q, ql, g, gl)
    for cs in (MATMUL_BLOCK - 1, MATMUL_BLOCK + 1, 3 * MATMUL_BLOCK):
        assert retrieval_metrics(q, ql, g, gl, chunk_size=cs) == full
    _assert_close(full, reference_metrics(q, ql, g, gl), 1e-9)


def test_numpy_input_equals_torch_input():
    q, ql, g, gl = _random(9, 40, 250, 10, 6, 1)
    a = retrieval_metrics(q, ql, g, gl)
    b = retrieval_metrics(q.numpy(), ql.numpy(), g.numpy(), gl.numpy())
    c = retrieval_metrics(q.double().numpy(), ql.numpy().astype(np.int32), g.numpy().astype(np.float16).astype(np.float32), gl.numpy().astype(np.uint8))
    assert a == b
    assert set(c) == set(a)
    _assert_close(b, reference_metrics(q.numpy(), ql.numpy(), g.numpy(), gl.numpy()), 1e-9)
    # labels as an (N, 1) column are accepted
    assert retrieval_metrics(q, ql.reshape(-1, 1), g, gl.reshape(-1, 1)) == a


def test_normalisation_invariance():
    q, ql, g, gl = _random(10, 50, 400, 16, 8, 1)
    base = retrieval_metrics(q, ql, g, gl)
    # power-of-two scales are exact in floating point: identical normalised vectors, identical metrics
    sq = 2.0 ** torch.randint(-6, 7, (len(q), 1)).float()
    sg = 2.0 ** torch.randint(-6, 7, (len(g), 1)).float()
    assert retrieval_metrics(q * sq, ql, g * sg, gl) == base
    # arbitrary positive scales: the same up to float rounding of the normalised vectors
    _assert_close(retrieval_metrics(q * 3.7, ql, g * torch.rand(len(g), 1).add(0.1), gl), base, 1e-6)
    # without normalisation a per-row gallery scale changes the ranking (dot products)
    unnorm = retrieval_metrics(q, ql, g * torch.rand(len(g), 1).add(0.1), gl, normalize=False)
    assert unnorm != base


def test_inputs_are_not_modified_and_float64_is_computed_in_float32():
    q, ql, g, gl = _random(11, 30, 200, 8, 5, 0)
    q64, g64 = q.double(), g.double()
    copies = [t.clone() for t in (q64, ql, g64, gl)]
    m = retrieval_metrics(q64, ql, g64, gl)
    for t, c in zip((q64, ql, g64, gl), copies):
        assert torch.equal(t, c)
    _assert_close(m, retrieval_metrics(q, ql, g, gl), 1e-6)


def test_more_keys_and_bad_arguments():
    q, ql, g, gl = _random(12, 20, 100, 8, 4, 0)
    m = retrieval_metrics(q, ql, g, gl, ks=(1, 10), map_ks=(5, 50))
    assert list(m) == ["mAP@all", "mAP@5", "mAP@50", "P@1", "P@10"]
    with pytest.raises(DfbenchError):
        retrieval_metrics(q, ql, g, gl, ks=(0,))
    with pytest.raises(DfbenchError):
        retrieval_metrics(q, ql, g, gl, chunk_size=0)
    with pytest.raises(DfbenchError, match="dimension"):
        retrieval_metrics(q, ql, g[:, :4], gl)
    with pytest.raises(DfbenchError, match="one label per"):
        retrieval_metrics(q, ql[:-1], g, gl)
    with pytest.raises(DfbenchError, match="integer"):
        retrieval_metrics(q, ql.float(), g, gl)
    bad = g.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(DfbenchError, match="NaN or infinite"):
        retrieval_metrics(q, ql, bad, gl)
    with pytest.raises(DfbenchError, match="NaN or infinite"):
        retrieval_metrics(q, ql, bad, gl, normalize=False)


def test_huge_finite_values_are_not_mistaken_for_infinities():
    q, ql, g, gl = _random(13, 10, 50, 8, 3, 0)
    big = 2e38 / float(max(q.abs().max(), g.abs().max()))  # entries up to 2e38: norms overflow float32
    m = retrieval_metrics(q * big, ql, g * big, gl)
    _assert_close(m, retrieval_metrics(q, ql, g, gl), 1e-6)
    with pytest.raises(DfbenchError, match="overflow"):  # dot products would overflow
        retrieval_metrics(q * 1e20, ql, g * 1e20, gl, normalize=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_reference():
    q, ql, g, gl = _random(14, 300, 5000, 32, 20, 2)
    dev = torch.device("cuda")
    m = retrieval_metrics(q.to(dev), ql.to(dev), g.to(dev), gl.to(dev))
    _assert_close(m, reference_metrics(q, ql, g, gl), 1e-6)
    qq, gg = (q * 2).round(), (g * 2).round()  # ties, decided on exact scores
    _assert_close(retrieval_metrics(qq.to(dev), ql, gg.to(dev), gl, normalize=False), reference_metrics(qq, ql, gg, gl, normalize=False), 1e-9)


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def _save(tmp_path, **arrays):
    paths = {}
    for name, arr in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return paths


def test_evaluate_arrays_round_trip(tmp_path):
    q, ql, g, gl = _random(15, 30, 200, 8, 5, 1)
    p = _save(tmp_path, q=q.numpy(), ql=ql.numpy(), g=g.numpy(), gl=gl.numpy())
    out = evaluate_arrays(p["q"], p["ql"], p["g"], p["gl"])
    m = retrieval_metrics(q, ql, g, gl)
    assert {k: out[k] for k in m} == m
    assert (out["n_queries"], out["n_gallery"], out["dim"]) == (30, 200, 8)
    out2 = evaluate_arrays(str(p["q"]), str(p["ql"]), str(p["g"]), str(p["gl"]), ks=(5,), map_ks=(), device="cpu")
    assert set(out2) == {"mAP@all", "P@5", "n_queries", "n_gallery", "dim"}


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(q=np.zeros((30,), np.float32)), "2-D array"),
        (dict(q=np.zeros((30, 8), np.int64)), "floating point"),
        (dict(q=np.zeros((0, 8), np.float32), ql=np.zeros(0, np.int64)), "empty"),
        (dict(ql=np.zeros(30, np.float32)), "must be integers"),
        (dict(ql=np.zeros((30, 2), np.int64)), "1-D array"),
        (dict(gl=np.zeros(199, np.int64)), "one label per embedding"),
        (dict(g=np.zeros((200, 9), np.float32)), "dimension"),
        (dict(g=np.full((200, 8), np.nan, np.float32)), "NaN or infinite"),
        (dict(q=np.array([{"a": 1}], dtype=object)), "Python objects"),
    ],
)
def test_evaluate_arrays_errors(tmp_path, change, match):
    q, ql, g, gl = _random(16, 30, 200, 8, 5, 0)
    arrays = dict(q=q.numpy(), ql=ql.numpy(), g=g.numpy(), gl=gl.numpy())
    arrays.update(change)
    p = _save(tmp_path, **arrays)
    with pytest.raises(DfbenchError, match=match) as err:
        evaluate_arrays(p["q"], p["ql"], p["g"], p["gl"])
    assert "\n" not in str(err.value)  # one paragraph


def test_evaluate_arrays_missing_and_unreadable_files(tmp_path):
    q, ql, g, gl = _random(17, 5, 20, 4, 2, 0)
    p = _save(tmp_path, q=q.numpy(), ql=ql.numpy(), g=g.numpy(), gl=gl.numpy())
    with pytest.raises(DfbenchError, match="does not exist"):
        evaluate_arrays(tmp_path / "nope.npy", p["ql"], p["g"], p["gl"])
    with pytest.raises(DfbenchError, match="folder"):
        evaluate_arrays(p["q"], tmp_path, p["g"], p["gl"])
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(DfbenchError, match="not a .npy file"):
        evaluate_arrays(p["q"], p["ql"], tmp_path / "text.npy", p["gl"])
    np.savez(tmp_path / "arch.npz", a=g.numpy())
    with pytest.raises(DfbenchError, match="npz archive"):
        evaluate_arrays(p["q"], p["ql"], tmp_path / "arch.npz", p["gl"])
    raw = p["g"].read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DfbenchError, match="truncated"):
        evaluate_arrays(p["q"], p["ql"], tmp_path / "cut.npy", p["gl"])


def test_reference_and_fast_match_a_literal_loop():
    # a literal, loop-only implementation of the definitions on 1-D data with many ties
    rng = np.random.default_rng(5)
    qv = rng.choice([1.0, -1.0, 2.0, 0.5], size=9)
    gv = rng.integers(-3, 4, size=25).astype(np.float64)
    ql = rng.integers(0, 4, 9)  # label 3 is absent from the gallery
    gl = rng.integers(0, 3, 25)
    K = 4
    aps, apks, pks = [], [], []
    for i in range(len(qv)):
        score = [qv[i] * gv[k] for k in range(len(gv))]  # exact in float32
        rel = [int(gl[k] == ql[i]) for k in range(len(gv))]
        order = sorted(range(len(gv)), key=lambda k: (-score[k], rel[k]))  # ties: irrelevant first
        hits, ap, apk, hits_k = 0, 0.0, 0.0, 0
        for pos, k in enumerate(order, 1):
            if rel[k]:
                hits += 1
                ap += hits / pos
                if pos <= K:
                    apk += hits / pos
                    hits_k += 1
        aps.append(ap / sum(rel) if sum(rel) else 0.0)
        apks.append(apk / hits_k if hits_k else 0.0)
        pks.append(hits_k / K)
    args = (torch.tensor(qv, dtype=torch.float32).reshape(-1, 1), ql, torch.tensor(gv, dtype=torch.float32).reshape(-1, 1), gl)
    m = _both(*args, normalize=False, ks=(K,), map_ks=(K,))
    assert m["mAP@all"] == pytest.approx(float(np.mean(aps)))
    assert m[f"mAP@{K}"] == pytest.approx(float(np.mean(apks)))
    assert m[f"P@{K}"] == pytest.approx(float(np.mean(pks)))


def test_module_has_no_hidden_device_assumption():
    import inspect

    import dfbench.train.metrics as mod

    src = inspect.getsource(mod)
    assert ".cuda(" not in src and "'cuda'" not in src and '"cuda"' not in src
    assert math.isfinite(retrieval_metrics(*_random(18, 3, 10, 2, 2, 0))["mAP@all"])
