"""Reliability through the CLI (docs/reliability.md): the bad-input table, divergence, crashes,
Ctrl-C, and two runs writing into one results folder at once.

Every bad input exits with status 2 and a one-paragraph ``Error: ...`` that names the problem and
the fix, prints no traceback and writes nothing to the results folder. The kill-and-resume test is
tests/test_resume.py; same-seed determinism is tests/test_run.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import error_paragraph, sealed
from PIL import Image

from dfbench.app.cli import cli
from dfbench.api.datasets import MODALITIES
from dfbench.api.imageio import BadImageWarning
from dfbench.app.records import METRIC_KEYS
from dfbench.api.safeload import load_torch_file

TINY = ["data.options.train_per_class=24", "data.options.test_per_class=12"]


def _sets(*items, tiny: bool = True) -> list[str]:
    """``--set`` options; ``tiny`` adds the small shapes sizes (the folder dataset rejects them)."""
    out = []
    for item in (TINY if tiny else []) + list(items):
        out += ["--set", item]
    return out


def invoke(results: Path, *args, catch=True):
    argv = ["run", "--quiet", "--device", "cpu", "--results", str(results)]
    if "--profile" not in args:
        argv += ["--profile", "smoke"]
    return CliRunner().invoke(cli, argv + list(args), catch_exceptions=catch)


def records(results: Path) -> list[Path]:
    return sorted(p for p in results.rglob("*.json") if p.parent.parent.parent == results)


# -- a folder dataset on disk -------------------------------------------------------------------


def write_image(path: Path, modality: str, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if modality == "photo":
        Image.new("RGB", (12, 12), ((40 * seed) % 256, (90 + 17 * seed) % 256, 200)).save(path, "JPEG")
    else:
        im = Image.new("L", (12, 12), 255)
        for i in range(12):
            im.putpixel((i, (i + seed) % 12), 0)
        im.save(path, "PNG")


def make_tree(root: Path, classes=("cat", "dog"), per=3, splits=("train", "test")) -> Path:
    for split in splits:
        for modality in MODALITIES:
            for c, name in enumerate(classes):
                for i in range(per):
                    suffix = ".jpg" if modality == "photo" else ".png"
                    write_image(root / split / modality / name / f"{name}_{i}{suffix}", modality, seed=c * 10 + i)
    return root


def _folder(root: Path, *extra) -> list[str]:
    return ["--method", "dfsbir", "--dataset", "folder", "--data-root", str(root), *extra]


# -- the bad-input table ------------------------------------------------------------------------
# each case: a function of a scratch folder returning the CLI arguments, and the message fragments


def _no_data_root(tmp):
    return ["--method", "dfsbir", "--dataset", "folder"]


def _absent_root(tmp):
    return _folder(tmp / "nowhere")


def _root_is_a_file(tmp):
    (tmp / "afile").write_text("x")
    return _folder(tmp / "afile")


def _no_train(tmp):
    return _folder(make_tree(tmp / "d", splits=("test",)))


def _no_test(tmp):
    return _folder(make_tree(tmp / "d", splits=("train",)))


def _no_sketch_folder(tmp):
    root = make_tree(tmp / "d")
    (root / "train" / "sketch").rename(root / "train" / "Sketch")
    return _folder(root)


def _no_class_folders(tmp):
    for split in ("train", "test"):
        for modality in MODALITIES:
            (tmp / "d" / split / modality).mkdir(parents=True)
    return _folder(tmp / "d")


def _empty_class(tmp):
    root = make_tree(tmp / "d")
    for split in ("train", "test"):
        for modality in MODALITIES:
            (root / split / modality / "emu").mkdir()
    return _folder(root)


def _class_in_one_modality(tmp):
    root = make_tree(tmp / "d")
    write_image(root / "train" / "photo" / "owl" / "a.jpg", "photo")
    write_image(root / "test" / "photo" / "owl" / "a.jpg", "photo")
    return _folder(root)


def _corrupt_image(tmp):
    root = make_tree(tmp / "d")
    (root / "test" / "photo" / "dog" / "dog_1.jpg").write_bytes(b"definitely not a jpeg")
    return _folder(root)


def _text_named_as_image(tmp):
    root = make_tree(tmp / "d")
    (root / "train" / "sketch" / "cat" / "notes.png").write_text("these are my notes, not a drawing")
    return _folder(root)


def _class_of_non_images(tmp):
    root = make_tree(tmp / "d")
    for split in ("train", "test"):
        for modality in MODALITIES:
            (root / split / modality / "emu").mkdir()
            (root / split / modality / "emu" / "notes.txt").write_text("todo")
    return _folder(root)


def _invalid_yaml(tmp):
    (tmp / "bad.yaml").write_text("params:\n  rounds: [1,\n")
    return ["--method", "dfsbir", "--config", str(tmp / "bad.yaml")]


def _tab_yaml(tmp):
    (tmp / "tab.yaml").write_text("params:\n\trounds: 3\n")
    return ["--method", "dfsbir", "--config", str(tmp / "tab.yaml")]


def _unknown_key_in_file(tmp):
    (tmp / "key.yaml").write_text("teachers:\n  epoch: 3\n")
    return ["--method", "dfsbir", "--config", str(tmp / "key.yaml")]


def _absent_config(tmp):
    return ["--method", "dfsbir", "--config", str(tmp / "absent.yaml")]


def _not_a_torch_file(tmp):
    (tmp / "unified.pt").write_text("not a checkpoint")
    (tmp / "modality.pt").write_text("not a checkpoint")
    return ["--method", "dfsbir", *_sets(
        "teachers.loader=checkpoint", f"teachers.checkpoints.unified={tmp / 'unified.pt'}",
        f"teachers.checkpoints.modality={tmp / 'modality.pt'}",
    )]


class Evil:
    """Unpickling this creates MARKER: proof that a loaded file ran code."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def evil_torch_file(path: Path, marker: Path) -> Path:
    """A torch file whose loading with a full unpickler would create ``marker``."""
    evil = Evil()
    evil.marker = str(marker)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "round": 4, "x": evil}, path)
    return path


def read_only_folder(tmp: Path) -> Path:
    """A folder nobody can write to: chmod 555 for a normal user; root writes anywhere, so as root
    a path under /sys (read-only in containers and for root on most systems)."""
    if os.geteuid() != 0:
        folder = tmp / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "inside"
    return Path("/sys/dfbench-reliability-test")


def _symlink_loop(tmp):
    root = make_tree(tmp / "d")
    (root / "train" / "photo" / "loop").symlink_to(root / "train" / "photo")  # a class folder containing itself
    return _folder(root)


def _self_link(tmp):
    root = make_tree(tmp / "d")
    (root / "test" / "sketch" / "selfie").symlink_to(root / "test" / "sketch" / "selfie")
    return _folder(root)


def _non_utf8_name(tmp):
    root = make_tree(tmp / "d")
    folder = os.fsencode(root / "train" / "sketch" / "dog")
    with open(os.path.join(folder, b"caf\xe9.png"), "wb") as fh:
        fh.write((root / "train" / "sketch" / "dog" / "dog_0.png").read_bytes())
    return _folder(root)


def _single_class(tmp):
    return _folder(make_tree(tmp / "d", classes=("cat",)))


def _every_image_of_a_split_unreadable(tmp):
    root = make_tree(tmp / "d")
    for image in (root / "test" / "photo").rglob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    return _folder(root, "--skip-bad-images")


def _results_is_a_file(tmp):
    (tmp / "results.txt").write_text("my notes")
    return ["--method", "dfsbir", "--results", str(tmp / "results.txt")]


def _results_under_a_file(tmp):
    (tmp / "results.txt").write_text("my notes")
    return ["--method", "dfsbir", "--results", str(tmp / "results.txt" / "sub")]


def _results_read_only(tmp):
    return ["--method", "dfsbir", "--results", str(read_only_folder(tmp))]


def _cache_is_a_file(tmp):
    (tmp / "cache").write_text("x")
    return ["--method", "dfsbir", "--cache-dir", str(tmp / "cache")]


def _cache_read_only(tmp):
    return ["--method", "dfsbir", "--cache-dir", str(read_only_folder(tmp))]


def _record_path_is_a_folder(tmp):
    """Someone made a folder where the run's record goes (the run would finish, then fail to write)."""
    from dfbench.app.runner import RunRequest, resolve_request, run_identity

    req = RunRequest(method="dfsbir", profile="smoke", overrides=TINY)
    cfg, _ = resolve_request(req)
    results = tmp / "res"
    (results / "shapes" / "dfsbir" / f"{run_identity(cfg, None)}.json").mkdir(parents=True)
    return ["--method", "dfsbir", "--results", str(results)]


def _evil_teacher_file(tmp):
    evil_torch_file(tmp / "m.pt", tmp / "PWNED")
    evil_torch_file(tmp / "u.pt", tmp / "PWNED")
    return ["--method", "dfsbir", *_sets(
        "teachers.loader=checkpoint", f"teachers.checkpoints.unified={tmp / 'u.pt'}",
        f"teachers.checkpoints.modality={tmp / 'm.pt'}",
    )]


def _truncated_teacher_file(tmp):
    torch.save({"w": torch.zeros(1000)}, tmp / "full.pt")
    for role in ("m", "u"):
        (tmp / f"{role}.pt").write_bytes((tmp / "full.pt").read_bytes()[:300])
    return ["--method", "dfsbir", *_sets(
        "teachers.loader=checkpoint", f"teachers.checkpoints.unified={tmp / 'u.pt'}",
        f"teachers.checkpoints.modality={tmp / 'm.pt'}",
    )]


def _yaml_with_python_tag(tmp):
    (tmp / "evil.yaml").write_text(f"params: !!python/object/apply:os.system ['touch {tmp / 'PWNED'}']\n")
    return ["--method", "dfsbir", "--config", str(tmp / "evil.yaml")]


def _binary_config(tmp):
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00 not text")
    return ["--method", "dfsbir", "--config", str(tmp / "bin.yaml")]


BAD_INPUT = {
    # data
    "no-data-root": (_no_data_root, ["'folder' dataset reads your own images and needs --data-root DIR"]),
    "missing-data-root": (_absent_root, ["nowhere does not exist", "Pass the folder that contains 'train' and 'test' with --data-root"]),
    "data-root-is-a-file": (_root_is_a_file, ["afile is a file, not a folder"]),
    "no-train-split": (_no_train, ["has no 'train' folder", "{train,test}/{photo,sketch}/<class>/<image files>"]),
    "no-test-split": (_no_test, ["has no 'test' folder", "Create "]),
    "no-modality-folder": (_no_sketch_folder, ["has no 'sketch' folder (there is a folder 'Sketch': rename it to 'sketch')"]),
    "no-class-folders": (_no_class_folders, ["holds no class folders"]),
    "empty-class-folder": (_empty_class, ["emu contains no image files", "Add images to it or remove the folder"]),
    "class-in-one-modality": (_class_in_one_modality, [
        "class 'owl' has train/photo and test/photo but no train/sketch and test/sketch",
        "--set data.options.unpaired_classes=drop",
    ]),
    "corrupt-image": (_corrupt_image, ["dog_1.jpg is not a readable image", "pass --skip-bad-images"]),
    "non-image-file-named-as-image": (_text_named_as_image, ["notes.png is not a readable image", "Remove or replace it"]),
    "class-folder-of-non-image-files": (_class_of_non_images, ["contains no image files; it contains 1 non-image entries such as notes.txt"]),
    # names
    "unknown-method": (lambda tmp: ["--method", "dfsbri"], ["Unknown method 'dfsbri'. Did you mean 'dfsbir'", "dfbench list --kind methods"]),
    "unknown-dataset": (lambda tmp: ["--method", "dfsbir", "--dataset", "shape"], ["Unknown dataset 'shape'. Did you mean 'shapes'?"]),
    "unknown-profile": (lambda tmp: ["--method", "dfsbir", "--profile", "smok"], ["Unknown profile 'smok'. Did you mean 'smoke'? Profiles: smoke, cpu, paper."]),
    "unknown-teacher-loader": (lambda tmp: ["--method", "dfsbir", "--set", "teachers.loader=chekpoint"], ["Unknown teacher loader 'chekpoint'. Did you mean 'checkpoint'?"]),
    "no-method": (lambda tmp: [], ["No method given: pass --method NAME"]),
    # config
    "invalid-yaml": (_invalid_yaml, ["bad.yaml is not valid YAML at line 3, column 1", "Fix the syntax"]),
    "yaml-with-tab": (_tab_yaml, ["tab.yaml is not valid YAML at line 2", "'\\t'"]),
    "absent-config-file": (_absent_config, ["absent.yaml does not exist. Check the path given to --config."]),
    "unknown-key-set": (lambda tmp: ["--method", "dfsbir", "--set", "params.round=3"], ["Unknown config key 'params.round'. Did you mean 'rounds'", "--print-config"]),
    "unknown-top-level-key": (lambda tmp: ["--method", "dfsbir", "--set", "epochs=3"], ["Unknown config key 'epochs'.", "Valid keys here: checkpoint_every, curve_eval_every, data, eval, loggers, params, perf, students, teachers."]),
    "unknown-key-in-file": (_unknown_key_in_file, ["Unknown config key 'teachers.epoch'. Did you mean 'epochs'"]),
    "unknown-dataset-option": (lambda tmp: _folder(make_tree(tmp / "d"), "--set", "data.options.in_memroy=true"), ["Unknown config key 'data.options.in_memroy'. Did you mean 'in_memory'?", "Valid keys here: cache, in_memory, unpaired_classes"]),
    "unknown-shapes-option": (lambda tmp: ["--method", "dfsbir", "--set", "data.options.train_per_clas=3"], ["Unknown config key 'data.options.train_per_clas'. Did you mean 'train_per_class'", "Valid keys here: test_per_class, train_per_class"]),
    "malformed-set": (lambda tmp: ["--method", "dfsbir", "--set", "params.rounds"], ["--set expects key=value", "got 'params.rounds'"]),
    # teachers (the shapes data is generated and cached; no teacher is trained)
    "teacher-checkpoint-not-set": (lambda tmp: ["--method", "dfsbir", *_sets("teachers.loader=checkpoint")], [
        "teachers.checkpoints.modality is not set", "--set teachers.checkpoints.modality=PATH",
    ]),
    "teacher-checkpoint-absent": (lambda tmp: ["--method", "dfsbir", *_sets(
        "teachers.loader=checkpoint", f"teachers.checkpoints.unified={tmp / 'u.pt'}", f"teachers.checkpoints.modality={tmp / 'm.pt'}",
    )], ["m.pt (role 'modality') does not exist"]),
    "teacher-checkpoint-not-torch": (_not_a_torch_file, ["could not be read as a torch file", "torch.save(model.state_dict(), path)"]),
    # issue 15: config files are data
    "yaml-with-a-python-tag": (_yaml_with_python_tag, ["could not determine a constructor for the tag", "only plain YAML is accepted (no custom tags)"]),
    "config-file-not-text": (_binary_config, ["bin.yaml is not UTF-8 text (byte 0 cannot be decoded)", "Save the config as plain UTF-8 YAML."]),
    # issue 15: data edge cases
    "data-symlink-loop": (_symlink_loop, ["train/photo/loop is a symbolic link loop (it links to a folder that contains it)", "Remove the link"]),
    "data-link-to-itself": (_self_link, ["test/sketch/selfie is a symbolic link loop (Too many levels of symbolic links)"]),
    "file-name-not-utf8": (_non_utf8_name, ["train/sketch/dog/caf\\xe9.png is not valid UTF-8", "Rename it to a UTF-8 name"]),
    "single-class-dataset": (_single_class, ["has a single class ('cat')", "Retrieval needs at least two classes", "every metric is 1.0"]),
    "skip-bad-images-skips-a-whole-split": (_every_image_of_a_split_unreadable, [
        "Every one of the 6 test photo files", "--skip-bad-images skipped them all and nothing is left to evaluate",
    ]),
    # issue 15: output folders, checked before any work
    "results-is-a-file": (_results_is_a_file, ["The results folder", "results.txt is a file, not a folder. Pass a writable folder with --results."]),
    "results-under-a-file": (_results_under_a_file, ["results.txt/sub cannot be created:", "results.txt is a file"]),
    "results-read-only": (_results_read_only, ["is not writable", "Pass a writable folder with --results."]),
    "cache-dir-is-a-file": (_cache_is_a_file, ["The cache folder", "is a file, not a folder", "--cache-dir (or $DFBENCH_CACHE)"]),
    "cache-dir-read-only": (_cache_read_only, ["The cache folder", "is not writable"]),
    "record-path-is-a-folder": (_record_path_is_a_folder, [".json is a folder, so the run could not write its file there"]),
    # issue 15: files that are data never run code
    "teacher-checkpoint-malicious-pickle": (_evil_teacher_file, [
        "could not be read as a torch file (it holds Python objects other than tensors and plain containers",
        "loading such a file could run code, so dfbench refuses it",
    ]),
    "teacher-checkpoint-truncated": (_truncated_teacher_file, ["could not be read as a torch file (it is empty or truncated"]),
    # issue 15 point 5 / issue 16: every config value is type- and range-checked when the config is resolved
    "lr-not-a-number": (lambda tmp: _method_set("params.optimizer.lr=abc"), ["Config value params.optimizer.lr (learning rate", "must be a number, got 'abc' (str)"]),
    "rounds-not-an-integer": (lambda tmp: _method_set("params.rounds=abc"), ["Config value params.rounds", "must be an integer, got 'abc'"]),
    "rounds-negative": (lambda tmp: _method_set("params.rounds=-1"), ["Config value params.rounds", "must be >= 0, got -1"]),
    "batch-size-zero": (lambda tmp: _method_set("params.batch_size=0"), ["Config value params.batch_size (encoder batch, in pairs): must be >= 1, got 0"]),
    "student-width-zero": (lambda tmp: _method_set("students.width=0"), ["Config value students.width", "must be >= 1, got 0"]),
    "eval-batch-size-zero": (lambda tmp: _method_set("eval.batch_size=0"), ["Config value eval.batch_size", "must be >= 1, got 0"]),
    "seed-too-large": (lambda tmp: ["--method", "dfsbir", "--seed", str(2**40)], ["Config value seed", "must be <= 4294967295"]),
    "fresh-fraction-above-one": (lambda tmp: _method_set("params.fresh_fraction=5"), ["Config value params.fresh_fraction", "must be <= 1.0, got 5"]),
    "teachers-null-in-file": (lambda tmp: _config_file(tmp, "teachers: null\n"), ["Config value teachers", "must be a section naming a teacher loader under 'loader', got None"]),
    "params-not-a-section-in-file": (lambda tmp: _config_file(tmp, "params: 5\n"), ["Config value params: must be a section of keys (a mapping), got 5"]),
    "seed-with-set": (lambda tmp: _method_set("seed=3"), ["--set seed=... is not a config key: set it with --seed"]),
    "device-with-set": (lambda tmp: _method_set("device=cpu"), ["--set device=... is not a config key: set it with --device"]),
    "method-in-file-contradicts-option": (lambda tmp: _config_file(tmp, "method: dafl\n"), ["sets method: 'dafl' but the command line gives 'dfsbir'"]),
    "dataset-in-file-contradicts-option": (lambda tmp: [*_config_file(tmp, "dataset: qd-cifar10\n"), "--dataset", "shapes"], ["sets dataset: 'qd-cifar10' but the command line gives 'shapes'"]),
    "stale-option-of-a-switched-strategy": (lambda tmp: _method_set("params.inversion.strategy=pixels", "params.inversion.z_dim=8"), [
        "Unknown config key 'params.inversion.z_dim'", "Valid keys here: batch_size, bn_first_layer_scale, bn_momentum",
    ]),
    "option-of-another-loss": (lambda tmp: _method_set("params.alignment.loss=infonce", "params.alignment.margin=0.2"), [
        "Unknown config key 'params.alignment.margin'", "Valid keys here: queue_size, temperature",
    ]),
    "weight-of-an-unknown-term": (lambda tmp: _method_set("params.weights.entropi=1"), ["Unknown name 'entropi' in params.weights. Did you mean 'entropy'?"]),
    "choice-misspelt": (lambda tmp: _method_set("params.student_bn=frozn"), ["must be one of 'train', 'frozen', got 'frozn'", "Did you mean 'frozen'?"]),
}


def _method_set(*items) -> list[str]:
    return ["--method", "dfsbir", *[a for item in items for a in ("--set", item)]]


def _config_file(tmp, text: str) -> list[str]:
    (tmp / "c.yaml").write_text(text)
    return ["--method", "dfsbir", "--config", str(tmp / "c.yaml")]


def assert_clean_failure(res, results: Path, fragments) -> None:
    """Exit 2, one 'Error:' paragraph with every fragment, no traceback, nothing written."""
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, (res.exit_code, res.exception, res.output)
    assert "Traceback" not in res.output
    out = error_paragraph(res.output)  # one paragraph, nothing else (warnings may precede it)
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in {out!r}"
    assert not results.exists() or not any(results.rglob("*")), sorted(results.rglob("*"))


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_naming_problem_and_fix(tmp_path, case):
    build, fragments = BAD_INPUT[case]
    scratch = tmp_path / "in"
    scratch.mkdir()
    args = build(scratch)
    if "folder" not in args:  # the shapes dataset: keep it tiny (folder datasets reject those options)
        args = [*args, *_sets()]
    results = tmp_path / "results"
    with warnings.catch_warnings():  # skipped images are named in warnings, not in the error paragraph
        warnings.simplefilter("ignore", BadImageWarning)
        res = invoke(results, *args)
    assert_clean_failure(res, results, fragments)
    assert not (scratch / "PWNED").exists(), "a file that is data ran code"
    for extra in ("res", "results.txt"):  # the case's own --results: nothing written there either
        if (scratch / extra).is_dir():
            assert not [p for p in (scratch / extra).rglob("*") if p.is_file()]


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    """The same contract outside click's test runner: stderr is exactly one 'Error:' line."""
    root = _corrupt_image(tmp_path)[-1]
    cmd = [sys.executable, "-m", "dfbench", "run", "--quiet", "--profile", "smoke", *_folder(Path(root)), "--results", str(tmp_path / "r")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "dog_1.jpg" in error_paragraph(out.stderr)
    assert out.stdout == "" and not (tmp_path / "r").exists()


# -- bad images skipped, stray files ignored: the run completes ---------------------------------


def test_skip_bad_images_completes_with_a_warning(tmp_path):
    root = make_tree(tmp_path / "d")
    (root / "test" / "photo" / "dog" / "dog_1.jpg").write_bytes(b"definitely not a jpeg")
    (root / "train" / "photo" / "cat" / "README.txt").write_text("about cats")
    results = tmp_path / "results"
    args = _folder(root, "--skip-bad-images", *_sets("params.rounds=2", "params.log_every=1", tiny=False))
    with pytest.warns(BadImageWarning, match="skipping .*dog_1.jpg: not a readable image"):
        res = invoke(results, *args, catch=False)
    assert res.exit_code == 0, res.output
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and rec["config"]["data"]["skip_bad_images"] is True
    assert rec["data"]["info"]["skipped_images"] == ["test/photo/dog/dog_1.jpg"]
    assert rec["data"]["info"]["ignored_examples"] == ["train/photo/cat/README.txt"]
    assert rec["data"]["counts"]["test/photo"] == 5


@pytest.mark.parametrize("in_memory", [True, False])
def test_skip_bad_images_leaves_bad_files_out_when_read_lazily_too(tmp_path, in_memory):
    """With lazy loading (in_memory=false) as in memory: a bad file is left out and listed, never a
    blank image under a real label; a split left with nothing readable is bad data (exit 2)."""
    root = make_tree(tmp_path / "d")
    (root / "test" / "photo" / "dog" / "dog_1.jpg").write_bytes(b"definitely not a jpeg")
    results = tmp_path / "results"
    args = _folder(root, "--skip-bad-images", *_sets("params.rounds=2", "params.log_every=1",
                                                      f"data.options.in_memory={str(in_memory).lower()}", tiny=False))
    with pytest.warns(BadImageWarning, match="skipping .*dog_1.jpg: not a readable image"):
        res = invoke(results, *args, catch=False)
    assert res.exit_code == 0, res.output
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["data"]["info"]["skipped_images"] == ["test/photo/dog/dog_1.jpg"]
    assert rec["data"]["counts"]["test/photo"] == 5
    for bad in (root / "train" / "sketch").rglob("*.png"):  # now a whole split unreadable
        bad.write_bytes(b"no png here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        res = invoke(tmp_path / "results2", *args)
    assert res.exit_code == 2, res.output
    assert "train sketch files" in error_paragraph(res.output) and "unreadable" in error_paragraph(res.output)
    assert not records(tmp_path / "results2")


# -- teacher checkpoints that do not fit --------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_teachers(tmp_path_factory):
    """The cached teacher files of a smoke run on shapes (12 classes), trained by the 'trained' loader."""
    results = tmp_path_factory.mktemp("teachers")
    res = invoke(results, "--method", "dfsbir", *_sets("params.rounds=1", "params.log_every=1"), catch=False)
    assert res.exit_code == 0, res.output
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert len(rec["data"]["classes"]) == 12
    return {**{role: rec["teachers"][role]["cache"] for role in ("unified", "modality")}, "records": [path]}


def _checkpoint_sets(teachers, *extra, tiny=True):
    return _sets(
        "teachers.loader=checkpoint",
        f"teachers.checkpoints.unified={teachers['unified']}",
        f"teachers.checkpoints.modality={teachers['modality']}",
        *extra,
        tiny=tiny,
    )


def test_teacher_checkpoint_with_wrong_class_count(tmp_path, shapes_teachers):
    root = make_tree(tmp_path / "d", classes=("cat", "dog", "owl"))
    results = tmp_path / "results"
    res = invoke(results, *_folder(root), *_checkpoint_sets(shapes_teachers, tiny=False))
    assert_clean_failure(res, results, [
        f"Teacher checkpoint {shapes_teachers['unified']} (role 'unified') has a head with 12 outputs, "
        "but the benchmark 'folder' needs 3 (one per class)",
        "Use a teacher trained on this benchmark's classes.",
    ])


def test_teacher_checkpoint_with_wrong_architecture(tmp_path, shapes_teachers):
    results = tmp_path / "results"
    res = invoke(results, "--method", "dfsbir", *_checkpoint_sets(shapes_teachers, "teachers.width=8"))
    assert_clean_failure(res, results, [
        "(role 'unified') does not fit the architecture teachers.arch=cnn (width 8, feature_dim 64)",
        "tensors of other shapes",
        "Set teachers.arch/width (and feature_dim) to the ones the checkpoint was trained with.",
    ])


# -- divergence and crashes: the run stops and its record says why ------------------------------


def test_nan_loss_stops_the_run_and_records_why(tmp_path):
    results = tmp_path / "results"
    res = invoke(results, "--method", "dfsbir", *_sets("params.optimizer.lr=1e30"))
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, res.output
    error = error_paragraph(res.output)
    assert "Traceback" not in res.output and error.startswith("Error: Training diverged at round 4")
    assert "params.optimizer.lr" in error
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and rec["metrics"] == {}
    assert rec["error"].startswith("TrainingDivergedError: Training diverged at round 4: the loss align became nan")
    assert rec["finished_at"] and "traceback" not in rec
    # a failed record is not a result to skip: the same command runs again (and fails the same way)
    again = invoke(results, "--method", "dfsbir", *_sets("params.optimizer.lr=1e30"))
    assert again.exit_code == 2 and "diverged" in again.output


def test_a_crash_in_a_plugin_is_recorded_then_surfaces(tmp_path, monkeypatch):
    """A bug (not bad input) keeps its record with the traceback; the CLI lets it surface."""
    from dfbench.train.engine import DataFreeMethod

    def broken_fit(self, ctx):
        raise RuntimeError("a bug in a plugin")

    monkeypatch.setattr(DataFreeMethod, "fit", broken_fit)
    results = tmp_path / "results"
    res = invoke(results, "--method", "dfsbir", *_sets())
    assert isinstance(res.exception, RuntimeError) and res.exit_code == 1
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: a bug in a plugin"
    assert "broken_fit" in rec["traceback"] and "Traceback" in rec["traceback"]


def _snapshot(results: Path) -> dict:
    """Every file under ``results`` and its bytes."""
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("error", [RuntimeError("a bug in a plugin"), "diverged"])
def test_a_failed_forced_rerun_keeps_the_completed_record(tmp_path, monkeypatch, error):
    """--force replaces a completed run only once the rerun has completed: a rerun that crashes or
    diverges leaves the completed record and every file of its run exactly as they were."""
    from dfbench.api.errors import TrainingDivergedError
    from dfbench.train.engine import DataFreeMethod

    results = tmp_path / "results"
    first = invoke(results, "--method", "dfsbir", *_sets())
    assert first.exit_code == 0, first.output
    before = _snapshot(results)
    [path] = records(results)
    assert json.loads(path.read_text())["status"] == "completed"

    def broken_fit(self, ctx):
        if ctx.checkpointer.path.parent.name.endswith(".rerun"):  # the rerun writes beside the completed run
            (ctx.checkpointer.path.parent / "curves.csv").write_text("round\n0\n")
        raise error if isinstance(error, Exception) else TrainingDivergedError("Training diverged at round 4: the loss align became nan")

    monkeypatch.setattr(DataFreeMethod, "fit", broken_fit)
    res = invoke(results, "--method", "dfsbir", "--force", *_sets())
    assert res.exit_code != 0
    assert _snapshot(results) == before  # nothing lost, nothing half-written, no staging folder left
    assert not list(results.rglob("*.rerun"))


def test_a_forced_rerun_that_completes_replaces_the_record_and_its_files(tmp_path):
    results = tmp_path / "results"
    assert invoke(results, "--method", "dfsbir", *_sets()).exit_code == 0
    [path] = records(results)
    rec = json.loads(path.read_text())
    run_dir = path.parent / rec["run_id"]
    (run_dir / "stale.txt").write_text("from the completed run")
    again = invoke(results, "--method", "dfsbir", "--force", *_sets())
    assert again.exit_code == 0, again.output
    new = json.loads(path.read_text())
    assert new["status"] == "completed" and new["started_at"] >= rec["started_at"]
    assert new["metrics"] == rec["metrics"]  # cpu runs are deterministic
    assert not (run_dir / "stale.txt").exists() and (run_dir / "curves.csv").is_file()
    assert [p.name for p in path.parent.iterdir() if p.is_dir()] == [rec["run_id"]]  # no staging or replaced folder


def test_a_failed_forced_rerun_in_a_suite_keeps_the_completed_record(tmp_path, monkeypatch):
    """In a grid, a forced rerun that fails (here: bad input raised while the run starts) is reported
    as failed and the completed record stays."""
    from dfbench.api.errors import DataError
    from dfbench.train.engine import DataFreeMethod

    (tmp_path / "s.yaml").write_text(
        "profile: smoke\nseeds: [0]\ndatasets: [shapes]\nmethods: [dfsbir]\n"
        "set:\n  data.options.train_per_class: 24\n  data.options.test_per_class: 12\n"
    )
    results = tmp_path / "r"
    bench = ["bench", str(tmp_path / "s.yaml"), "--quiet", "--results", str(results), "--device", "cpu"]
    assert CliRunner().invoke(cli, bench).exit_code == 0
    before = _snapshot(results)

    def broken_fit(self, ctx):
        raise DataError("the data went away")

    monkeypatch.setattr(DataFreeMethod, "fit", broken_fit)
    res = CliRunner().invoke(cli, [*bench, "--force"])
    assert res.exit_code == 1 and "0 completed, 0 skipped, 1 failed" in res.output, res.output
    assert _snapshot(results) == before


# -- Ctrl-C and concurrent runs (real processes) ------------------------------------------------

RESUMABLE = ["params.rounds=40", "params.log_every=4", "checkpoint_every=4"]


def _cmd(results: Path, seed: int = 0, *extra) -> list[str]:
    cmd = [sys.executable, "-m", "dfbench", "run", "--quiet", "--method", "dfsbir", "--profile", "smoke",
           "--device", "cpu", "--seed", str(seed), "--results", str(results)]
    return cmd + _sets(*RESUMABLE, *extra)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _wait_for(proc, pattern_root: Path, pattern: str, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = list(pattern_root.rglob(pattern))
        if found:
            return found
        time.sleep(0.05)
    return list(pattern_root.rglob(pattern))


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(_cmd(results), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = _wait_for(proc, results, "checkpoint.pt")
    assert ckpts and proc.poll() is None, "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.startswith("Interrupted. The checkpoint ") and stderr.count("\n") == 1, stderr
    assert "is kept: run the same command again to resume from it." in stderr
    [ckpt] = results.rglob("checkpoint.pt")
    assert str(ckpt) in stderr
    assert not records(results), "an interrupted run leaves no record"
    assert not [p for p in results.rglob("*.tmp")], "no temporary file is left behind"

    out = subprocess.run(_cmd(results), env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and rec["resumed_from_round"] >= 4
    assert set(rec["metrics"]) == set(METRIC_KEYS)
    assert not list(results.rglob("checkpoint.pt"))


@pytest.mark.slow
def test_two_runs_into_one_results_folder_never_expose_a_partial_file(tmp_path):
    """Two processes (seeds 1 and 2) write records, checkpoints, curves and pictures into one
    results folder while a reader parses every JSON file and loads every checkpoint it sees."""
    results = tmp_path / "results"
    procs = [
        subprocess.Popen(_cmd(results, seed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    seen_json, seen_ckpt, deadline = set(), 0, time.time() + 540
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        for path in results.rglob("*.json"):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            json.loads(text)  # a partial file would raise here
            seen_json.add(path.relative_to(results))
        for path in results.rglob("checkpoint.pt"):
            try:
                fh = open(path, "rb")
            except FileNotFoundError:  # removed once its run's record is written
                continue
            with fh:
                state = load_torch_file(fh)
            assert state["round"] % 4 == 0
            seen_ckpt += 1
        time.sleep(0.02)
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    recs = [json.loads(p.read_text()) for p in records(results)]
    assert sorted(r["seed"] for r in recs) == [1, 2]
    assert all(r["status"] == "completed" and set(r["metrics"]) == set(METRIC_KEYS) for r in recs)
    assert len({r["config_hash"] for r in recs}) == 1
    every = list(results.rglob("*.json"))
    for path in every:
        json.loads(path.read_text(encoding="utf-8"))
    assert sorted(p.relative_to(results) for p in every) == sorted(p.relative_to(results) for p in records(results))
    assert not list(results.rglob("*.tmp")) and not list(results.rglob("checkpoint.pt"))
    assert seen_ckpt > 0 and seen_json, "the reader saw nothing while the runs were going"

    from dfbench.app.leaderboard import load_records

    assert len(load_records(results)) == 2


def test_atomic_writes_respect_the_umask(tmp_path):
    """Records land with the permissions of any other file (mkstemp alone would make them 0600)."""
    import os
    import stat

    from dfbench.api.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


# -- issue 15: a results folder is data: its checkpoint never runs code, a bad one is named ------


def _run_folder(results: Path, *sets) -> Path:
    """The run folder (checkpoint, curves) a smoke dfsbir run with these --set items uses."""
    from dfbench.app.records import artifacts_dir
    from dfbench.app.runner import RunRequest, resolve_request, run_identity

    cfg, _ = resolve_request(RunRequest(method="dfsbir", profile="smoke", overrides=[*TINY, *sets]))
    return artifacts_dir(results, "shapes", "dfsbir", run_identity(cfg, None))


def _evil_checkpoint(path: Path, tmp: Path) -> str:
    evil_torch_file(path, tmp / "PWNED")
    return "it holds Python objects other than tensors and plain containers"


def _truncated_checkpoint(path: Path, tmp: Path) -> str:
    torch.save({"round": 4, "rng": {}, "blob": torch.zeros(5000)}, tmp / "full.pt")
    path.write_bytes((tmp / "full.pt").read_bytes()[:2000])
    return "it is empty or truncated"


def _foreign_checkpoint(path: Path, tmp: Path) -> str:
    torch.save({"round": 4, "rng": {}, "streams": {}, "config_hash": "0123456789ab"}, path)
    return "it belongs to another config (hash 0123456789ab"


def _not_a_checkpoint(path: Path, tmp: Path) -> str:
    torch.save({"weights": torch.zeros(3)}, path)
    return "it is not a dfbench training checkpoint"


_CKPT_SETS = ("params.rounds=4", "params.log_every=2", "checkpoint_every=2")


def _own_checkpoint(path: Path, seed: int, **state) -> None:
    """A checkpoint of this very config (its hash), for ``seed``, holding ``state``."""
    from dfbench.app.config import config_hash
    from dfbench.app.runner import RunRequest, resolve_request
    from dfbench.train.checkpoint import Checkpointer

    cfg, _ = resolve_request(RunRequest(method="dfsbir", profile="smoke", overrides=[*TINY, *_CKPT_SETS]))
    Checkpointer(path, 2, config_hash(cfg), seed=seed).save({"streams": {}, **state})


def _another_seeds_checkpoint(path: Path, tmp: Path) -> str:
    _own_checkpoint(path, 1, round=2)  # seed 1's checkpoint copied into seed 0's run folder
    return "it belongs to another run (seed 1, this run seed 0)"


def _checkpoint_without_parts(path: Path, tmp: Path) -> str:
    _own_checkpoint(path, 0, round=2, pool={}, curves=[], teacher_images=0)
    return "it lacks parts"


BAD_CHECKPOINTS = {
    "another-seed": _another_seeds_checkpoint,
    "missing-parts": _checkpoint_without_parts,
    "malicious-pickle": _evil_checkpoint,
    "truncated": _truncated_checkpoint,
    "another-config": _foreign_checkpoint,
    "a-torch-file-but-no-checkpoint": _not_a_checkpoint,
}


@pytest.mark.parametrize("saved, fragment", [
    ({"round": 10**9}, "it claims round 1000000000, outside this run's 0-4"),
    ({"round": -1}, "it claims round -1"),
    ({"round": True}, "it claims round True"),
    ({"teacher_images": -5}, "it claims -5 teacher image passes"),
    ({"parts": {"students": {}}}, "it holds the parts ['students'], this run ['opt', 'students']"),
])
def test_a_checkpoint_that_cannot_resume_this_loop_is_named(saved, fragment):
    from dfbench.train.engine import CHECKPOINT_KEYS, _checkpoint_problem

    state = {**dict.fromkeys(CHECKPOINT_KEYS, []), "parts": {"students": {}, "opt": {}}, "round": 2, "teacher_images": 0, **saved}
    assert _checkpoint_problem(state, {"students": 1, "opt": 2}, 4).startswith(fragment)
    assert _checkpoint_problem({**state, **{"parts": {"students": {}, "opt": {}}, "round": 2, "teacher_images": 0}}, {"students": 1, "opt": 2}, 4) is None


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_is_named_and_the_run_starts_over(tmp_path, case):
    """The run warns (naming the file and why), trains from round 0, runs no code from the file,
    and its own checkpoint replaces the bad one; the record is complete and does not claim a resume."""
    from dfbench.train.checkpoint import CheckpointWarning

    results = tmp_path / "results"
    sets = _CKPT_SETS
    ckpt = _run_folder(results, *sets) / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    reason = BAD_CHECKPOINTS[case](ckpt, tmp_path)
    with pytest.warns(CheckpointWarning, match=f"ignoring the checkpoint {ckpt}: {re.escape(reason)}"):
        res = invoke(results, "--method", "dfsbir", *_sets(*sets), catch=False)
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "PWNED").exists(), "the checkpoint ran code"
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and "resumed_from_round" not in rec
    assert not ckpt.exists()  # replaced by the run's own, then removed with the record


def test_ctrl_c_never_promises_a_resume_from_a_refused_checkpoint(tmp_path, capsys):
    from dfbench.train.checkpoint import CheckpointWarning, Checkpointer
    from dfbench.app.cli import _interrupted

    path = tmp_path / "checkpoint.pt"
    _foreign_checkpoint(path, tmp_path)
    ckpt = Checkpointer(path, every=4, config_hash="feedfacecafe")
    with pytest.warns(CheckpointWarning):
        assert ckpt.load() is None
    assert not ckpt.resumable and path.is_file()
    with pytest.raises(SystemExit) as exc:
        from dfbench.app.interrupts import RunInterrupted

        _interrupted(RunInterrupted(KeyboardInterrupt(), path if ckpt.resumable else None, ckpt.last_round, ckpt.every), False)
    assert exc.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("Interrupted before the first training checkpoint (one is saved every 4 rounds")
    assert str(path) not in err and "resume" not in err


def test_checkpoints_load_without_running_code_and_restore_every_generator(tmp_path):
    """What dfbench saves loads under weights_only: the generator states are plain lists."""
    import random

    import numpy as np

    from dfbench.train.checkpoint import Checkpointer, set_rng_state

    ckpt = Checkpointer(tmp_path / "c.pt", every=1, config_hash="abc")
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    ckpt.save({"round": 1})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    state = load_torch_file(tmp_path / "c.pt")  # raises if anything but tensors and containers
    set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


# -- issue 15: run identity: the data root and its content decide what is "already done" --------


def _swap_classes(src: Path, dst: Path) -> Path:
    """A copy of a folder dataset with the images of 'cat' and 'dog' swapped (same layout)."""
    import shutil

    shutil.copytree(src, dst)
    for split in ("train", "test"):
        for modality in MODALITIES:
            base = dst / split / modality
            (base / "cat").rename(base / "tmp")
            (base / "dog").rename(base / "cat")
            (base / "tmp").rename(base / "dog")
    return dst


def test_another_data_root_is_another_run_with_its_own_teachers(tmp_path):
    import shutil

    a = make_tree(tmp_path / "A")
    b = _swap_classes(a, tmp_path / "B")
    a_copy = tmp_path / "A-copy"
    shutil.copytree(a, a_copy)
    results = tmp_path / "results"
    sets = [*_sets("params.rounds=2", "params.log_every=1", tiny=False), "--cache-dir", str(tmp_path / "cache")]

    def run(root):
        res = invoke(results, *_folder(root), *sets, "--json", catch=False)
        assert res.exit_code == 0, res.output
        return json.loads(res.output[res.output.index("["):])[0]

    first, swapped, copied = run(a), run(b), run(a_copy)
    assert len(records(results)) == 3, "each data root has its own record"
    assert len({first["run_id"], swapped["run_id"], copied["run_id"]}) == 3
    assert first["config_hash"] == swapped["config_hash"] == copied["config_hash"]  # one leaderboard row
    assert first["data_identity"]["root"] == str(a.resolve())
    assert first["data_identity"]["revision"] != swapped["data_identity"]["revision"]
    assert first["data_identity"]["revision"] == copied["data_identity"]["revision"]
    # teachers key on the content: B trains its own, an identical copy of A reuses A's
    assert not any(t["cached"] for t in swapped["teachers"].values())
    assert all(t["cached"] for t in copied["teachers"].values())
    # the same root again is done; a change of its content makes it another run
    again = invoke(results, *_folder(a), *sets)
    assert again.exit_code == 0 and len(records(results)) == 3
    write_image(a / "train" / "photo" / "cat" / "extra.jpg", "photo", seed=5)
    changed = run(a)
    assert changed["run_id"] != first["run_id"] and len(records(results)) == 4


def test_same_sized_files_swapped_in_place_are_other_data(tmp_path):
    """Issue 30, item 1: identity follows content. Swap the bytes of a cat and a dog photo of the
    same size, keeping their modification times: the run is not "already done", and its teachers
    are trained again (they would have learnt the old labels)."""
    import os

    root = make_tree(tmp_path / "A")
    base = root / "train" / "photo"
    cat, dog = base / "cat" / "cat_0.jpg", base / "dog" / "dog_0.jpg"
    Image.new("RGB", (12, 12), (250, 10, 10)).save(cat, "BMP")
    Image.new("RGB", (12, 12), (10, 10, 250)).save(dog, "BMP")
    assert cat.stat().st_size == dog.stat().st_size
    results = tmp_path / "results"
    sets = [*_sets("params.rounds=2", "params.log_every=1", tiny=False), "--cache-dir", str(tmp_path / "cache")]

    def run():
        res = invoke(results, *_folder(root), *sets, "--json", catch=False)
        assert res.exit_code == 0, res.output
        return json.loads(res.output[res.output.index("["):])[0]

    first = run()
    times = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (cat, dog)]
    a, b = cat.read_bytes(), dog.read_bytes()
    cat.write_bytes(b)
    dog.write_bytes(a)
    for p, t in zip((cat, dog), times):
        os.utime(p, ns=t)  # as a copy that keeps times would
    swapped = run()
    assert swapped["run_id"] != first["run_id"] and len(records(results)) == 2
    assert swapped["data_identity"]["revision"] != first["data_identity"]["revision"]
    assert not any(t["cached"] for t in swapped["teachers"].values())
    digests = json.loads((tmp_path / "cache" / "content-digests.json").read_text())
    assert str(cat.resolve()) in digests  # computed once, remembered by path, size, times and inode


@pytest.mark.parametrize("content", ["{not json", "nan-metric"], ids=["corrupt-json", "completed-with-a-nan-metric"])
def test_an_invalid_record_at_the_run_path_is_not_already_done(tmp_path, content):
    """Only a valid completed record makes a run "already done": anything else is run again and
    replaced (it used to print the NaN record's metrics as 'skipped')."""
    results = tmp_path / "results"
    sets = ("params.rounds=1", "params.log_every=1")
    path = _run_folder(results, *sets).with_suffix(".json")
    path.parent.mkdir(parents=True)
    if content == "nan-metric":
        content = json.dumps(_record(0, metrics={**_record()["metrics"], "mAP@all": float("nan")}))
    path.write_text(content)
    res = invoke(results, "--method", "dfsbir", *_sets(*sets), catch=False)
    assert res.exit_code == 0 and "skipped" not in res.output, res.output
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and all(math.isfinite(v) for v in rec["metrics"].values())


def test_run_ids_of_the_default_data_are_unchanged():
    """Records of runs without --data-root (every committed record) keep '<config_hash>-s<seed>'."""
    from dfbench.app import config as cfgmod
    from dfbench.app.runner import RunRequest, data_identity, resolve_request, run_identity

    cfg, _ = resolve_request(RunRequest(method="dfsbir", profile="smoke", seed=3))
    assert data_identity(cfg) is None
    assert run_identity(cfg, None) == cfgmod.run_id(cfg) == f"{cfgmod.config_hash(cfg)}-s3"


def test_a_non_finite_metric_is_a_failed_run_not_a_result(tmp_path, monkeypatch):
    import dfbench.train.evaluation

    real = dfbench.train.evaluation.evaluate_embedder

    def nan_metrics(*args, **kwargs):
        return {**real(*args, **kwargs), "mAP@all": float("nan")}

    monkeypatch.setattr(dfbench.train.evaluation, "evaluate_embedder", nan_metrics)
    results = tmp_path / "results"
    res = invoke(results, "--method", "dfsbir", *_sets("params.rounds=1", "params.log_every=1", "curve_eval_every=0"))
    assert res.exit_code == 2 and error_paragraph(res.output).startswith("Error: The evaluation gave non-finite metrics (mAP@all = nan)")
    [path] = records(results)
    rec = json.loads(path.read_text())
    assert rec["status"] == "failed" and rec["metrics"] == {} and "MetricsNotFiniteError" in rec["error"]


def test_records_name_every_component_and_its_distribution(shapes_teachers, tmp_path):
    from dfbench.app.runner import components_used, RunRequest, resolve_request

    cfg, _ = resolve_request(RunRequest(method="dfsbir", profile="smoke"))
    used = components_used(cfg)
    assert set(used) == {"method", "dataset", "teachers", "inversion", "alignment"}
    for role, origin in used.items():
        assert origin["distribution"] == "dfbench" and origin["version"] and origin["builtin"], (role, origin)
    assert used["method"]["name"] == "dfsbir" and used["method"]["plugin"] == "dfsbir"
    [rec] = [json.loads(p.read_text()) for p in shapes_teachers["records"]]
    assert rec["components"]["method"] == used["method"] and set(rec["components"]) == set(used)


def test_evaluate_refuses_an_array_of_pickled_objects(tmp_path):
    """'dfbench evaluate' reads .npy files without unpickling (no code runs from them)."""
    import numpy as np

    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = Evil(), Evil()
    for item in evil:
        item.marker = str(tmp_path / "PWNED")
    np.save(tmp_path / "q.npy", evil, allow_pickle=True)
    np.save(tmp_path / "l.npy", np.array([0, 1]))
    files = [str(tmp_path / name) for name in ("q.npy", "l.npy", "q.npy", "l.npy")]
    res = CliRunner().invoke(cli, ["evaluate", *files])
    assert res.exit_code == 2, res.output
    assert "holds Python objects (an object array), which dfbench does not load" in error_paragraph(res.output)
    assert not (tmp_path / "PWNED").exists()


# -- issue 15: leaderboards name every bad record and go on --------------------------------------


def _record(n=0, **changes) -> dict:
    """A valid record of seed ``n``, with ``changes`` (``_DROP`` removes a key)."""
    rec = {
        "schema": "dfbench.run/1", "run_id": f"0123456789ab-s{n}", "method": "dfsbir", "dataset": "shapes",
        "profile": "smoke", "seed": n, "status": "completed", "error": None, "config_hash": "0123456789ab",
        "metrics": {k: 0.5 for k in METRIC_KEYS}, "timing": {"total": 1.0},
    }
    for key, value in changes.items():
        if value is _DROP:
            rec.pop(key)
        else:
            rec[key] = value
    return sealed(rec) if "config_hash" in rec else rec


_DROP = object()

BAD_RECORDS = {
    "missing-seed": (lambda: _record(1, seed=_DROP), "it has no integer 'seed' (found None)"),
    "missing-config-hash": (lambda: _record(1, config_hash=_DROP), "it has no valid 'config_hash' (found None)"),
    "string-metric": (lambda: _record(1, metrics={**_record()["metrics"], "mAP@all": "0.9"}), "its metric mAP@all is '0.9', not a number"),
    "nan-metric": (lambda: _record(1, metrics={**_record()["metrics"], "mAP@all": float("nan")}), "its metric mAP@all is nan, not a finite number"),
    "other-schema-version": (lambda: _record(1, schema="dfbench.run/2"), "its schema is 'dfbench.run/2'; this dfbench reads 'dfbench.run/1'"),
    "empty-metrics": (lambda: _record(1, metrics={}), "it is marked completed but holds no metrics"),
    "missing-metric": (lambda: _record(1, metrics={"mAP@all": 0.5}), "it is marked completed but lacks the metric(s) mAP@200, P@100, P@200"),
    "boolean-seed": (lambda: _record(1, seed=True), "it has no integer 'seed' (found True)"),
    "unknown-status": (lambda: _record(1, status="done"), "its status 'done' is none of completed, failed, running"),
    "a-list-not-an-object": (lambda: [1, 2], "it holds a JSON list, not a record object"),
    # issue 30, item 4: a forged metric or hash never enters a leaderboard
    "metric-above-one": (lambda: _record(1, metrics={**_record()["metrics"], "mAP@all": 7.5}), "its metric mAP@all is 7.5, outside [0, 1]"),
    "metric-below-zero": (lambda: _record(1, metrics={**_record()["metrics"], "P@100": -3}), "its metric P@100 is -3, outside [0, 1]"),
    "metric-huge": (lambda: _record(1, metrics={**_record()["metrics"], "mAP@200": 1e308}), "its metric mAP@200 is 1e+308, outside [0, 1]"),
    "hash-not-of-its-config": (lambda: {**_record(1), "config_hash": "0123456789ab"}, "its config_hash '0123456789ab' is not the hash of its own config"),
    "config-changed-after": (lambda: {**_record(1), "config": {"fixture": "edited"}}, "its config_hash"),
    "no-config": (lambda: {k: v for k, v in _record(1).items() if k != "config"}, "it has no resolved 'config' object"),
    "suite-a-string": (lambda: _record(1, suite="main"), "its 'suite' is a str, not an object"),
    "timing-a-list": (lambda: _record(1, timing=[1]), "its 'timing' is a list, not an object"),
    "label-a-number": (lambda: _record(1, suite={"name": "s", "label": 5}), "its suite label is a int, not a string"),
    "artifacts-a-number": (lambda: _record(1, artifacts=3), "its 'artifacts' is a int, not a string"),
    "nested-too-deep": (lambda: "[" * 100000 + "]" * 100000, "its JSON is nested too deeply"),
    "not-json": (lambda: "{truncated", "it is not readable JSON"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_leaderboard_names_a_bad_record_and_goes_on(tmp_path, case):
    from dfbench.app.records import BadRecordWarning

    make, reason = BAD_RECORDS[case]
    folder = tmp_path / "results" / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    (folder / "0123456789ab-s0.json").write_text(json.dumps(_record(0)))
    bad = folder / "0123456789ab-s1.json"
    content = make()
    bad.write_text(content if isinstance(content, str) else json.dumps(content))
    (folder / "0123456789ab-s0").mkdir()
    (folder / "0123456789ab-s0" / "split.json").write_text("{}")  # an artifact, not a record: no warning
    out = tmp_path / "boards"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "results"), "--out", str(out), "--suites", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    messages = [str(w.message) for w in caught if issubclass(w.category, BadRecordWarning)]
    assert len(messages) == 1 and messages[0].startswith(f"leaving out {bad}: {reason}"), messages
    board = (out / "shapes.md").read_text()
    assert "0.5000" in board and "nan" not in board.lower()


def test_a_copied_record_counts_once_and_a_fifo_is_no_record(tmp_path):
    """Issue 30: one run is one observation (a second copy of it is named and left out), and a
    FIFO or device named like a record is passed over without blocking."""
    import os

    from dfbench.app.records import load_records

    folder = tmp_path / "results" / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    (folder / "0123456789ab-s0.json").write_text(json.dumps(_record(0)))
    (tmp_path / "results" / "copy").mkdir()
    (tmp_path / "results" / "copy" / "0123456789ab-s0.json").write_text(json.dumps(_record(0)))
    os.mkfifo(folder / "0123456789ab-s7.json")
    (folder / "0123456789ab-s8.json").symlink_to("/dev/zero")
    records, problems = load_records(tmp_path / "results")
    assert len(records) == 1
    why = {p.name: w for p, w in problems}
    assert why["0123456789ab-s0.json"].startswith("it is a second completed record of the run")
    assert why["0123456789ab-s7.json"].startswith("it is not a regular file")
    assert why["0123456789ab-s8.json"].startswith("it is not a regular file")


def _out_is_a_file(tmp):
    (tmp / "board.md").write_text("x")
    return tmp / "board.md", "The leaderboard folder", "is a file, not a folder. Pass a writable folder with --out."


def _out_read_only(tmp):
    return read_only_folder(tmp), "The leaderboard folder", "is not writable"


@pytest.mark.parametrize("case", [_out_is_a_file, _out_read_only], ids=["out-is-a-file", "out-read-only"])
def test_leaderboard_out_that_cannot_be_written_is_an_error(tmp_path, case):
    folder = tmp_path / "results" / "shapes" / "dfsbir"
    folder.mkdir(parents=True)
    (folder / "0123456789ab-s0.json").write_text(json.dumps(_record(0)))
    out, *fragments = case(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "results"), "--out", str(out), "--suites", str(tmp_path / "none")])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, res.output
    error = error_paragraph(res.output)
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in error


# -- issue 15: SIGTERM and an early Ctrl-C: a message, 143 / 130, nothing half-written -----------


def _start(results: Path) -> subprocess.Popen:
    return subprocess.Popen(_cmd(results), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig,status,word", [(signal.SIGTERM, 143, "Terminated (SIGTERM)"), (signal.SIGINT, 130, "Interrupted")])
def test_a_signal_in_the_first_seconds_exits_with_a_message(tmp_path, sig, status, word):
    results = tmp_path / "results"
    proc = _start(results)
    time.sleep(2.0)  # start-up: plugins, config, torch
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr and stdout == ""
    assert stderr.startswith(word) and stderr.count("\n") == 1, stderr
    assert not [p for p in results.rglob("*") if p.is_file()] if results.exists() else True


@pytest.mark.slow
def test_sigterm_during_training_keeps_the_checkpoint(tmp_path):
    results = tmp_path / "results"
    proc = _start(results)
    assert _wait_for(proc, results, "checkpoint.pt") and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.startswith("Terminated (SIGTERM). The checkpoint ") and "resume from it" in stderr
    assert not records(results) and not list(results.rglob("*.tmp"))


# A Ctrl-C that lands inside a library's import can be swallowed there (torch importing numpy does,
# and the process goes on half-imported: a later import fails with an unrelated error, or the run just
# goes on). Each case runs dfbench's own entry point in a child process, with resolve_request replaced
# by such a library: it receives SIGINT, swallows it, then fails, or carries on as if nothing came.
_SWALLOWING = """
import os, signal, sys, time
from dfbench.app import cli, runner
real = runner.resolve_request

def swallowing(req):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass  # the library swallows it
    if {fail!r}:
        raise TypeError("expected a message argument")  # what a half-done import breaks later
    return real(req)

runner.resolve_request = swallowing
sys.argv = ["dfbench", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("fail", [True, False], ids=["then-an-unrelated-error", "then-the-run-goes-on"])
def test_a_swallowed_ctrl_c_still_stops_the_run_with_its_message(tmp_path, fail):
    from dfbench.app import interrupts

    (tmp_path / "swallowing_main.py").write_text(_SWALLOWING.format(fail=fail))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "swallowing_main", *_cmd(results)[3:]]
    proc = subprocess.run(cmd, env={**_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.startswith("Interrupted") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not records(results)  # the run stopped before its record
    assert interrupts.received() is None  # this process got no signal: nothing to honour here


def test_the_signal_handlers_remember_what_came(monkeypatch):
    from dfbench.app import interrupts

    monkeypatch.setattr(interrupts, "_received", None)
    interrupts.check()  # nothing came: nothing raised
    with pytest.raises(interrupts.Terminated):
        interrupts._on_signal(signal.SIGTERM, None)
    assert isinstance(interrupts.received(), interrupts.Terminated) and interrupts.exit_status(interrupts.received()) == 143
    with pytest.raises(interrupts.Terminated):
        interrupts.check()  # swallowed on its way: raised again
    monkeypatch.setattr(interrupts, "_received", None)
    with pytest.raises(KeyboardInterrupt):
        interrupts._on_signal(signal.SIGINT, None)
    assert interrupts.exit_status(interrupts.received()) == 130 and interrupts.what(interrupts.received()) == "Interrupted"


# -- issue 15: plugins are code the user installed, but none can take the tool over -------------
# each case: a distribution (entry point name, module source), then what `dfbench plugins`,
# `dfbench --help` and `dfbench list` must show. The module creates MARKER when it is imported.

_MARKER_LINE = "import pathlib, os; pathlib.Path(os.environ['DFBENCH_TEST_MARKER']).touch()\n"

HOSTILE_PLUGINS = {
    "entry-point-named-like-a-builtin": ("dfsbir", _MARKER_LINE + """
from dfbench import hookimpl

@hookimpl
def dfbench_register_methods(register):
    register("dfsbir", "nowhere:Hijack", description="a hijacked dfsbir")
""", "its entry point name 'dfsbir' is already used by the built-in plugin 'dfsbir'", False),
    "component-named-like-a-builtin": ("hijack", """
from dfbench import hookimpl

@hookimpl
def dfbench_register_methods(register):
    register("dfsbir", "nowhere:Hijack", description="a hijacked dfsbir")
""", "tried to register the method 'dfsbir', which is a built-in of 'dfsbir'; it was rejected", True),
    "command-replacing-run": ("shadow", """
import click
from dfbench import hookimpl

@hookimpl
def dfbench_register_commands(register, cli):
    register(click.Command("run", callback=lambda: print("HIJACKED")))
    cli.commands["list"] = click.Command("list", callback=lambda: print("HIJACKED"))
""", "it tried to replace the command(s) list, run, which it may not", True),
    "sys-exit-at-import": ("quitter", "import sys\nsys.exit(3)\n", "SystemExit: 3", True),
    "base-exception-while-registering": ("rude", """
from dfbench import hookimpl

class Rude(BaseException):
    pass

@hookimpl
def dfbench_register_losses(register):
    raise Rude("not an Exception")
""", "while registering losses: Rude: not an Exception", True),
    "sys-exit-while-registering-commands": ("exiter", """
import sys
from dfbench import hookimpl

@hookimpl
def dfbench_register_commands(register):
    sys.exit("bye")
""", "while registering commands: SystemExit: bye", True),
}


@pytest.mark.parametrize("case", list(HOSTILE_PLUGINS))
def test_a_hostile_plugin_is_isolated_and_reported(tmp_path, case):
    from test_plugin_loading import dfbench as dfbench_process, make_dist

    entry_point, source, error, imported = HOSTILE_PLUGINS[case]
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "dfbench-hostile", entry_point, "hostile_plugin", source)
    marker = tmp_path / "imported"
    env = {"DFBENCH_TEST_MARKER": str(marker)}

    rows = {r["name"]: r for r in json.loads(dfbench_process(["plugins", "--json"], site, tmp_path, env).stdout)}
    [mine] = [r for r in rows.values() if r["distribution"] == "dfbench-hostile"]
    assert error in mine["error"], mine
    assert rows["dfsbir"]["builtin"] and rows["dfsbir"]["error"] is None
    assert marker.exists() == (imported and "MARKER" in source), "a rejected entry point is never imported"

    helped = dfbench_process(["--help"], site, tmp_path, env)
    assert helped.returncode == 0 and "run" in helped.stdout and "leaderboard" in helped.stdout, helped.stderr
    run_help = dfbench_process(["run", "--help"], site, tmp_path, env)
    assert run_help.returncode == 0 and "--method" in run_help.stdout and "HIJACKED" not in run_help.stdout
    listed = dfbench_process(["list", "--kind", "methods", "--json"], site, tmp_path, env)
    assert listed.returncode == 0 and "HIJACKED" not in listed.stdout, listed.stderr
    [dfsbir] = [r for r in json.loads(listed.stdout) if r["name"] == "dfsbir"]
    assert dfsbir["plugin"] == "dfsbir" and "hijack" not in dfsbir["description"]
    assert "warning: plugin" in listed.stderr  # reported on every command, as a warning


def test_no_code_path_unpickles_what_it_reads():
    """docs/security.md: every torch file goes through dfbench.api.safeload; nothing else unpickles."""
    repo = Path(__file__).resolve().parent.parent
    forbidden = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|torch\.load\(")
    offenders = []
    for path in sorted([*(repo / "dfbench").rglob("*.py"), *(repo / "plugins").rglob("*.py")]):
        if path.name == "safeload.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if forbidden.search(line):
                offenders.append(f"{path.relative_to(repo)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_bench_into_a_results_file_stops_before_any_work(tmp_path):
    """A grid whose results folder cannot be written stops at once (no record could say why)."""
    (tmp_path / "results.txt").write_text("my notes")
    res = CliRunner().invoke(cli, ["bench", "smoke", "--quiet", "--device", "cpu", "--method", "dfsbir", "--results", str(tmp_path / "results.txt")])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, res.output
    error = error_paragraph(res.output)
    assert error.startswith("Error: The results folder"), res.output
    assert "is a file, not a folder" in error and (tmp_path / "results.txt").read_text() == "my notes"


def test_a_warm_up_that_spends_the_whole_budget_is_a_config_error(tmp_path):
    """Issue 28: a dfsbir row whose synthesis-only warm-up alone spends its budget trained one round
    at twice its budget; it is now refused before the encoders' first step, nothing recorded."""
    results = tmp_path / "results"
    res = invoke(results, "--method", "dfsbir", *_sets("params.warmup_rounds=50", "params.budget=2000", "params.rounds=100"))
    assert res.exit_code == 2, res.output
    error = error_paragraph(res.output)
    assert "params.warmup_rounds=50 synthesis-only rounds spend" in error and "Set params.warmup_rounds to at most" in error
    assert not records(results)
