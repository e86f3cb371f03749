"""The regime check (issue 28): a suite's positive controls, checked seed by seed from records."""

from __future__ import annotations

import pytest

from dfbench.api.errors import ConfigError
from dfbench.app import controls as ctl

LABELS = ["classifier-only (probs)", "unimodal-kd (proxy)", "gaussian-prior (proxy)", "avg-weights (probs)"]
RAW = {"baseline": "classifier-only (probs)", "min_seeds": 3,
       "rows": {"unimodal-kd (proxy)": {"at_least": 0.9}, "gaussian-prior (proxy)": {"below": 1.0}}}


def record(label: str, seed: int, value: float, teacher: str = "t") -> dict:
    return {"dataset": "d", "method": label.split(" ")[0], "seed": seed, "status": "completed", "metrics": {"mAP@all": value},
            "suite": {"label": label}, "teachers": {"photo": {"weights_sha256": f"{teacher}{seed}"}}}


def rows(base: list[float], kd: list[float], gauss: list[float]) -> list[dict]:
    return ([record(LABELS[0], s, v) for s, v in enumerate(base)] + [record(LABELS[1], s, v) for s, v in enumerate(kd)]
            + [record(LABELS[2], s, v) for s, v in enumerate(gauss)])


def test_controls_pass_when_every_ordering_holds_on_enough_seeds():
    c = ctl.Controls.parse(RAW, "suite.yaml", LABELS)
    regime = ctl.check(rows([0.50, 0.52, 0.48], [0.47, 0.50, 0.45], [0.30, 0.31, 0.29]), "d", c)
    assert regime.status == "pass", [r.status for r in regime.results]
    kd = regime.results[0]
    assert kd.seeds == [0, 1, 2]
    assert kd.margins == pytest.approx([0.47 - 0.45, 0.50 - 0.468, 0.45 - 0.432])
    lo, hi = kd.interval
    assert lo < kd.mean_margin < hi
    text = ctl.markdown(regime)
    assert "**Controls pass**" in text and "unimodal-kd (proxy) ≥ 0.9 x classifier-only (probs)" in text


def test_one_failing_ordering_fails_the_regime_and_the_page_says_no_verdict():
    c = ctl.Controls.parse(RAW, "suite.yaml", LABELS)
    # every data-free row far below the teachers: the regime the issue describes
    regime = ctl.check(rows([0.51, 0.50, 0.52], [0.23, 0.22, 0.24], [0.10, 0.12, 0.11]), "d", c)
    assert [r.status for r in regime.results] == ["fails", "holds"]
    assert regime.status == "fail"
    assert "No verdict on a method is drawn from this page" in ctl.markdown(regime)


def test_too_few_seeds_is_incomplete_and_other_teachers_are_left_out():
    c = ctl.Controls.parse(RAW, "suite.yaml", LABELS)
    recs = rows([0.50, 0.52], [0.47, 0.50], [0.30, 0.31])
    assert ctl.check(recs, "d", c).status == "incomplete"
    recs += [record(LABELS[0], 2, 0.5), record(LABELS[1], 2, 0.49, teacher="other"), record(LABELS[2], 2, 0.2)]
    regime = ctl.check(recs, "d", c)
    assert regime.results[0].seeds == [0, 1]  # seed 2 ran on other teachers: not paired
    assert regime.results[1].seeds == [0, 1, 2] and regime.results[1].status == "holds"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ([1, 2], "must be a mapping"),
        ({"baseline": "classifier-only (probs)"}, "needs a baseline row"),
        ({**RAW, "rows": {"nope": {"at_least": 1}}}, "names the row 'nope'"),
        ({**RAW, "rows": {"unimodal-kd (proxy)": {"above": 1}}}, "must be one of"),
        ({**RAW, "rows": {"unimodal-kd (proxy)": {"at_least": -1}}}, "positive number"),
        ({**RAW, "min_seeds": 1}, "at least 2"),
        ({**RAW, "verdict": 1}, "Unknown key 'verdict'"),
    ],
)
def test_bad_controls_are_one_paragraph_config_errors(raw, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        ctl.Controls.parse(raw, "suite.yaml", LABELS)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_pretrained_suite_declares_the_papers_controls():
    from conftest import REPO

    from dfbench.api.plugins import registry
    from dfbench.app.suites import load_suite

    suite = load_suite(REPO / "benchmarks" / "sketchy-pretrained.yaml", registry("methods").names())
    c = suite.controls
    assert c.baseline == "classifier-only (probs)" and c.min_seeds == 5 and len(suite.seeds) >= 5
    got = {x.row: (x.relation, x.factor) for x in c.checks}
    assert got == {"kd-real (proxy, with data)": ("at_least", 0.9),  # the pipeline's own control, checked first
                   "unimodal-kd (proxy)": ("at_least", 0.9), "avg-weights (probs)": ("at_least", 1.0),
                   "meta-data (proxy)": ("at_least", 1.0), "alt-data (proxy, own schedule)": ("at_least", 1.0),
                   "gaussian-prior (proxy)": ("below", 1.0)}
    assert all("data.split_seed=run" in item.overrides for item in suite.items)


def test_the_digits_suite_declares_the_pipeline_control_and_the_papers():
    from conftest import REPO

    from dfbench.api.plugins import registry
    from dfbench.app.suites import load_suite

    suite = load_suite(REPO / "benchmarks" / "spoken-written-digits.yaml", registry("methods").names())
    got = {x.row: (x.relation, x.factor) for x in suite.controls.checks}
    assert got["kd-real (proxy, with data)"] == ("at_least", 0.9) and got["gaussian-prior (proxy)"] == ("below", 1.0)
    assert {item.dataset for item in suite.items} == {"digits"} and suite.own_leaderboard
