"""The SQL store: one database URL holds Optuna's RDBStorage tables and these project tables.

Optuna owns trials, params, values and user attrs (there is no second trials table here);
the project tables hold what Optuna has no place for: template texts and lineage, the
content-addressed generation cache, per-trial metrics and proxy runs. Rows reference trials by
(study_name, trial_number). The schema is versioned with Alembic (`db/`); a database older than
the code is refused with a message naming `promptsearch db upgrade`.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from promptsearch.errors import UserError
from promptsearch.resources import bundled_dir

VERSION_TABLE = "promptsearch_alembic_version"  # Optuna's own migrations use `alembic_version`
DEFAULT_URL = "sqlite:///promptsearch.db"
# Heartbeats, the stale-trial retry callback and metric names are marked experimental in Optuna 5;
# they are what this project relies on, so the warnings only add noise.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class TemplateRow(Base):
    __tablename__ = "ps_templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    family: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(50))  # seed | file | proposed
    parents: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class GenerationRow(Base):
    """One sample; `key` = hash(template text, model id+revision, sampling, seed, doc id, sample index)."""

    __tablename__ = "ps_generations"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_hash: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(500))
    model_revision: Mapped[str] = mapped_column(String(200))
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    doc_id: Mapped[str] = mapped_column(String(500))
    sample_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str] = mapped_column(String(50))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class TrialOutputRow(Base):
    """Which cached samples a trial used, and which one best-of-N selected per document."""

    __tablename__ = "ps_trial_outputs"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "generation_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    doc_id: Mapped[str] = mapped_column(String(500))
    generation_key: Mapped[str] = mapped_column(String(64))
    selected: Mapped[bool] = mapped_column(Boolean)


class TrialMetricRow(Base):
    __tablename__ = "ps_trial_metrics"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)


class ProxyRunRow(Base):
    __tablename__ = "ps_proxy_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # hash of everything the result depends on (profile, mixture texts, ratio, seed): identical inputs reuse it
    input_key: Mapped[str] = mapped_column(String(64), index=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str] = mapped_column(String(200))
    model_config_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    train_tokens: Mapped[int] = mapped_column(Integer)
    synthetic_tokens: Mapped[int] = mapped_column(Integer)
    mix_in_tokens: Mapped[int] = mapped_column("raw_tokens", Integer)
    wall_seconds: Mapped[float] = mapped_column(Float)
    checkpoint_path: Mapped[str] = mapped_column(Text)
    scores: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ProxyCalibrationRow(Base):
    """The noise floor of a proxy profile: score spread over training seeds on one fixed mixture."""

    __tablename__ = "ps_proxy_calibrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(200), index=True)
    profile_hash: Mapped[str] = mapped_column(String(64))
    seeds: Mapped[int] = mapped_column(Integer)
    means: Mapped[dict[str, float]] = mapped_column(JSON)
    stds: Mapped[dict[str, float]] = mapped_column(JSON)
    runs: Mapped[list[dict[str, float]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class AblationRow(Base):
    """A promoted trial's full ablation: its bundle folder, overall state and ingested results."""

    __tablename__ = "ps_ablations"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "profile"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str] = mapped_column(String(200))  # the ablation profile
    proxy_profile: Mapped[str] = mapped_column(String(200))
    # the first objective, signed so that higher is better (the column kept its first name)
    proxy_objective: Mapped[float] = mapped_column("proxy_score", Float)
    promoted_by: Mapped[str] = mapped_column(String(100))  # manual | top_k | pareto | beats_best
    bundle_dir: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(50))  # PROMOTED, SUBMITTED, RUNNING, COMPLETED, FAILED, ...
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class AblationJobRow(Base):
    """One Slurm job of an ablation's chain, with the state last seen by squeue/scontrol/sacct."""

    __tablename__ = "ps_ablation_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ablation_id: Mapped[int] = mapped_column(ForeignKey("ps_ablations.id"), index=True)
    stage: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[str] = mapped_column(String(50))
    depends_on: Mapped[str] = mapped_column(String(200))
    log_glob: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(50), default="SUBMITTED")
    reason: Mapped[str] = mapped_column(String(200), default="")
    exit_code: Mapped[str] = mapped_column(String(20), default="")
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class AblationCalibrationRow(Base):
    """How well a proxy profile ranks recipes the way the full ablation does."""

    __tablename__ = "ps_ablation_calibrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proxy_profile: Mapped[str] = mapped_column(String(200), index=True)
    profile: Mapped[str] = mapped_column(String(200))
    trials: Mapped[int] = mapped_column(Integer)
    kendall_tau: Mapped[float | None] = mapped_column(Float, nullable=True)
    pairwise_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ProposalRoundRow(Base):
    """A proposal round, claimed by the worker that inserts it (several workers may reach the same trigger)."""

    __tablename__ = "ps_proposal_rounds"
    __table_args__ = (UniqueConstraint("study_name", "round_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    round_index: Mapped[int] = mapped_column(Integer)
    finished_trials: Mapped[int] = mapped_column(Integer)  # what triggered it
    proposer_model: Mapped[str] = mapped_column(String(500))
    error: Mapped[str] = mapped_column(Text, default="")  # why the round stopped early ("" = it ran through)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ProposalRow(Base):
    """One operator call: its inputs (parents, feedback), DSPy's prompt and the model's response, and the
    verdict — accepted (with the template it became), rejected or failed, with the reason."""

    __tablename__ = "ps_proposals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    round_index: Mapped[int] = mapped_column(Integer)
    operator: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))  # accepted | rejected | failed
    reason: Mapped[str] = mapped_column(String(100), default="")
    template_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    parent_template_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    parent_trials: Mapped[list[int]] = mapped_column(JSON, default=list)
    proposer_model: Mapped[str] = mapped_column(String(500))
    proposer_revision: Mapped[str] = mapped_column(String(200))
    feedback: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    response: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


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


class Store:
    """Access to the project tables; `Store.open(url)` checks the schema version first."""

    def __init__(self, url: str, engine: Engine):
        self.url = url
        self.engine = engine

    @classmethod
    def open(cls, url: str, create_if_empty: bool = True) -> Store:
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
        return cls(url, engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def optuna_storage(
        self, heartbeat_interval: int | None = None, grace_period: int | None = None
    ) -> optuna.storages.RDBStorage:
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat_interval else None
        return optuna.storages.RDBStorage(
            self.url,
            engine_kwargs=_storage_engine_kwargs(self.url),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=callback,
        )

    # -- templates
    def add_template(
        self, name: str, family: str, text: str, text_hash: str, origin: str, parents: Iterable[int] = ()
    ) -> int:
        with self.session() as s:
            row = s.scalar(select(TemplateRow).where(TemplateRow.text_hash == text_hash))
            if row is None:
                row = TemplateRow(
                    name=name, family=family, text=text, text_hash=text_hash, origin=origin, parents=list(parents)
                )
                s.add(row)
                s.flush()
            return row.id

    def template(self, template_id: int) -> TemplateRow:
        with self.session() as s:
            row = s.get(TemplateRow, template_id)
            if row is None:
                raise UserError(f"template {template_id} not found in {redact(self.url)}")
            s.expunge(row)
            return row

    def templates(self, template_ids: Iterable[int]) -> list[TemplateRow]:
        ids = list(template_ids)
        with self.session() as s:
            rows = {r.id: r for r in s.scalars(select(TemplateRow).where(TemplateRow.id.in_(ids)))}
            for row in rows.values():
                s.expunge(row)
        return [rows[i] for i in ids if i in rows]

    # -- template proposals
    def claim_round(self, study: str, round_index: int, finished_trials: int, proposer_model: str) -> bool:
        """True for the one worker whose insert wins; the others skip the round."""
        try:
            with self.session() as s:
                s.add(
                    ProposalRoundRow(
                        study_name=study,
                        round_index=round_index,
                        finished_trials=finished_trials,
                        proposer_model=proposer_model,
                    )
                )
        except IntegrityError:
            return False
        return True

    def end_round(self, study: str, round_index: int, error: str) -> None:
        with self.session() as s:
            row = s.scalar(
                select(ProposalRoundRow).where(
                    ProposalRoundRow.study_name == study, ProposalRoundRow.round_index == round_index
                )
            )
            if row is not None:
                row.error = error

    def add_proposal(self, row: ProposalRow) -> None:
        with self.session() as s:
            s.add(row)

    def proposals(self, study: str) -> list[ProposalRow]:
        with self.session() as s:
            rows = list(s.scalars(select(ProposalRow).where(ProposalRow.study_name == study).order_by(ProposalRow.id)))
            for row in rows:
                s.expunge(row)
            return rows

    # -- generation cache
    def cached_generations(self, keys: list[str]) -> dict[str, GenerationRow]:
        out: dict[str, GenerationRow] = {}
        with self.session() as s:
            for start in range(0, len(keys), 500):
                for row in s.scalars(select(GenerationRow).where(GenerationRow.key.in_(keys[start : start + 500]))):
                    s.expunge(row)
                    out[row.key] = row
        return out

    def put_generation(self, row: GenerationRow) -> None:
        """Committed immediately, so nothing generated is lost to a crash or Ctrl-C."""
        with self.session() as s:
            if s.get(GenerationRow, row.key) is None:
                s.add(row)

    # -- per-trial results
    def record_trial_outputs(self, study: str, trial: int, rows: list[tuple[str, str, bool]]) -> None:
        with self.session() as s:
            existing = {
                r.generation_key: r
                for r in s.scalars(
                    select(TrialOutputRow).where(
                        TrialOutputRow.study_name == study, TrialOutputRow.trial_number == trial
                    )
                )
            }
            for doc_id, key, selected in rows:
                if key in existing:
                    existing[key].selected = selected
                else:
                    s.add(
                        TrialOutputRow(
                            study_name=study, trial_number=trial, doc_id=doc_id, generation_key=key, selected=selected
                        )
                    )

    def selected_outputs(self, study: str, trial: int) -> list[tuple[str, GenerationRow]]:
        """(doc id, sample) for each document's sample that best-of-N kept in this trial."""
        query = (
            select(TrialOutputRow.doc_id, GenerationRow)
            .join(GenerationRow, GenerationRow.key == TrialOutputRow.generation_key)
            .where(
                TrialOutputRow.study_name == study,
                TrialOutputRow.trial_number == trial,
                TrialOutputRow.selected.is_(True),
            )
            .order_by(TrialOutputRow.id)
        )
        with self.session() as s:
            rows = [(doc_id, row) for doc_id, row in s.execute(query)]
            for _, row in rows:
                s.expunge(row)
            return rows

    def record_metrics(self, study: str, trial: int, stage: str, metrics: dict[str, float]) -> None:
        with self.session() as s:
            existing = {
                r.name: r
                for r in s.scalars(
                    select(TrialMetricRow).where(
                        TrialMetricRow.study_name == study, TrialMetricRow.trial_number == trial
                    )
                )
            }
            for name, value in metrics.items():
                if name in existing:
                    existing[name].value = float(value)
                else:
                    s.add(
                        TrialMetricRow(study_name=study, trial_number=trial, stage=stage, name=name, value=float(value))
                    )

    def trial_metrics(self, study: str, trial: int) -> dict[str, float]:
        """Every metric recorded for the trial: this table is their source of truth (Optuna's user attrs
        carry a copy for the dashboard, and cannot take the scores that arrive after a trial finished)."""
        with self.session() as s:
            rows = s.scalars(
                select(TrialMetricRow).where(TrialMetricRow.study_name == study, TrialMetricRow.trial_number == trial)
            )
            return {r.name: r.value for r in rows}

    def study_metrics(self, study: str) -> dict[int, dict[str, float]]:
        """Trial number → its metrics, for every trial of the study, in one query."""
        out: dict[int, dict[str, float]] = {}
        with self.session() as s:
            for r in s.scalars(select(TrialMetricRow).where(TrialMetricRow.study_name == study)):
                out.setdefault(r.trial_number, {})[r.name] = r.value
        return out

    def add_proxy_run(self, row: ProxyRunRow) -> None:
        with self.session() as s:
            s.add(row)

    def proxy_run(self, input_key: str) -> ProxyRunRow | None:
        with self.session() as s:
            return s.scalars(select(ProxyRunRow).where(ProxyRunRow.input_key == input_key).limit(1)).first()

    def add_calibration(self, row: ProxyCalibrationRow) -> None:
        with self.session() as s:
            s.add(row)

    def latest_calibration(self, profile: str) -> ProxyCalibrationRow | None:
        with self.session() as s:
            query = select(ProxyCalibrationRow).where(ProxyCalibrationRow.profile == profile)
            return s.scalars(query.order_by(ProxyCalibrationRow.id.desc()).limit(1)).first()

    # -- ablations
    def ablation(self, study: str, trial: int, profile: str | None = None) -> AblationRow:
        """The trial's ablation (the latest one when `profile` is None); a UserError if it was never promoted."""
        with self.session() as s:
            query = select(AblationRow).where(AblationRow.study_name == study, AblationRow.trial_number == trial)
            if profile is not None:
                query = query.where(AblationRow.profile == profile)
            row = s.scalars(query.order_by(AblationRow.id.desc()).limit(1)).first()
            if row is None:
                raise UserError(f"trial {trial} of study {study!r} is not promoted (see `promptsearch promote`)")
            return row

    def ablations(self, study: str | None = None) -> list[AblationRow]:
        with self.session() as s:
            query = select(AblationRow).order_by(AblationRow.id)
            if study is not None:
                query = query.where(AblationRow.study_name == study)
            return list(s.scalars(query))

    def add_ablation(self, row: AblationRow) -> AblationRow:
        with self.session() as s:
            s.add(row)
        return row

    def update_ablation(self, ablation_id: int, **fields: Any) -> None:
        with self.session() as s:
            row = s.get(AblationRow, ablation_id)
            for key, value in fields.items():
                setattr(row, key, value)

    def add_ablation_job(self, row: AblationJobRow) -> None:
        """Committed at once: a job id is never lost, even if the next submission fails."""
        with self.session() as s:
            s.add(row)

    def ablation_jobs(self, ablation_id: int) -> list[AblationJobRow]:
        with self.session() as s:
            query = select(AblationJobRow).where(AblationJobRow.ablation_id == ablation_id)
            return list(s.scalars(query.order_by(AblationJobRow.id)))

    def update_ablation_job(self, job_row_id: int, **fields: Any) -> None:
        with self.session() as s:
            row = s.get(AblationJobRow, job_row_id)
            for key, value in fields.items():
                setattr(row, key, value)

    def add_ablation_calibration(self, row: AblationCalibrationRow) -> None:
        with self.session() as s:
            s.add(row)

    def latest_ablation_calibrations(self, proxy_profile: str) -> list[AblationCalibrationRow]:
        """The newest calibration against each ablation profile."""
        with self.session() as s:
            query = select(AblationCalibrationRow).where(AblationCalibrationRow.proxy_profile == proxy_profile)
            latest: dict[str, AblationCalibrationRow] = {}
            for row in s.scalars(query.order_by(AblationCalibrationRow.id)):
                latest[row.profile] = row
            return list(latest.values())

    def delete_study_rows(self, study: str) -> None:
        with self.session() as s:
            for table in (TrialOutputRow, TrialMetricRow, ProxyRunRow, ProposalRoundRow, ProposalRow):
                s.query(table).filter(table.study_name == study).delete()
            ablation_ids = select(AblationRow.id).where(AblationRow.study_name == study)
            s.query(AblationJobRow).filter(AblationJobRow.ablation_id.in_(ablation_ids)).delete()
            s.query(AblationRow).filter(AblationRow.study_name == study).delete()


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
