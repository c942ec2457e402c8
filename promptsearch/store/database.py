"""Database set-up: one URL holds Optuna's RDBStorage tables and promptsearch's own.

In: a SQLAlchemy URL. Out: an engine whose schema is checked against the code (`open_engine`: a
database older than the code is refused with a message naming `promptsearch db upgrade`), Optuna's
storage on the same database (`optuna_storage`), and the migration itself (`upgrade`, Alembic, `db/`).
Passwords never reach a message: `redact` masks them.
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError

from promptsearch.errors import UserError
from promptsearch.logs import WaitNotice
from promptsearch.resources import bundled_dir

VERSION_TABLE = "promptsearch_alembic_version"  # Optuna's own migrations use `alembic_version`
DEFAULT_URL = "sqlite:///promptsearch.db"
SQLITE_TIMEOUT_SECONDS = 60  # how long a statement waits for another process's lock before failing
LOCK_NOTICE_SECONDS = 2.0  # a statement or COMMIT still waiting after this says so on stderr
# Queues a lost trial's re-run (same params and user attrs, `failed_trial` in its system attrs): called by the
# heartbeat for a worker that went silent, and by a worker cancelled with SIGTERM for its own trial.
with warnings.catch_warnings():  # experimental in Optuna 5, and what studies here rely on
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY_LOST_TRIAL = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(bundled_dir("db")))
    cfg.attributes["url"] = url
    return cfg


@cache
def _head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config("")).get_current_head() or ""


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise UserError(f"not a database URL: {redact(url)} (expected e.g. {DEFAULT_URL}): {exc}") from exc


def _engine(url: str) -> Engine:
    parsed = _parse(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_SECONDS}
    try:
        return create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise UserError(f"cannot use database URL {redact(url)}: {exc}") from exc


def _lock_notice(database: str) -> WaitNotice:
    """A statement or COMMIT that waits for another process's lock says so on stderr while it waits."""
    what = f"database sqlite:///{database}: another process holds its lock"
    return WaitNotice(what, f"giving up after {SQLITE_TIMEOUT_SECONDS} s", LOCK_NOTICE_SECONDS)


class _NoticingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with _lock_notice(self.connection.database):  # type: ignore[attr-defined]
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        with _lock_notice(self.connection.database):  # type: ignore[attr-defined]
            return super().executemany(sql, parameters)


class _NoticingConnection(sqlite3.Connection):
    """A sqlite3 connection whose waits for another process's lock are not silent. A statement waits for it
    (a write), and so does a COMMIT (for readers to finish): SQLAlchemy's cursor events see only the first."""

    def __init__(self, database: str, *args: Any, **kwargs: Any):
        super().__init__(database, *args, **kwargs)
        self.database = database

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _NoticingCursor)

    def commit(self) -> None:
        with _lock_notice(self.database):
            super().commit()


def _notice_sqlite_locks(dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        params["factory"] = _NoticingConnection


# SQLite waits silently for another process's lock (up to SQLITE_TIMEOUT_SECONDS). On every engine: ours,
# Optuna's storage (whose constructor already runs statements) and Alembic's.
event.listen(Engine, "do_connect", _notice_sqlite_locks)


def open_engine(url: str, create_if_empty: bool = True) -> Engine:
    """An engine on `url` whose promptsearch schema is the code's; a database without promptsearch's
    tables gets them when `create_if_empty`."""
    parsed = _parse(url) if "://" in url else None
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
            current = _current_revision(conn, url)
            # A database with no promptsearch tables yet (new, or holding only Optuna's) gets them.
            empty = not any(t.startswith("ps_") for t in inspect(conn).get_table_names())
    except DatabaseError as exc:  # OperationalError (cannot connect) included; "file is not a database"
        raise UserError(f"cannot reach database {redact(url)}: {_one_line(exc.orig)}") from exc
    head = _head_revision()
    if current != head:
        if current is None and empty and create_if_empty:
            upgrade(url)
        elif current is None:
            raise UserError(
                f"database {redact(url)} has no promptsearch tables; run `promptsearch db upgrade --db URL`"
            )
        else:
            _refuse_newer(url, current)
            raise UserError(
                f"database {redact(url)} is at schema {current}, this code needs {head}: "
                "run `promptsearch db upgrade --db URL`"
            )
    _refuse_damaged(engine, url)
    return engine


def _one_line(error: object) -> str:
    """A driver's message on one line (psycopg's span several)."""
    return " ".join(str(error).split())


def _current_revision(conn: Any, url: str) -> str | None:
    """The promptsearch schema revision the database records (None: no promptsearch tables yet)."""
    try:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except AlembicError as exc:  # several rows: a version table no migration writes
        raise UserError(
            f"database {redact(url)} is damaged: its table {VERSION_TABLE} records several schema revisions "
            f"({exc}); restore it from a backup or use a new database"
        ) from exc


def _refuse_newer(url: str, current: str) -> None:
    """A schema revision this code does not know was written by a newer promptsearch: upgrading the
    database cannot help, upgrading promptsearch can."""
    try:
        ScriptDirectory.from_config(_alembic_config("")).get_revision(current)
    except AlembicError as exc:
        raise UserError(
            f"database {redact(url)} is at schema {current}, which a newer promptsearch wrote "
            f"(this one knows up to {_head_revision()}): upgrade promptsearch to use it"
        ) from exc


def missing_tables(engine: Engine) -> list[str]:
    """Tables a database at the head schema must have (promptsearch's and Optuna's) that it lacks."""
    from optuna.storages._rdb.models import BaseModel as OptunaBase

    from promptsearch.store.models import Base

    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
    expected = set(Base.metadata.tables) | set(OptunaBase.metadata.tables)
    return sorted(expected - present)


def _refuse_damaged(engine: Engine, url: str, optuna_only: bool = False) -> None:
    """Refuse a database missing tables its schema says it has (`optuna_only`: Optuna's, whatever promptsearch
    revision it is at: promptsearch's own come with its migrations)."""
    missing = [t for t in missing_tables(engine) if not (optuna_only and t.startswith("ps_"))]
    if missing:
        schema = "it was set up" if optuna_only else f"its schema says {_head_revision()}"
        raise UserError(
            f"database {redact(url)} is damaged: {schema} but table(s) "
            f"{', '.join(missing)} are missing; restore it from a backup or use a new database"
        )


def optuna_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> optuna.storages.RDBStorage:
    callback = RETRY_LOST_TRIAL if heartbeat_interval else None
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=_storage_engine_kwargs(url),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )
    except RuntimeError as exc:  # Optuna's own schema check: its message says which versions
        raise UserError(f"database {redact(url)}: {exc}") from exc


def _storage_engine_kwargs(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}


@contextmanager
def _no_alembic_ini_logging() -> Iterator[None]:
    """Optuna's migration environment (optuna/storages/_rdb/alembic/env.py) applies its alembic.ini logging
    config when the root logger has no handler, which prints Alembic's INFO lines on stderr before any error: a
    refused database would no longer be one line. A handler that drops everything, only meanwhile."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def upgrade(url: str, revision: str = "head") -> str:
    """Create or migrate the project tables (Alembic) and Optuna's tables; return the head revision."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            current = _current_revision(conn, url)
    except DatabaseError as exc:
        raise UserError(f"cannot reach database {redact(url)}: {_one_line(exc.orig)}") from exc
    if current is not None:
        _refuse_newer(url, current)
        # Optuna's storage would recreate a dropped table of its own, empty, and report success
        _refuse_damaged(engine, url, optuna_only=True)
    try:
        command.upgrade(_alembic_config(url), revision)
    except DatabaseError as exc:  # e.g. a table that exists although the recorded revision says it does not
        raise UserError(
            f"database {redact(url)} is damaged: its tables do not match its recorded schema {current} "
            f"({_one_line(exc.orig)}); restore it from a backup or use a new database"
        ) from exc
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_storage_engine_kwargs(url), skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            with _no_alembic_ini_logging():
                storage.upgrade()
    except AlembicError as exc:  # a revision of Optuna's schema this Optuna does not know
        raise UserError(
            f"database {redact(url)}: its Optuna tables were written by another Optuna than {optuna.__version__} "
            f"({exc}); use that version, or a new database"
        ) from exc
    if revision == "head":
        _refuse_damaged(engine, url)
    return _head_revision()
