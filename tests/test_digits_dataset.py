"""The ``digits`` dataset (spoken digits against written digits): the real FSDD and MNIST files read
as their formats say, the dataset's own splits, spectrograms computed as documented, its content
revision, bad input named in one paragraph, and a method run end to end."""

from __future__ import annotations

import gzip
import shutil
import wave

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import error_paragraph


@pytest.fixture
def digits():
    from dfbench.api.plugins import registry

    return registry("datasets").load("digits")()


def _opts(root, tmp_path, **extra):
    from dfbench.api.datasets import DatasetOptions

    return DatasetOptions(data_root=root, image_size=32, cache_dir=tmp_path / "cache", extra=extra)


def test_loads_the_real_pair_with_its_own_splits(digits, shared_data, tmp_path):
    bench = digits.load(_opts(shared_data, tmp_path, train_per_class=50, test_per_class=20))
    assert bench.classes == [str(d) for d in range(10)]
    assert bench.counts() == {"train/written": 500, "train/spoken": 2700, "test/written": 200, "test/spoken": 300}
    for split, per_class in (("train", 270), ("test", 30)):  # FSDD: takes 0-4 of 6 speakers x 10 digits are test
        assert torch.bincount(bench.get(split, "spoken").labels, minlength=10).tolist() == [per_class] * 10
    # the written digits are MNIST's, in file order per class: the first test image of digit 7 is
    # the 51st 7 of the t10k file (after 50 in train)
    with gzip.open(shared_data / "mnist-test" / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read()[8:], dtype=np.uint8)
    with gzip.open(shared_data / "mnist-test" / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    seventh = images[np.flatnonzero(labels == 7)[50]].astype(np.float32) / 255.0
    expected = torch.nn.functional.interpolate(torch.from_numpy(seventh)[None, None], size=(32, 32), mode="bilinear", align_corners=False)
    test = bench.get("test", "written")
    got = test.load_uint8([int(torch.nonzero(test.labels == 7)[0])])[0]
    assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])  # grey, three channels
    assert torch.equal(got[0], (expected[0, 0].clamp(0, 1) * 255).round().to(torch.uint8))
    pair = bench.modalities  # the declaration, keyed by the pair's own names
    assert (pair.query.key, pair.query.kind, pair.gallery.key, pair.gallery.kind) == ("spoken", "audio", "written", "image")
    assert pair.query.channels == pair.gallery.channels == 1


def test_a_spectrogram_is_what_the_docstring_says(tmp_path):
    from dfbench_datasets.digits import mel_filter_bank, spectrogram_image

    bank = mel_filter_bank(32)
    assert bank.shape == (32, 129) and float(bank.max()) <= 1.0 + 1e-6
    assert (bank.sum(1) > 0).all()  # every band covers some FFT bin
    t = np.arange(8000) / 8000.0
    low = (np.sin(2 * np.pi * 300 * t) * 20000).astype(np.int16)
    high = (np.sin(2 * np.pi * 3000 * t) * 20000).astype(np.int16)
    img_low, img_high = spectrogram_image(low, 32, bank), spectrogram_image(high, 32, bank)
    assert img_low.dtype == torch.uint8 and img_low.shape == (32, 32)
    # low frequencies at the bottom: a 300 Hz tone lights a low band, a 3 kHz tone a high one
    row_low, row_high = int(img_low.float().mean(1).argmax()), int(img_high.float().mean(1).argmax())
    assert row_low > 20 and row_high < 12, (row_low, row_high)


def _copy_root(shared_data, tmp_path, n_per_digit=None):
    root = tmp_path / "root"
    (root / "fsdd" / "recordings").mkdir(parents=True)
    shutil.copytree(shared_data / "mnist-test", root / "mnist-test")
    for path in sorted((shared_data / "fsdd" / "recordings").glob("*.wav")):
        take = int(path.stem.split("_")[2])
        if n_per_digit is None or take < n_per_digit:
            shutil.copy(path, root / "fsdd" / "recordings" / path.name)
    return root


def test_the_revision_follows_the_content(digits, shared_data, tmp_path):
    root = _copy_root(shared_data, tmp_path, n_per_digit=7)
    first = digits.revision(_opts(root, tmp_path))
    assert first == digits.revision(_opts(root, tmp_path)) and first.startswith("c")
    target = root / "fsdd" / "recordings" / "3_jackson_6.wav"
    other = root / "fsdd" / "recordings" / "4_jackson_6.wav"
    a, b = target.read_bytes(), other.read_bytes()
    target.write_bytes(b)
    other.write_bytes(a)  # two recordings swapped: another revision
    assert digits.revision(_opts(root, tmp_path)) != first


def test_bad_input_is_one_paragraph(digits, shared_data, tmp_path):
    from dfbench.app.cli import cli

    root = _copy_root(shared_data, tmp_path, n_per_digit=7)
    (root / "fsdd" / "recordings" / "5_theo_2.wav").write_bytes(b"RIFF not a wave")
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "digits", "--data-root", str(root),
                                   "--profile", "smoke", "--results", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 2, res.output
    text = error_paragraph(res.output)
    assert "5_theo_2.wav could not be read as a WAV file" in text and "--skip-bad-images" in text
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))
    shutil.rmtree(root / "mnist-test")
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "digits", "--data-root", str(root),
                                   "--profile", "smoke", "--results", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 2 and "t10k-images-idx3-ubyte.gz" in error_paragraph(res.output) and "DFBENCH_DATA" in error_paragraph(res.output)


def test_a_bad_recording_is_skipped_when_asked(digits, shared_data, tmp_path):
    from dfbench_datasets.digits import BadRecordingWarning

    root = _copy_root(shared_data, tmp_path, n_per_digit=7)
    with wave.open(str(root / "fsdd" / "recordings" / "5_theo_6.wav"), "wb") as fh:  # stereo: not the dataset's format
        fh.setnchannels(2), fh.setsampwidth(2), fh.setframerate(8000), fh.writeframes(b"\0" * 4000)
    opts = _opts(root, tmp_path, train_per_class=10, test_per_class=5)
    opts.skip_bad_images = True
    with pytest.warns(BadRecordingWarning, match="5_theo_6.wav"):
        bench = digits.load(opts)
    assert bench.info["skipped_recordings"] == ["5_theo_6.wav"]
    assert len(bench.get("train", "spoken")) == 10 * 6 * 2 - 1


def test_classifier_only_runs_end_to_end_on_the_pair(shared_data, tmp_path):
    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "digits", "--profile", "smoke",
                                   "--set", "data.options.train_per_class=30", "--set", "data.options.test_per_class=10",
                                   "--results", str(tmp_path / "r"), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    [path] = list((tmp_path / "r" / "digits" / "classifier-only").glob("*.json"))
    import json

    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and rec["metrics"]["mAP@all"] > 0.1  # above chance (0.1)


@pytest.mark.parametrize("method", ["unimodal-kd", "dfsbir"])
def test_data_free_methods_run_on_the_pair_keyed_by_its_modalities(method, shared_data, tmp_path):
    """The pair's own names key everything a run produces: teachers by role, each side's channels."""
    import json

    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["run", "--method", method, "--dataset", "digits", "--profile", "smoke",
                                   "--set", "data.options.train_per_class=20", "--set", "data.options.test_per_class=5",
                                   "--set", "params.variant=independent",
                                   "--results", str(tmp_path / "r"), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    [path] = list((tmp_path / "r" / "digits" / method).glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed", rec.get("error")
    assert {"spoken", "written"} <= set(rec["teachers"]) and not {"photo", "sketch"} & set(rec["teachers"])
    assert rec["data"]["modalities"]["spoken"]["role"] == "query" and rec["data"]["modalities"]["written"]["channels"] == 1
    assert set(rec["data"]["counts"]) >= {"train/spoken", "test/written"}


def _method_names():
    from dfbench.api.plugins import registry

    return sorted(registry("methods").names())


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("digits-cache")  # the smoke teachers, trained once for every method


@pytest.mark.parametrize("method", _method_names())
def test_every_registered_method_runs_on_the_pair(method, shared_data, tmp_path, digits_cache):
    """Each method at its defaults (its default teachers: unified, modality or per side) completes on
    the spoken-written pair, with teachers named by the pair's roles only."""
    import json
    import math

    from dfbench.app.cli import cli

    res = CliRunner().invoke(cli, ["run", "--method", method, "--dataset", "digits", "--profile", "smoke", "--limit", "6",
                                   "--results", str(tmp_path / "r"), "--cache-dir", str(digits_cache), "--quiet",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    [path] = list((tmp_path / "r" / "digits" / method).glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed", rec.get("error")
    assert set(rec["teachers"]) <= {"spoken", "written", "unified", "modality"} and rec["teachers"], sorted(rec["teachers"])
    assert math.isfinite(rec["metrics"]["mAP@all"]) and 0.0 < rec["metrics"]["mAP@all"] <= 1.0


def test_the_checkpoint_loader_takes_any_pairs_teachers_by_side(shared_data, tmp_path):
    """teachers.checkpoints.query / .gallery name the files of a pair whose modalities are not the
    default pair's; a missing one is named by the option to set."""
    import json

    from dfbench.app.cli import cli

    common = ["--method", "classifier-only", "--dataset", "digits", "--profile", "smoke", "--quiet", "--device", "cpu",
              "--set", "data.options.train_per_class=20", "--set", "data.options.test_per_class=5", "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(cli, ["run", *common, "--results", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    [path] = list((tmp_path / "a").rglob("classifier-only/*.json"))
    rec = json.loads(path.read_text())
    spoken, written = rec["teachers"]["spoken"]["cache"], rec["teachers"]["written"]["cache"]
    ok = CliRunner().invoke(cli, ["run", *common, "--results", str(tmp_path / "b"), "--set", "teachers.loader=checkpoint",
                                  "--set", f"teachers.checkpoints.query={spoken}", "--set", f"teachers.checkpoints.gallery={written}"])
    assert ok.exit_code == 0, ok.output
    [path_b] = list((tmp_path / "b").rglob("classifier-only/*.json"))
    rec_b = json.loads(path_b.read_text())
    assert rec_b["metrics"] == rec["metrics"] and rec_b["teachers"]["spoken"]["checkpoint"] == spoken
    missing = CliRunner().invoke(cli, ["run", *common, "--results", str(tmp_path / "c"), "--set", "teachers.loader=checkpoint",
                                       "--set", f"teachers.checkpoints.query={spoken}"])
    assert missing.exit_code == 2 and "teachers.checkpoints.gallery is not set" in missing.output and "Traceback" not in missing.output
