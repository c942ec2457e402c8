from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import run_cli
from sqlalchemy import create_engine, inspect

from promptsearch.errors import UserError
from promptsearch.store import Store, upgrade
from promptsearch.store.models import Base


def _check_migrated(url: str) -> None:
    assert upgrade(url) == "0006"
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"ps_templates", "ps_generations", "ps_trial_metrics", "ps_proxy_runs", "trials", "studies"} <= tables
        ours = {"include_name": lambda name, kind, _: kind != "table" or name.startswith("ps_")}
        diff = compare_metadata(MigrationContext.configure(conn, opts=ours), Base.metadata)
        assert diff == [], diff
    Store.open(url, create_if_empty=False)  # accepted: at head
    assert upgrade(url) == "0006"  # idempotent


def test_migrate_from_empty_sqlite(tmp_path: Path) -> None:
    _check_migrated(f"sqlite:///{tmp_path / 'x.db'}")


@pytest.mark.postgres
def test_migrate_from_empty_postgres(pg_url: str) -> None:
    _check_migrated(pg_url)


def test_database_older_than_code_is_refused_then_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")  # a database made by the first release
    with pytest.raises(UserError, match=r"schema 0001, this code needs 0006: run `promptsearch db upgrade"):
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
