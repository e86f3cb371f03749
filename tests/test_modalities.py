"""The modality contract: a benchmark declares its two modalities, and everything is keyed by them."""

from __future__ import annotations

import subprocess

import pytest

from dfbench.api.modalities import DEFAULT_DECLARATION, DEFAULT_PAIR, ModalityPair

DIGITS = {
    "spoken": {"role": "query", "name": "spoken digit", "plural": "spoken digits", "kind": "audio", "channels": 1, "as": "log-mel spectrogram image"},
    "written": {"role": "gallery", "name": "written digit", "plural": "written digits", "kind": "image", "channels": 1},
}


def test_the_default_pair_is_sketch_queries_against_a_photo_gallery():
    assert DEFAULT_PAIR.keys == ("photo", "sketch")  # the engine's order: gallery first
    assert (DEFAULT_PAIR.query.key, DEFAULT_PAIR.gallery.key) == ("sketch", "photo")
    assert DEFAULT_PAIR["sketch"].channels == 1 and DEFAULT_PAIR["photo"].channels == 3
    assert DEFAULT_PAIR.declaration() == DEFAULT_DECLARATION
    assert DEFAULT_PAIR.index("photo") == 0 and DEFAULT_PAIR.other("photo") == "sketch"


def test_any_pair_parses_and_round_trips():
    pair = ModalityPair.parse(DIGITS)
    assert pair.keys == ("written", "spoken")
    assert pair.query.kind == "audio" and pair.query.shown_as == "log-mel spectrogram image"
    assert ModalityPair.parse(pair.declaration()) == pair
    assert list(pair) == ["written", "spoken"] and "spoken" in pair and "photo" not in pair
    with pytest.raises(KeyError, match="no modality 'photo'"):
        pair["photo"]


@pytest.mark.parametrize("bad, message", [
    ({"a": {"role": "query"}}, "two modalities"),
    ({"a": {"role": "query"}, "b": {"role": "query"}}, "one modality must have role 'query'"),
    ({"a": {"role": "query"}, "b": {"role": "gallery", "channels": 2}}, "channels 2"),
    ({"a": {"role": "query", "kind": "smell"}, "b": {"role": "gallery"}}, "kind 'smell'"),
    ("photo,sketch", "two modalities"),
])
def test_a_bad_declaration_says_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        ModalityPair.parse(bad, "dataset 'x'")


def test_the_core_names_no_modality_but_in_the_default_declaration():
    """Nothing outside a dataset plugin names photo or sketch: in dfbench/ only the default pair's
    declaration does (as a quoted key)."""
    out = subprocess.run(["grep", "-rn", '"photo"\\|"sketch"', "dfbench/", "--include=*.py"], capture_output=True, text=True,
                         cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    hits = [line for line in out.stdout.splitlines() if line]
    assert hits and all(line.startswith("dfbench/api/modalities.py:") for line in hits), hits


def test_pictures_speak_of_the_benchmarks_modalities():
    from dfbench.app import pictures

    assert pictures.legend(pictures.PAIRS_LEGEND)[0] == "top row: synthesised photos; bottom row: the sketches synthesised from the same noise"
    words = " ".join(pictures.legend(pictures.PAIRS_LEGEND + pictures.RETRIEVAL_LEGEND, ModalityPair.parse(DIGITS)))
    assert "written digits" in words and "spoken digits" in words and "photo" not in words and "sketch" not in words


class _Broken:
    """A dataset whose class declares one modality."""

    from dfbench import hookimpl

    @hookimpl
    def dfbench_register_datasets(self, register):
        from dfbench.api.datasets import DatasetPlugin

        class Broken(DatasetPlugin):
            needs_data_root = False
            modalities = {"only": {"role": "query"}}

        register("broken-pair", Broken, description="a dataset that declares one modality")


def test_a_dataset_with_a_bad_declaration_is_a_one_paragraph_error(tmp_path):
    from click.testing import CliRunner

    from dfbench.api.plugins import get_plugins
    from dfbench.app.cli import cli

    with get_plugins().registered(_Broken(), name="broken-pair-test"):
        res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "broken-pair", "--profile", "smoke",
                                       "--results", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "must declare two modalities" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


class _Renamed:
    """A third pair, made in a test: the embedded shapes under keys of its own ('drawing' queries
    against a 'picture' gallery), declared and registered as any third-party dataset is."""

    from dfbench import hookimpl

    @hookimpl
    def dfbench_register_datasets(self, register):
        from dfbench.api.datasets import DatasetPlugin

        class Renamed(DatasetPlugin):
            needs_data_root = False
            modalities = {
                "drawing": {"role": "query", "name": "drawing", "plural": "drawings", "kind": "image", "channels": 1},
                "picture": {"role": "gallery", "name": "picture", "plural": "pictures", "kind": "image", "channels": 3},
            }

            def load(self, options):
                from dfbench_datasets.shapes import ShapesDataset

                bench = ShapesDataset().load(options)
                rename = {"sketch": "drawing", "photo": "picture"}
                bench.sets = {(split, rename[m]): s for (split, m), s in bench.sets.items()}
                bench.name = "renamed-pair"
                return bench

        register("renamed-pair", Renamed, description="shapes under other modality keys")


@pytest.mark.parametrize("method", ["dfsbir", "meta-data", "kd-real"])
def test_a_third_pair_runs_with_no_change_to_the_core_and_gives_the_default_pairs_numbers(method, tmp_path):
    """The same images under other keys: every number of the run is the default pair's (the keys
    name things, they draw no random numbers), and the record speaks of the pair's own names."""
    import json

    from click.testing import CliRunner

    from dfbench.api.plugins import get_plugins
    from dfbench.app.cli import cli

    smoke = ["--method", method, "--profile", "smoke", "--quiet", "--device", "cpu", "--set", "data.options.train_per_class=12",
             "--set", "data.options.test_per_class=6", "--set", "params.rounds=4", "--cache-dir", str(tmp_path / "cache")]
    records = {}
    with get_plugins().registered(_Renamed(), name="renamed-pair-test"):
        for dataset in ("shapes", "renamed-pair"):
            res = CliRunner().invoke(cli, ["run", "--dataset", dataset, "--results", str(tmp_path / dataset), *smoke])
            assert res.exit_code == 0, res.output
            [path] = list((tmp_path / dataset / dataset / method).glob("*.json"))
            records[dataset] = json.loads(path.read_text())
    base, renamed = records["shapes"], records["renamed-pair"]
    assert renamed["status"] == "completed" and renamed["metrics"] == base["metrics"]
    assert renamed["synthesis"] == base["synthesis"]
    roles = set(renamed["teachers"])
    assert not {"photo", "sketch"} & roles and roles - {"unified", "modality"} <= {"drawing", "picture"}
    assert set(renamed["data"]["counts"]) == {k.replace("photo", "picture").replace("sketch", "drawing") for k in base["data"]["counts"]}


def test_teachers_compare_by_side_whatever_a_record_calls_its_modalities():
    """Two records that name one modality differently (a record made before the modality-keyed
    contract called the spoken digits 'sketch') still compare their teachers role by role."""
    from dfbench.app.records import same_teachers

    def record(roles: dict, declared):
        return {"teachers": {k: {"weights_sha256": v} for k, v in roles.items()}, "data": {"modalities": declared}}

    old = record({"photo": "a", "sketch": "b"}, None)  # the default pair's names
    new = record({"written": "a", "spoken": "b"}, DIGITS)
    other = record({"written": "a", "spoken": "c"}, DIGITS)
    assert same_teachers(old, new) and same_teachers(new, old)
    assert not same_teachers(old, other) and not same_teachers(new, other)
