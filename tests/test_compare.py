"""Paired comparison of two leaderboard rows (dfbench.compare): per-seed differences and a
per-query sign-flip permutation test, computed from records and their per-query files only."""

import gzip

import pytest

from dfbench.compare import compare
from dfbench.errors import ConfigError


def _record(tmp_path, label, seed, aps):
    art = f"{label}-s{seed}"
    (tmp_path / art).mkdir()
    lines = ["query,label,AP,top"] + [f"{i},{i % 3},{ap:.6f},0 1" for i, ap in enumerate(aps)]
    (tmp_path / art / "queries.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return {"dataset": "d", "method": label.split()[0], "seed": seed, "status": "completed", "artifacts": art,
            "suite": {"label": label}, "metrics": {"mAP@all": sum(aps) / len(aps)}}


def test_a_row_clearly_above_another_is_found_so_and_a_tie_is_not(tmp_path):
    import random

    rnd = random.Random(0)
    records = []
    for s in range(3):
        base = [rnd.random() for _ in range(200)]
        records += [_record(tmp_path, "b (probs)", s, base),
                    _record(tmp_path, "a (proxy)", s, [min(1.0, x + 0.05 + 0.02 * rnd.random()) for x in base]),
                    _record(tmp_path, "c (probs)", s, list(base))]
    better = compare(records, tmp_path, "d", "a (proxy)", "b (probs)", draws=2000)
    assert better.seeds == [0, 1, 2] and better.seeds_favouring_a == 3 and better.mean_delta > 0.04
    assert better.p_queries < 0.001 and better.p_seeds == pytest.approx(0.25)  # 3 seeds: 2/8 at best
    assert better.queries == 600
    tie = compare(records, tmp_path, "d", "c (probs)", "b (probs)", draws=2000)
    assert tie.mean_delta == 0 and tie.p_queries == 1.0 and tie.seeds_favouring_a == 0


def test_rows_without_common_seeds_are_refused(tmp_path):
    records = [_record(tmp_path, "a", 0, [0.5, 0.6]), _record(tmp_path, "b", 1, [0.5, 0.6])]
    with pytest.raises(ConfigError, match="No seed on d has completed records of both 'a' and 'b'"):
        compare(records, tmp_path, "d", "a", "b")
