"""Study lifecycle through the CLI, with real generation (shared embedded server) and a real proxy."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, run_cli, write_space

from promptsearch.embedded import VllmServer
from promptsearch.store import Store


def _study(url: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _start(space: Path, url: str, tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "cli.py"),
            "study",
            "start",
            str(space),
            "--db",
            url,
            "--workdir",
            str(tmp_path / "runs"),
            *extra,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_running(url: str, process: subprocess.Popen, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            running = _study(url).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            running = []
        if running and running[0].user_attrs.get("stage") in ("rephrase", "proxy"):
            return running[0].number
        time.sleep(0.2)
    raise AssertionError("no trial reached a stage in time")


def test_start_status_export(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(tmp_path / "space.yaml", embedded_server)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"database: sqlite:///{tmp_path / 'study.db'}" in result.stdout
    study = _study(url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 2
    assert {t.user_attrs["template_id"] for t in complete} == {1, 2}  # both seeds enqueued and run

    status = run_cli("study", "status", "tiny", "--db", url, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("COMPLETE") == 2
    assert f"{study.best_value:.4f}" in status.stdout

    # The noise floor around the best recipe: its mixture rebuilt from the database and trained with 3
    # seeds; seed 0 is the trial's own proxy run, so it must reproduce the trial's score exactly.
    args = ("proxy", "calibrate", "--study", "tiny", "--db", url, "--workdir", str(tmp_path / "runs"))
    calibrated = run_cli(*args, cwd=tmp_path)
    assert calibrated.returncode == 0, calibrated.stderr
    calibration = Store.open(url).latest_calibration("proxy-micro")
    assert calibration is not None and len(calibration.runs) == 3
    assert calibration.runs[0]["heldout_bpb"] == study.best_value
    assert calibration.runs[0]["knowledge_bpb"] == study.best_trial.user_attrs["proxy.knowledge_bpb"]
    assert calibration.stds["heldout_bpb"] > 0
    neither = run_cli("proxy", "calibrate", "--db", url, cwd=tmp_path)
    assert neither.returncode == 1 and neither.stderr.strip() == "error: pass either --space FILE or --study NAME"

    exported = run_cli("export", "tiny", "--db", url, "-o", str(tmp_path / "recipes"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    doc = yaml.safe_load((tmp_path / "recipes" / f"recipe-trial-{study.best_trial.number}.yaml").read_text())
    best = study.best_trial
    template = Store.open(url).template(best.user_attrs["template_id"])
    assert doc["recipe"]["template_text"] == template.text
    assert doc["recipe"]["sampling"]["temperature"] == best.params["temperature"]
    assert doc["recipe"]["best_of_n"] == best.params["best_of_n"]
    assert doc["recipe"]["mix_ratio"] == best.params["mix_ratio"]
    assert doc["objectives"]["proxy.heldout_bpb"] == best.value
    assert doc["metrics"]["measure.unique_prefix_ratio_10"] == best.user_attrs["measure.unique_prefix_ratio_10"]


def test_ctrl_c_then_resume(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(tmp_path / "space.yaml", embedded_server, budget={"trials": 3})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    process = _start(space, url, tmp_path)
    interrupted = _wait_running(url, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    # The study stops at once: the interrupted trial is marked FAIL (or, when a C extension absorbed the
    # KeyboardInterrupt, it completes), and no further trial starts.
    before = _study(url).trials
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in before)
    assert all(t.state != optuna.trial.TrialState.COMPLETE for t in before[interrupted + 1 :])

    resumed = run_cli("study", "start", "tiny", "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials = _study(url).trials
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
    failed = trials[interrupted]
    if failed.state == optuna.trial.TrialState.FAIL:
        assert failed.user_attrs["interrupted"]
        reruns = [t for t in trials if t.user_attrs.get("retry_of") == interrupted]
        assert len(reruns) == 1 and reruns[0].state == optuna.trial.TrialState.COMPLETE
        assert reruns[0].params == failed.params
        assert reruns[0].user_attrs["template_id"] == failed.user_attrs["template_id"]


def test_killed_worker_trial_is_rerun_exactly_once(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(tmp_path / "space.yaml", embedded_server)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    beat = ("--heartbeat-seconds", "1", "--grace-seconds", "3")
    process = _start(space, url, tmp_path, *beat)
    killed = _wait_running(url, process)
    killed_params = _study(url).trials[killed].params
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(4)
    resumed = run_cli("study", "start", "tiny", "--db", url, "--workdir", str(tmp_path / "runs"), *beat, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials = _study(url).trials
    assert trials[killed].state == optuna.trial.TrialState.FAIL
    reruns = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(reruns) == 1
    assert reruns[0].state == optuna.trial.TrialState.COMPLETE
    assert reruns[0].params == killed_params
    assert reruns[0].user_attrs["template_id"] == trials[killed].user_attrs["template_id"]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2


def test_sqlite_refuses_two_workers(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", None)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert run_cli("study", "create", str(space), "--db", url, cwd=tmp_path).returncode == 0
    result = run_cli("study", "start", "tiny", "--db", url, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "SQLite cannot serve several workers" in result.stderr and "PostgreSQL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_study_or_database_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    missing = run_cli("study", "status", "nope", "--db", url, cwd=tmp_path)
    assert missing.returncode == 1 and "x.db does not exist" in missing.stderr
    assert not (tmp_path / "x.db").exists()
    assert run_cli("db", "upgrade", "--db", url, cwd=tmp_path).returncode == 0
    unknown = run_cli("study", "status", "nope", "--db", url, cwd=tmp_path)
    assert unknown.returncode == 1 and "no study named 'nope'" in unknown.stderr
    for result in (missing, unknown):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
def test_four_workers_on_postgres_run_20_enqueued_trials_once(
    tmp_path: Path, pg_url: str, embedded_server: VllmServer
) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        embedded_server,
        proxy=None,
        best_of_n=[1],
        budget={"trials": 20},
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
    )
    assert run_cli("study", "create", str(space), "--db", pg_url, cwd=tmp_path).returncode == 0
    study = _study(pg_url)
    for i in range(18):
        study.enqueue_trial({}, user_attrs={"template_id": 1 + i % 2})
    enqueued = [t.number for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert len(enqueued) == 20
    result = run_cli(
        "study", "start", "tiny", "--db", pg_url, "--workers", "4", "--workdir", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    trials = _study(pg_url).trials
    assert sorted(t.number for t in trials) == sorted(enqueued)  # nothing beyond the 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert "postgresql" in result.stdout and pg_url.split("@")[0].split(":")[-1] not in result.stdout


def test_broken_template_is_pruned_before_proxy_training(tmp_path: Path, embedded_server: VllmServer) -> None:
    broken = tmp_path / "broken" / "echo.txt"
    broken.parent.mkdir()
    broken.write_text("Repeat after me:\n\n{document}")  # SmolLM2-135M echoes the document
    space = write_space(
        tmp_path / "space.yaml",
        embedded_server,
        templates={"files": [str(broken)]},
        budget={"trials": 1},
        source={"format": "embedded", "path": "lee_background", "limit": 4, "max_chars": 300},
        sampling={"temperature": {"low": 0.2, "high": 0.4}, "max_new_tokens": [24]},
        measure={"embeddings": False, "prune": {"max_failure_rate": 1.0}},  # default collapse/fidelity thresholds
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trial = _study(url).trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_reason"].startswith("measure:")
    assert trial.constraints["echo_rate"] > 0 and trial.constraints["unique_prefix_ratio_10"] <= 0
    assert "proxy.heldout_bpb" not in trial.user_attrs  # the proxy never ran
    artifacts = optuna.artifacts.get_all_artifact_meta(trial, storage=optuna.storages.get_storage(url))
    assert {a.filename for a in artifacts} == {"metrics.json", "prefix_collapse.png", "samples.jsonl", "samples.md"}
    status = run_cli("study", "status", "tiny", "--db", url, cwd=tmp_path)
    assert "PRUNED" in status.stdout and "breaks its threshold" in status.stdout


def test_same_space_and_seed_give_the_same_trials(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        embedded_server,
        proxy=None,
        budget={"trials": 2},
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for name in ("first", "second"):
        assert run_cli("study", "create", str(space), "--db", url, "--name", name, cwd=tmp_path).returncode == 0
        result = run_cli("study", "start", name, "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    first, second = _study(url, "first").trials, _study(url, "second").trials
    assert [t.params for t in first] == [t.params for t in second]
    assert second[0].user_attrs["rephrase.requests_made"] == 0  # identical recipes: served from the cache
