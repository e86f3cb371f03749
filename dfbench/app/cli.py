"""The ``dfbench`` command line.

Start-up imports neither torch nor any plugin's implementation: plugins register lazy
``module:attribute`` targets, imported only when a command uses them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dfbench import __version__
from dfbench.api.errors import DfbenchError, OutputPathError
from dfbench.api.registry import KINDS


class DfbenchGroup(click.Group):
    """Turns :class:`DfbenchError` into a one-paragraph message and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DfbenchError as exc:
            _interrupt_behind(exc)
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM outside a run's own handling (issue 15)
            from dfbench.app import interrupts

            _fail_interrupted(interrupts.early_message(exc), exc)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except DfbenchError as exc:  # raised outside invoke (e.g. while completing)
            _fail(str(exc), exc.exit_code)


def _paragraph(message) -> str:
    """One paragraph, even when the message quotes a multi-line error of a library."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _fail(message: str, code: int = 2, prefix: str = "Error: "):
    click.echo(f"{prefix}{_paragraph(message)}", err=True)
    sys.exit(code)


def _interrupt_behind(exc: BaseException) -> None:
    """An error caused by a Ctrl-C or SIGTERM that a library swallowed (an import left half done) is
    that interrupt: its message and status, not the error's (:func:`dfbench.app.interrupts.install`)."""
    from dfbench.app import interrupts

    signal_exc = interrupts.received()
    if signal_exc is not None:
        _fail_interrupted(interrupts.early_message(signal_exc), signal_exc)


def _fail_interrupted(message: str, exc: BaseException):
    """An interrupt's one paragraph, then exit 130 or 143 (:class:`dfbench.app.interrupts.InterruptExit`)."""
    from dfbench.app import interrupts

    click.echo(_paragraph(message), err=True)
    raise interrupts.InterruptExit(interrupts.exit_status(exc))


@click.group(cls=DfbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dfbench")
@click.option("--cpu-kernels", type=click.Choice(("native", "avx2", "default"), case_sensitive=False), default="native",
              envvar="DFBENCH_CPU_KERNELS", show_default=True,
              help="Run torch's, oneDNN's and MKL's CPU kernels at this instruction set rather than the CPU's own, so "
                   "that runs match records made on a smaller CPU bit for bit (dfbench/app/cpu_kernels.py).")
@click.pass_context
def cli(ctx, cpu_kernels):
    """dfbench: benchmarks for data-free cross-modal learning (data-free SBIR).

    \b
    First run (embedded dataset, no download; about a minute on 2 cores):
      dfbench run --method classifier-only
    """
    # whether the kernels were chosen (option or DFBENCH_CPU_KERNELS): a suite's cpu_kernels yields to that choice
    source = ctx.get_parameter_source("cpu_kernels")
    ctx.obj = {"cpu_kernels": cpu_kernels.lower() if source not in (None, click.core.ParameterSource.DEFAULT) else None}
    if cpu_kernels.lower() != "native":
        from dfbench.app import cpu_kernels as kernels

        kernels.use(cpu_kernels)


def escape(text) -> str:
    """A string shown in a rich table as the text it is, never as markup (``[bold]``, ``[/]``)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def _console():
    """A rich console for results on stdout: wide enough for the tables when not a terminal."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _plugins():
    from dfbench.api.plugins import get_plugins, warn_broken
    from dfbench.app.interrupts import check

    system = get_plugins()
    check()  # an interrupt swallowed while the plugins imported (dfbench.app.interrupts.install)
    warn_broken()
    return system


@cli.command(name="list")
@click.option("--kind", type=click.Choice(KINDS), help="Only components of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {kind, name, plugin, description, options}.")
def list_cmd(kind, as_json):
    """List registered methods, datasets, teacher loaders, inversion strategies and alignment losses."""
    system = _plugins()
    kinds = [kind] if kind else list(KINDS)
    rows = [entry.as_dict() for k in kinds for entry in system.registry(k)]
    if as_json:
        from dfbench.app.config import component_options_rows

        for k in kinds:  # each component's options, with their types, defaults and help
            for entry, row in zip(system.registry(k), [r for r in rows if r["kind"] == k]):
                row["options"] = component_options_rows(entry)
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = _console()
    for k in kinds:
        table = Table(title=k, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("plugin")
        table.add_column("description")
        for r in rows:
            if r["kind"] == k:
                table.add_row(*(escape(r[col]) for col in ("name", "plugin", "description")))
        console.print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json):
    """Show installed plugins: name, version, hooks, and the error of any that failed to load."""
    from dfbench.api.plugins import get_plugins

    infos = [i.as_dict() for i in get_plugins().info.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("name", "distribution", "version", "hooks", "error"):
        table.add_column(col)
    for i in infos:  # a plugin's strings are text, never rich markup
        table.add_row(*(escape(v) for v in (i["name"], i["distribution"] or "", i["version"] or "",
                                                  ", ".join(h.replace("dfbench_register_", "") for h in i["hooks"]), i["error"] or "")))
    _console().print(table)


@cli.command()
@click.option("--method", "-m", help="Method name (see 'dfbench list --kind methods').")
@click.option("--dataset", "-d", default=None, help="Dataset name [default: shapes, the embedded one].")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder holding the dataset.")
@click.option("--profile", "-p", default=None, help="smoke | cpu | paper [default: cpu].")
@click.option("--seed", "-s", "seeds", type=int, multiple=True, help="Seed; repeat for several runs [default: 0].")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. params.rounds=100.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N [default: auto].")
@click.option("--logger", "loggers", multiple=True, metavar="NAME",
              help="Also send the run's events to this logger (repeatable; 'dfbench list --kind loggers': jsonl, tensorboard).")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help="Results folder.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache for teachers and generated data [default: $DFBENCH_CACHE or ~/.cache/dfbench].")
@click.option("--force", is_flag=True, help="Run again even when a completed record exists (it is replaced only if the rerun completes).")
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable image files with a warning instead of failing.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N images per class of every split and modality (any dataset; part of the run's identity).")
@click.option("--print-config", is_flag=True, help="Print the resolved config as YAML and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(method, dataset, data_root, profile, seeds, config_file, overrides, device, loggers, results, cache_dir, force, skip_bad_images, limit, print_config, as_json, quiet):
    """Run one method on one dataset and write a run record per seed.

    Started by torchrun, one run trains data-parallel on all its processes (docs/scaling.md).
    """
    from dfbench.train import distributed
    from dfbench.api.progress import Reporter
    from dfbench.app import library
    from dfbench.app.records import pin_code_state

    pin_code_state()  # before any plugin module is imported: records name the code the process started with
    _plugins()
    main_rank = distributed.is_main()  # under torchrun only rank 0 reports and prints
    reporter = Reporter(enabled=False) if quiet or not main_rank else Reporter()
    outcomes = []
    for seed in seeds or (None,):  # None: the config file's seed, else 0
        # the library's own call (dfbench.run): the same arguments, the same run
        logger_set = [f"loggers={json.dumps(list(loggers))}"] if loggers else []  # an execution setting, outside the hash
        given = dict(method=method, dataset=dataset, profile=profile, seed=seed, device=device, data_root=data_root,
                     config=config_file, set=[*overrides, *logger_set], results=results, cache_dir=cache_dir, force=force,
                     skip_bad_images=skip_bad_images, limit=limit)
        if print_config:
            from dfbench.app.config import annotated_yaml

            click.echo(annotated_yaml(library.resolved_config(**given)))
            return
        try:
            outcome = library.run(**given, reporter=reporter)
        except KeyboardInterrupt as exc:
            _interrupted(exc, len(seeds) > 1)
        if outcome.skipped:
            reporter.log(f"skipped: a completed record exists at {outcome.path} (use --force to run again)")
        else:
            reporter.log(f"record written to {outcome.path}")
        outcomes.append(outcome)
    if not main_rank:
        return
    if as_json:
        click.echo(json.dumps([o.record for o in outcomes], indent=2))
    else:
        _summary(outcomes)


def _interrupted(exc: BaseException, several_seeds: bool):
    """Ctrl-C (exit 130) or SIGTERM (exit 143) in 'dfbench run': say what is kept and how to resume
    (no traceback). A checkpoint is named only when a rerun can resume from it
    (:class:`dfbench.app.interrupts.RunInterrupted` says which)."""
    from dfbench.app import interrupts

    done = " Seeds already finished are skipped." if several_seeds else ""
    stopped = interrupts.what(exc)
    run = exc if isinstance(exc, interrupts.RunInterrupted) else None
    checkpoint = (run.checkpoint, run.last_round, run.every) if run is not None else None
    if checkpoint is not None and checkpoint[0] is not None and Path(checkpoint[0]).is_file():
        path, last_round, _ = checkpoint
        at = f" (round {last_round})" if last_round else ""
        message = (
            f"{stopped}. The checkpoint {path}{at} is kept: run the same command again to resume "
            f"from it.{done}"
        )
    else:
        every = f" (one is saved every {checkpoint[2]} rounds, see checkpoint_every)" if checkpoint and checkpoint[2] > 0 else ""
        message = (
            f"{stopped} before the first training checkpoint{every}, so no training is kept. Run the "
            f"same command again to start this run over.{done}"
        )
    _fail_interrupted(message, exc)


def _results_table(title: str, rows: list):
    """A rich table of run records: ``rows`` holds (record, skipped, label or None)."""
    from rich.table import Table

    from dfbench.app.records import METRIC_KEYS

    table = Table(title=escape(title))
    for col in ("method", "dataset", "seed", "status", *METRIC_KEYS, "time (s)"):
        table.add_column(col, justify="left" if col in ("method", "dataset", "status") else "right")
    for r, skipped, label in rows:  # a record's strings are text, never rich markup
        m = r.get("metrics") or {}
        table.add_row(
            *(escape(v) for v in (label or r["method"], r["dataset"], r["seed"], "skipped" if skipped else r.get("status", ""))),
            *(f"{m[k]:.4f}" if k in m else "-" for k in METRIC_KEYS),
            f"{(r.get('timing') or {}).get('total', 0):.1f}",
        )
    return table


def _summary(outcomes):
    console = _console()
    console.print(_results_table("results", [(o.record, o.skipped, None) for o in outcomes]))
    from dfbench.app import summary
    from dfbench.api.locations import committed_records

    records_dir = committed_records()
    for o in outcomes:
        if o.skipped:
            console.print("(this record existed: nothing ran; --force runs again)", soft_wrap=True, markup=False)
        for line in summary.lines(o.record, o.path, records_dir=records_dir):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    for line in summary.next_steps({o.record["method"] for o in outcomes}):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


@cli.command()
@click.argument("record", type=click.Path(path_type=Path))
@click.option("--tolerance", type=float, default=0.0, show_default=True,
              help="Largest metric difference still called a reproduction (0: bit for bit only).")
@click.option("--results", type=click.Path(path_type=Path), default=None,
              help="Keep the rerun's record here (default: a temporary folder, removed after).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--device", default=None, help="Run on this device instead of the record's (cpu | cuda).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def reproduce(record, tolerance, results, cache_dir, device, quiet):
    """Run RECORD again from its own resolved config and compare, metric by metric.

    Prints bit-exact, within tolerance or different, each metric recorded and rerun, whether the
    teachers were the record's own, and every difference in code revision, versions, threads or CPU
    kernels. Exit status 0 when the numbers reproduce (bit-exact or within --tolerance), 1 when
    they differ, 2 for a record that cannot be rerun.
    """
    from dfbench.api.progress import Reporter
    from dfbench.app import reproduce as repro
    from dfbench.app.records import pin_code_state

    held = None if str(device or "").startswith("cuda") else _record_kernels(record)
    pin_code_state()
    _plugins()
    try:
        outcome = repro.reproduce(record, results=results, tolerance=tolerance, cache_dir=cache_dir, device=device,
                                  reporter=Reporter(enabled=False) if quiet else Reporter())
    except KeyboardInterrupt as exc:
        _interrupted(exc, False)
    for line in outcome.lines():
        click.echo(line)
    if held:
        click.echo(f"  CPU kernels held at the record's {held} on this {kernels_native()} CPU (dfbench --cpu-kernels)")
    if outcome.verdict == "different":
        sys.exit(1)


def _record_kernels(path: Path) -> str | None:
    """Hold the CPU kernels at the record's when this CPU's are larger and torch has not loaded yet:
    the capability held to, else None (the record is read as plain JSON, before torch)."""
    from dfbench.app import cpu_kernels

    try:
        env = json.loads(Path(path).read_text(encoding="utf-8")).get("env") or {}
    except (OSError, ValueError, AttributeError):
        return None  # reproduce itself says what is wrong with the file
    if str(env.get("device", "cpu")).startswith("cuda"):
        return None
    choice = cpu_kernels.for_record(env.get("cpu") if isinstance(env.get("cpu"), dict) else None)
    if choice == "native":
        return None
    try:
        return cpu_kernels.use(choice)
    except DfbenchError:  # torch already loaded (an in-process caller): the rerun names the difference
        return None


def kernels_native() -> str:
    from dfbench.app import cpu_kernels

    return cpu_kernels.native_capability() or "unknown"


@cli.command()
@click.argument("queries", type=click.Path(path_type=Path))
@click.argument("query_labels", type=click.Path(path_type=Path))
@click.argument("gallery", type=click.Path(path_type=Path))
@click.argument("gallery_labels", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON with the same metric keys as run records.")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | auto.")
def evaluate(queries, query_labels, gallery, gallery_labels, as_json, device):
    """Score any model's embeddings (.npy, N x D floats; labels N integers) with dfbench's metrics."""
    from dfbench.train.metrics import evaluate_arrays
    from dfbench.train.reproducibility import choose_device

    result = evaluate_arrays(queries, query_labels, gallery, gallery_labels, device=choose_device(device))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        click.echo(f"{k}\t{v:.6f}" if isinstance(v, float) else f"{k}\t{v}")


@cli.command()
@click.option("--results", type=click.Path(path_type=Path), help="Folder of run records [default: the committed records, leaderboards/records].")
@click.option("--out", type=click.Path(path_type=Path), help="Where the markdown goes [default: the folder above the committed records, else ./leaderboards].")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the files differ from what the records produce.")
@click.option("--suites", "suites_dir", type=click.Path(path_type=Path),
              help="Suite folder: suites with 'leaderboard: own' get their own table; reported/*.yaml adds papers' numbers [default: ./benchmarks, else the checkout's].")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv", "json"]), default="md", show_default=True,
              help="md: write the markdown files; html: write the browsable site (sortable tables, a page per row) in --out "
                   "[default: ./site]; csv or json: print the per-dataset rows on stdout (writes nothing).")
def leaderboard(results, out, check, suites_dir, fmt):
    """Build leaderboards from run records only.

    Rows are ranked by mAP@all only with two or more seeds and a profile other than smoke; the
    others are shown unranked and marked (n=1, smoke).
    """
    from dfbench.app.leaderboard import build_leaderboards

    _plugins()
    if fmt == "html":
        from dfbench.app.site import build_site

        if check:
            raise DfbenchError("--check compares the markdown files; the site is built fresh each time. Drop --check, or use --format md.")
        site = build_site(results, out=out, suites_dir=suites_dir)
        click.echo(f"site: {site.out / 'index.html'} ({len(site.pages)} pages, {len(site.assets)} files from the records); "
                   f"open it in a browser, or serve the folder from any static host")
        return
    built = build_leaderboards(results, out=out, suites_dir=suites_dir, check=check, fmt=fmt)
    if built.export is not None:
        click.echo(built.export, nl=False)
    elif built.stale:
        click.echo(f"Leaderboards out of date: {', '.join(built.stale)}. Run 'dfbench leaderboard --results {built.results} --out {built.out}'.", err=True)
        sys.exit(1)
    elif check:
        click.echo(f"{len(built.files)} leaderboard files in {built.out} match the records in {built.results}.")
    else:
        for path in built.written:
            click.echo(str(path))


@cli.command()
@click.argument("suite", required=False)
@click.option("--suite", "suite_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Your own suite file (instead of SUITE).")
@click.option("--shard", help="Run only shard i of n (i/n, 1-based): n machines together run the grid once.")
@click.option("--seed", "only_seeds", type=int, multiple=True, help="Run only these of the suite's seeds (repeatable); the leaderboard still expects them all.")
@click.option("--method", "only_methods", multiple=True, help="Run only the rows of these methods (a method name or a row's label; repeatable).")
@click.option("--dry-run", is_flag=True, help="List the runs (and whether each is done) without running.")
@click.option("--force", is_flag=True, help="Run again even when completed records exist (each is replaced only if its rerun completes).")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help="Results folder.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Data root for every run of the suite.")
@click.option("--device", default="auto", show_default=True)
@click.option("--logger", "loggers", multiple=True, metavar="NAME", help="Also send every run's events to this logger (repeatable).")
@click.option("--cache-dir", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def bench(suite, suite_file, shard, only_seeds, only_methods, dry_run, force, results, data_root, device, loggers, cache_dir, quiet):
    """Run a suite: a grid of methods x datasets x seeds, and print its results table.

    SUITE is a suite's name (found in ./benchmarks, else among the suites shipped with dfbench:
    smoke, shapes, qd-cifar10, ...) or a file; --suite FILE runs your own. Completed runs are
    skipped, a failed run is recorded (status failed) and the grid goes on.
    """
    from dfbench.app import interrupts, suites
    from dfbench.api.progress import Reporter
    from dfbench.app.library import run_suite
    from dfbench.app.records import pin_code_state

    pin_code_state()  # before any plugin module is imported: records name the code the process started with
    system = _plugins()
    if bool(suite) == bool(suite_file):
        raise DfbenchError("Give one suite: a name (e.g. 'dfbench bench smoke') or your own file with --suite FILE.")
    spec = suites.load_suite(suite_file if suite_file else suites.find_suite(suite), system.registry("methods").names())
    if not dry_run and not str(device).startswith("cuda"):
        _suite_kernels(spec, quiet)
    reporter = Reporter(enabled=False) if quiet or dry_run else Reporter()  # a dry run reports no "done"
    try:
        result = run_suite(spec, shard=shard, seeds=only_seeds, methods=only_methods, force=force, dry_run=dry_run,
                           results=results, data_root=data_root, device=device, cache_dir=cache_dir, reporter=reporter,
                           loggers=list(loggers))
    except KeyboardInterrupt as exc:
        _fail_interrupted(f"{interrupts.what(exc)}. Run the same command again: finished runs are skipped, and the "
                          "interrupted one resumes from its last checkpoint if it saved one.", exc)
    if dry_run:  # a dry run validates every row: one whose config does not resolve is listed, and fails the command
        invalid = [r for r in result.runs if r.path is None]
        for r in result.runs:
            click.echo(f"{r.status}\t{r.name}\t{r.path}" if r.path is not None else f"invalid\t{r.name}\t{r.error}")
        click.echo(f"dry run of suite {spec.name}: nothing ran; {len(result.runs)} runs listed, {result.todo()} to do"
                   + (f", {len(invalid)} invalid." if invalid else "."))
        if invalid:
            raise DfbenchError(f"{len(invalid)} of the {len(result.runs)} runs of suite {spec.name} are invalid (listed above as "
                               f"'invalid'); the first, {invalid[0].name}: {invalid[0].error} Fix the suite file.")
        return
    _bench_table(spec.name, [(r.item.label, r.path, r.status == "skipped") for r in result.runs if r.path is not None])
    click.echo(f"suite {spec.name}: {result.count('completed')} completed, {result.count('skipped')} skipped, "
               f"{result.count('failed')} failed ({len(result.runs)} runs{' in this shard' if shard else ''})")
    if result.failed():
        sys.exit(1)


def _suite_kernels(spec, quiet: bool) -> str | None:
    """Hold the CPU kernels at the suite's ``cpu_kernels`` unless the command chose its own: the
    capability held to, or None. A CPU that cannot hold them runs its own, with a warning that its
    teachers will not be the committed records' bit for bit."""
    from dfbench.app import cpu_kernels

    chosen = (click.get_current_context().find_root().obj or {}).get("cpu_kernels")
    if spec.cpu_kernels == "native" or chosen is not None:
        if chosen is not None and chosen != spec.cpu_kernels != "native" and not quiet:
            click.echo(f"Note: suite {spec.name} holds its CPU kernels at {spec.cpu_kernels.upper()}; this command's "
                       f"--cpu-kernels {chosen} runs instead, so its teachers may differ from the suite's records.", err=True)
        return None
    try:
        held = cpu_kernels.use(spec.cpu_kernels)
    except DfbenchError as exc:
        click.echo(f"Warning: suite {spec.name} holds its CPU kernels at {spec.cpu_kernels.upper()} so that its rows train "
                   f"the same teachers on every CPU, but here they cannot be held ({exc}) The runs use this CPU's own "
                   "kernels: their teachers will not match the suite's committed records bit for bit.", err=True)
        return None
    if held and not quiet:
        click.echo(f"CPU kernels held at the suite's {held} on this {kernels_native()} CPU (cpu_kernels in {spec.path.name})")
    return held


@cli.command()
@click.argument("row_a")
@click.argument("row_b")
@click.option("--dataset", "-d", required=True, help="The dataset both rows ran on.")
@click.option("--results", type=click.Path(path_type=Path), help="Folder of run records [default: the committed records, leaderboards/records].")
@click.option("--draws", type=click.IntRange(min=100), default=20000, show_default=True, help="Sign flips of the per-query permutation test.")
def compare(row_a, row_b, dataset, results, draws):
    """Is leaderboard row ROW_A above ROW_B, by how much, and how sure? (rows: suite labels, or
    method names of plain runs). Pairs them seed for seed and query for query, from the records and
    their per-query files only (dfbench.app.compare)."""
    from dfbench.api.locations import committed_records
    from dfbench.app.compare import compare as compare_rows
    from dfbench.app.compare import markdown
    from dfbench.app.leaderboard import load_records

    results = results or committed_records() or Path("results")
    if not results.is_dir():
        raise DfbenchError(f"Results folder {results} does not exist. Pass --results DIR (where 'dfbench run' or 'dfbench bench' wrote its records).")
    click.echo(markdown([compare_rows(load_records(results), results, dataset, row_a, row_b, draws=draws)]))


def _bench_table(name: str, rows: list) -> None:
    """The results of a bench's runs, one row per run that has a record (read back from it)."""
    from dfbench.app.records import ResultStore

    outcomes = []
    for label, path, skipped in rows:
        record, _ = ResultStore(path.parent).read(path)
        if record is not None:
            outcomes.append((label, record, skipped))
    if outcomes:
        _console().print(_results_table(f"suite {name}", [(r, s, label) for label, r, s in outcomes]))


@cli.command()
@click.argument("records", nargs=-1, type=click.Path(path_type=Path))
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help="Folder of run records (when no RECORDS are given).")
@click.option("--method", "methods", multiple=True, help="Only records of this method (repeatable).")
@click.option("--dataset", "datasets", multiple=True, help="Only records of this dataset (repeatable).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["completed", "failed", "running"]), help="Only records with this status (repeatable).")
@click.option("--seed", "seeds", type=int, multiple=True, help="Only records of this seed (repeatable).")
@click.option("--compare", is_flag=True, help="Put the selected records side by side: metrics, teachers, times and the config keys that differ.")
@click.option("--queries", "queries_of", type=click.Path(path_type=Path, dir_okay=False), help="Show the per-query outputs of this record: AP per class, worst and best queries.")
@click.option("--show", type=int, default=5, show_default=True, help="With --queries: how many worst and best queries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the records, the comparison, or the per-query rows).")
def results(records, results, methods, datasets, statuses, seeds, compare, queries_of, show, as_json):
    """List run records (filtered by method, dataset, status, seed), compare them, or read a run's
    per-query outputs.

    RECORDS are record files or folders of records; without them, every record under --results.
    """
    from dfbench.app import results as res

    if queries_of is not None:
        _show_queries(queries_of, show, as_json)
        return
    chosen = res.select(res.load(list(records), results), methods, datasets, statuses, seeds)
    if not chosen:
        raise DfbenchError("No run record matches: check the filters, or give --results DIR (where 'dfbench run' wrote its records).")
    if compare:
        if len(chosen) < 2:
            raise DfbenchError(f"--compare needs two or more records; the filters select {len(chosen)}: widen them or name the record files.")
        rows = res.compare_rows(chosen)
        if as_json:
            click.echo(json.dumps([{"field": f, "values": v} for f, v in rows], indent=2))
            return
        from rich.table import Table

        table = Table(title=f"{len(chosen)} records side by side")
        table.add_column("field")
        for i in range(len(chosen)):
            table.add_column(f"#{i + 1}", justify="right")
        for field, values in rows:
            table.add_row(escape(field), *(escape(v) for v in values))
        console = _console()
        console.print(table)
        for i, r in enumerate(chosen, start=1):
            console.print(f"#{i}: {r['_path']}", soft_wrap=True, markup=False, highlight=False)
        return
    if as_json:
        click.echo(json.dumps(chosen, indent=2))
        return
    console = _console()
    console.print(_results_table(f"{len(chosen)} records", [(r, False, None) for r in chosen]))
    for r in chosen:
        console.print(r["_path"], soft_wrap=True, markup=False, highlight=False)


def _show_queries(record_path: Path, show: int, as_json: bool) -> None:
    from dfbench.app import queries, results as res

    [record] = res.load_records_file(record_path)
    path = res.per_query_path(record)
    if not path.is_file():
        raise DfbenchError(f"{record_path} has no per-query outputs ({path} is missing): records written before dfbench saved them have none; run it again with --force.")
    rows = queries.load(path)
    if as_json:
        click.echo(json.dumps(rows))
        return
    from rich.table import Table

    classes = (record.get("data") or {}).get("classes") or []
    name = lambda label: escape(classes[label] if label < len(classes) else label)  # noqa: E731
    console = _console()
    mean = sum(r["AP"] for r in rows) / len(rows)
    console.print(f"{record['method']} on {record['dataset']}, seed {record['seed']}: {len(rows)} queries, mean AP {mean:.4f} (= mAP@all)", markup=False)
    table = Table(title="AP per class")
    for col in ("class", "queries", "mean AP"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for label, (n, ap) in sorted(res.per_class(rows).items(), key=lambda kv: kv[1][1]):
        table.add_row(name(label), str(n), f"{ap:.4f}")
    console.print(table)
    ranked = sorted(rows, key=lambda r: (r["AP"], r["query"]))
    for title, picked in (("worst queries", ranked[:show]), ("best queries", ranked[::-1][:show])):
        table = Table(title=title)
        gallery = ((record.get("data") or {}).get("modalities") or {})
        plural = next((m.get("plural") for m in gallery.values() if isinstance(m, dict) and m.get("role") == "gallery"), "gallery items")
        for col in ("query", "class", "AP", f"top gallery ids (test {plural}, best first)"):
            table.add_column(col)
        for r in picked:
            table.add_row(str(r["query"]), name(r["label"]), f"{r['AP']:.4f}", " ".join(map(str, r["top"])))
        console.print(table)
    console.print(f"all rows: {path} (gzipped CSV: query, label, AP, top)", soft_wrap=True, markup=False, highlight=False)


@cli.command(name="check-plugin")
@click.argument("name")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every check (determinism: twice with it).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache for teachers and generated data [default: $DFBENCH_CACHE or ~/.cache/dfbench].")
@click.option("--json", "as_json", is_flag=True, help="Print {plugin, passed, counts, checks} as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def check_plugin(name, device, seed, cache_dir, as_json, quiet):
    """Check plugin NAME's components against their interface contracts (smoke profile, tiny data).

    Prints a pass/fail table per component and contract (shapes, dtypes, devices, determinism under
    a seed, finite losses, smoke runs); exits 1 when a contract fails. NAME as in 'dfbench plugins'.
    """
    from dfbench.app import conformance

    _plugins()
    log = None if quiet else (lambda message: click.echo(message, err=True))
    results = conformance.check_plugin(name, device=device, seed=seed, cache_dir=cache_dir, log=log)
    if as_json:
        click.echo(json.dumps(conformance.report(name, results), indent=2))
    else:
        conformance.print_table(name, results, _console())
    if conformance.summary(results)[conformance.FAIL]:
        sys.exit(1)


@cli.command(name="new-plugin")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(path_type=Path), default=Path("."), show_default=True, help="Folder to create dfbench-NAME in.")
def new_plugin(name, parent):
    """Create dfbench-NAME: an installable plugin package with a minimal method and a passing test.

    The method (NAME-pixels) is the smallest plain Method: no teachers, no training; replace its
    fit() with yours (docs/plugins.md).
    """
    from dfbench.app.scaffold import create, package_name

    root = create(name, parent)
    click.echo(f"created {root} (package {package_name(name)}, method {name}-pixels). Next:")
    for line in (f"pip install -e {root}", f"cd {root} && python -m pytest -q", f"dfbench check-plugin {name}"):
        click.echo(f"  {line}")


def _register_plugin_commands():
    try:
        from dfbench.api.plugins import get_plugins

        get_plugins().register_commands(cli)
    except Exception as exc:  # never let a plugin break the CLI
        click.echo(f"warning: plugin commands could not be registered: {exc}", err=True)


_register_plugin_commands()


def main():
    from dfbench.app.interrupts import InterruptExit, exit_now, install

    install()  # Ctrl-C and SIGTERM: a message and exit 130 / 143 (dfbench.app.interrupts)
    try:
        try:
            cli(prog_name="dfbench")
        except Exception as exc:  # a crash that an interrupt caused is the interrupt
            _interrupt_behind(exc)
            raise
    except InterruptExit as exc:  # 130 / 143 for certain, whenever the signal came (exit_now says why)
        exit_now(exc.code)


if __name__ == "__main__":
    main()
