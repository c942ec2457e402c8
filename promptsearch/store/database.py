"""Database set-up: one URL holds Optuna's RDBStorage tables and promptsearch's own.

In: a SQLAlchemy URL. Out: an engine whose schema is checked against the code (`open_engine`: a
database older than the code is refused with a message naming `promptsearch db upgrade`), Optuna's
storage on the same database (`optuna_storage`), and the migration itself (`upgrade`, Alembic, `db/`).
Passwords never reach a message: `redact` masks them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from promptsearch.errors import UserError
from promptsearch.resources import bundled_dir

VERSION_TABLE = "promptsearch_alembic_version"  # Optuna's own migrations use `alembic_version`
DEFAULT_URL = "sqlite:///promptsearch.db"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(bundled_dir("db")))
    cfg.attributes["url"] = url
    return cfg


@cache
def _head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config("")).get_current_head() or ""


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"not a database URL: {redact(url)} (expected e.g. {DEFAULT_URL})") from exc
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60}
    try:
        return create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise UserError(f"cannot use database URL {redact(url)}: {exc}") from exc


def open_engine(url: str, create_if_empty: bool = True) -> Engine:
    """An engine on `url` whose promptsearch schema is the code's; a database without promptsearch's
    tables gets them when `create_if_empty`."""
    parsed = make_url(url) if "://" in url else None
    if (
        parsed is not None
        and parsed.get_backend_name() == "sqlite"
        and parsed.database
        and parsed.database != ":memory:"
        and not create_if_empty
        and not Path(parsed.database).exists()
    ):
        raise UserError(f"database file {Path(parsed.database).resolve()} does not exist")
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
            # A database with no promptsearch tables yet (new, or holding only Optuna's) gets them.
            empty = not any(t.startswith("ps_") for t in inspect(conn).get_table_names())
    except OperationalError as exc:
        raise UserError(f"cannot reach database {redact(url)}: {exc.orig}") from exc
    head = _head_revision()
    if current != head:
        if current is None and empty and create_if_empty:
            upgrade(url)
        elif current is None:
            raise UserError(
                f"database {redact(url)} has no promptsearch tables; run `promptsearch db upgrade --db URL`"
            )
        else:
            raise UserError(
                f"database {redact(url)} is at schema {current}, this code needs {head}: "
                "run `promptsearch db upgrade --db URL`"
            )
    return engine


def optuna_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> optuna.storages.RDBStorage:
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat_interval else None
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=_storage_engine_kwargs(url),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=callback,
    )


def _storage_engine_kwargs(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}


def upgrade(url: str, revision: str = "head") -> str:
    """Create or migrate the project tables (Alembic) and Optuna's tables; return the head revision."""
    engine = _engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise UserError(f"cannot reach database {redact(url)}: {exc.orig}") from exc
    command.upgrade(_alembic_config(url), revision)
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_storage_engine_kwargs(url), skip_compatibility_check=True)
    current, head = storage.get_current_version(), storage.get_head_version()
    if current != head:
        storage.upgrade()
    return _head_revision()
