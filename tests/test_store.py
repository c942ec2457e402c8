from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import run_cli
from sqlalchemy import create_engine, inspect

from promptsearch.errors import UserError
from promptsearch.store import Store, upgrade
from promptsearch.store.models import Base


def _check_migrated(url: str) -> None:
    assert upgrade(url) == "0007"
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"ps_templates", "ps_generations", "ps_trial_metrics", "ps_proxy_runs", "trials", "studies"} <= tables
        ours = {"include_name": lambda name, kind, _: kind != "table" or name.startswith("ps_")}
        diff = compare_metadata(MigrationContext.configure(conn, opts=ours), Base.metadata)
        assert diff == [], diff
    Store.open(url, create_if_empty=False)  # accepted: at head
    assert upgrade(url) == "0007"  # idempotent


def test_migrate_from_empty_sqlite(tmp_path: Path) -> None:
    _check_migrated(f"sqlite:///{tmp_path / 'x.db'}")


@pytest.mark.postgres
def test_migrate_from_empty_postgres(pg_url: str) -> None:
    _check_migrated(pg_url)


def test_database_older_than_code_is_refused_then_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")  # a database made by the first release
    with pytest.raises(UserError, match=r"schema 0001, this code needs 0007: run `promptsearch db upgrade"):
        Store.open(url)
    result = run_cli("study", "list", "--db", url, cwd=tmp_path)
    assert result.returncode == 1 and "promptsearch db upgrade" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert run_cli("db", "upgrade", "--db", url, cwd=tmp_path).returncode == 0
    assert "ps_proxy_calibrations" in inspect(create_engine(url)).get_table_names()
    assert run_cli("study", "list", "--db", url, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("postgresql+psycopg://user:hunter2@127.0.0.1:1/nowhere", "cannot reach database"),
    ],
)
def test_bad_database_urls_are_one_line_without_password(tmp_path: Path, url: str, message: str) -> None:
    result = run_cli("study", "list", "--db", url, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_migration_gives_trials_already_run_their_slots(tmp_path: Path) -> None:
    """A study resumed after the upgrade to 0007 runs only what its budget has left: each trial that ran (not one
    still WAITING) holds a slot, numbered from 0 in trial order."""
    import optuna
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0006")
    study = optuna.create_study(study_name="old", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    study.enqueue_trial({"x": 0.5})
    upgrade(url)
    with create_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT study_name, slot, trial_number FROM ps_trial_slots ORDER BY slot")).all()
    assert [tuple(r) for r in rows] == [("old", 0, 0), ("old", 1, 1), ("old", 2, 2)]
    assert Store.open(url).claim_trial_slot("old", 4) == 3


def test_a_failed_trial_hands_its_slot_on(tmp_path: Path) -> None:
    """Slots count the budget's trials that did not fail: once all are taken none is left, until a trial fails."""
    import optuna

    from promptsearch.study import claim_trial_slot

    url = f"sqlite:///{tmp_path / 'slots.db'}"
    store = Store.open(url)
    study = optuna.create_study(study_name="s", storage=store.optuna_storage())
    assert [claim_trial_slot(study, store, 2) for _ in range(3)] == [0, 1, None]
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    assert [claim_trial_slot(study, store, 2) for _ in range(2)] == [2, None]


@pytest.mark.postgres
def test_workers_claiming_at_once_never_take_more_slots_than_the_budget(pg_url: str) -> None:
    """The budget race of several workers finishing together, on PostgreSQL: 6 processes, each with its own
    connection, claim slots of a 9-trial budget at the same moment until none is left."""
    import multiprocessing

    from sqlalchemy import text

    Store.open(pg_url)  # the schema, before the claimers race
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    claimers = [ctx.Process(target=_claim_until_full, args=(pg_url, barrier, results)) for _ in range(6)]
    for p in claimers:
        p.start()
    for p in claimers:
        p.join(60)
    assert [p.exitcode for p in claimers] == [0] * 6
    claimed = [slot for _ in claimers for slot in results.get(timeout=5)]
    assert sorted(claimed) == list(range(9))  # each slot won by exactly one process, none beyond the budget
    with create_engine(pg_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ps_trial_slots WHERE study_name = 'race'")).scalar() == 9


def _claim_until_full(url: str, barrier: Any, results: Any) -> None:
    store = Store.open(url, create_if_empty=False)
    claimed = []
    barrier.wait()
    while (slot := store.claim_trial_slot("race", 9)) is not None:
        claimed.append(slot)
    results.put(claimed)
