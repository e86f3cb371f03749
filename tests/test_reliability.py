"""Reliability through the CLI (docs/reliability.md): the bad-input table, divergence, crashes,
Ctrl-C, and two runs writing into one results folder at once.

Every bad input exits with status 2 and a one-paragraph ``Error: ...`` that names the problem and
the fix, prints no traceback and writes nothing to the results folder. The kill-and-resume test is
tests/test_resume.py; same-seed determinism is tests/test_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dfbench.cli import cli
from dfbench.imageio import BadImageWarning
from dfbench.records import METRIC_KEYS
from dfbench.safeload import load_torch_file

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
        for modality in ("photo", "sketch"):
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
        for modality in ("photo", "sketch"):
            (tmp / "d" / split / modality).mkdir(parents=True)
    return _folder(tmp / "d")


def _empty_class(tmp):
    root = make_tree(tmp / "d")
    for split in ("train", "test"):
        for modality in ("photo", "sketch"):
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
        for modality in ("photo", "sketch"):
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
    from dfbench.runner import RunRequest, resolve_request, run_identity

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
    "unknown-top-level-key": (lambda tmp: ["--method", "dfsbir", "--set", "epochs=3"], ["Unknown config key 'epochs'.", "Valid keys here: checkpoint_every, curve_eval_every, data, eval, params, perf, students, teachers."]),
    "unknown-key-in-file": (_unknown_key_in_file, ["Unknown config key 'teachers.epoch'. Did you mean 'epochs'"]),
    "unknown-dataset-option": (lambda tmp: _folder(make_tree(tmp / "d"), "--set", "data.options.in_memroy=true"), ["Unknown option 'in_memroy' for the dataset 'folder'. Did you mean 'in_memory'?"]),
    "unknown-shapes-option": (lambda tmp: ["--method", "dfsbir", "--set", "data.options.train_per_clas=3"], ["unknown option(s) 'train_per_clas'", "'train_per_class'"]),
    "malformed-set": (lambda tmp: ["--method", "dfsbir", "--set", "params.rounds"], ["--set expects key=value", "got 'params.rounds'"]),
    # teachers (the shapes data is generated and cached; no teacher is trained)
    "teacher-checkpoint-not-set": (lambda tmp: ["--method", "dfsbir", *_sets("teachers.loader=checkpoint")], [
        "teachers.checkpoints.modality is not set", "--set teachers.checkpoints.modality=PATH",
    ]),
    "teacher-checkpoint-absent": (lambda tmp: ["--method", "dfsbir", *_sets(
        "teachers.loader=checkpoint", f"teachers.checkpoints.unified={tmp / 'u.pt'}", f"teachers.checkpoints.modality={tmp / 'm.pt'}",
    )], ["m.pt (role 'modality') does not exist"]),
    "teacher-checkpoint-not-torch": (_not_a_torch_file, ["could not be read as a torch file", "torch.save(model.state_dict(), path)"]),
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
}


def assert_clean_failure(res, results: Path, fragments) -> None:
    """Exit 2, one 'Error:' paragraph with every fragment, no traceback, nothing written."""
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, (res.exit_code, res.exception, res.output)
    out = res.output
    assert "Traceback" not in out
    assert out.startswith("Error: ") and out.count("\n") == 1, out  # one paragraph, nothing else
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
    assert_clean_failure(invoke(results, *args), results, fragments)
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
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1 and "dog_1.jpg" in out.stderr
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
    return {role: rec["teachers"][role]["cache"] for role in ("unified", "modality")}


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
    assert "Traceback" not in res.output and res.output.startswith("Error: Training diverged at round 4")
    assert "params.optimizer.lr" in res.output and res.output.count("\n") == 1
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
    from dfbench.engine import DataFreeMethod

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

    from dfbench.leaderboard import load_records

    assert len(load_records(results)) == 2


def test_atomic_writes_respect_the_umask(tmp_path):
    """Records land with the permissions of any other file (mkstemp alone would make them 0600)."""
    import os
    import stat

    from dfbench.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
