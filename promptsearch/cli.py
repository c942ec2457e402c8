"""The `promptsearch` command line (Typer + Rich). `cli.py` at the repo root runs the same app.

Every error a user can cause ends with one line on stderr and a non-zero exit; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from promptsearch.errors import SpaceError, UserError

if TYPE_CHECKING:
    import optuna

    from promptsearch.space import CorpusSpec
    from promptsearch.store import Store

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
DEFAULT_DB = "sqlite:///promptsearch.db"
DEFAULT_WORKDIR = Path("promptsearch-runs")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Search for the best recipe for synthetic pretraining data."""


def _quiet_libraries(workdir: Path) -> None:
    """Library logs go to <workdir>/promptsearch.log; the terminal keeps the progress bar and errors."""
    import logging

    import optuna
    from loguru import logger

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()  # weight loading/saving bars would break the live progress display
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "promptsearch.log"
    logger.remove()
    logger.add(log_file, level="INFO")
    logger.add(sys.stderr, level="ERROR")
    optuna.logging.disable_default_handler()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s optuna: %(message)s"))
    optuna.logging.get_logger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    # asyncio reports tasks left behind by an interrupted InferenceRunner when they are collected
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    asyncio_logger.propagate = False


def _describe_db(url: str) -> str:
    from sqlalchemy.engine import make_url

    from promptsearch.store import redact

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return redact(url)


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
def db_upgrade(db: DbOption = DEFAULT_DB) -> None:
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
    db: DbOption = DEFAULT_DB,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Measure a proxy profile's noise floor: one mixture trained with several seeds (a trial's with
    --study, the space's source documents with --space)."""
    import hashlib
    import statistics

    from promptsearch.proxy import calibrate, calibration_mixture
    from promptsearch.proxy_profile import load_proxy_profile, proxy_profile_path
    from promptsearch.space import load_space
    from promptsearch.store import ProxyCalibrationRow, Store
    from promptsearch.study import open_study, study_space, trial_mixture

    if (space_file is None) == (study is None):
        raise UserError("pass either --space FILE or --study NAME")
    _quiet_libraries(workdir)
    if study is not None:
        loaded_study, store = open_study(study, db)
        space = study_space(loaded_study)
        mixture = trial_mixture(loaded_study, store, trial)
    else:
        space = load_space(space_file)
        store = Store.open(db)
        mixture = calibration_mixture(space)
    reference = profile or space.proxy
    if reference is None:
        raise UserError("the space has no proxy profile; pass --profile cpu-tiny")
    loaded = load_proxy_profile(proxy_profile_path(reference, Path.cwd()))
    with console.status(f"training {loaded.name} with {seeds} seeds"):
        runs = calibrate(mixture, loaded, workdir.resolve() / "calibration" / loaded.name, seeds)
    means = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    stds = {k: statistics.stdev(r[k] for r in runs) for k in runs[0]}
    store.add_calibration(
        ProxyCalibrationRow(
            profile=loaded.name,
            profile_hash=hashlib.sha256(loaded.model_dump_json().encode()).hexdigest(),
            seeds=seeds,
            means=means,
            stds=stds,
            runs=runs,
        )
    )
    table = Table("score", "mean", "std (noise floor)", title=f"{loaded.name}: {seeds} seeds")
    for name in means:
        table.add_row(name, f"{means[name]:.4f}", f"{stds[name]:.4f}")
    console.print(table)


# ------------------------------------------------------------------------------------------- study


@study_app.command("create")
def study_create(
    space_file: Path,
    db: DbOption = DEFAULT_DB,
    name: Annotated[str | None, typer.Option(help="Study name (default: the space's name).")] = None,
) -> None:
    """Create a study from a search-space file and enqueue its templates."""
    from promptsearch.study import create_study

    study = create_study(space_file, db, name)
    console.print(f"created study {study.study_name!r} in {_describe_db(db)}")


@study_app.command("start")
def study_start(
    study: Annotated[str, typer.Argument(help="Study name, or a space file (created on first start).")],
    db: DbOption = DEFAULT_DB,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (more than 1 needs PostgreSQL).")] = 1,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    heartbeat_seconds: Annotated[int, typer.Option(min=1, help="Optuna heartbeat interval.")] = 30,
    grace_seconds: Annotated[int, typer.Option(min=2, help="A RUNNING trial silent this long is re-run.")] = 90,
    executor: Annotated[str, typer.Option(help="local (processes here) or slurm (one job per worker).")] = "local",
    partition: Annotated[str, typer.Option(help="Slurm partition (--executor slurm).")] = "debug",
    time_limit: Annotated[str, typer.Option("--time", help="Slurm time limit of a worker.")] = "24:00:00",
    cpus: Annotated[int, typer.Option(min=1, help="CPUs of a worker job (--executor slurm).")] = 1,
    mem_per_cpu_gb: Annotated[int, typer.Option(min=1, help="Memory per CPU of a worker job, GB.")] = 4,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs of a worker job (vLLM and the proxy use them).")] = 0,
) -> None:
    """Run (or resume) a study until its trial budget is used; shows live progress. With --executor slurm,
    submit the workers as Slurm jobs against the study's PostgreSQL database and return."""
    import optuna

    from promptsearch.study import (
        STOP_REQUESTED,
        RunOptions,
        create_study,
        finished_count,
        open_study,
        start_study,
        study_space,
    )

    _quiet_libraries(workdir)
    name = study
    if study.endswith((".yaml", ".yml")) or Path(study).is_file():
        from promptsearch.space import load_space

        name = load_space(study).name
        try:
            open_study(name, db)
        except UserError:
            create_study(Path(study), db)
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
        from promptsearch.cluster import submit_workers
        from promptsearch.pipelines import SlurmJob

        job = SlurmJob(
            partition=partition, time=time_limit, cpus_per_task=cpus, mem_per_cpu_gb=mem_per_cpu_gb, gpus_per_node=gpus
        )
        for row in submit_workers(name, options, job):
            console.print(f"worker {row.worker_index}: job {row.job_id}, log {row.log_path}", highlight=False)
        console.print(f"`promptsearch study status {name}` shows progress; `promptsearch study stop {name}` cancels")
        return
    if executor != "local":
        raise UserError(f"--executor must be local or slurm (got {executor!r})")
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
            trials = current.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            stage = ", ".join(f"#{t.number} {t.user_attrs.get('stage', 'starting')}" for t in running) or "idle"
            progress.update(task, completed=min(total, finished_count(current)), description=f"study {name} [{stage}]")

        # asyncio.run (inside datatrove's InferenceRunner) swaps Python's default SIGINT handler for one
        # that only cancels its main task, and a cancellation absorbed inside the pipeline loses the
        # Ctrl-C. asyncio leaves a handler of our own in place: it raises wherever the main thread is.
        previous = signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
        try:
            start_study(name, options, on_progress=update)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, previous)
        if STOP_REQUESTED.is_set():
            console.print("interrupted: finished trials and generations are saved; run the same command to resume")
            raise typer.Exit(130)
    final, _ = open_study(name, db)
    console.print(f"{finished_count(final)}/{total} trials finished in {time.monotonic() - started:.0f} s")
    console.print(f"database: {_describe_db(db)}   study: {name}   outputs: {options.workdir / name}")


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    from promptsearch.study import STOP_REQUESTED

    STOP_REQUESTED.set()
    raise KeyboardInterrupt


@study_app.command("stop")
def study_stop(study: str, db: DbOption = DEFAULT_DB) -> None:
    """scancel the study's worker jobs on Slurm (their running trials are re-run by the next start)."""
    from promptsearch.cluster import stop_workers
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    cancelled = stop_workers(store, study)
    console.print(f"cancelled {', '.join(cancelled)}" if cancelled else "no worker job to cancel")


@study_app.command("status")
def study_status(study: str, db: DbOption = DEFAULT_DB) -> None:
    """Show a study's trials: template, knobs, objective values, key metrics, state and reasons."""
    import optuna

    from promptsearch.study import objective_noise, open_study

    loaded, store = open_study(study, db)
    names = loaded.metric_names or [f"objective_{i}" for i in range(len(loaded.directions))]
    noise = objective_noise(loaded, store)
    complete = loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = {
        n: (max if d == optuna.study.StudyDirection.MAXIMIZE else min)(t.values[i] for t in complete)
        for i, (n, d) in enumerate(zip(names, loaded.directions, strict=True))
        if complete
    }
    goals = ", ".join(f"{n} {d.name.lower()}" for n, d in zip(names, loaded.directions, strict=True))
    table = Table(title=f"study {study} ({goals})")
    for col in (
        "#",
        "state",
        "template",
        "generator",
        "temp",
        "top_p",
        "N",
        "mix",
        *names,
        *(f"{n} Δbest/σ" for n in noise),
        "prefix@10",
        "num.recall",
        "seconds",
        "note",
    ):
        table.add_column(col)
    for t in loaded.get_trials(deepcopy=False):
        p, u = t.params, t.user_attrs
        template = store.template(int(u["template_id"])).name if "template_id" in u else "-"
        values = [f"{v:.4f}" for v in t.values] if t.values else ["-"] * len(names)
        seconds = "-"
        if t.datetime_complete and t.datetime_start:
            seconds = f"{(t.datetime_complete - t.datetime_start).total_seconds():.0f}"
        note = u.get("pruned_reason") or ("interrupted" if u.get("interrupted") else "")
        if "retry_of" in u:
            note = f"re-run of #{u['retry_of']}"
        elif "failed_trial" in t.system_attrs:
            note = f"re-run of #{t.system_attrs['failed_trial']} (worker lost)"
        table.add_row(
            str(t.number),
            t.state.name,
            template,
            str(p.get("generator", "-")),
            _fmt(p.get("temperature")),
            _fmt(p.get("top_p")),
            str(p.get("best_of_n", "-")),
            _fmt(p.get("mix_ratio")),
            *values,
            *(
                f"{(t.values[names.index(n)] - best[n]) / sigma:+.1f}" if t.values and sigma else "-"
                for n, sigma in noise.items()
            ),
            _fmt(u.get("measure.unique_prefix_ratio_10")),
            _fmt(u.get("measure.number_recall")),
            seconds,
            note,
        )
    console.print(table)
    trials = loaded.get_trials(deepcopy=False)
    tokens = sum(int(t.user_attrs.get("rephrase.completion_tokens", 0)) for t in trials)
    stages = {}
    for t in trials:
        for key, value in t.user_attrs.items():
            if key.startswith("seconds."):
                stages[key.removeprefix("seconds.")] = stages.get(key.removeprefix("seconds."), 0.0) + value
    split = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in stages.items())
    console.print(f"generated {tokens} completion tokens; time by stage: {split or '-'}")
    if noise:
        console.print("noise floor (std over training seeds): " + ", ".join(f"{n} {s:.4f}" for n, s in noise.items()))
    elif any(n.startswith("proxy.") for n in names):
        console.print(f"no noise floor yet: run `promptsearch proxy calibrate --study {study}`")
    _print_ablations(loaded, store)
    from promptsearch.cluster import describe_workers

    for line in describe_workers(store, study, loaded):  # workers on Slurm (study start --executor slurm)
        console.print(line, highlight=False)


def _print_ablations(study: optuna.Study, store: Store) -> None:
    """Promoted trials with their full-ablation scores, and how well the proxy predicted them."""
    rows = store.ablations(study.study_name)
    if not rows:
        return
    table = Table("#", "profile", "promoted by", "proxy score", "state", "macro", "micro", title="full ablations")
    for r in rows:
        results = r.results or {}
        table.add_row(
            str(r.trial_number),
            r.profile,
            r.promoted_by,
            f"{r.proxy_objective:.4f}",
            r.state,
            _fmt(results.get("macro")),
            _fmt(results.get("micro")),
        )
    console.print(table)
    for proxy_profile in sorted({r.proxy_profile for r in rows}):
        for c in store.latest_ablation_calibrations(proxy_profile):
            console.print(
                f"calibration of proxy {proxy_profile} against {c.profile} ({c.trials} trials): "
                f"Kendall tau {_fmt(c.kendall_tau)}, pairwise accuracy {_fmt(c.pairwise_accuracy)}"
            )


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


@study_app.command("list")
def study_list(db: DbOption = DEFAULT_DB) -> None:
    """List the studies in the database; a study's review queue is its "rated" column, not a row."""
    from optuna.trial import TrialState

    from promptsearch.dashboard import review_study_name
    from promptsearch.store import Store

    storage = Store.open(db, create_if_empty=False).optuna_storage()
    studies = {s.study_name: s for s in storage.get_all_studies()}
    trials = {name: storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False) for name in studies}
    reviews = {review_study_name(name) for name in studies} & set(studies)
    table = Table("study", "trials", "directions", "rated", "started")
    for name, s in studies.items():
        if name in reviews:
            continue
        review = trials.get(review_study_name(name))
        rated = "-" if review is None else f"{sum(t.state == TrialState.COMPLETE for t in review)}/{len(review)}"
        started = [t.datetime_start for t in trials[name] if t.datetime_start]
        table.add_row(
            name,
            str(len(trials[name])),
            ", ".join(d.name.lower() for d in s.directions),
            rated,
            min(started).isoformat(timespec="seconds") if started else "-",
        )
    console.print(table)


@study_app.command("delete")
def study_delete(
    study: str, db: DbOption = DEFAULT_DB, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
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
    db: DbOption = DEFAULT_DB,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Promote a trial (or what the promotion rule selects) to a full ablation and write its bundle; print the
    chain's predicted GPU-hours."""
    from promptsearch.cost import format_prediction
    from promptsearch.promote import promote as promote_trials
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    _quiet_libraries(workdir)  # the bpe tokenizer of a cpu-smoke bundle reads the mix-in with datatrove
    rows = promote_trials(loaded, store, workdir.resolve(), trial, profile)
    if not rows:
        console.print("nothing new to promote")
    for row in rows:
        console.print(
            f"promoted trial {row.trial_number} ({row.promoted_by}, proxy score {row.proxy_objective:.4f}) "
            f"to {row.profile}: bundle {row.bundle_dir}"
        )
        console.print(format_prediction((row.cost or {})["predicted"]), highlight=False)


@ablation_app.command("submit")
def ablation_submit(
    study: str,
    trial: int,
    profile: ProfileNameOption = None,
    db: DbOption = DEFAULT_DB,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each job's script, resources and dependencies; submit nothing.")
    ] = False,
) -> None:
    """Submit a promoted trial's chain: sbatch with --dependency=afterok, job ids recorded as they come."""
    from promptsearch.ablation.bundle import load_bundle
    from promptsearch.ablation.slurm import dry_run as plan
    from promptsearch.ablation.slurm import format_plan, submit
    from promptsearch.cost import format_prediction
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    ablation = store.ablation(study, trial, profile)
    _quiet_libraries(workdir)
    if dry_run:
        bundle = load_bundle(Path(ablation.bundle_dir))
        console.print(format_plan(bundle, plan(bundle)), markup=False, highlight=False)
        if ablation.cost and ablation.cost.get("predicted"):
            console.print(format_prediction(ablation.cost["predicted"]), highlight=False)
        return
    jobs = submit(load_bundle(Path(ablation.bundle_dir)), ablation, store)
    for job in jobs:
        after = f" (afterok:{job.depends_on})" if job.depends_on else ""
        console.print(f"{job.stage}: job {job.job_id}{after}")


@ablation_app.command("status")
def ablation_status(
    study: str,
    trial: int,
    profile: ProfileNameOption = None,
    db: DbOption = DEFAULT_DB,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until every job has finished.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 3600,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Show the chain's jobs and states (squeue, then sacct / sacct -c); a failed job's log tail. Exit 1 if
    the chain failed or was cancelled."""
    from promptsearch.ablation.slurm import FAILED_STATES, TERMINAL_STATES, log_tail, refresh
    from promptsearch.cost import cost_comparison
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
    cost = Table("GPU-hours", "predicted", "actual", title="cost (actual: Slurm elapsed x GPUs, once jobs end)")
    for row in cost_comparison(ablation.cost, [r.stage for r in rows]):
        cost.add_row(*row)
    console.print(cost)
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
def ablation_cancel(study: str, trial: int, profile: ProfileNameOption = None, db: DbOption = DEFAULT_DB) -> None:
    """scancel the chain's unfinished jobs."""
    from promptsearch.ablation.slurm import cancel
    from promptsearch.study import open_study

    _, store = open_study(study, db)
    cancelled = cancel(store.ablation(study, trial, profile), store)
    console.print(f"cancelled {', '.join(cancelled)}" if cancelled else "no unfinished job to cancel")


@ablation_app.command("ingest")
def ablation_ingest(study: str, trial: int, profile: ProfileNameOption = None, db: DbOption = DEFAULT_DB) -> None:
    """Read the evaluation's lighteval results JSON and attach the scores to the trial; recalibrate."""
    from promptsearch.ablation.results import ingest
    from promptsearch.ablation.slurm import refresh
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    ablation = store.ablation(study, trial, profile)
    evaluate = [r for r in refresh(ablation, store) if r.stage == "evaluate"]
    if not evaluate or evaluate[0].state != "COMPLETED":
        state = evaluate[0].state if evaluate else "not submitted"
        raise UserError(f"the evaluate job of trial {trial} is {state}; ingest once it is COMPLETED")
    scores = ingest(loaded, store, ablation)
    table = Table("task", "score", title=f"{study} trial {trial}: {ablation.profile}")
    for name, value in scores.tasks.items():
        table.add_row(name, f"{value:.4f}")
    for name, value in scores.categories.items():
        table.add_row(f"category {name}", f"{value:.4f}")
    table.add_row("macro", f"{scores.macro:.4f}")
    table.add_row("micro", f"{scores.micro:.4f}")
    console.print(table)


# --------------------------------------------------------------------------------------- templates

templates_app = typer.Typer(no_args_is_help=True, help="A study's template pool, its proposals and lineage.")
app.add_typer(templates_app, name="templates")


def _template_scores(study: str, db: str) -> tuple[Any, Any, dict[int, list[Any]], list[str]]:
    """(study, store, template id → its trials, objective names)."""
    from promptsearch.study import open_study

    loaded, store = open_study(study, db)
    trials: dict[int, list[Any]] = {}
    for t in loaded.get_trials(deepcopy=False):
        if "template_id" in t.user_attrs:
            trials.setdefault(int(t.user_attrs["template_id"]), []).append(t)
    names = loaded.metric_names or [f"objective_{i}" for i in range(len(loaded.directions))]
    return loaded, store, trials, names


def _best(loaded: Any, trials: list[Any]) -> str:
    """The template's best value of the first objective, or '-' before any trial of it completed."""
    import optuna

    values = [t.values[0] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not values:
        return "-"
    pick = max if loaded.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
    return f"{pick(values):.4f}"


@templates_app.command("list")
def templates_list(study: str, db: DbOption = DEFAULT_DB) -> None:
    """The pool: every template with its origin, parents, trials and best score; then proposal counts."""
    from collections import Counter

    loaded, store, trials, names = _template_scores(study, db)
    proposals = store.proposals(study)
    operator = {p.template_id: p.operator for p in proposals if p.template_id is not None}
    table = Table("id", "name", "family", "origin", "parents", "trials", "finished", f"best {names[0]}")
    for row in store.templates(loaded.user_attrs["template_ids"]):
        mine = trials.get(row.id, [])
        table.add_row(
            str(row.id),
            row.name,
            row.family,
            f"{row.origin} ({operator[row.id]})" if row.id in operator else row.origin,
            ", ".join(map(str, row.parents)) or "-",
            str(len(mine)),
            str(sum(t.state.is_finished() for t in mine)),
            _best(loaded, mine),
        )
    console.print(table)
    if proposals:
        counts = Counter((p.status, p.reason) for p in proposals)
        summary = ", ".join(f"{status}{' ' + reason if reason else ''} {n}" for (status, reason), n in counts.items())
        console.print(f"{len(proposals)} proposal(s): {summary}")


@templates_app.command("show")
def templates_show(
    study: str, template: Annotated[str, typer.Argument(help="Template id or name.")], db: DbOption = DEFAULT_DB
) -> None:
    """One template: its text, how it was proposed (operator, parents, feedback, DSPy prompt, response), its trials."""
    loaded, store, trials, names = _template_scores(study, db)
    rows = store.templates(loaded.user_attrs["template_ids"])
    row = next((r for r in rows if str(r.id) == template or r.name == template), None)
    if row is None:
        raise UserError(f"study {study!r} has no template {template!r} (see `promptsearch templates list {study}`)")
    console.print(f"[bold]#{row.id} {row.name}[/bold] — family {row.family}, origin {row.origin}")
    console.print(row.text, markup=False, highlight=False)
    proposal = next((p for p in store.proposals(study) if p.template_id == row.id), None)
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
    table = Table("trial", "state", *names, "note", title=f"trials of #{row.id}")
    for t in trials.get(row.id, []):
        values = [f"{v:.4f}" for v in t.values] if t.values else ["-"] * len(names)
        table.add_row(str(t.number), t.state.name, *values, str(t.user_attrs.get("pruned_reason", "")))
    console.print(table)


@templates_app.command("lineage")
def templates_lineage(study: str, db: DbOption = DEFAULT_DB) -> None:
    """The family tree: each proposed template under its first parent (a crossover names its other parent)."""
    from rich.text import Text
    from rich.tree import Tree

    loaded, store, trials, names = _template_scores(study, db)
    rows = store.templates(loaded.user_attrs["template_ids"])
    operator = {p.template_id: p.operator for p in store.proposals(study) if p.template_id is not None}
    known = {r.id for r in rows}
    children: dict[int | None, list[Any]] = {}
    for r in rows:
        first = next((p for p in r.parents if p in known), None)
        children.setdefault(first, []).append(r)

    def label(r: Any) -> Text:
        how = operator.get(r.id, r.origin)
        others = [p for p in r.parents[1:] if p in known]
        also = f" × #{', #'.join(map(str, others))}" if others else ""
        mine = trials.get(r.id, [])
        return Text(f"#{r.id} {r.name} [{how}{also}] best {names[0]} {_best(loaded, mine)} ({len(mine)} trial(s))")

    tree = Tree(f"study {study}")

    def grow(node: Tree, parent: int | None) -> None:
        for r in children.get(parent, []):
            grow(node.add(label(r)), r.id)

    grow(tree, None)
    console.print(tree)


# ------------------------------------------------------------------------------------------ export


@app.command("export")
def export(
    study: str,
    db: DbOption = DEFAULT_DB,
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
    db: DbOption = DEFAULT_DB,
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
    db: DbOption = DEFAULT_DB,
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

    from loguru import logger

    from promptsearch.corpus import corpus_reader
    from promptsearch.measure import Embedder, OutputRecord, measure, most_common_opening
    from promptsearch.space import CorpusSpec

    if not file.is_file():
        raise UserError(f"file not found: {file}")
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    # datatrove's readers: the output field becomes the document text, the other fields its metadata
    spec = CorpusSpec(format="parquet" if file.suffix == ".parquet" else "jsonl", path=str(file), text_key=output_key)
    documents = list(corpus_reader(spec).run())
    if not documents:
        raise UserError(f"{file}: no rows with a {output_key!r} field")
    if any(source_key not in d.metadata for d in documents):
        raise UserError(f"{file}: rows have no field {source_key!r}")
    records = [
        OutputRecord(
            str(d.metadata[source_key] or ""),
            d.text,
            family or str((d.metadata.get("metadata") or {}).get("template_family", "")),
        )
        for d in documents
    ]
    report = measure(records, Embedder() if embeddings else None)
    opening, share = most_common_opening([r.output for r in records])
    if as_json:
        console.print_json(json.dumps({"rows": len(records), "top_opening": opening, **report}))
        return
    table = Table("metric", "value", title=f"{file} ({len(records)} rows)")
    for name, value in report.items():
        table.add_row(name, f"{value:.4f}")
    table.add_row("top_opening", f"{opening!r} ({share:.0%})")
    console.print(table)


# ---------------------------------------------------------------------------------------- generate


def _input_corpus(path: str, input_format: str, text_key: str, limit: int | None) -> CorpusSpec:
    from promptsearch.space import CorpusSpec

    if input_format == "auto":
        name = path.lower()
        input_format = (
            "jsonl"
            if ".jsonl" in name or ".json" in name
            else "parquet"
            if name.endswith(".parquet")
            else "embedded"
            if path in ("lee_background", "lee")
            else "text"
        )
    return CorpusSpec(format=input_format, path=path, text_key=text_key, limit=limit)


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
    from promptsearch.embedded import serving_plan
    from promptsearch.generate import generate_dataset, recipe_from_space
    from promptsearch.recipe import Sampling, load_recipe
    from promptsearch.rephrase import GeneratorServers
    from promptsearch.space import load_space

    if output_format not in ("jsonl", "parquet"):
        raise UserError(f"--format must be jsonl or parquet (got {output_format!r})")
    if (recipe is None) == (space is None):
        raise UserError("give either --recipe FILE or --space FILE --template NAME")
    if recipe is not None:
        chosen = load_recipe(recipe)
    else:
        if template is None:
            raise UserError("--space needs --template NAME")
        loaded = load_space(space)
        base = loaded.default_sampling()
        sampling = Sampling(
            temperature=base.temperature if temperature is None else temperature,
            top_p=base.top_p if top_p is None else top_p,
            max_new_tokens=base.max_new_tokens if max_new_tokens is None else max_new_tokens,
            top_k=base.top_k,
        )
        chosen = recipe_from_space(loaded, template, generator, sampling, best_of_n)
    corpus = _input_corpus(input, input_format, text_key, limit)
    _quiet_libraries(output)
    if executor == "slurm":
        from promptsearch.generate import submit_dataset_job
        from promptsearch.pipelines import SlurmJob

        try:
            job = SlurmJob(
                partition=partition,
                time=time_limit,
                tasks=tasks,
                cpus_per_task=cpus_per_task,
                gpus_per_node=gpus_per_node,
            )
        except ValueError as exc:
            raise UserError(f"Slurm settings: {str(exc).splitlines()[-1].strip()}") from exc
        activate = venv or str(Path(sys.prefix) / "bin" / "activate")
        with GeneratorServers(output / "logs") as generators:
            job_id = submit_dataset_job(
                chosen, corpus, output.resolve(), generators, job, activate, output_format, chunk_size
            )
        if job_id == "-1":
            console.print(f"every task of {output} has already completed; nothing submitted")
        else:
            console.print(
                f"submitted Slurm job {job_id} ({tasks} datatrove task(s)); logs in {output / 'logs'}; "
                "run the same command again to resume what did not finish"
            )
        return
    if executor != "local":
        raise UserError(f"--executor must be local or slurm (got {executor!r})")
    with (
        Progress(
            TextColumn("generating"),
            MofNCompleteColumn(),
            TextColumn("documents"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
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
