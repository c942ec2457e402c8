"""The `promptsearch` command line (Typer + Rich). `cli.py` at the repo root runs the same app.

Each command parses its options, calls the library (`queries` for what a report shows) and prints.
Every error a user can cause ends with one line on stderr and a non-zero exit; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from promptsearch.errors import SpaceError, UserError
from promptsearch.logs import quiet_libraries
from promptsearch.store import DEFAULT_URL

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from promptsearch.queries import StudyStatus, StudyTemplates, TemplateStanding
    from promptsearch.recipe import Recipe
    from promptsearch.space import CorpusSpec

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
ablation_app = typer.Typer(no_args_is_help=True, help="Full ablations of promoted trials, on Slurm.")
app.add_typer(ablation_app, name="ablation")

# Wide when piped, so tables stay readable in logs and CI output.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str, typer.Option("--db", envvar="PROMPTSEARCH_DB", help="SQLAlchemy URL for Optuna's and promptsearch's tables.")
]
WorkdirOption = Annotated[Path, typer.Option("--workdir", help="Folder for generated data, logs and checkpoints.")]
DEFAULT_WORKDIR = Path("promptsearch-runs")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Search for the best recipe for synthetic pretraining data."""


def _describe_db(url: str) -> str:
    from sqlalchemy.engine import make_url

    from promptsearch.store import redact

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return redact(url)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _value(value: float | None) -> str:
    """An objective value or score: four decimals, or '-' when there is none."""
    return "-" if value is None else f"{value:.4f}"


def _values(values: Sequence[float] | None, count: int) -> list[str]:
    """A trial's objective values, or one '-' per objective when it has none."""
    return [f"{v:.4f}" for v in values] if values else ["-"] * count


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> None:
    """Print a Rich table of already formatted cells."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)


# ------------------------------------------------------------------------------------------- space


@space_app.command("validate")
def space_validate(file: Path) -> None:
    """Check a search-space file; print every mistake with its YAML path and line."""
    from promptsearch.space import load_space

    space = load_space(file)
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
    console.print(f"{_describe_db(db)}: at schema {head}")


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
    rows = [(name, f"{row.means[name]:.4f}", f"{row.stds[name]:.4f}") for name in row.means]
    _table(("score", "mean", "std (noise floor)"), rows, title=f"{loaded.name}: {seeds} seeds")


# ------------------------------------------------------------------------------------------- study


@study_app.command("create")
def study_create(
    space_file: Path,
    db: DbOption = DEFAULT_URL,
    name: Annotated[str | None, typer.Option(help="Study name (default: the space's name).")] = None,
) -> None:
    """Create a study from a search-space file and enqueue its templates."""
    from promptsearch.study import create_study

    study = create_study(space_file, db, name)
    console.print(f"created study {study.study_name!r} in {_describe_db(db)}")


@study_app.command("start")
def study_start(
    study: Annotated[str, typer.Argument(help="Study name, or a space file (created on first start).")],
    db: DbOption = DEFAULT_URL,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (more than 1 needs PostgreSQL).")] = 1,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    heartbeat_seconds: Annotated[int, typer.Option(min=1, help="Optuna heartbeat interval.")] = 30,
    grace_seconds: Annotated[int, typer.Option(min=2, help="A RUNNING trial silent this long is re-run.")] = 90,
) -> None:
    """Run (or resume) a study until its trial budget is used; shows live progress."""
    import optuna

    from promptsearch.queries import running_stages
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
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"study {name}", total=total, completed=finished_count(existing))

        def update(current: optuna.Study) -> None:
            done = min(total, finished_count(current))
            progress.update(task, completed=done, description=f"study {name} [{running_stages(current)}]")

        with _ctrl_c_stops_the_study():
            start_study(name, options, on_progress=update)
        if STOP_REQUESTED.is_set():
            console.print("interrupted: finished trials and generations are saved; run the same command to resume")
            raise typer.Exit(130)
    final, _ = open_study(name, db)
    console.print(f"{finished_count(final)}/{total} trials finished in {time.monotonic() - started:.0f} s")
    console.print(f"database: {_describe_db(db)}   study: {name}   outputs: {options.workdir / name}")


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
    from promptsearch.study import STOP_REQUESTED

    STOP_REQUESTED.set()
    raise KeyboardInterrupt


@study_app.command("status")
def study_status(study: str, db: DbOption = DEFAULT_URL) -> None:
    """Show a study's trials: template, knobs, objective values, key metrics, state and reasons."""
    from promptsearch.queries import study_status as read_status
    from promptsearch.study import open_study

    status = read_status(*open_study(study, db))
    names = status.objectives
    goals = ", ".join(f"{n} {d}" for n, d in zip(names, status.directions, strict=True))
    columns = ["#", "state", "template", "generator", "temp", "top_p", "N", "mix", *names]
    columns += [*(f"{n} Δbest/σ" for n in status.noise), "prefix@10", "num.recall", "seconds", "note"]
    rows = [
        [
            *(str(t.number), t.state, _fmt(t.template), _fmt(t.generator), _fmt(t.temperature), _fmt(t.top_p)),
            *(_fmt(t.best_of_n), _fmt(t.mix_ratio), *_values(t.values, len(names))),
            *("-" if d is None else f"{d:+.1f}" for d in t.from_best.values()),
            *(_fmt(t.prefix_10), _fmt(t.number_recall), "-" if t.seconds is None else f"{t.seconds:.0f}", t.note),
        ]
        for t in status.trials
    ]
    _table(columns, rows, title=f"study {study} ({goals})")
    split = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in status.stage_seconds.items())
    console.print(f"generated {status.completion_tokens} completion tokens; time by stage: {split or '-'}")
    if status.noise:
        floor = ", ".join(f"{n} {s:.4f}" for n, s in status.noise.items())
        console.print(f"noise floor (std over training seeds): {floor}")
    elif status.needs_calibration:
        console.print(f"no noise floor yet: run `promptsearch proxy calibrate --study {study}`")
    _print_ablations(status)


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
            _fmt(r.macro),
            _fmt(r.micro),
        )
        for r in status.ablations
    ]
    _table(("#", "profile", "promoted by", "proxy score", "state", "macro", "micro"), rows, title="full ablations")
    for a in status.agreements:
        console.print(
            f"calibration of proxy {a.proxy_profile} against {a.profile} ({a.trials} trials): "
            f"Kendall tau {_fmt(a.kendall_tau)}, pairwise accuracy {_fmt(a.pairwise_accuracy)}"
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
    _table(("study", "trials", "directions", "rated", "started"), rows)


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


# --------------------------------------------------------------------------------------- ablations

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="Ablation profile in proxies/ or a YAML path (default: the space's).")
]
ProfileNameOption = Annotated[
    str | None,
    typer.Option("--profile", help="Name of the ablation profile the trial was promoted to (default: latest)."),
]


@app.command("promote")
def promote(
    study: str,
    trial: Annotated[int | None, typer.Argument(help="Trial number; omit to apply the space's promotion rule.")] = None,
    profile: ProfileOption = None,
    db: DbOption = DEFAULT_URL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Promote a trial (or what the promotion rule selects) to a full ablation and write its bundle."""
    from promptsearch.promote import promote as promote_trials
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    quiet_libraries(workdir)  # the bpe tokenizer of a cpu-smoke bundle reads the mix-in with datatrove
    rows = promote_trials(loaded, store, workdir.resolve(), trial, profile)
    if not rows:
        console.print("nothing new to promote")
    for row in rows:
        console.print(
            f"promoted trial {row.trial_number} ({row.promoted_by}, proxy score {row.proxy_objective:.4f}) "
            f"to {row.profile}: bundle {row.bundle_dir}"
        )


@ablation_app.command("submit")
def ablation_submit(
    study: str,
    trial: int,
    profile: ProfileNameOption = None,
    db: DbOption = DEFAULT_URL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Submit a promoted trial's chain: sbatch with --dependency=afterok, job ids recorded as they come."""
    from promptsearch.ablation.bundle import load_bundle
    from promptsearch.ablation.slurm import submit
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    ablation = store.ablation(study, trial, profile)
    quiet_libraries(workdir)
    jobs = submit(load_bundle(Path(ablation.bundle_dir)), ablation, store)
    for job in jobs:
        after = f" (afterok:{job.depends_on})" if job.depends_on else ""
        console.print(f"{job.stage}: job {job.job_id}{after}")


@ablation_app.command("status")
def ablation_status(
    study: str,
    trial: int,
    profile: ProfileNameOption = None,
    db: DbOption = DEFAULT_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until every job has finished.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 3600,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Show the chain's jobs and states (squeue, then sacct / sacct -c); a failed job's log tail. Exit 1 if
    the chain failed or was cancelled."""
    from promptsearch.ablation.slurm import FAILED_STATES, TERMINAL_STATES, log_tail, refresh
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    ablation = store.ablation(study, trial, profile)
    deadline = time.monotonic() + timeout
    rows = refresh(ablation, store)
    while wait and any(r.state not in TERMINAL_STATES for r in rows) and time.monotonic() < deadline:
        time.sleep(interval)
        rows = refresh(ablation, store)
    ablation = store.ablation(study, trial, ablation.profile)
    table = Table(
        "stage", "job", "after", "state", "reason", "exit", title=f"{study} trial {trial}: {ablation.profile}"
    )
    for r in rows:
        reason = r.reason if r.reason not in ("", "None") else "-"  # squeue prints None for no reason
        table.add_row(r.stage, r.job_id, r.depends_on or "-", r.state, reason, r.exit_code or "-")
    console.print(table)
    console.print(f"chain: {ablation.state}   bundle: {ablation.bundle_dir}")
    for r in rows:
        if r.state in FAILED_STATES:
            path, tail = log_tail(r)
            console.print(f"{r.stage} (job {r.job_id}) {r.state}; last lines of {path}:", highlight=False)
            console.print(tail or "(empty)", markup=False, highlight=False)
    if wait and any(r.state not in TERMINAL_STATES for r in rows):
        raise UserError(f"jobs still running after {timeout:.0f} s")
    if ablation.state in ("FAILED", "CANCELLED"):
        raise typer.Exit(1)


@ablation_app.command("cancel")
def ablation_cancel(study: str, trial: int, profile: ProfileNameOption = None, db: DbOption = DEFAULT_URL) -> None:
    """scancel the chain's unfinished jobs."""
    from promptsearch.ablation.slurm import cancel
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    cancelled = cancel(store.ablation(study, trial, profile), store)
    console.print(f"cancelled {', '.join(cancelled)}" if cancelled else "no unfinished job to cancel")


@ablation_app.command("ingest")
def ablation_ingest(study: str, trial: int, profile: ProfileNameOption = None, db: DbOption = DEFAULT_URL) -> None:
    """Read the evaluation's lighteval results JSON and attach the scores to the trial; recalibrate."""
    from promptsearch.ablation.results import ingest
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    ablation = store.ablation(study, trial, profile)
    scores = ingest(loaded, store, ablation)
    rows = [
        *((name, f"{value:.4f}") for name, value in scores.tasks.items()),
        *((f"category {name}", f"{value:.4f}") for name, value in scores.categories.items()),
        ("macro", f"{scores.macro:.4f}"),
        ("micro", f"{scores.micro:.4f}"),
    ]
    _table(("task", "score"), rows, title=f"{study} trial {trial}: {ablation.profile}")


# --------------------------------------------------------------------------------------- templates

templates_app = typer.Typer(no_args_is_help=True, help="A study's template pool, its proposals and lineage.")
app.add_typer(templates_app, name="templates")


def _templates(study: str, db: str) -> StudyTemplates:
    from promptsearch.queries import study_templates
    from promptsearch.study import open_study

    return study_templates(*open_study(study, db))


@templates_app.command("list")
def templates_list(study: str, db: DbOption = DEFAULT_URL) -> None:
    """The pool: every template with its origin, parents, trials and best score; then proposal counts."""
    pool = _templates(study, db)
    rows = [
        (
            str(s.template.id),
            s.template.name,
            s.template.family,
            s.template.origin if s.operator is None else f"{s.template.origin} ({s.operator})",
            ", ".join(map(str, s.template.parents)) or "-",
            str(len(s.trials)),
            str(s.finished),
            _value(s.best),
        )
        for s in pool.templates
    ]
    _table(("id", "name", "family", "origin", "parents", "trials", "finished", f"best {pool.objectives[0]}"), rows)
    if pool.proposals:
        counts = pool.proposal_counts().items()
        summary = ", ".join(f"{status}{' ' + reason if reason else ''} {n}" for (status, reason), n in counts)
        console.print(f"{len(pool.proposals)} proposal(s): {summary}")


@templates_app.command("show")
def templates_show(
    study: str, template: Annotated[str, typer.Argument(help="Template id or name.")], db: DbOption = DEFAULT_URL
) -> None:
    """One template: its text, how it was proposed (operator, parents, feedback, DSPy prompt, response), its trials."""
    pool = _templates(study, db)
    standing = pool.find(template)
    if standing is None:
        raise UserError(f"study {study!r} has no template {template!r} (see `promptsearch templates list {study}`)")
    row = standing.template
    console.print(f"[bold]#{row.id} {row.name}[/bold] — family {row.family}, origin {row.origin}")
    console.print(row.text, markup=False, highlight=False)
    proposal = pool.proposal_of(row.id)
    if proposal is not None:
        console.print(
            f"\nproposed in round {proposal.round_index} by {proposal.operator} with {proposal.proposer_model}"
            f"@{proposal.proposer_revision} from template(s) {proposal.parent_template_ids or '-'} "
            f"(trials {proposal.parent_trials or '-'})"
        )
        for title, text in (
            ("feedback", proposal.feedback),
            ("prompt", "\n".join(m["content"] for m in proposal.prompt)),
            ("response", proposal.response),
        ):
            if text:
                console.print(f"--- {title}", highlight=False)
                console.print(text, markup=False, highlight=False)
    rows = [
        (
            str(t.number),
            t.state.name,
            *_values(t.values, len(pool.objectives)),
            str(t.user_attrs.get("pruned_reason", "")),
        )
        for t in standing.trials
    ]
    _table(("trial", "state", *pool.objectives, "note"), rows, title=f"trials of #{row.id}")


@templates_app.command("lineage")
def templates_lineage(study: str, db: DbOption = DEFAULT_URL) -> None:
    """The family tree: each proposed template under its first parent (a crossover names its other parent)."""
    from rich.tree import Tree

    pool = _templates(study, db)
    tree = Tree(f"study {study}")
    _grow(tree, pool, None)
    console.print(tree)


def _grow(node: Tree, pool: StudyTemplates, parent: int | None) -> None:
    for child in pool.children(parent):
        _grow(node.add(_lineage_label(child, pool.objectives[0])), pool, child.template.id)


def _lineage_label(s: TemplateStanding, objective: str) -> Text:
    from rich.text import Text

    how = s.template.origin if s.operator is None else s.operator
    also = f" × #{', #'.join(map(str, s.crossed_with))}" if s.crossed_with else ""
    best = _value(s.best)
    return Text(f"#{s.template.id} {s.template.name} [{how}{also}] best {objective} {best} ({len(s.trials)} trial(s))")


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
    table = Table("setting", a.name, b.name)
    for key, left, right in differences:
        table.add_row(key, _fmt(left), _fmt(right))
    console.print(table)
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
    from promptsearch.dashboard import serve
    from promptsearch.store import Store, redact
    from promptsearch.study import artifacts_dir

    storage = Store.open(db, create_if_empty=False).optuna_storage()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"warning: serving on {host}: anyone who can reach it can read and edit these studies")
    console.print(f"dashboard for {redact(db)} on http://{host}:{port}/dashboard (Ctrl-C stops it)")
    serve(storage, artifacts_dir(workdir), host, port)


# ----------------------------------------------------------------------------------------- metrics


@app.command("metrics")
def metrics(
    file: Annotated[Path, typer.Argument(help="JSONL (optionally .gz) or Parquet of (source, output) rows.")],
    source_key: Annotated[str, typer.Option(help="Field with the source document.")] = "source_text",
    output_key: Annotated[str, typer.Option(help="Field with the synthetic output.")] = "text",
    family: Annotated[str, typer.Option(help="Template family for format validity (faq, table, math, …).")] = "",
    embeddings: Annotated[bool, typer.Option(help="Also Vendi score and similarity (MiniLM).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Audit an existing synthetic dataset with the same metrics a trial gets."""
    import json

    from promptsearch.corpus import read_output_records
    from promptsearch.logs import warnings_only
    from promptsearch.measure import Embedder, measure, most_common_opening

    warnings_only()
    records = read_output_records(file, source_key, output_key, family)
    report = measure(records, Embedder() if embeddings else None)
    opening, share = most_common_opening([r.output for r in records])
    if as_json:
        console.print_json(json.dumps({"rows": len(records), "top_opening": opening, **report}))
        return
    rows = [*((name, f"{value:.4f}") for name, value in report.items()), ("top_opening", f"{opening!r} ({share:.0%})")]
    _table(("metric", "value"), rows, title=f"{file} ({len(records)} rows)")


# ---------------------------------------------------------------------------------------- generate


@app.command("generate")
def generate(
    input: Annotated[str, typer.Option("--input", help="File or folder (jsonl/parquet/txt), or a Hub dataset.")],
    output: Annotated[Path, typer.Option("--output", help="Output folder (data/, checkpoints/, logs/).")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe YAML from `promptsearch export`.")] = None,
    space: Annotated[Path | None, typer.Option(help="Search space, with --template, instead of a recipe.")] = None,
    template: Annotated[str | None, typer.Option(help="Template name (with --space).")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator name in the space (default: the first).")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    best_of_n: Annotated[int, typer.Option(min=1, max=64)] = 1,
    input_format: Annotated[str, typer.Option(help="auto|jsonl|parquet|text|hub|embedded")] = "auto",
    text_key: Annotated[str, typer.Option(help="Text field of jsonl/parquet/hub rows.")] = "text",
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many documents.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or parquet")] = "jsonl",
    tasks: Annotated[int, typer.Option(min=1, help="datatrove tasks (shards of the input).")] = 1,
    chunk_size: Annotated[int, typer.Option(min=1, help="Documents per checkpointed output chunk.")] = 100,
    executor: Annotated[str, typer.Option(help="local (this process) or slurm (a job array of --tasks)")] = "local",
    partition: Annotated[str, typer.Option(help="Slurm partition (--executor slurm).")] = "debug",
    time_limit: Annotated[str, typer.Option("--time", help="Slurm time limit per task.")] = "01:00:00",
    cpus_per_task: Annotated[int, typer.Option(min=1, help="Slurm CPUs per task.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="Slurm GPUs per task's node (vLLM).")] = 0,
    venv: Annotated[
        str | None, typer.Option(help="bin/activate the Slurm jobs source (default: this environment's)")
    ] = None,
) -> None:
    """Generate a synthetic dataset from a recipe (or a space's template); resumable."""
    from promptsearch.corpus import input_corpus
    from promptsearch.embedded import serving_plan
    from promptsearch.generate import chosen_recipe, generate_dataset
    from promptsearch.rephrase import GeneratorServers

    if output_format not in ("jsonl", "parquet"):
        raise UserError(f"--format must be jsonl or parquet (got {output_format!r})")
    knobs = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "best_of_n": best_of_n}
    chosen = chosen_recipe(recipe, space, template, generator, **knobs)
    corpus = input_corpus(input, input_format, text_key, limit)
    quiet_libraries(output)
    if executor == "slurm":
        slurm = {"partition": partition, "time": time_limit, "tasks": tasks, "cpus_per_task": cpus_per_task}
        _generate_on_slurm(
            chosen, corpus, output, slurm | {"gpus_per_node": gpus_per_node}, venv, output_format, chunk_size
        )
        return
    if executor != "local":
        raise UserError(f"--executor must be local or slurm (got {executor!r})")
    columns = (TextColumn("generating"), MofNCompleteColumn(), TextColumn("documents"), TimeElapsedColumn())
    with (
        Progress(*columns, console=console) as progress,
        # One embedded server: a local datatrove run shards its input by file, so a second replica would idle.
        GeneratorServers(output / "logs", serving_plan(max_replicas=1)) as generators,
    ):
        task = progress.add_task("generate", total=limit)
        generate_dataset(
            chosen,
            corpus,
            output,
            generators,
            output_format=output_format,
            tasks=tasks,
            records_per_chunk=chunk_size,
            on_document=lambda: progress.advance(task),
        )
    console.print(f"wrote {output / 'data'} (template {chosen.template_name}, generator {chosen.generator.name})")


def _generate_on_slurm(
    recipe: Recipe,
    corpus: CorpusSpec,
    output: Path,
    settings: dict[str, object],
    venv: str | None,
    output_format: str,
    chunk_size: int,
) -> None:
    from promptsearch.generate import slurm_job, submit_dataset_job
    from promptsearch.rephrase import GeneratorServers

    job = slurm_job(**settings)
    activate = venv or str(Path(sys.prefix) / "bin" / "activate")
    with GeneratorServers(output / "logs") as generators:
        job_id = submit_dataset_job(
            recipe, corpus, output.resolve(), generators, job, activate, output_format, chunk_size
        )
    if job_id == "-1":
        console.print(f"every task of {output} has already completed; nothing submitted")
    else:
        console.print(
            f"submitted Slurm job {job_id} ({job.tasks} datatrove task(s)); logs in {output / 'logs'}; "
            "run the same command again to resume what did not finish"
        )


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
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a click usage error, or a bug: one line unless --debug
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if debug:
            raise
        err_console.print(
            f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", highlight=False, markup=False
        )
        sys.exit(1)
