"""Study workers as Slurm jobs: `promptsearch study start NAME --executor slurm --workers K`.

In: a study on PostgreSQL, K, and the sbatch settings of one worker (a `SlurmJob`: partition, time, CPUs,
memory, GPUs). Out: K jobs (one sbatch each), each running `python -m promptsearch.cluster worker NAME` — the
same worker loop as a local worker (`study.run_worker`) against the study's database — with their job ids
in `ps_study_workers` as sbatch returns them; `stop_workers` scancels those still queued or running.

SQLite is refused: the workers are separate processes (on other nodes, on a real cluster), and Optuna hands
out enqueued trials with SELECT … FOR UPDATE, which SQLite lacks. The database URL, which may hold a password,
reaches the jobs through the environment sbatch exports (`PROMPTSEARCH_DB`), never through a file or sbatch's
command line; so does `PYTHONPATH`. A worker ended by scancel or its time limit (SIGTERM) fails its running
trial at once and queues its re-run, which another worker takes (`study.WorkerCancelled`); one lost to a node
failure stops sending heartbeats: after the grace period another worker fails its trial and re-runs it once
(Optuna's `RetryHeartbeatStaleTrialCallback`). Finished trials stay. A worker job that fails before its loop
runs (no Python at the job's path, the database out of reach from the node) shows in `study status` as one
line from its log (`ablation.slurm.failure_line`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import optuna
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from promptsearch.ablation.slurm import FAILED_STATES, TERMINAL_STATES, failure_line, job_states, one_line, run_slurm
from promptsearch.errors import UserError
from promptsearch.pipelines import SlurmJob
from promptsearch.space import SearchSpace
from promptsearch.store import Store
from promptsearch.store.models import StudyWorkerRow
from promptsearch.study import RunOptions, WorkerCancelled, prepare_run, run_worker, stop_on_signal


def worker_job(space: SearchSpace, overrides: dict[str, object]) -> SlurmJob:
    """The sbatch settings of each worker: the space's `cluster:` section, with the flags a user gave."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return SlurmJob.model_validate(space.cluster.model_dump() | given)
    except ValidationError as exc:
        raise UserError(f"Slurm settings: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc


def worker_script(name: str, index: int, options: RunOptions, job: SlurmJob, log: Path) -> str:
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=ps-worker-{name}-{index}",
        f"#SBATCH --partition={job.partition}",
        f"#SBATCH --time={job.time}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={job.cpus_per_task}",
        f"#SBATCH --mem-per-cpu={job.mem_per_cpu_gb}G",
        f"#SBATCH --output={log}",
        *([f"#SBATCH --gres=gpu:{job.gpus_per_node}"] if job.gpus_per_node else []),
        *([f"#SBATCH --qos={job.qos}"] if job.qos else []),
        *[f"#SBATCH --{k}={v}" if v else f"#SBATCH --{k}" for k, v in job.sbatch_args.items()],
        "set -euo pipefail",
        "export PYTHONUNBUFFERED=1",
        # the vLLM server and the proxy use the job's GPUs: Slurm sets CUDA_VISIBLE_DEVICES for --gres
        f"exec {sys.executable} -m promptsearch.cluster worker {name} --index {index} "
        f"--workdir {options.workdir} --heartbeat-seconds {options.heartbeat_seconds} "
        f"--grace-seconds {options.grace_seconds}",
        "",
    ]
    return "\n".join(lines)


def submit_workers(name: str, options: RunOptions, job: SlurmJob) -> list[StudyWorkerRow]:
    """sbatch `options.workers` worker jobs; each job id is committed as soon as sbatch returns it."""
    if make_url(options.db_url).get_backend_name() == "sqlite":
        raise UserError(
            "SQLite cannot serve workers on Slurm: they are separate processes (on other nodes) and Optuna hands "
            "out enqueued trials with SELECT … FOR UPDATE, which SQLite lacks; use PostgreSQL "
            "(--db postgresql+psycopg://user@host/db)"
        )
    store = Store.open(options.db_url, create_if_empty=False)
    running = [w.job_id for w in refresh_workers(store, name) if w.state not in TERMINAL_STATES]
    if running:
        raise UserError(f"study {name!r} has workers on Slurm still queued or running: {', '.join(running)}")
    prepare_run(store, name, options.grace_seconds)
    folder = options.workdir / name / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PROMPTSEARCH_DB": options.db_url}
    rows: list[StudyWorkerRow] = []
    for index in range(options.workers):
        script = folder / f"worker-{index}.sbatch"
        log = folder / f"worker-{index}-%j.out"
        script.write_text(worker_script(name, index, options, job, log))
        result = run_slurm(["sbatch", "--parsable", "--export=ALL", str(script)], env=env)
        if result.returncode != 0:
            submitted = f" (submitted before it: {', '.join(r.job_id for r in rows)}; `study stop`)" if rows else ""
            raise UserError(f"sbatch of worker {index} failed: {one_line(result.stderr)}{submitted}")
        job_id = result.stdout.strip().split(";")[0]
        row = StudyWorkerRow(
            study_name=name,
            worker_index=index,
            job_id=job_id,
            state="SUBMITTED",
            log_path=str(log).replace("%j", job_id),
        )
        store.add_study_worker(row)
        rows.append(row)
    return rows


def refresh_workers(store: Store, name: str) -> list[StudyWorkerRow]:
    """The study's worker jobs, with their states refreshed from Slurm."""
    rows = store.study_workers(name)
    open_ids = [r.job_id for r in rows if r.state not in TERMINAL_STATES]
    if open_ids:
        seen = job_states(open_ids)
        for row in rows:
            if row.job_id in seen and seen[row.job_id].state != row.state:
                store.update_study_worker(row.id, state=seen[row.job_id].state)
        rows = store.study_workers(name)
    return rows


def describe_workers(store: Store, name: str, study: optuna.Study) -> list[str]:
    """One line per worker job of the study: job id, Slurm state, the trial it runs, and for a failed job why, from
    its log (none without Slurm workers)."""
    lines = []
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for w in refresh_workers(store, name):
        current = [f"#{t.number}" for t in running if t.user_attrs.get("slurm_job_id") == w.job_id]
        line = f"worker {w.worker_index}: job {w.job_id} {w.state}, trial {', '.join(current) or '-'}"
        if w.state in FAILED_STATES:
            line += f": {failure_line(Path(w.log_path))}"
        lines.append(line)
    return lines


def stop_workers(store: Store, name: str) -> list[str]:
    """scancel the study's worker jobs still queued or running; returns their ids."""
    open_ids = [r.job_id for r in refresh_workers(store, name) if r.state not in TERMINAL_STATES]
    if open_ids:
        result = run_slurm(["scancel", *open_ids])
        if result.returncode != 0:
            raise UserError(f"scancel failed: {one_line(result.stderr)}")
    return open_ids


def main(argv: list[str]) -> None:
    """Inside a worker job: the study's worker loop against PROMPTSEARCH_DB."""
    parser = argparse.ArgumentParser(prog="python -m promptsearch.cluster")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("study")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--heartbeat-seconds", type=int, default=30)
    parser.add_argument("--grace-seconds", type=int, default=90)
    args = parser.parse_args(argv)
    url = os.environ.get("PROMPTSEARCH_DB")
    if not url:
        raise SystemExit("error: PROMPTSEARCH_DB is not set in the job's environment (sbatch --export=ALL)")
    options = RunOptions(
        db_url=url,
        workdir=args.workdir,
        heartbeat_seconds=args.heartbeat_seconds,
        grace_seconds=args.grace_seconds,
    )
    stop_on_signal(signal.SIGTERM)
    try:
        run_worker(args.study, options, args.index)
    except UserError as exc:  # e.g. the database cannot be reached from this node: one line in the job's log
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from exc
    except WorkerCancelled as exc:  # scancel or the time limit: the job ends, its trial is in the others' hands
        print(f"worker cancelled (SIGTERM): {exc}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
