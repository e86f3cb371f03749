"""The typed run record (dfbench.app.record_model) and the one store every reader uses
(dfbench.app.records.ResultStore): committed records fit, wrong types are named, fields of a
plugin or a newer version are kept, and a write the store would not read back is refused."""

from __future__ import annotations

import json
import warnings

import pytest

from conftest import REPO, sealed
from dfbench.app.record_model import RunRecord, type_problem
from dfbench.app.records import BadRecordWarning, ResultStore, record_problem


def _committed():
    return sorted((REPO / "leaderboards" / "records").rglob("*-s*.json"))


def test_every_committed_record_fits_the_typed_record():
    paths = _committed()
    assert len(paths) > 100
    for path in paths:
        rec = json.loads(path.read_text())
        assert type_problem(rec) is None, (path, type_problem(rec))
        model = RunRecord.model_validate(rec)
        assert model.method == rec["method"] and model.seed == rec["seed"]


def _a_record():
    return json.loads(_committed()[0].read_text())


@pytest.mark.parametrize("field,value,words", [
    ("timing", {"total": "ten"}, "its timing total is a str, not a number"),
    ("selection", {"round": 2.5}, "its selection round is a float, not an integer"),
    ("budget", {"teacher_images": [1]}, "its budget teacher_images is a list, not a number"),
    ("anytime", [{"round": 0, "value": "x"}], "its anytime 0 value is a str, not a number"),
    ("world_size", "1", "its 'world_size' is a str, not an integer"),
    ("per_query", 5, "its 'per_query' is a int, not a string"),
])
def test_a_wrong_type_anywhere_is_named(field, value, words):
    rec = sealed({**_a_record(), field: value})
    assert record_problem(rec) == words


def test_fields_it_does_not_know_are_kept():
    rec = sealed({**_a_record(), "my_plugin": {"anything": [1, 2]}})
    assert record_problem(rec) is None
    assert RunRecord.model_validate(rec).model_extra["my_plugin"] == {"anything": [1, 2]}


def test_the_schema_is_exported():
    schema = RunRecord.model_json_schema(by_alias=True)
    assert {"schema", "method", "dataset", "seed", "status", "config", "config_hash"} <= set(schema["required"])


def test_the_store_reads_filters_and_refuses_to_write_what_it_would_not_read(tmp_path):
    store = ResultStore(tmp_path)
    rec = {k: v for k, v in _a_record().items() if k != "_path"}
    path = store.write(rec)
    assert path == tmp_path / rec["dataset"] / rec["method"] / f"{rec['run_id']}.json"
    [back] = store.records()
    assert back["config_hash"] == rec["config_hash"] and back["_path"] == str(path)
    assert store.records(dataset="no-such") == [] and len(store.records(method=rec["method"])) == 1
    with pytest.raises(ValueError, match="would not read back: its config_hash"):
        store.write({**rec, "config_hash": "0" * 12})
    with pytest.raises(ValueError, match="would not read back: its dataset"):
        store.write(sealed({**rec, "dataset": "../../out"}))
    bad = tmp_path / rec["dataset"] / rec["method"] / f"{rec['config_hash']}-s99.json"
    bad.write_text(json.dumps(sealed({**rec, "seed": 99, "timing": {"total": "ten"}})))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(store.records()) == 1
    assert [str(w.message) for w in caught if issubclass(w.category, BadRecordWarning)] == [
        f"leaving out {bad}: its timing total is a str, not a number"]
