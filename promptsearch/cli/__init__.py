"""The `promptsearch` command line (Typer + Rich). `cli.py` at the repo root runs the same app.

Each command parses its options, calls the library (`queries` for what a report shows) and prints.
The study, space, database, proxy and export commands are here; `templates`, `ablation` and
`datasets` hold the other groups, `common` what they share. Every error a user can cause ends
with one line on stderr and a non-zero exit; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# typer ships its own click: its usage errors are these, not `click.ClickException`.
from typer._click.exceptions import ClickException as _ClickException

from promptsearch.cli.ablation import ablation_app, promote
from promptsearch.cli.common import (
    DEFAULT_URL,
    DEFAULT_WORKDIR,
    DbOption,
    WorkdirOption,
    console,
    describe_db,
    err_console,
    fmt,
    table,
    value,
    values,
)
from promptsearch.cli.datasets import generate, metrics
from promptsearch.cli.templates import templates_app
from promptsearch.errors import SpaceError, UserError
from promptsearch.logs import quiet_libraries

if TYPE_CHECKING:
    from promptsearch.queries import StudyStatus

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n")[0])
study_app = typer.Typer(no_args_is_help=True, help="Create, run and inspect studies.")
space_app = typer.Typer(no_args_is_help=True, help="Search-space files.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
app.add_typer(study_app, name="study")
app.add_typer(space_app, name="space")
app.add_typer(db_app, name="db")
proxy_app = typer.Typer(no_args_is_help=True, help="Proxy profiles.")
app.add_typer(proxy_app, name="proxy")
recipe_app = typer.Typer(no_args_is_help=True, help="Exported recipe files.")
app.add_typer(recipe_app, name="recipe")
app.add_typer(ablation_app, name="ablation")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Search for the best recipe for synthetic pretraining data."""


# ------------------------------------------------------------------------------------------- space


@space_app.command("validate")
def space_validate(file: Path) -> None:
    """Check a search-space file; print every mistake with its YAML path and line."""
    from promptsearch.corpus import check_space_corpora
    from promptsearch.logs import warnings_only
    from promptsearch.space import load_space

    warnings_only()  # reading the corpora: datatrove's INFO lines are not for this terminal
    space = load_space(file)
    check_space_corpora(space, file)
    console.print(
        f"{file}: ok — study {space.name!r}, {len(space.generators)} generator(s), "
        f"{len(space.templates.seeds) + len(space.templates.files)} template(s), "
        f"budget {space.budget.trials} trial(s)"
    )


# ---------------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_URL) -> None:
    """Create or migrate promptsearch's and Optuna's tables."""
    from promptsearch.store import upgrade

    head = upgrade(db)
    console.print(f"{describe_db(db)}: at schema {head}")


# ------------------------------------------------------------------------------------------- proxy


@proxy_app.command("calibrate")
def proxy_calibrate(
    space_file: Annotated[
        Path | None, typer.Option("--space", help="Space whose source documents make the synthetic part.")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Calibrate on a finished trial's own mixture instead.")] = None,
    trial: Annotated[int | None, typer.Option(help="The trial (default: the study's best).")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile name or YAML (default: the space's).")] = None,
    seeds: Annotated[int, typer.Option(min=3, help="Training seeds (and data orders).")] = 3,
    db: DbOption = DEFAULT_URL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Measure a proxy profile's noise floor: one mixture trained with several seeds (a trial's with
    --study, the space's source documents with --space)."""
    from promptsearch.proxy import calibrate
    from promptsearch.study import calibration_setup, record_noise_floor

    if (space_file is None) == (study is None):
        raise UserError("pass either --space FILE or --study NAME")
    quiet_libraries(workdir)
    store, mixture, loaded = calibration_setup(db, space_file, study, trial, profile)
    with console.status(f"training {loaded.name} with {seeds} seeds"):
        runs = calibrate(mixture, loaded, workdir.resolve() / "calibration" / loaded.name, seeds)
    row = record_noise_floor(store, loaded, runs)
    rows = [(name, value(row.means[name]), value(row.stds[name])) for name in row.means]
    table(("score", "mean", "std (noise floor)"), rows, title=f"{loaded.name}: {seeds} seeds")


# ------------------------------------------------------------------------------------------- study


def _study_name(value: str | None) -> str | None:
    """A study name follows the space's `name` pattern (it also names folders under the workdir)."""
    from promptsearch.space import study_name_problem

    if value is not None and (problem := study_name_problem(value)):
        raise typer.BadParameter(problem)
    return value


@study_app.command("create")
def study_create(
    space_file: Path,
    db: DbOption = DEFAULT_URL,
    name: Annotated[
        str | None, typer.Option(help="Study name (default: the space's name).", callback=_study_name)
    ] = None,
) -> None:
    """Create a study from a search-space file and enqueue its templates."""
    from promptsearch.logs import warnings_only
    from promptsearch.study import create_study

    warnings_only()  # as in `space validate`: the corpora are read
    study = create_study(space_file, db, name)
    console.print(f"created study {study.study_name!r} in {describe_db(db)}")


@study_app.command("start")
def study_start(
    study: Annotated[str, typer.Argument(help="Study name, or a space file (created on first start).")],
    db: DbOption = DEFAULT_URL,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (more than 1 needs PostgreSQL).")] = 1,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    heartbeat_seconds: Annotated[int, typer.Option(min=1, help="Optuna heartbeat interval.")] = 30,
    grace_seconds: Annotated[int, typer.Option(min=2, help="A RUNNING trial silent this long is re-run.")] = 90,
    executor: Annotated[str, typer.Option(help="local (processes here) or slurm (one job per worker).")] = "local",
    partition: Annotated[str | None, typer.Option(help="Slurm partition of the workers.")] = None,
    time_limit: Annotated[str | None, typer.Option("--time", help="Slurm time limit of a worker.")] = None,
    cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of a worker job.")] = None,
    mem_per_cpu_gb: Annotated[int | None, typer.Option(min=1, help="Memory per CPU of a worker job, GB.")] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs of a worker job (vLLM and the proxy use them).")] = None,
) -> None:
    """Run (or resume) a study until its trial budget is used; shows live progress. With --executor slurm,
    submit the workers as Slurm jobs against the study's PostgreSQL database and return; the space's `cluster:`
    section sets their resources, which these flags override."""
    import optuna

    from promptsearch.queries import describe_skipped, running_stages, source_skipped
    from promptsearch.study import (
        STOP_REQUESTED,
        RunOptions,
        finished_count,
        open_study,
        start_study,
        study_for,
        study_space,
    )

    quiet_libraries(workdir)
    name = study_for(study, db)
    existing, _ = open_study(name, db)
    total = study_space(existing).budget.trials
    options = RunOptions(
        db_url=db,
        workdir=workdir.resolve(),
        workers=workers,
        heartbeat_seconds=heartbeat_seconds,
        grace_seconds=grace_seconds,
    )
    if executor == "slurm":
        from promptsearch.cluster import submit_workers, worker_job

        overrides = {"partition": partition, "time": time_limit, "cpus_per_task": cpus, "gpus_per_node": gpus}
        job = worker_job(study_space(existing), overrides | {"mem_per_cpu_gb": mem_per_cpu_gb})
        for row in submit_workers(name, options, job):
            console.print(f"worker {row.worker_index}: job {row.job_id}, log {row.log_path}", highlight=False)
        console.print(f"`promptsearch study status {name}` shows progress; `promptsearch study stop {name}` cancels")
        return
    if executor != "local":
        raise UserError(f"--executor must be local or slurm (got {executor!r})")
    started = time.monotonic()
    with _study_progress() as progress:
        task = progress.add_task(f"study {name}", total=total, completed=finished_count(existing))
        skipped_shown = False

        def update(current: optuna.Study) -> None:
            nonlocal skipped_shown
            done = min(total, finished_count(current))
            progress.update(task, completed=done, description=f"study {name} [{running_stages(current)}]")
            if not skipped_shown:  # once, as soon as a trial has read the source (its rephrase stage records it)
                attrs = {t.number: t.user_attrs for t in current.get_trials(deepcopy=False)}
                if skipped := describe_skipped(source_skipped(attrs)):
                    progress.console.print(skipped)
                    skipped_shown = True

        with _ctrl_c_stops_the_study():
            start_study(name, options, on_progress=update)
        if STOP_REQUESTED.is_set():
            console.print("interrupted: finished trials and generations are saved; run the same command to resume")
            raise typer.Exit(130)
    final, store = open_study(name, db)
    console.print(f"{finished_count(final)}/{total} trials finished in {time.monotonic() - started:.0f} s")
    if skipped := describe_skipped(source_skipped(store.study_metrics(name))):
        console.print(skipped)
    console.print(f"database: {describe_db(db)}   study: {name}   outputs: {options.workdir / name}")


def _study_progress() -> Progress:
    """The live bar of `study start`: the running trials' stages, trials finished of the budget, time and ETA."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, transient=False)


@contextmanager
def _ctrl_c_stops_the_study() -> Iterator[None]:
    """asyncio.run (inside datatrove's InferenceRunner) swaps Python's default SIGINT handler for one that
    only cancels its main task, and a cancellation absorbed inside the pipeline loses the Ctrl-C. asyncio
    leaves a handler of our own in place: it raises wherever the main thread is."""
    previous = signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    from promptsearch.study import SIGNALS_HELD, STOP_REQUESTED

    STOP_REQUESTED.set()
    if not SIGNALS_HELD.is_set():  # else the worker stops as soon as its slot bookkeeping is done
        raise KeyboardInterrupt


@study_app.command("stop")
def study_stop(study: str, db: DbOption = DEFAULT_URL) -> None:
    """scancel the study's worker jobs on Slurm (their running trials are re-run by the next start)."""
    from promptsearch.cluster import stop_workers
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    cancelled = stop_workers(store, study)
    console.print(f"cancelled {', '.join(cancelled)}" if cancelled else "no worker job to cancel")


@study_app.command("status")
def study_status(study: str, db: DbOption = DEFAULT_URL) -> None:
    """Show a study's trials: template, knobs, objective values, key metrics, state and reasons."""
    from promptsearch.cluster import describe_workers
    from promptsearch.queries import describe_skipped
    from promptsearch.queries import study_status as read_status
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    status = read_status(loaded, store)
    names = status.objectives
    goals = ", ".join(f"{n} {d}" for n, d in zip(names, status.directions, strict=True))
    columns = ["#", "state", "template", "generator", "temp", "top_p", "N", "mix", *names]
    columns += [*(f"{n} Δbest/σ" for n in status.noise), "prefix@10", "num.recall", "seconds", "note"]
    rows = [
        [
            *(str(t.number), t.state, fmt(t.template), fmt(t.generator), fmt(t.temperature), fmt(t.top_p)),
            *(fmt(t.best_of_n), fmt(t.mix_ratio), *values(t.values, len(names))),
            *("-" if d is None else f"{d:+.1f}" for d in t.from_best.values()),
            *(fmt(t.prefix_10), fmt(t.number_recall), "-" if t.seconds is None else f"{t.seconds:.0f}", t.note),
        ]
        for t in status.trials
    ]
    table(columns, rows, title=f"study {study} ({goals})")
    split = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in status.stage_seconds.items())
    servers = f"generator servers started {status.generator_starts}, restarted {status.generator_restarts}"
    console.print(f"generated {status.completion_tokens} completion tokens ({servers}); time by stage: {split or '-'}")
    if skipped := describe_skipped(status.source_skipped):
        console.print(skipped)
    if status.noise:
        floor = ", ".join(f"{n} {value(s)}" for n, s in status.noise.items())
        console.print(f"noise floor (std over training seeds): {floor}")
    elif status.needs_calibration:
        console.print(f"no noise floor yet: run `promptsearch proxy calibrate --study {study}`")
    _print_suite_signal(status)
    _print_ablations(status)
    for line in describe_workers(store, study, loaded):  # workers on Slurm (study start --executor slurm)
        console.print(line, highlight=False)


def _print_suite_signal(status: StudyStatus) -> None:
    """Per suite score, its spread over the trials against the noise floor; the tasks above the SNR threshold and
    the tasks `proxy.suite_objective` reads."""
    if (signal := status.suite_signal) is not None:
        rows = [(r.name, fmt(r.category), r.metric, value(r.signal), value(r.noise), fmt(r.snr)) for r in signal.rows]
        seeds = "no calibration" if signal.calibration_seeds is None else f"{signal.calibration_seeds} seeds"
        title = f"suite signal-to-noise ({signal.trials} complete trials; noise: {signal.profile}, {seeds})"
        table(("task", "category", "metric", "signal (std)", "noise (std)", "SNR"), rows, title=title)
        above = ", ".join(status.snr_tasks) or "none"
        console.print(f"tasks with SNR >= {status.snr_threshold:g} on {status.snr_metric}: {above}", highlight=False)
    if (selection := status.suite_objective) is not None:
        choice = selection.choice
        snr = "" if choice.snr_study is None else f", SNR >= {choice.min_snr:g} on study {choice.snr_study}"
        console.print(
            f"proxy.suite_objective: macro {choice.metric} over {', '.join(selection.tasks)} "
            f"(chosen: {choice.tasks if choice.tasks == 'all' else ', '.join(choice.tasks)}{snr})",
            highlight=False,
        )


def _print_ablations(status: StudyStatus) -> None:
    """Promoted trials with their full-ablation scores, and how well the proxy predicted them."""
    if not status.ablations:
        return
    rows = [
        (
            str(r.trial_number),
            r.profile,
            r.promoted_by,
            f"{r.proxy_objective:.4f}",
            r.state,
            fmt(r.macro),
            fmt(r.micro),
        )
        for r in status.ablations
    ]
    table(("#", "profile", "promoted by", "proxy score", "state", "macro", "micro"), rows, title="full ablations")
    for a in status.agreements:
        console.print(
            f"calibration of proxy {a.proxy_profile} against {a.profile} ({a.trials} trials): "
            f"Kendall tau {fmt(a.kendall_tau)}, pairwise accuracy {fmt(a.pairwise_accuracy)}"
        )


@study_app.command("list")
def study_list(db: DbOption = DEFAULT_URL) -> None:
    """List the studies in the database; a study's review queue is its "rated" column, not a row."""
    from promptsearch.queries import study_list as read_list
    from promptsearch.store import Store

    rows = [
        (
            r.name,
            str(r.trials),
            ", ".join(r.directions),
            "-" if r.rated is None else f"{r.rated[0]}/{r.rated[1]}",
            r.started.isoformat(timespec="seconds") if r.started else "-",
        )
        for r in read_list(Store.open(db, create_if_empty=False))
    ]
    table(("study", "trials", "directions", "rated", "started"), rows)


@study_app.command("delete")
def study_delete(
    study: str, db: DbOption = DEFAULT_URL, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Delete a study, its trials and its metrics (the generation cache is kept)."""
    from promptsearch.study import delete_study

    if not yes and not typer.confirm(f"delete study {study!r} and its trials?"):
        raise typer.Exit(1)
    delete_study(study, db)
    console.print(f"deleted study {study!r}")


app.command("promote")(promote)
app.add_typer(templates_app, name="templates")


# ------------------------------------------------------------------------------------------ export


@app.command("export")
def export(
    study: str,
    db: DbOption = DEFAULT_URL,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the recipe files.")] = Path("recipes"),
    top: Annotated[int | None, typer.Option("--top", min=1, help="The K best trials (first objective).")] = None,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="The Pareto set (the default when multi-objective).")
    ] = False,
    file_format: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Write the best trials as recipe files, each with a dataset card (Markdown)."""
    from promptsearch.export import export_recipes, select_trials
    from promptsearch.study import open_study

    if file_format not in ("yaml", "json"):
        raise UserError(f"--format must be yaml or json (got {file_format!r})")
    if top is not None and pareto:
        raise UserError("give --top K or --pareto, not both")
    loaded, store = open_study(study, db)
    for path in export_recipes(loaded, store, select_trials(loaded, top, pareto), out, file_format):
        console.print(f"wrote {path}")


@recipe_app.command("diff")
def recipe_diff(a: Path, b: Path) -> None:
    """Show every setting that differs between two recipe files (exit 1 if any does)."""
    from promptsearch.export import diff_recipes
    from promptsearch.recipe import read_recipe_document

    differences = diff_recipes(read_recipe_document(a), read_recipe_document(b))
    if not differences:
        console.print("the recipes are the same")
        return
    table(("setting", a.name, b.name), [(key, fmt(left), fmt(right)) for key, left, right in differences])
    raise typer.Exit(1)


@app.command("plot")
def plot(
    study: str,
    db: DbOption = DEFAULT_URL,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the PNG files.")] = Path("plots"),
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Optimization history, parameter importances, Pareto front and score vs cost, as PNG files and
    as study artifacts the dashboard shows."""
    from promptsearch.plots import save_study_plots
    from promptsearch.study import artifact_store, open_study

    loaded, _ = open_study(study, db)
    for path in save_study_plots(loaded, out, artifact_store(workdir)):
        console.print(f"wrote {path}")


@app.command("dashboard")
def dashboard(
    db: DbOption = DEFAULT_URL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    host: Annotated[
        str, typer.Option(help="Interface to bind; anything but loopback exposes the study.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
) -> None:
    """Serve optuna-dashboard on the study database, with the trials' samples, metrics and plots."""
    from promptsearch.dashboard import check_port, serve
    from promptsearch.store import Store, redact
    from promptsearch.study import artifacts_dir

    storage = Store.open(db, create_if_empty=False).optuna_storage()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"warning: serving on {host}: anyone who can reach it can read and edit these studies")
    check_port(host, port)
    console.print(f"dashboard for {redact(db)} on http://{host}:{port}/dashboard (Ctrl-C stops it)")
    serve(storage, artifacts_dir(workdir), host, port)


app.command("metrics")(metrics)
app.command("generate")(generate)


def _usage_line(exc: _ClickException) -> str:
    """click's own message (it names the option or argument), and where to read the usage."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{exc.format_message()}{hint}"


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SpaceError as exc:
        for message in exc.messages:
            err_console.print(f"{exc.path}: {message}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            raise
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except _ClickException as exc:  # a usage error: one line naming the option, exit 2
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            err_console.print(f"error: {_usage_line(exc)}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            raise
        err_console.print(
            f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", highlight=False, markup=False
        )
        sys.exit(1)
