"""Study workers as Slurm jobs (`study start --executor slurm`), on the one-node Slurm and PostgreSQL of .ci/run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import run_cli, write_space

from promptsearch.ablation.slurm import TERMINAL_STATES
from promptsearch.cluster import refresh_workers, worker_job
from promptsearch.embedded import VllmServer
from promptsearch.store import Store


def _space(tmp_path: Path, server: VllmServer | None, trials: int, **overrides: object) -> Path:
    """No proxy: the measure stage's number recall is the objective, so a trial takes seconds."""
    return write_space(
        tmp_path / "space.yaml",
        server,
        proxy=None,
        best_of_n=[1],
        budget={"trials": trials},
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
        **overrides,
    )


def _start(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess:
    space = str(tmp_path / "space.yaml")
    workdir = str(tmp_path / "runs")
    return run_cli(
        "study", "start", space, "--executor", "slurm", "--db", url, "--workdir", workdir, *flags, cwd=tmp_path
    )


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    """A failed test leaves its worker jobs running; on a shared PostgreSQL they would join the next test's study
    (same name, recreated schema) and take its CPUs."""
    yield
    if shutil.which("scancel"):
        subprocess.run(["scancel", "--name", ",".join(f"ps-worker-tiny-{i}" for i in range(3))], check=False)


def test_sqlite_is_refused_with_the_reason(tmp_path: Path) -> None:
    _space(tmp_path, None, 2)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    refused = _start(tmp_path, url, "--workers", "2")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: SQLite cannot serve workers on Slurm: they are separate processes")
    assert "SELECT … FOR UPDATE" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert Store.open(url).study_workers("tiny") == []


@pytest.mark.postgres
def test_unknown_partition_is_one_line_and_submits_nothing(tmp_path: Path, pg_url: str, slurm: str) -> None:
    _space(tmp_path, None, 2)
    refused = _start(tmp_path, pg_url, "--workers", "2", "--partition", "nowhere")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: sbatch of worker 0 failed: sbatch: error:")
    assert "invalid partition" in refused.stderr.lower() and len(refused.stderr.strip().splitlines()) == 1
    assert Store.open(pg_url).study_workers("tiny") == []


@pytest.mark.postgres
def test_three_workers_on_slurm_run_the_study_once(
    tmp_path: Path, pg_url: str, slurm: str, embedded_server: VllmServer
) -> None:
    """Three worker jobs (one CPU each, two at a time on the 2-core node) share one generator and run 9 trials:
    each once, all COMPLETE, none beyond the budget (each claimed a slot of it); their job ids are in SQL as sbatch
    returned them; `study stop` then finds none."""
    _space(tmp_path, embedded_server, 9)
    started = time.monotonic()
    submitted = _start(tmp_path, pg_url, "--workers", "3", "--mem-per-cpu-gb", "2", "--time", "00:20:00")
    assert submitted.returncode == 0, submitted.stderr
    store = Store.open(pg_url)
    workers = store.study_workers("tiny")
    assert [w.worker_index for w in workers] == [0, 1, 2]
    for w in workers:
        assert f"worker {w.worker_index}: job {w.job_id}, log {w.log_path}" in submitted.stdout
    assert pg_url.split("@")[0].split(":")[-1] not in (tmp_path / "runs/tiny/slurm/worker-0.sbatch").read_text()

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and any(w.state not in TERMINAL_STATES for w in workers):
        time.sleep(2)
        workers = refresh_workers(store, "tiny")
    logs = "\n".join(Path(w.log_path).read_text() for w in workers if Path(w.log_path).exists())
    assert all(w.state == "COMPLETED" for w in workers), [(w.job_id, w.state) for w in workers] + [logs[-3000:]]
    trials = optuna.load_study(study_name="tiny", storage=store.optuna_storage()).trials
    assert len(trials) == 9 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), logs[-3000:]
    assert len({t.number for t in trials}) == 9
    assert {t.user_attrs["slurm_job_id"] for t in trials} <= {w.job_id for w in workers}  # run inside the jobs
    status = run_cli("study", "status", "tiny", "--db", pg_url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    for w in workers:
        assert f"worker {w.worker_index}: job {w.job_id} COMPLETED, trial -" in status.stdout

    stopped = run_cli("study", "stop", "tiny", "--db", pg_url, cwd=tmp_path)
    assert stopped.returncode == 0 and "no worker job to cancel" in stopped.stdout
    print(f"3 Slurm workers, 9 trials: {time.monotonic() - started:.0f} s")


@pytest.mark.postgres
def test_study_stop_cancels_the_workers(tmp_path: Path, pg_url: str, slurm: str, embedded_server: VllmServer) -> None:
    _space(tmp_path, embedded_server, 50)  # the shared server: no worker spends a minute starting its own
    submitted = _start(tmp_path, pg_url, "--workers", "2", "--time", "00:10:00")
    assert submitted.returncode == 0, submitted.stderr
    ids = [w.job_id for w in Store.open(pg_url).study_workers("tiny")]
    again = _start(tmp_path, pg_url, "--workers", "2")  # a second start while they run is refused
    assert again.returncode == 1 and f"still queued or running: {', '.join(ids)}" in again.stderr
    stopped = run_cli("study", "stop", "tiny", "--db", pg_url, cwd=tmp_path)
    assert stopped.returncode == 0 and f"cancelled {', '.join(ids)}" in stopped.stdout
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout
        if not queue.strip():
            break
        time.sleep(1)
    assert not queue.strip(), queue
    workers = refresh_workers(Store.open(pg_url), "tiny")
    assert {w.state for w in workers} == {"CANCELLED"}


@pytest.mark.postgres
def test_scancelled_worker_loses_nothing(tmp_path: Path, pg_url: str, slurm: str, embedded_server: VllmServer) -> None:
    """scancel one of two workers while both run a trial: its SIGTERM fails that trial at once and queues its re-run
    (the grace period of 10 minutes is never waited for), which the other worker runs with the same template and
    params; the study still ends with its 4 trials COMPLETE."""
    # Trials long enough (6 documents x up to 200 new tokens: ~10 s on vLLM) for both workers to be seen mid-trial;
    # at 12 tokens on 2 documents a trial takes ~3 s and the study can end before the test sees them both busy.
    long_trials = {
        "source": {"format": "embedded", "path": "lee_background", "limit": 6, "max_chars": 600},
        "sampling": {"temperature": {"low": 0.6, "high": 1.0}, "max_new_tokens": [200]},
    }
    _space(tmp_path, embedded_server, 4, **long_trials)
    beat = ("--heartbeat-seconds", "1", "--grace-seconds", "600")
    submitted = _start(tmp_path, pg_url, "--workers", "2", "--mem-per-cpu-gb", "2", "--time", "00:20:00", *beat)
    assert submitted.returncode == 0, submitted.stderr
    store = Store.open(pg_url)
    storage = store.optuna_storage()  # one engine for all the polling below: a new one per poll leaks connections
    workers = store.study_workers("tiny")

    def both_busy() -> list[optuna.trial.FrozenTrial]:
        deadline = time.monotonic() + 300
        running: list[optuna.trial.FrozenTrial] = []
        while time.monotonic() < deadline:  # both busy: the worker cancelled is mid-trial
            trials = optuna.load_study(study_name="tiny", storage=storage).trials
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            if len(running) == 2 and all("slurm_job_id" in t.user_attrs for t in running):
                break
            time.sleep(0.3)
        assert len(running) == 2, "the two workers never ran a trial at the same time"
        return running

    both_busy()
    status = run_cli("study", "status", "tiny", "--db", pg_url, cwd=tmp_path)  # which worker runs what
    assert status.returncode == 0 and "worker 0: job " in status.stdout and " RUNNING, trial #" in status.stdout
    running = both_busy()
    cancelled = next(t for t in running if t.user_attrs.get("slurm_job_id") == workers[0].job_id)
    assert subprocess.run(["scancel", workers[0].job_id], check=False).returncode == 0
    scancelled = time.monotonic()
    while time.monotonic() - scancelled < 60:
        trial = optuna.load_study(study_name="tiny", storage=storage).trials[cancelled.number]
        if trial.state == optuna.trial.TrialState.FAIL:
            break
        time.sleep(0.3)
    assert trial.state == optuna.trial.TrialState.FAIL, "SIGTERM did not fail the cancelled worker's trial"
    print(f"scancel to FAIL: {time.monotonic() - scancelled:.1f} s")

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and any(w.state not in TERMINAL_STATES for w in workers):
        time.sleep(2)
        workers = refresh_workers(store, "tiny")
    assert [w.state for w in workers] == ["CANCELLED", "COMPLETED"]
    assert (
        f"worker cancelled (SIGTERM): trial #{cancelled.number} failed and is queued for a re-run"
        in Path(workers[0].log_path).read_text()
    )
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [cancelled.number]
    reruns = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(reruns) == 1 and reruns[0].state == optuna.trial.TrialState.COMPLETE
    assert reruns[0].params == failed[0].params
    assert reruns[0].user_attrs["template_id"] == failed[0].user_attrs["template_id"]
    assert reruns[0].user_attrs["slurm_job_id"] == workers[1].job_id
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 4
    assert len(trials) == 5  # the 4 of the budget, plus the one that failed with its worker


@pytest.mark.postgres
def test_a_worker_job_failing_at_start_is_one_line_in_status(tmp_path: Path, pg_url: str, slurm: str) -> None:
    """Two ways a worker job dies before its loop runs, each one line in `study status`: no Python where the job
    script looks for it (a venv missing on the node), and the database out of reach from the node."""
    from promptsearch.cluster import worker_script
    from promptsearch.space import load_space
    from promptsearch.store.models import StudyWorkerRow
    from promptsearch.study import RunOptions, create_study

    space = _space(tmp_path, None, 2)
    create_study(space, pg_url)
    store = Store.open(pg_url)
    options = RunOptions(db_url=pg_url, workdir=tmp_path / "runs")
    job = worker_job(load_space(space), {"time": "00:05:00"})
    unreachable = "postgresql+psycopg://ps:hunter2@127.0.0.1:1/nowhere"
    cases = [("/no/venv/bin/python", pg_url), (sys.executable, unreachable)]
    for index, (python, url) in enumerate(cases):
        log = tmp_path / f"worker-{index}.out"
        script = tmp_path / f"worker-{index}.sbatch"
        script.write_text(worker_script("tiny", index, options, job, log).replace(sys.executable, python))
        env = os.environ | {"PROMPTSEARCH_DB": url}
        sbatch = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True)
        assert sbatch.returncode == 0, sbatch.stderr
        row = StudyWorkerRow(study_name="tiny", worker_index=index, job_id=sbatch.stdout.strip(), log_path=str(log))
        store.add_study_worker(row)
    deadline = time.monotonic() + 120
    workers = store.study_workers("tiny")
    while time.monotonic() < deadline and any(w.state not in TERMINAL_STATES for w in workers):
        time.sleep(1)
        workers = refresh_workers(store, "tiny")
    status = run_cli("study", "status", "tiny", "--db", pg_url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = [line for line in status.stdout.splitlines() if line.startswith("worker ")]
    assert len(lines) == 2, status.stdout
    missing, unreached = workers
    assert re.fullmatch(
        rf"worker 0: job {missing.job_id} FAILED, trial -: job script line \d+: /no/venv/bin/python: "
        rf"No such file or directory \(log {re.escape(missing.log_path)}\)",
        lines[0],
    ), lines[0]
    prefix = f"worker 1: job {unreached.job_id} FAILED, trial -: error: cannot reach database "
    assert lines[1].startswith(prefix + "postgresql+psycopg://ps:***@127.0.0.1:1/nowhere: "), lines[1]
    assert lines[1].endswith(f"(log {unreached.log_path})") and "hunter2" not in status.stdout


def test_worker_resources_come_from_the_space_and_flags_override_them(tmp_path: Path) -> None:
    from promptsearch.errors import UserError
    from promptsearch.space import load_space

    path = _space(tmp_path, None, 2)
    text = path.read_text() + "cluster: {partition: gpu, gpus_per_node: 1, time: '12:00:00'}\n"
    path.write_text(text)
    space = load_space(path)
    job = worker_job(space, {"partition": None, "time": "02:00:00", "cpus_per_task": 8, "gpus_per_node": None})
    assert (job.partition, job.time, job.cpus_per_task, job.gpus_per_node) == ("gpu", "02:00:00", 8, 1)
    with pytest.raises(UserError, match="time"):
        worker_job(space, {"time": "soon"})
