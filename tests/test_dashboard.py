"""Watching and exporting a finished study: the dashboard in a real browser, recipes, cards, diffs and plots."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_cli, write_space

from promptsearch.dashboard import review_ratings
from promptsearch.embedded import VllmServer


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory, embedded_server: VllmServer) -> tuple[Path, str]:
    """A two-trial study (faq and table) with the review form on, run through the CLI."""
    folder = tmp_path_factory.mktemp("watched")
    space = write_space(folder / "space.yaml", embedded_server, human_review=True)
    url = f"sqlite:///{folder / 'study.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(folder / "runs"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, url


@pytest.fixture
def chromium() -> str:
    """Debian's headless Chromium (CI installs it); CI=true turns its absence into a failure."""
    path = shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium or playwright missing: .ci/run installs Debian's chromium, `.[dev]` playwright")
        pytest.skip("no chromium/playwright (apt-get install chromium; pip install -e .[dev])")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_trial_page_shows_note_and_samples(finished_study: tuple[Path, str], chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    folder, url = finished_study
    port = _free_port()
    command = ["dashboard", "--db", url, "--workdir", str(folder / "runs"), "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), *command],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer"
                time.sleep(0.5)
        trial = optuna.load_study(study_name="tiny", storage=url).trials[0]
        template = trial.user_attrs["recipe"]["template_name"]
        review = optuna.load_study(study_name="tiny-review", storage=url)
        pending = next(t for t in review.trials if t.user_attrs["source_trial"] == trial.number)
        assert pending.state == optuna.trial.TrialState.RUNNING  # waiting for a person
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"http://127.0.0.1:{port}/dashboard/studies/1/trials?numbers={trial.number}")
            page.get_by_text(f"Template {template}", exact=False).first.wait_for(timeout=30000)
            page.get_by_text("samples.md").first.wait_for(timeout=30000)
            shot = folder / "trial-page.png"
            page.screenshot(path=str(shot), full_page=True)
            # the review study's page for this trial: its samples and the rating form
            page.goto(f"http://127.0.0.1:{port}/dashboard/studies/2/trials?numbers={pending.number}")
            page.get_by_text("Rate these samples", exact=False).first.wait_for(timeout=30000)
            page.get_by_text("samples.md").first.wait_for(timeout=30000)
            browser.close()
        assert shot.stat().st_size > 10_000
        # the file behind the artifact link is the trial's sample, served by the dashboard
        artifact_id = trial.user_attrs["artifact.samples.md"]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts/1/{trial._trial_id}/{artifact_id}").read()
        assert b"| source | output |" in body
        # what the form submits: the rating completes the review trial; the study's objective stays as it was
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/trials/{pending._trial_id}/tell",
            data=json.dumps({"state": "Complete", "values": [2]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request)
        study = optuna.load_study(study_name="tiny", storage=url)
        assert review_ratings(study) == {trial.number: 2.0} and study.trials[0].values == trial.values
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_study_list_shows_the_review_queue_as_a_column(finished_study: tuple[Path, str]) -> None:
    folder, url = finished_study
    result = run_cli("study", "list", "--db", url, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "tiny-review" not in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if "tiny" in line]
    review = optuna.load_study(study_name="tiny-review", storage=url)
    rated = sum(t.state == optuna.trial.TrialState.COMPLETE for t in review.trials)
    assert f"{rated}/2" in row


def test_export_top_k_as_json_with_cards_and_diff(finished_study: tuple[Path, str]) -> None:
    folder, url = finished_study
    result = run_cli(
        "export", "tiny", "--db", url, "--top", "2", "--format", "json", "-o", str(folder / "r"), cwd=folder
    )
    assert result.returncode == 0, result.stderr
    recipes = sorted((folder / "r").glob("recipe-trial-*.json"))
    assert len(recipes) == 2
    for path in recipes:
        document = json.loads(path.read_text())
        assert document["recipe"]["template_text"] and document["versions"]["optuna"] == optuna.__version__
        assert set(document["objectives"]) == {"proxy.heldout_bpb"}
        card = path.with_suffix(".md").read_text()
        assert card.startswith("---\nlanguage:") and document["recipe"]["template_text"] in card
    diff = run_cli("recipe", "diff", str(recipes[0]), str(recipes[1]), cwd=folder)
    assert diff.returncode == 1
    assert "recipe.template_name" in diff.stdout and "faq" in diff.stdout and "table" in diff.stdout
    same = run_cli("recipe", "diff", str(recipes[0]), str(recipes[0]), cwd=folder)
    assert same.returncode == 0 and "the same" in same.stdout


def test_plots_are_files_and_study_artifacts(finished_study: tuple[Path, str]) -> None:
    folder, url = finished_study
    workdir = folder / "runs"
    result = run_cli("plot", "tiny", "--db", url, "-o", str(folder / "plots"), "--workdir", str(workdir), cwd=folder)
    assert result.returncode == 0, result.stderr
    names = {p.name for p in (folder / "plots").glob("*.png")}
    assert {"optimization_history.png", "param_importances.png", "score_vs_cost.png"} <= names
    assert all((folder / "plots" / n).stat().st_size > 5_000 for n in names)
    study = optuna.load_study(study_name="tiny", storage=url)
    attached = optuna.artifacts.get_all_artifact_meta(study, storage=study._storage)
    assert {a.filename for a in attached} == names
