"""Submitting, tracking and cancelling an ablation's Slurm chain.

In: a written `Bundle` and its `AblationRow`. Out: one `AblationJobRow` per stage, committed the
moment its job id is known, and states refreshed from Slurm.

datatrove's `SlurmPipelineExecutor` submits its own stages (and its stats job); train and evaluate
go through `sbatch --parsable`. Every job waits for its inputs with `--dependency=afterok`, so a
failure cancels what depends on it (the cluster needs `DependencyParameters=kill_invalid_depend`,
else Slurm leaves those jobs PENDING with `DependencyNeverSatisfied`, reported here as such).
States come from `squeue -t all` while Slurm remembers the job (MinJobAge), then from `sacct`, or
`sacct -c` (the job-completion log) where there is no accounting database.
"""

from __future__ import annotations

import glob
import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from promptsearch.ablation.bundle import DATATROVE_STAGES, STAGES, Bundle, load_bundle, stage_gpus
from promptsearch.ablation.executors import datatrove_executor
from promptsearch.cost import actual_gpu_hours, slurm_seconds
from promptsearch.errors import UserError
from promptsearch.store import Store
from promptsearch.store.models import AblationJobRow, AblationRow

FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
TERMINAL_STATES = {"COMPLETED", "CANCELLED", *FAILED_STATES}


def run_slurm(command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A Slurm client command (sbatch, squeue, sacct, scancel, scontrol), its output captured."""
    if shutil.which(command[0]) is None:
        raise UserError(f"`{command[0]}` not found: Slurm's client commands must be on PATH")
    return subprocess.run(list(command), capture_output=True, text=True, check=False, env=env)


def one_line(output: str) -> str:
    """A Slurm command's message (often an error and a hint on two lines) as one line."""
    return "; ".join(line.strip() for line in output.splitlines() if line.strip())


def submit(bundle: Bundle, ablation: AblationRow, store: Store) -> list[AblationJobRow]:
    """Submit the chain in dependency order; each job row is committed as soon as it exists."""
    bundle.profile.require_cluster_settings(str(bundle.path / "bundle.yaml"))
    if store.ablation_jobs(ablation.id):
        raise UserError(
            f"trial {ablation.trial_number} of {ablation.study_name!r} was already submitted to {ablation.profile} "
            "(see `promptsearch ablation status`)"
        )
    jobs: dict[str, str] = {}
    for stage, waits_for in STAGES.items():
        # -1: datatrove found every task of that stage already done and launched nothing
        depends = ":".join(jobs[s] for s in waits_for if jobs[s] != "-1")
        if stage in DATATROVE_STAGES:
            executor = datatrove_executor(bundle, stage, depends or None)
            executor.run()
            job_id = str(executor.job_id)
        else:
            command = ["sbatch", "--parsable"]
            if depends:
                command.append(f"--dependency=afterok:{depends}")
            result = run_slurm([*command, str(bundle.path / f"{stage}.sbatch")])
            if result.returncode != 0:
                raise UserError(f"sbatch {stage}.sbatch failed: {one_line(result.stderr)}")
            job_id = result.stdout.strip().split(";")[0]
        jobs[stage] = job_id
        store.add_ablation_job(
            AblationJobRow(
                ablation_id=ablation.id,
                stage=stage,
                job_id=job_id,
                depends_on=depends,
                log_glob=bundle.log_glob(stage, job_id),
                state="COMPLETED" if job_id == "-1" else "SUBMITTED",
                reason="",
                exit_code="",
            )
        )
    if skipped := {stage: {"seconds": 0.0} for stage, job_id in jobs.items() if job_id == "-1"}:
        _record_actual(ablation, store, skipped)
    store.update_ablation(ablation.id, state="SUBMITTED")
    return store.ablation_jobs(ablation.id)


@dataclass(frozen=True)
class PlannedJob:
    """One job `submit` would send to Slurm, read from the script it would submit."""

    stage: str
    script: str  # the sbatch script (datatrove stages: the launch script datatrove would write)
    submitted_by: str  # "sbatch" or "datatrove"
    directives: dict[str, str]  # the script's #SBATCH lines
    after: tuple[str, ...]  # afterok on these stages (their job ids are known only at submission)
    note: str = ""
    gpus_per_task: int = dataclass_field(init=False)

    def __post_init__(self) -> None:
        d = self.directives
        if "gpus" in d:  # datatrove: --gpus is the total of one array task
            gpus = int(d["gpus"])
        else:  # our scripts: --gres=gpu:N per node
            match = re.fullmatch(r"gpu(?::[^:]+)?:(\d+)", d.get("gres", ""))
            gpus = int(match.group(1)) * int(d.get("nodes", 1)) if match else 0
        object.__setattr__(self, "gpus_per_task", gpus)

    @property
    def array_tasks(self) -> int:
        """Tasks of a job array (`--array=0-99` → 100), 1 for a plain job."""
        match = re.fullmatch(r"(\d+)-(\d+)(?:%\d+)?", self.directives.get("array", ""))
        return int(match.group(2)) - int(match.group(1)) + 1 if match else 1

    @property
    def memory(self) -> str:
        """Memory of one array task: --mem-per-cpu x --cpus-per-task, or --mem."""
        d = self.directives
        if "mem" in d:
            return d["mem"]
        per_cpu = re.fullmatch(r"(\d+)([KMGT]?)", d.get("mem-per-cpu", ""))
        if not per_cpu:
            return "-"
        return f"{int(per_cpu.group(1)) * int(d.get('cpus-per-task', 1))}{per_cpu.group(2) or 'M'}"


def sbatch_directives(script: str) -> dict[str, str]:
    """The `#SBATCH --key[=value]` lines of a script, in order (a bare flag maps to "")."""
    directives: dict[str, str] = {}
    for line in script.splitlines():
        if match := re.match(r"#SBATCH\s+--([\w-]+)(?:[=\s]\s*(\S.*?))?\s*$", line):
            directives[match.group(1)] = match.group(2) or ""
    return directives


def dry_run(bundle: Bundle) -> list[PlannedJob]:
    """The chain `submit` would send, in its order, without calling sbatch: our scripts as written in the bundle,
    and for each datatrove stage the launch script its executor builds (written to `dry-run/<stage>.slurm`;
    at submission datatrove writes it to `logs/<stage>/launch_script.slurm`) plus the stats job it adds."""
    bundle.profile.require_cluster_settings(str(bundle.path / "bundle.yaml"))
    planned: list[PlannedJob] = []
    folder = bundle.path / "dry-run"
    for stage, waits_for in STAGES.items():
        if stage not in DATATROVE_STAGES:
            script = bundle.path / f"{stage}.sbatch"
            directives = sbatch_directives(script.read_text())
            planned.append(PlannedJob(stage, str(script), "sbatch", directives, waits_for))
            continue
        executor = datatrove_executor(bundle, stage, None)
        ranks = executor.get_incomplete_ranks()
        array = min(math.ceil(len(ranks) / executor.tasks_per_job), executor.max_array_size) or 1
        # the same script datatrove's launch_job builds (srun with no extra srun_args)
        contents = executor.get_launch_file_contents(
            executor.get_sbatch_args(array),
            f"srun  -l -n {executor.nodes_per_task} launch_pickled_pipeline "
            f"{executor.logging_dir.resolve_paths('executor.pik')}",
        )
        folder.mkdir(exist_ok=True)
        script = folder / f"{stage}.slurm"
        script.write_text(contents)
        note = "" if ranks else f"all {executor.tasks} tasks already completed: datatrove launches nothing"
        planned.append(PlannedJob(stage, str(script), "datatrove", sbatch_directives(contents), waits_for, note))
        stats = {**executor.get_sbatch_args(), "cpus-per-task": "1", "mem-per-cpu": "1G"}
        planned.append(
            PlannedJob(
                f"{stage}:stats",
                "(written by datatrove at launch: merge_stats)",
                "datatrove",
                {k: str(v) for k, v in stats.items()},
                (stage,),
                "datatrove's stats merge; nothing waits for it",
            )
        )
    return planned


def format_plan(bundle: Bundle, planned: list[PlannedJob]) -> str:
    """The dry run as text: one block per job (stage, script, resources, afterok), then the totals."""
    lines = [f"dry run: the chain of {bundle.study} trial {bundle.trial} ({bundle.profile.name}); nothing submitted"]
    for job in planned:
        d = job.directives
        tasks = job.array_tasks
        resources = [
            f"partition {d.get('partition', '-')}",
            f"time {d.get('time', '-')}",
            f"{'array of ' + str(tasks) + ' tasks, each ' if tasks > 1 else ''}{d.get('nodes', '1')} node(s)",
            f"{d.get('cpus-per-task', '1')} CPUs",
            f"{job.gpus_per_task} GPUs",
            f"memory {job.memory}/node",
        ]
        extra = [f"--{k}" for k in ("exclusive", "requeue") if k in d]
        lines.append(f"{job.stage}  [{job.submitted_by}]  {job.script}")
        lines.append(f"    {', '.join(resources)}{'  ' + ' '.join(extra) if extra else ''}")
        lines.append(f"    after: {'afterok ' + ', '.join(job.after) if job.after else 'nothing (starts at once)'}")
        if job.note:
            lines.append(f"    note: {job.note}")
    return "\n".join(lines)


@dataclass(frozen=True)
class JobState:
    state: str
    reason: str = ""
    exit_code: str = ""
    seconds: float | None = None  # elapsed, summed over an array's tasks


def _seconds(text: str) -> float | None:
    try:
        return slurm_seconds(text)
    except ValueError:  # e.g. INVALID, or an empty field
        return None


def _combine(states: list[JobState]) -> JobState:
    """One state for an array job's tasks: a failed task fails the stage."""
    for pick in (FAILED_STATES, {"RUNNING", "COMPLETING"}, {"PENDING", "CONFIGURING", "REQUEUED"}, {"CANCELLED"}):
        if found := [s for s in states if s.state in pick]:
            return found[0]
    return states[0]


def _squeue(job_ids: list[str]) -> dict[str, JobState]:
    result = run_slurm(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%M"])
    tasks: dict[str, list[JobState]] = {}
    for line in result.stdout.splitlines():
        job, state, reason, elapsed = [*line.split("|"), "", "", ""][:4]
        # array tasks print as 12_0, 12_1 (or 12_[0-3] while pending): the stage is job 12
        tasks.setdefault(job.split("_")[0], []).append(JobState(state.split()[0], reason, "", _seconds(elapsed)))
    combined = {}
    for job, states in tasks.items():
        seconds = [s.seconds for s in states]
        total = None if None in seconds else sum(s for s in seconds if s is not None)
        combined[job] = JobState(**{**_combine(states).__dict__, "seconds": total})
    return combined


def _sacct(job_ids: list[str]) -> dict[str, JobState]:
    """Accounting database first; without one, the job-completion log (`sacct -c`)."""
    fields = ["-X", "-P", "-n", "-o", "jobid,state,exitcode,elapsedraw", "-j", ",".join(job_ids)]
    result = run_slurm(["sacct", *fields])
    if result.returncode != 0:
        result = run_slurm(["sacct", "-c", *fields])
    out: dict[str, JobState] = {}
    for line in result.stdout.splitlines():
        parts = [*line.split("|"), ""]
        if len(parts) >= 4:
            job = parts[0].split("_")[0]
            seconds = float(parts[3]) if parts[3].isdigit() else None
            if job in out:  # another task of an array (sacct -c shows only the first one)
                previous = out[job].seconds
                seconds = None if previous is None or seconds is None else previous + seconds
                out[job] = JobState(out[job].state, "", out[job].exit_code, seconds)
            else:
                out[job] = JobState(parts[1].split()[0], "", parts[2], seconds)
    return out


def job_states(job_ids: list[str]) -> dict[str, JobState]:
    """What Slurm says of these jobs: squeue while it remembers them, then sacct (`sacct -c` without an
    accounting database)."""
    seen = _squeue(job_ids)
    if missing := [j for j in job_ids if j not in seen]:
        seen |= _sacct(missing)
    return seen


def _exit_code(job_id: str) -> str:
    result = run_slurm(["scontrol", "-o", "show", "job", job_id])
    for field in result.stdout.split():
        if field.startswith("ExitCode="):
            return field.removeprefix("ExitCode=")
    return ""


def refresh(ablation: AblationRow, store: Store) -> list[AblationJobRow]:
    """Poll Slurm for every job of the chain not yet finished; store what it says, and the chain's state."""
    rows = store.ablation_jobs(ablation.id)
    open_ids = [r.job_id for r in rows if r.state not in TERMINAL_STATES and r.job_id != "-1"]
    if open_ids:
        seen = job_states(open_ids)
        ended: dict[str, dict[str, float]] = {}
        for row in rows:
            if row.job_id in seen and row.state not in TERMINAL_STATES:
                state = seen[row.job_id]
                exit_code = state.exit_code or (_exit_code(row.job_id) if state.state in FAILED_STATES else "")
                store.update_ablation_job(row.id, state=state.state, reason=state.reason[:200], exit_code=exit_code)
                if state.state in TERMINAL_STATES and state.seconds is not None:
                    ended[row.stage] = {"seconds": state.seconds}
        if ended:
            _record_actual(ablation, store, ended)
        rows = store.ablation_jobs(ablation.id)
    overall = chain_state(rows)
    if overall != ablation.state and ablation.state != "INGESTED":
        store.update_ablation(ablation.id, state=overall)
    return rows


def _record_actual(ablation: AblationRow, store: Store, ended: dict[str, dict[str, float]]) -> None:
    """Add the GPU-hours of jobs that just ended (Slurm's elapsed time x the GPUs of one task) to the row's cost."""
    profile = load_bundle(Path(ablation.bundle_dir)).profile
    current = store.ablation(ablation.study_name, ablation.trial_number, ablation.profile)
    cost = dict(current.cost or {})
    actual = dict(cost.get("actual") or {})
    for stage, seen in ended.items():
        actual[stage] = actual_gpu_hours(seen["seconds"], stage_gpus(profile, stage))
    store.update_ablation(ablation.id, cost={**cost, "actual": actual})


def chain_state(rows: list[AblationJobRow]) -> str:
    states = {r.state for r in rows}
    if not rows:
        return "PROMOTED"
    if states & FAILED_STATES:
        return "FAILED"
    if states <= {"COMPLETED"}:
        return "COMPLETED"
    if states <= TERMINAL_STATES:
        return "CANCELLED"
    return "RUNNING" if states & {"RUNNING", "COMPLETING", "COMPLETED"} else "PENDING"


def cancel(ablation: AblationRow, store: Store) -> list[str]:
    """scancel every job of the chain that has not finished; returns their ids."""
    rows = refresh(ablation, store)
    open_ids = [r.job_id for r in rows if r.state not in TERMINAL_STATES and r.job_id != "-1"]
    if open_ids:
        result = run_slurm(["scancel", *open_ids])
        if result.returncode != 0:
            raise UserError(f"scancel failed: {one_line(result.stderr)}")
    return open_ids


def failure_line(log: Path) -> str:
    """Why a job failed, in one line from its Slurm output: the last `error:` line (promptsearch's own messages),
    else the last Python exception (srun's "Exited with exit code 1" comes after it), else the last line written
    (a shell's "No such file or directory" when the venv is missing); the path of Slurm's spooled copy of the
    script becomes "job script"."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {log}"
    if not lines:
        return f"nothing in its log {log}"
    errors = [line for line in lines if line.startswith("error:")]
    # `srun -l` (datatrove's stages) puts the task's rank before each line: "0: ValueError: …"
    exceptions = [m.group(1) for line in lines if (m := re.match(r"(?:\d+: )?([\w.]*(?:Error|Exception): .*)", line))]
    line = (errors or exceptions or lines)[-1]
    line = re.sub(r"^\S*slurm_script: line (\d+): ", r"job script line \1: ", line)
    return f"{line} (log {log})"


def log_tail(row: AblationJobRow, lines: int = 20) -> tuple[str, str]:
    """(path, last lines) of the job's Slurm output; for an array, the first task file that failed."""
    paths = sorted(glob.glob(row.log_glob))
    if not paths:
        return row.log_glob, ""
    failing = [p for p in paths if "error" in Path(p).read_text(errors="replace").lower()]
    path = (failing or paths)[0]
    text = Path(path).read_text(errors="replace").splitlines()
    return path, "\n".join(text[-lines:])
