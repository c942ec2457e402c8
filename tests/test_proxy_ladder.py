"""The proxy ladder in a real study: eval checkpoints report to Optuna's pruner, pruned trials keep their scores."""

from pathlib import Path

import optuna
import pytest
from conftest import DATA, run_cli, write_space

from promptsearch.corpus import read_corpus
from promptsearch.embedded import VllmServer
from promptsearch.space import load_space
from promptsearch.store import Store


def _run_study(tmp_path: Path, server: VllmServer, **overrides: object) -> str:
    """`study start` on a tiny space (`tmp_path/space.yaml`) with `overrides`, to the end; the database URL."""
    space = write_space(tmp_path / "space.yaml", server, **overrides)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return url


def test_pruner_stops_a_trial_at_an_intermediate_rung(tmp_path: Path, embedded_server: VllmServer) -> None:
    url = _run_study(
        tmp_path,
        embedded_server,
        templates={"seeds": ["faq", "table", "math", "tutorial", "summary"]},
        mix_ratio={"low": 0.05, "high": 0.95},  # wide, so held-out bpb differs clearly between trials
        proxy_ladder=[str(DATA / "proxy-micro-checkpoints.yaml")],
        proxy=str(DATA / "proxy-micro.yaml"),
        # reduction factor 4 with < 8 trials: only the best trial so far at a checkpoint goes on
        pruner={"kind": "successive_halving", "min_resource": 1, "reduction_factor": 4},
        budget={"trials": 5},
    )
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    total_checkpoints = 3 + 1
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed and all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in completed)
    pruned = [t for t in trials if t.user_attrs.get("pruned_reason", "").startswith("proxy: pruned by the pruner")]
    assert pruned, [(t.state, t.user_attrs.get("pruned_reason")) for t in trials]
    store = Store.open(url, create_if_empty=False)
    for trial in pruned:
        assert trial.state == optuna.trial.TrialState.PRUNED
        last = max(trial.intermediate_values)
        assert last < total_checkpoints  # stopped before the top rung finished
        metrics = store.trial_metrics("tiny", trial.number)
        assert metrics["proxy.rung0.ck1.heldout_bpb"] == trial.intermediate_values[1]
        assert "proxy.heldout_bpb" not in metrics  # no final score for a pruned trial
    status = run_cli("study", "status", "tiny", "--db", url, cwd=tmp_path)
    assert "pruned by the pruner" in status.stdout


def test_multi_objective_ladder_promotes_by_pareto_rank(tmp_path: Path, embedded_server: VllmServer) -> None:
    url = _run_study(
        tmp_path,
        embedded_server,
        templates={"seeds": ["faq", "table", "math", "tutorial", "summary"]},
        mix_ratio={"low": 0.05, "high": 0.95},
        # two objectives that move together (score includes -bpb), so most trials are dominated on rung 0
        objectives=[
            {"metric": "proxy.heldout_bpb", "direction": "minimize"},
            {"metric": "proxy.score", "direction": "maximize"},
        ],
        proxy_ladder=[str(DATA / "proxy-micro-checkpoints.yaml")],
        proxy=str(DATA / "proxy-micro.yaml"),
        budget={"trials": 5},
    )
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    held_back = [t for t in trials if "not promoted to rung 1" in t.user_attrs.get("pruned_reason", "")]
    assert held_back, [(t.state, t.user_attrs.get("pruned_reason")) for t in trials]
    by_number = {t.number: t for t in trials}
    for trial in held_back:
        assert trial.state == optuna.trial.TrialState.PRUNED and not trial.intermediate_values
        dominating = by_number[int(trial.user_attrs["pruned_reason"].split("by trial ")[1].split(";")[0])]
        assert dominating.user_attrs["proxy.rung0.heldout_bpb"] <= trial.user_attrs["proxy.rung0.heldout_bpb"]
        assert dominating.user_attrs["proxy.rung0.score"] >= trial.user_attrs["proxy.rung0.score"]


def test_wilcoxon_pruner_compares_documents_bits_per_byte(tmp_path: Path, embedded_server: VllmServer) -> None:
    """Each eval checkpoint reports one value per rephrased document (its knowledge bits per byte, negated for
    a maximized proxy.score), at steps that line the documents up across trials for Optuna's paired test."""
    url = _run_study(
        tmp_path,
        embedded_server,
        objectives=[{"metric": "proxy.score", "direction": "maximize"}],
        templates={"seeds": ["faq", "table", "math"]},
        proxy=str(DATA / "proxy-micro-checkpoints.yaml"),
        pruner={"kind": "wilcoxon", "p_threshold": 0.5, "n_startup_steps": 2},
        budget={"trials": 3},
    )
    sources = [d.text for d in read_corpus(load_space(tmp_path / "space.yaml").source).documents]
    n_bytes = [len(text.encode("utf-8")) for text in sources]
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    for trial in trials:
        reported = trial.intermediate_values
        assert sorted(reported) == list(range(len(reported))) and len(reported) % len(sources) == 0
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(reported) == 3 * len(sources)
            last = [reported[2 * len(sources) + i] for i in range(len(sources))]
            weighted = sum(v * n for v, n in zip(last, n_bytes, strict=True)) / sum(n_bytes)
            assert weighted == pytest.approx(-trial.user_attrs["proxy.knowledge_bpb"], rel=1e-9)
        else:
            assert trial.user_attrs["pruned_reason"].startswith("proxy: pruned by the pruner")
            assert len(reported) < 3 * len(sources)
