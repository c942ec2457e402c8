"""The `promote` and `ablation` commands: full ablations of promoted trials, on Slurm."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from promptsearch.cli.common import DEFAULT_URL, DEFAULT_WORKDIR, DbOption, WorkdirOption, console, table
from promptsearch.errors import UserError
from promptsearch.logs import quiet_libraries

ablation_app = typer.Typer(no_args_is_help=True, help="Full ablations of promoted trials, on Slurm.")

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="Ablation profile in proxies/ or a YAML path (default: the space's).")
]
ProfileNameOption = Annotated[
    str | None,
    typer.Option("--profile", help="Name of the ablation profile the trial was promoted to (default: latest)."),
]


def promote(
    study: str,
    trial: Annotated[int | None, typer.Argument(help="Trial number; omit to apply the space's promotion rule.")] = None,
    profile: ProfileOption = None,
    db: DbOption = DEFAULT_URL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Promote a trial (or what the promotion rule selects) to a full ablation and write its bundle; print the
    chain's predicted GPU-hours."""
    from promptsearch.cost import format_prediction
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
        console.print(format_prediction((row.cost or {})["predicted"]), highlight=False)


@ablation_app.command("submit")
def ablation_submit(
    study: str,
    trial: int,
    profile: ProfileNameOption = None,
    db: DbOption = DEFAULT_URL,
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
    quiet_libraries(workdir)
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
    db: DbOption = DEFAULT_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until every job has finished.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 3600,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Show the chain's jobs and states (squeue, then sacct / sacct -c); a failed job's log tail. Exit 1 if
    the chain failed or was cancelled."""
    from promptsearch.ablation.slurm import FAILED_STATES, TERMINAL_STATES, failure_line, log_tail, refresh
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
    reasons = [r.reason if r.reason not in ("", "None") else "-" for r in rows]  # squeue prints None for no reason
    cells = [
        (r.stage, r.job_id, r.depends_on or "-", r.state, reason, r.exit_code or "-")
        for r, reason in zip(rows, reasons, strict=True)
    ]
    table(
        ("stage", "job", "after", "state", "reason", "exit"), cells, title=f"{study} trial {trial}: {ablation.profile}"
    )
    console.print(f"chain: {ablation.state}   bundle: {ablation.bundle_dir}")
    table(
        ("GPU-hours", "predicted", "actual"),
        cost_comparison(ablation.cost, [r.stage for r in rows]),
        title="cost (actual: Slurm elapsed x GPUs, once jobs end)",
    )
    for r in rows:
        if r.state in FAILED_STATES:
            path, tail = log_tail(r)
            console.print(f"{r.stage} (job {r.job_id}) {r.state}: {failure_line(Path(path))}", highlight=False)
            console.print(f"last lines of {path}:", highlight=False)
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
    table(("task", "score"), rows, title=f"{study} trial {trial}: {ablation.profile}")
