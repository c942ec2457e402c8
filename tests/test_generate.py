"""`promptsearch generate`: a dataset from an exported recipe, and resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import REPO, run_cli, write_space

from promptsearch.embedded import VllmServer


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((folder / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_generate_from_exported_recipe(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        embedded_server,
        proxy=None,
        budget={"trials": 1},
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert (
        run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path).returncode
        == 0
    )
    assert run_cli("export", "tiny", "--db", url, "-o", str(tmp_path / "recipes"), cwd=tmp_path).returncode == 0
    recipe_file = next((tmp_path / "recipes").glob("recipe-trial-*.yaml"))
    recipe = yaml.safe_load(recipe_file.read_text())["recipe"]
    result = run_cli(
        "generate",
        "--recipe",
        str(recipe_file),
        "--input",
        "lee_background",
        "--limit",
        "3",
        "--output",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out")
    assert len(rows) == 3
    for row in rows:
        meta = row["metadata"]
        assert meta["template_hash"] == recipe["template_hash"]
        assert meta["sampling"] == recipe["sampling"]
        assert meta["best_of_n"] == recipe["best_of_n"] and len(meta["samples"]) == recipe["best_of_n"]
        assert row["text"] in meta["samples"] and row["source_text"]


def test_interrupted_generate_resumes_each_document_once(tmp_path: Path, embedded_server: VllmServer) -> None:
    space = write_space(tmp_path / "space.yaml", embedded_server)
    args = [
        sys.executable,
        str(REPO / "cli.py"),
        "generate",
        "--space",
        str(space),
        "--template",
        "faq",
        "--input",
        "lee_background",
        "--limit",
        "10",
        "--chunk-size",
        "2",
        "--max-new-tokens",
        "16",
        "--output",
        str(tmp_path / "out"),
    ]
    # Its own process group, killed whole: the crash takes the command's worker processes with it.
    process = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not list((tmp_path / "out" / "data").glob("*.jsonl")) and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(_rows(tmp_path / "out")) < 10
    resumed = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    ids = [row["id"] for row in _rows(tmp_path / "out")]
    assert len(ids) == 10 and len(set(ids)) == 10


def test_generate_on_slurm(tmp_path: Path, embedded_server: VllmServer, slurm: str) -> None:
    """`--executor slurm`: a datatrove job array on the real one-node cluster, calling the embedded server
    as an OpenAI endpoint (as cluster nodes call a vLLM/TGI deployment)."""
    space = write_space(tmp_path / "space.yaml", embedded_server)
    args = ["generate", "--space", str(space), "--template", "table", "--input", "lee_background", "--limit", "3"]
    args += ["--max-new-tokens", "12", "--tasks", "2", "--output", str(tmp_path / "out"), "--executor", "slurm"]
    args += ["--partition", slurm, "--time", "00:10:00"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split("submitted Slurm job ")[1].split()[0]
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the Slurm job did not finish"
        time.sleep(1)
    rows = _rows(tmp_path / "out")
    # datatrove applies the reader's limit per task: 2 tasks x at most 3 documents each
    assert rows and len({r["id"] for r in rows}) == len(rows) <= 6
    assert all(r["metadata"]["template_name"] == "table" for r in rows)
    again = run_cli(*args, cwd=tmp_path)  # every task completed: nothing is submitted twice
    assert again.returncode == 0 and "already completed" in again.stdout
