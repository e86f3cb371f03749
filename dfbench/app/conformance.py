"""Interface-contract checks of a plugin's components: ``dfbench check-plugin NAME``.

Every component the plugin registered is exercised on a tiny version of the embedded ``shapes``
dataset with the ``smoke`` profile, and each contract of its interface gives one row: pass, fail
or skip (skip: the component cannot run here, e.g. a dataset whose files are not on this machine,
or a teacher loader that needs checkpoints; the row says why).

Contracts per kind (docs/plugins.md lists them with the interfaces):

- plugin: loaded without error; registered something; importing it (and the CLI) imports no torch.
- dataset: ``load`` returns a :class:`~dfbench.api.datasets.Benchmark` with every split and modality;
  uint8 (n, 3, S, S) images, float ``batch`` in [-1, 1]; grey modalities grey; int64 labels in
  [0, classes); the same seed gives the same data.
- teacher loader: a :class:`~dfbench.api.teachers.TeacherSet` with the requested roles; frozen, eval
  mode, on the run device; ``features``/``head``/logit shapes; accuracies in [0, 1];
  the same seed gives the same teachers.
- inversion strategy: ``synthesize`` returns a :class:`~dfbench.api.inversion.SynthBatch` of matching
  shapes and dtypes, in [-1, 1], finite, detached, on the run device; the same seed gives the same
  batches; ``state_dict`` round-trips.
- alignment loss: a finite scalar on the run device; gradients reach both embeddings; the same
  inputs give the same value; both teacher variants work; ``state_dict`` round-trips.
- method: profiles smoke, cpu and paper resolve (names and options of a data-free declaration
  included); a smoke run completes with finite metrics in [0, 1]; a second run with the same seed
  gives identical metrics (CPU; on CUDA within 1e-3, dfbench promises bit-exactness on the CPU only).
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dfbench.api.errors import ConfigError, DataError, DfbenchError, UnknownNameError, did_you_mean
from dfbench.api.registry import KIND_NOUN, KINDS

PASS, FAIL, SKIP = "pass", "fail", "skip"

#: the tiny dataset every check runs on (the test suite's smoke size)
TINY_OPTIONS = {"train_per_class": 24, "test_per_class": 12}
TINY_OVERRIDES = [f"data.options.{k}={v}" for k, v in TINY_OPTIONS.items()]


def check_dataset() -> str:
    """The dataset every check runs on: the one its plugin declared the default (the embedded
    shapes dataset of the built-ins, whose sizes TINY_OPTIONS sets)."""
    from dfbench.api.plugins import registry

    return registry("datasets").default_name()


@dataclass
class Check:
    component: str  # "<kind noun> <name>", or "plugin <name>"
    contract: str
    status: str  # pass | fail | skip
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "component": self.component,
            "contract": self.contract,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


class ContractFailed(Exception):
    """A contract does not hold (the message says how)."""


class Skipped(Exception):
    """The contract cannot be checked here (the message says why)."""


def expect(condition, message: str) -> None:
    if not condition:
        raise ContractFailed(message)


class Checker:
    def __init__(self, plugin: str, *, device: str = "auto", seed: int = 0, cache_dir: Path | None = None, log: Callable[[str], None] | None = None):
        from dfbench.api.datasets import default_cache_dir
        from dfbench.api.plugins import get_plugins

        self.plugin = plugin
        self.system = get_plugins()
        self.requested_device = device
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.log = log or (lambda message: None)
        self.results: list[Check] = []
        self._ctx_cache: dict = {}
        self._tmp = None

    # -- bookkeeping --------------------------------------------------------------------------
    def record(self, component: str, contract: str, fn: Callable[[], str | None]) -> str:
        """Run one contract; returns its status."""
        start = time.perf_counter()
        try:
            detail = fn() or ""
            status = PASS
        except ContractFailed as exc:
            status, detail = FAIL, str(exc)
        except Skipped as exc:
            status, detail = SKIP, str(exc)
        except Exception as exc:  # a crash of the component is a failed contract
            status, detail = FAIL, f"{type(exc).__name__}: {exc}{_where(exc)}"
        self.results.append(Check(component, contract, status, _short(detail), time.perf_counter() - start))
        return status

    def skip_rest(self, component: str, contracts: list[str], why: str) -> None:
        for contract in contracts:
            self.results.append(Check(component, contract, SKIP, _short(why)))

    # -- shared fixtures ----------------------------------------------------------------------
    @property
    def device(self):
        from dfbench.train.reproducibility import choose_device

        if "device" not in self._ctx_cache:
            self._ctx_cache["device"] = choose_device(self.requested_device)
        return self._ctx_cache["device"]

    def config(self, *, method: str | None = None, params: dict | None = None, loader: str | None = None) -> dict:
        from dfbench.app import config as cfgmod
        from dfbench.train.engine import DATA_FREE_BASE

        cfg = cfgmod.resolve(
            method=method or "check-plugin",
            dataset=check_dataset(),
            profile="smoke",
            seed=self.seed,
            device=self.requested_device,
            method_profiles={"base": {"params": dict(DATA_FREE_BASE)}},
            overrides=cfgmod.parse_set(TINY_OVERRIDES),
        )
        cfg["method"] = method
        if loader is not None:
            cfg["teachers"]["loader"] = loader
        if params is not None:
            cfg["params"] = params
        return cfg

    def benchmark(self):
        if "benchmark" not in self._ctx_cache:
            from dfbench.app.runner import load_benchmark

            self._ctx_cache["benchmark"] = load_benchmark(self.config(), self.cache_dir)
        return self._ctx_cache["benchmark"]

    def context(self, *, method: str | None = None, params: dict | None = None, loader: str | None = None, teachers=True):
        """A fresh run context on the tiny benchmark; teachers of every role (the default
        loader, cached) unless ``teachers`` is False or a loader name is checked."""
        from dfbench.api.context import RunContext
        from dfbench.api.teachers import roles_of

        cfg = self.config(method=method, params=params, loader=loader)
        ctx = RunContext(config=cfg, device=self.device, benchmark=self.benchmark(), cache_dir=self.cache_dir)
        ROLES = roles_of(ctx.modalities)
        if teachers:
            if "teachers" not in self._ctx_cache:
                from dfbench.api.plugins import registry
                from dfbench.train.reproducibility import seed_everything

                seed_everything(self.seed)
                self._ctx_cache["teachers"] = registry("teachers").load(registry("teachers").default_name())().load(ctx, set(ROLES))
            ctx.teachers = self._ctx_cache["teachers"]
            ctx.teachers.modalities = ctx.modalities
        return ctx

    def tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dfbench-check-")
        return Path(self._tmp.name)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- the plugin -----------------------------------------------------------------------------
    def run(self) -> list[Check]:
        from dfbench.train.reproducibility import make_deterministic

        info = self.system.info.get(self.plugin)
        if info is None:
            known = sorted(self.system.info)
            raise UnknownNameError(
                f"No plugin named '{self.plugin}' is loaded.{did_you_mean(self.plugin, known)} Loaded plugins: "
                f"{', '.join(known) or '(none)'}. 'dfbench plugins' lists them (the name is the entry-point "
                "name; DFBENCH_LOAD_PLUGINS may be leaving it out)."
            )
        comp = f"plugin {self.plugin}"
        entries = {kind: [e for e in self.system.registry(kind) if e.plugin == self.plugin] for kind in KINDS}
        n_components = sum(len(v) for v in entries.values())

        def loads():
            expect(info.error is None, f"{info.error}")
            return f"{info.distribution or 'registered object'} {info.version or ''}".strip()

        self.record(comp, "loads without error", loads)

        def registers():
            has_commands = "dfbench_register_commands" in info.hooks
            expect(n_components or has_commands, "registers no component and no command (implement a dfbench_register_* hook)")
            parts = [f"{len(v)} {k}" for k, v in entries.items() if v] + (["commands"] if has_commands else [])
            return ", ".join(parts)

        self.record(comp, "registers components", registers)
        if info.distribution is not None:
            self.record(comp, "CLI start-up imports no torch", lambda: self._lazy_import(info))
        if not n_components:
            return self.results
        make_deterministic(self.device)
        try:
            for kind, check in (
                ("datasets", self.check_dataset),
                ("teachers", self.check_teacher_loader),
                ("inversions", self.check_inversion),
                ("losses", self.check_loss),
                ("terms", self.check_term),
                ("metrics", self.check_metric),
                ("methods", self.check_method),
            ):
                for entry in entries[kind]:
                    self.log(f"checking {KIND_NOUN[kind]} '{entry.name}'")
                    check(entry)
        finally:
            self.close()
        return self.results

    def _lazy_import(self, info) -> str:
        """dfbench's CLI with only this third-party plugin loaded must not import torch."""
        import os

        module = info.module.partition(":")[0]
        code = (
            "import sys, importlib\n"
            "del sys.path[0]\n"  # the current folder, which -c puts first: a checkout there would shadow the installed dfbench
            f"importlib.import_module({module!r})\n"
            "import dfbench.app.cli\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))\n"
        )
        env = {**os.environ, "DFBENCH_LOAD_PLUGINS": self.plugin}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        expect(out.returncode == 0, f"importing {module} failed: {out.stderr.strip()[-300:]}")
        heavy = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "[]"
        expect("torch" not in heavy, f"importing {module} and dfbench.app.cli imports {heavy}: register lazy 'module:attribute' strings and import torch only inside the components")
        return f"imported modules of note: {heavy}"

    # -- datasets -------------------------------------------------------------------------------
    DATASET_CONTRACTS = [
        "load returns a Benchmark",
        "images uint8 (n,3,S,S); batch() float in [-1,1]",
        "grey modalities are grey (3 equal channels)",
        "labels int64 in [0, classes)",
        "same seed, same data",
    ]

    def _load_dataset(self, entry, extra: dict):
        from dfbench.api.datasets import DatasetOptions

        from dfbench.api.modalities import declared_pair

        opts = DatasetOptions(image_size=32, seed=self.seed, cache_dir=self.cache_dir, extra=dict(extra))
        cls = entry.load()
        pair = declared_pair(cls, entry.name)
        bench = cls().load(opts)
        if hasattr(bench, "modalities"):
            bench.modalities = pair
        return bench

    def check_dataset(self, entry) -> None:
        from dfbench.api.datasets import SPLITS, Benchmark, ImageSet

        comp = f"dataset {entry.name}"
        state: dict = {}

        def load():
            cls = entry.load()
            for extra in (TINY_OPTIONS, {}):
                try:
                    bench = self._load_dataset(entry, extra)
                    break
                except DataError as exc:
                    if getattr(cls, "needs_data_root", True):
                        raise Skipped(f"its data is not on this machine ({exc})") from None
                    raise
                except ConfigError:  # does not take the tiny-size options: load its default size
                    if not extra:
                        raise
            state.update(bench=bench, extra=extra)
            expect(isinstance(bench, Benchmark), f"load() returned {type(bench).__name__}, not a Benchmark")
            expect(isinstance(bench.classes, list) and len(bench.classes) >= 2, f"classes must be a list of at least 2 names, got {bench.classes!r}")
            expect(all(isinstance(c, str) and c for c in bench.classes), "class names must be non-empty strings")
            expect(len(set(bench.classes)) == len(bench.classes), "class names must be unique")
            expect(bench.image_size == 32, f"image_size is {bench.image_size}, but 32 was requested")
            missing = [f"{s}/{m}" for s in SPLITS for m in bench.modalities if (s, m) not in bench.sets]
            expect(not missing, f"missing image sets: {', '.join(missing)}")
            bad = [f"{s}/{m}" for (s, m), v in bench.sets.items() if not isinstance(v, ImageSet)]
            expect(not bad, f"not ImageSet instances: {', '.join(bad)}")
            empty = [f"{s}/{m}" for (s, m), v in bench.sets.items() if len(v) == 0]
            expect(not empty, f"empty image sets: {', '.join(empty)}")
            return f"{len(bench.classes)} classes; " + ", ".join(f"{k} {v}" for k, v in bench.counts().items())

        status = self.record(comp, self.DATASET_CONTRACTS[0], load)
        if status != PASS:
            self.skip_rest(comp, self.DATASET_CONTRACTS[1:], "the dataset did not load" if status == FAIL else "its data is not on this machine")
            return
        bench = state["bench"]

        def sample(imageset):
            n = len(imageset)
            return sorted({0, 1, n // 2, n - 1} & set(range(n)))

        def images():
            import torch

            for (s, m), imageset in sorted(bench.sets.items()):
                idx = sample(imageset)
                raw = imageset.load_uint8(idx)
                expect(isinstance(raw, torch.Tensor) and raw.dtype == torch.uint8, f"{s}/{m}: load_uint8 gave {getattr(raw, 'dtype', type(raw))}, not uint8")
                expect(tuple(raw.shape) == (len(idx), 3, 32, 32), f"{s}/{m}: load_uint8 gave shape {tuple(raw.shape)}, not ({len(idx)}, 3, 32, 32)")
                x = imageset.batch(idx, self.device)
                expect(x.dtype == torch.float32, f"{s}/{m}: batch() gave {x.dtype}, not float32")
                expect(x.device.type == self.device.type, f"{s}/{m}: batch(device={self.device}) is on {x.device}")
                expect(bool(torch.isfinite(x).all()), f"{s}/{m}: non-finite pixels")
                lo, hi = float(x.min()), float(x.max())
                expect(lo >= -1.0 and hi <= 1.0, f"{s}/{m}: pixel range [{lo:.3f}, {hi:.3f}] is outside [-1, 1]")
            return "checked first, middle and last images of every set"

        def grey():
            grey = [m for m in bench.modalities if bench.modalities[m].channels == 1]
            for s in ("train", "test"):
                for m in grey:
                    imageset = bench.get(s, m)
                    x = imageset.load_uint8(sample(imageset))
                    expect(bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()), f"{s}/{m} images are not grey (channels differ), as the dataset declares")
            return "grey: " + (", ".join(grey) or "none declared")

        def labels():
            import torch

            c = bench.num_classes
            for (s, m), imageset in sorted(bench.sets.items()):
                y = imageset.labels
                expect(isinstance(y, torch.Tensor) and y.dtype == torch.int64, f"{s}/{m}: labels are {getattr(y, 'dtype', type(y))}, not int64")
                expect(y.dim() == 1 and len(y) == len(imageset), f"{s}/{m}: labels of shape {tuple(y.shape)} for {len(imageset)} images")
                expect(int(y.min()) >= 0 and int(y.max()) < c, f"{s}/{m}: labels in [{int(y.min())}, {int(y.max())}], outside [0, {c})")
            return f"{c} classes"

        def same_seed():
            import torch

            again = self._load_dataset(entry, state["extra"])
            expect(again.classes == bench.classes, "class names differ between two loads")
            for key, imageset in sorted(bench.sets.items()):
                other = again.sets[key]
                expect(len(other) == len(imageset) and torch.equal(other.labels, imageset.labels), f"{key[0]}/{key[1]}: labels differ between two loads")
                idx = sample(imageset)
                expect(torch.equal(other.load_uint8(idx), imageset.load_uint8(idx)), f"{key[0]}/{key[1]}: images differ between two loads")

        for contract, fn in zip(self.DATASET_CONTRACTS[1:], (images, grey, labels, same_seed)):
            self.record(comp, contract, fn)

    # -- teacher loaders ------------------------------------------------------------------------
    TEACHER_CONTRACTS = [
        "load returns a TeacherSet with the requested roles",
        "frozen, eval mode, on the run device",
        "features()/head/logit shapes",
        "accuracies in [0, 1]",
        "same seed, same teachers",
    ]

    def check_teacher_loader(self, entry) -> None:
        from dfbench.train.reproducibility import seed_everything
        from dfbench.api.teachers import TeacherSet, roles_of

        comp = f"teacher loader {entry.name}"
        state: dict = {}
        ROLES = roles_of(self.benchmark().modalities)

        def load_set():
            seed_everything(self.seed)
            ctx = self.context(loader=entry.name, teachers=False)
            return entry.load()().load(ctx, set(ROLES))

        def load():
            try:
                ts = load_set()
            except DfbenchError as exc:
                raise Skipped(f"needs configuration to load: {exc}") from None
            state["ts"] = ts
            expect(isinstance(ts, TeacherSet), f"load() returned {type(ts).__name__}, not a TeacherSet")
            missing = sorted(set(ROLES) - set(ts.models))
            expect(not missing, f"roles asked for but not returned: {', '.join(missing)}")
            return "roles " + ", ".join(sorted(ts.models))

        status = self.record(comp, self.TEACHER_CONTRACTS[0], load)
        if status != PASS:
            self.skip_rest(comp, self.TEACHER_CONTRACTS[1:], "the loader did not load" if status == FAIL else "the loader cannot run without configuration")
            return
        ts = state["ts"]
        bench = self.benchmark()
        c = bench.num_classes
        pair = bench.modalities
        x = {m: bench.get("test", m).batch(list(range(4)), self.device) for m in pair}

        def frozen():
            for role, model in ts.models.items():
                trainable = [n for n, p in model.named_parameters() if p.requires_grad]
                expect(not trainable, f"{role}: parameters require grad ({', '.join(trainable[:3])}...); freeze them")
                training = [n or "(root)" for n, mod in model.named_modules() if mod.training]
                expect(not training, f"{role}: modules in training mode ({', '.join(training[:3])}); call eval()")
                devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
                expect(devices <= {self.device.type}, f"{role}: tensors on {sorted(devices)}, run device {self.device}")

        def shapes():
            import torch

            for role, model in sorted(ts.models.items()):
                with torch.no_grad():
                    out = model(x[pair.gallery.key])
                    outputs = 1 if role == "modality" else c
                    expect(tuple(out.shape) == (4, outputs), f"{role}: logits of shape {tuple(out.shape)}, not (4, {outputs})")
                    expect(bool(torch.isfinite(out).all()), f"{role}: non-finite logits")
                    if role == "modality":
                        continue
                    f = model.features(x[pair.query.key])
                    head = model.head
                    expect(isinstance(head, torch.nn.Linear), f"{role}: head is {type(head).__name__}, not nn.Linear")
                    expect(tuple(f.shape) == (4, head.in_features), f"{role}: features() of shape {tuple(f.shape)}, head takes {head.in_features}")
                    expect(head.out_features == c, f"{role}: head has {head.out_features} outputs for {c} classes")
                    expect(getattr(model, "feature_dim", head.in_features) == head.in_features, f"{role}: feature_dim differs from the head's input size")
            return f"{c} classes"

        def accuracies():
            bad = []
            for role, acc in ts.accuracy.items():
                for value in _leaves(acc):
                    if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                        bad.append(f"{role}={value!r}")
            expect(not bad, "accuracies must be fractions in [0, 1]: " + ", ".join(bad))

        def same_seed():
            import torch

            again = load_set()
            for role, model in ts.models.items():
                with torch.no_grad():
                    a, b = model(x[pair.gallery.key]), again.models[role](x[pair.gallery.key])
                expect(_same(a, b, self.device), f"{role}: a second load gives other logits")

        for contract, fn in zip(self.TEACHER_CONTRACTS[1:], (frozen, shapes, accuracies, same_seed)):
            self.record(comp, contract, fn)

    # -- inversion strategies ---------------------------------------------------------------------
    INVERSION_CONTRACTS = [
        "synthesize returns a SynthBatch",
        "shapes and dtypes",
        "in [-1, 1], finite, detached, on the run device",
        "same seed, same batches",
        "state_dict round-trips",
    ]

    def _setups(self, kind_key: str, key_field: str, name: str) -> list[tuple]:
        """(label, method name, params) of the methods whose smoke profile uses ``name`` (this
        plugin's methods first)."""
        from dfbench.app import config as cfgmod

        out = []
        methods = sorted(self.system.registry("methods"), key=lambda e: (e.plugin != self.plugin, e.name))
        for m in methods:
            try:
                params = cfgmod.profile_defaults("smoke", getattr(m.load(), "profiles", {}), m.load())["params"]
            except Exception:
                continue
            part = params.get(kind_key)
            if isinstance(part, dict) and part.get(key_field) == name:
                out.append((f"options of method '{m.name}' (smoke)", m.name, params))
            if len(out) >= 2:
                break
        return out

    def _build_strategy(self, entry):
        """A strategy and students, built from the seed; tries the options of methods that use it,
        then its defaults."""
        from dfbench.train.engine import DATA_FREE_BASE
        from dfbench.api.options import component_options
        from dfbench.train.reproducibility import seed_everything
        from dfbench.train.students import Students
        from dfbench.train.terms import check_weights

        cls = entry.load()
        setups = self._setups("inversion", "strategy", entry.name)
        base = {**DATA_FREE_BASE, "inversion": {"strategy": entry.name}}
        setups += [("its defaults, weights one_hot=1", None, {**base, "weights": {"one_hot": 1.0}}), ("its defaults, no weights", None, {**base, "weights": {}})]
        errors = []
        for label, method, params in setups:
            try:
                ctx = self.context(method=method, params=params)
                seed_everything(self.seed)
                students = Students(ctx, params.get("variant", "unified"), scale=float(params.get("proxy_scale", 32.0)))
                options = component_options(cls, params["inversion"], "strategy", "params.inversion")
                strategy = cls(ctx, options, check_weights(params.get("weights", {})), params.get("variant", "unified"))
                return strategy, students, label, lambda: self._rebuild_strategy(cls, method, params)
            except DfbenchError as exc:
                errors.append(f"{label}: {exc}")
        raise Skipped("cannot be built here: " + " | ".join(errors))

    def _rebuild_strategy(self, cls, method, params):
        from dfbench.api.options import component_options
        from dfbench.train.reproducibility import seed_everything
        from dfbench.train.students import Students
        from dfbench.train.terms import check_weights

        ctx = self.context(method=method, params=params)
        seed_everything(self.seed)
        students = Students(ctx, params.get("variant", "unified"), scale=float(params.get("proxy_scale", 32.0)))
        strategy = cls(ctx, component_options(cls, params["inversion"], "strategy", "params.inversion"), check_weights(params.get("weights", {})), params.get("variant", "unified"))
        return strategy, students

    # -- synthesis loss terms -----------------------------------------------------------------
    TERM_CONTRACTS = [
        "declared with dfbench.train.terms.term (what it needs)",
        "a finite scalar with a gradient path to the images",
    ]

    def check_term(self, entry) -> None:
        """A term is evaluated on a pair of random images judged by the check's teachers (both
        teacher variants' roles, the modality teacher and students built from the seed), so every
        need it may declare is met."""
        comp = f"synthesis loss term {entry.name}"
        state: dict = {}

        def declared():
            from dfbench.train.terms import NEEDS

            fn = entry.load()
            needs = getattr(fn, "needs", None)
            expect(callable(fn), f"'{entry.target}' is not callable")
            expect(isinstance(needs, frozenset) and needs <= set(NEEDS), "not declared with @dfbench.train.terms.term(...) (its needs are unknown)")
            state["fn"] = fn
            return f"needs: {', '.join(sorted(needs)) or 'nothing beyond the class teachers'}"

        if self.record(comp, self.TERM_CONTRACTS[0], declared) != PASS:
            self.skip_rest(comp, self.TERM_CONTRACTS[1:], "not a declared term")
            return

        def value():
            import torch

            from dfbench.train.reproducibility import seed_everything
            from dfbench.train.students import Students
            from dfbench.train.terms import BatchNormStatsHooks, SynthesisState

            params = {"variant": "independent", "weights": {}}
            ctx = self.context(params=params)
            seed_everything(self.seed)
            students = Students(ctx, "independent")
            size = ctx.image_size
            images = {m: (torch.rand(4, 3, size, size, device=self.device) * 2 - 1).requires_grad_(True) for m in ctx.modalities}
            views = {m: x.flip(3) for m, x in images.items()}
            with BatchNormStatsHooks([ctx.teachers[m] for m in ctx.modalities]) as hooks:
                out = state["fn"](SynthesisState(images, ctx.teachers, "independent", students=students, bn_hooks=hooks, views=views))
            expect(isinstance(out, torch.Tensor) and out.dim() == 0, f"returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, not a scalar tensor")
            expect(bool(torch.isfinite(out)), f"returned {out.item()}")
            expect(out.requires_grad, "does not depend on the images (a synthesiser could not lower it)")
            grads = torch.autograd.grad(out, list(images.values()), allow_unused=True)
            # a masked term may be flat on random images (nothing selected), but autograd must reach them
            expect(any(g is not None for g in grads), "has no gradient path to the images (a synthesiser could not lower it)")
            return f"{out.item():.4g}"

        self.record(comp, self.TERM_CONTRACTS[1], value)

    def check_inversion(self, entry) -> None:
        from dfbench.api.inversion import SynthBatch

        comp = f"inversion strategy {entry.name}"
        state: dict = {}

        def first():
            strategy, students, label, rebuild = self._build_strategy(entry)
            batches = [strategy.synthesize(students), strategy.synthesize(students)]
            state.update(strategy=strategy, students=students, batches=batches, rebuild=rebuild)
            bad = [type(b).__name__ for b in batches if not isinstance(b, SynthBatch)]
            expect(not bad, f"synthesize() returned {', '.join(bad)}, not a SynthBatch")
            return f"{label}; {len(batches[0])} pairs per call"

        status = self.record(comp, self.INVERSION_CONTRACTS[0], first)
        if status != PASS:
            self.skip_rest(comp, self.INVERSION_CONTRACTS[1:], "synthesize() failed" if status == FAIL else "the strategy cannot be built here")
            return
        c, size = self.benchmark().num_classes, 32
        pair = self.benchmark().modalities

        def shapes():
            import torch

            for b in state["batches"]:
                n = len(b)
                expect(n > 0, "empty batch")
                expect(set(b.images) == set(pair) and set(b.labels) == set(pair),
                       f"images and labels keyed {sorted(b.images)} / {sorted(b.labels)}, not by the benchmark's modalities {sorted(pair)}")
                expect(b.logits is None or set(b.logits) == set(pair), f"logits keyed {sorted(b.logits or {})}, not {sorted(pair)}")
                for m in pair:
                    t = b.images[m]
                    expect(t.is_floating_point(), f"{m}: dtype {t.dtype}, not floating point")
                    expect(tuple(t.shape) == (n, 3, size, size), f"{m}: shape {tuple(t.shape)}, not ({n}, 3, {size}, {size})")
                    y = b.labels[m]
                    expect(y.dtype == torch.int64 and tuple(y.shape) == (n,), f"labels of {m}: {y.dtype} {tuple(y.shape)}, not int64 ({n},)")
                    expect(int(y.min()) >= 0 and int(y.max()) < c, f"labels of {m} outside [0, {c})")
                    logits = None if b.logits is None else b.logits[m]
                    if logits is not None:
                        expect(tuple(logits.shape) == (n, c), f"logits of {m}: shape {tuple(logits.shape)}, not ({n}, {c})")
            return f"{'/'.join(pair)} ({len(state['batches'][0])}, 3, {size}, {size})"

        def values():
            import torch

            for b in state["batches"]:
                for name, t in b.fields().items():
                    expect(t.device.type == self.device.type, f"{name} is on {t.device}, run device {self.device}")
                    expect(not t.requires_grad, f"{name} requires grad: detach it")
                    if t.is_floating_point():
                        expect(bool(torch.isfinite(t).all()), f"{name}: non-finite values")
                for m in pair:
                    t = b.images[m]
                    lo, hi = float(t.min()), float(t.max())
                    expect(lo >= -1.0 - 1e-6 and hi <= 1.0 + 1e-6, f"{m}: values in [{lo:.3f}, {hi:.3f}], outside [-1, 1]")

        def same_seed():
            strategy, students = state["rebuild"]()
            again = [strategy.synthesize(students), strategy.synthesize(students)]
            for i, (a, b) in enumerate(zip(state["batches"], again)):
                fa, fb = a.fields(), b.fields()
                for name in sorted(set(fa) | set(fb)):
                    x, y = fa.get(name), fb.get(name)
                    expect((x is None) == (y is None), f"call {i + 1}: {name} present in one run only")
                    if x is not None:
                        expect(_same(x, y, self.device), f"call {i + 1}: {name} differs between two runs with seed {self.seed}")
            return "two calls, two fresh instances"

        def round_trip():
            sd = state["strategy"].state_dict()
            expect(isinstance(sd, dict), f"state_dict() returned {type(sd).__name__}, not a dict")
            sd = _torch_round_trip(sd)
            strategy, _ = state["rebuild"]()
            strategy.load_state_dict(sd)
            return f"{len(sd)} keys"

        for contract, fn in zip(self.INVERSION_CONTRACTS[1:], (shapes, values, same_seed, round_trip)):
            self.record(comp, contract, fn)

    # -- alignment losses -------------------------------------------------------------------------
    LOSS_CONTRACTS = [
        "finite scalar on the run device",
        "gradients reach both embeddings",
        "same inputs, same value",
        "independent teacher variant",
        "state_dict round-trips",
    ]

    def _loss_inputs(self, dim: int, c: int, n: int = 16):
        import torch

        g = torch.Generator().manual_seed(self.seed + 5)
        e_p = torch.randn(n, dim, generator=g)
        e_s = e_p + 0.5 * torch.randn(n, dim, generator=g)
        labels_p = torch.randint(0, min(c, 5), (n,), generator=g)
        labels_s = labels_p.clone()
        labels_s[::4] = torch.randint(0, c, (len(labels_s[::4]),), generator=g)  # some pairs disagree
        logits = {m: 3.0 * torch.randn(n, c, generator=g) for m in ("gallery_logits", "query_logits")}
        to = lambda t: t.to(self.device)  # noqa: E731
        return to(e_p), to(e_s), to(labels_p), to(labels_s), {k: to(v) for k, v in logits.items()}

    def _loss_value(self, cls, options, variant: str, params: dict):
        """(loss instance, first loss, second loss, gallery/query embedding leaves)."""
        from dfbench.train.reproducibility import seed_everything
        from dfbench.train.students import Students

        ctx = self.context(params=params)
        seed_everything(self.seed)
        students = Students(ctx, variant, scale=float(params.get("proxy_scale", 32.0)))
        loss_fn = cls(ctx, options, students)
        dim = students.encoders[ctx.modalities.gallery.key].embed_dim
        e_p, e_s, y_p, y_s, logits = self._loss_inputs(dim, ctx.num_classes)
        e_p, e_s = e_p.requires_grad_(True), e_s.requires_grad_(True)
        kwargs = logits if getattr(loss_fn, "uses_teacher_logits", False) else {}
        first = loss_fn(e_p, e_s, y_p, y_s, **kwargs)
        second = loss_fn(e_p.detach(), e_s.detach(), y_p, y_s, **kwargs)  # a second call (queues, memories)
        return loss_fn, first, second, e_p, e_s

    def check_metric(self, entry) -> None:
        """A retrieval metric: a RetrievalMetric class whose per-query scores on a real ranking (ties
        included) are one finite float per query, within its declared bounds, the same on a second
        call, and unchanged when the queries come in another order and chunking."""
        import torch

        from dfbench.api.metrics import RetrievalMetric
        from dfbench.train.metrics import retrieval_metrics

        comp = f"retrieval metric {entry.name}"

        def scores():
            cls = entry.load()
            expect(isinstance(cls, type) and issubclass(cls, RetrievalMetric),
                   f"registers {cls!r}, not a subclass of dfbench.api.metrics.RetrievalMetric")
            g = torch.Generator().manual_seed(0)
            q, x = torch.randn(60, 8, generator=g), torch.randn(90, 8, generator=g)
            x[1::3] = x[0::3][: x[1::3].shape[0]]  # ties between gallery items
            ql, gl = torch.randint(0, 6, (60,), generator=g), torch.randint(0, 5, (90,), generator=g)
            first = retrieval_metrics(q, ql, x, gl, chunk_size=7, extra={"m": cls()})["m"]
            again = retrieval_metrics(q, ql, x, gl, chunk_size=7, extra={"m": cls()})["m"]
            order = torch.randperm(60, generator=g)
            shuffled = retrieval_metrics(q[order], ql[order], x, gl, chunk_size=32, extra={"m": cls()})["m"]
            expect(math.isfinite(first), f"gives {first}, not a finite number")
            expect(cls().in_bounds(first), f"gives {first}, outside its declared bounds {cls.bounds}")
            expect(first == again, f"gives {first} then {again} on the same ranking")
            expect(abs(first - shuffled) <= 1e-9, f"gives {first}, and {shuffled} with the queries in another order")
            return f"{first:.4f} on a 60 x 90 ranking with ties"

        self.record(comp, "per-query scores: finite, in bounds, deterministic, order-free", scores)

    def check_loss(self, entry) -> None:
        import torch

        from dfbench.api.options import component_options
        from dfbench.train.engine import DATA_FREE_BASE

        comp = f"alignment loss {entry.name}"
        state: dict = {}

        def first():
            cls = entry.load()
            setups = self._setups("alignment", "loss", entry.name)
            label, params = (setups[0][0], setups[0][2]) if setups else ("its defaults", {**DATA_FREE_BASE, "alignment": {"loss": entry.name}})
            options = component_options(cls, params["alignment"], "loss", "params.alignment")
            variant = params.get("variant", "unified")
            loss_fn, loss, second, e_p, e_s = self._loss_value(cls, options, variant, params)
            state.update(cls=cls, options=options, params=params, variant=variant, loss_fn=loss_fn, loss=loss, e_p=e_p, e_s=e_s)
            for i, value in enumerate((loss, second)):
                call = ("first", "second")[i]
                expect(isinstance(value, torch.Tensor), f"{call} call returned {type(value).__name__}, not a tensor")
                expect(value.dim() == 0, f"{call} call returned shape {tuple(value.shape)}, not a scalar")
                expect(value.is_floating_point(), f"{call} call returned dtype {value.dtype}")
                expect(value.device.type == self.device.type, f"{call} call: loss on {value.device}, run device {self.device}")
                expect(math.isfinite(float(value.detach())), f"{call} call: loss is {float(value.detach())}")
            return f"{label}, {variant}: {float(loss.detach()):.4f}"

        if self.record(comp, self.LOSS_CONTRACTS[0], first) != PASS:
            self.skip_rest(comp, self.LOSS_CONTRACTS[1:], "the loss did not give a finite scalar")
            return

        def gradients():
            loss = state["loss"]
            expect(loss.requires_grad, "the loss does not depend on the embeddings (no graph)")
            loss.backward()
            for m, e in (("gallery", state["e_p"]), ("query", state["e_s"])):
                expect(e.grad is not None, f"no gradient reaches the {m} embeddings")
                expect(bool(torch.isfinite(e.grad).all()), f"non-finite gradient on the {m} embeddings")
                expect(float(e.grad.abs().sum()) > 0, f"zero gradient on the {m} embeddings")
            return "|grad| gallery {:.3g}, query {:.3g}".format(float(state["e_p"].grad.norm()), float(state["e_s"].grad.norm()))

        def same_value():
            _, again, _, _, _ = self._loss_value(state["cls"], state["options"], state["variant"], state["params"])
            expect(_same(state["loss"].detach(), again.detach(), self.device), f"{float(state['loss'].detach())} then {float(again.detach())} for the same inputs and seed")

        def independent():
            if state["variant"] == "independent":
                return "the checked options already use it"
            params = {**state["params"], "variant": "independent"}
            _, loss, _, e_p, e_s = self._loss_value(state["cls"], state["options"], "independent", params)
            expect(loss.dim() == 0 and math.isfinite(float(loss.detach())), f"loss is {loss.detach().cpu().tolist()}")
            loss.backward()
            expect(e_p.grad is not None and e_s.grad is not None, "no gradient reaches the embeddings")
            return f"{float(loss.detach()):.4f}"

        def round_trip():
            loss_fn = state["loss_fn"]
            sd = loss_fn.state_dict()
            expect(isinstance(sd, dict), f"state_dict() returned {type(sd).__name__}, not a dict")
            params = list(loss_fn.parameters())
            expect(all(isinstance(p, torch.Tensor) for p in params), "parameters() must give tensors")
            fresh, _, _, _, _ = self._loss_value(state["cls"], state["options"], state["variant"], state["params"])
            fresh.load_state_dict(_torch_round_trip(sd))
            return f"{len(sd)} state keys, {len(params)} parameters"

        for contract, fn in zip(self.LOSS_CONTRACTS[1:], (gradients, same_value, independent, round_trip)):
            self.record(comp, contract, fn)

    # -- methods --------------------------------------------------------------------------------
    METHOD_CONTRACTS = [
        "profiles smoke/cpu/paper resolve",
        "smoke run completes",
        "metrics finite, in [0, 1]",
        "same seed, same metrics",
    ]

    def _check_profiles(self, entry) -> str:
        from dfbench.app import config as cfgmod
        from dfbench.app.config import PROFILES
        from dfbench.api.methods import Method
        from dfbench.api.plugins import registry
        from dfbench.api.teachers import ROLES

        cls = entry.load()
        expect(isinstance(cls, type) and callable(getattr(cls, "fit", None)), f"'{entry.target}' is not a class with fit(ctx)")
        if not issubclass(cls, Method):
            expect(callable(getattr(cls, "teacher_roles", None)), "no teacher_roles(params) (subclass dfbench.api.methods.Method)")
        profiles = getattr(cls, "profiles", {})
        expect(isinstance(profiles, dict), "profiles must be a dict")
        unknown = sorted(set(profiles) - set(PROFILES) - {"base"})
        expect(not unknown, f"unknown profile keys: {', '.join(unknown)} (use base, {', '.join(PROFILES)})")
        missing = [p for p in PROFILES if p not in profiles]
        expect(not missing, f"no {', '.join(missing)} profile declared")
        for profile in PROFILES:
            try:
                cfg = cfgmod.resolve(
                    method=entry.name, dataset=check_dataset(), profile=profile, seed=self.seed, device="cpu",
                    method_profiles=profiles,
                )
                params = cfg["params"]
                roles = set(cls().teacher_roles(params))
                # no roles is fine: a method that trains from the data alone needs no teachers ('dfbench run' accepts it)
                expect(roles <= set(ROLES), f"{profile}: teacher_roles gave {sorted(roles)}; roles are {', '.join(ROLES)}")
                registry("teachers").get(cfg["teachers"]["loader"])  # resolve() checked every option
            except DfbenchError as exc:
                raise ContractFailed(f"{profile}: {exc}") from None
        return ", ".join(PROFILES)

    def check_method(self, entry) -> None:
        from dfbench.api.progress import Reporter
        from dfbench.app.runner import RunRequest, execute_resolved, resolve_request

        comp = f"method {entry.name}"
        state: dict = {}
        self.record(comp, self.METHOD_CONTRACTS[0], lambda: self._check_profiles(entry))

        def one_run(folder: str):
            req = RunRequest(
                method=entry.name, dataset=check_dataset(), profile="smoke", seed=self.seed, device=self.requested_device,
                overrides=list(TINY_OVERRIDES), results=self.tmpdir() / folder, cache_dir=self.cache_dir, force=True,
            )
            cfg, method = resolve_request(req)
            return execute_resolved(cfg, method, req, Reporter(enabled=False)).record

        def run_once():
            start = time.perf_counter()
            record = one_run("first")
            state["record"] = record
            expect(record.get("status") == "completed", f"status {record.get('status')}: {record.get('error')}")
            return f"{time.perf_counter() - start:.1f} s"

        if self.record(comp, self.METHOD_CONTRACTS[1], run_once) != PASS:
            self.skip_rest(comp, self.METHOD_CONTRACTS[2:], "the smoke run failed")
            return
        metrics = state["record"]["metrics"]

        def finite():
            from dfbench.app.records import METRIC_KEYS

            missing = [k for k in METRIC_KEYS if k not in metrics]
            expect(not missing, f"missing metrics: {', '.join(missing)}")
            bad = [f"{k}={v}" for k, v in metrics.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
            expect(not bad, ", ".join(bad))
            return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())

        def same_seed():
            again = one_run("second")["metrics"]
            tol = 0.0 if self.device.type == "cpu" else 1e-3
            diff = {k: abs(again.get(k, math.nan) - v) for k, v in metrics.items()}
            bad = [f"{k} {metrics[k]:.6f} vs {again.get(k)}" for k, d in diff.items() if not d <= tol]
            expect(not bad, f"seed {self.seed} twice: " + "; ".join(bad))
            return "identical" if tol == 0.0 else f"within {tol} ({self.device.type})"

        self.record(comp, self.METHOD_CONTRACTS[2], finite)
        self.record(comp, self.METHOD_CONTRACTS[3], same_seed)


# -- helpers ----------------------------------------------------------------------------------------

def _where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame outside this module and torch: where to look."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        name = frame.filename.replace("\\", "/")
        if name != __file__.replace("\\", "/") and "/torch/" not in name:
            return f" ({frame.filename}:{frame.lineno})"
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _same(a, b, device) -> bool:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if getattr(device, "type", device) == "cpu":
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5))


def _torch_round_trip(state: dict) -> dict:
    """``state`` through ``torch.save`` and dfbench's safe loader (what a checkpoint does: a state
    that holds objects other than tensors and plain containers cannot be resumed from)."""
    import torch

    from dfbench.api.safeload import load_torch_file

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return load_torch_file(buf)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_plugin(name: str, *, device: str = "auto", seed: int = 0, cache_dir=None, log=None) -> list[Check]:
    """Run every contract of every component plugin ``name`` registered; the rows, in order."""
    return Checker(name, device=device, seed=seed, cache_dir=cache_dir, log=log).run()


def summary(results: list[Check]) -> dict:
    counts = {PASS: 0, FAIL: 0, SKIP: 0}
    for r in results:
        counts[r.status] += 1
    return counts


def report(name: str, results: list[Check]) -> dict:
    counts = summary(results)
    return {"plugin": name, "passed": counts[FAIL] == 0, "counts": counts, "checks": [r.as_dict() for r in results]}


def print_table(name: str, results: list[Check], console) -> None:
    from rich.table import Table

    style = {PASS: "green", FAIL: "bold red", SKIP: "yellow"}
    table = Table(title=f"check-plugin {name}", title_justify="left")
    for col in ("component", "contract", "result", "detail"):
        table.add_column(col, overflow="fold")
    last = None
    for r in results:
        table.add_row(r.component if r.component != last else "", r.contract, f"[{style[r.status]}]{r.status.upper()}[/]", r.detail)
        last = r.component
    console.print(table)
    counts = summary(results)
    verdict = "[bold red]FAILED[/]" if counts[FAIL] else "[green]passed[/]"
    console.print(f"plugin {name}: {verdict} ({counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped)")
