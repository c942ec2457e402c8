"""The project's tables (SQLAlchemy models). Optuna owns trials, params, values and user attrs, so there is
no second trials table here: these hold what Optuna has no place for (template texts and lineage, the
generation cache, per-trial metrics, proxy runs and calibrations, ablations, proposals). Rows reference
trials by (study_name, trial_number). Migrations are in `db/versions/`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class TrialRecord:
    """Columns of a row about one trial, which it names the way Optuna does: study name, trial number."""

    study_name: Mapped[str] = mapped_column(String(200), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)


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


class TrialOutputRow(TrialRecord, Base):
    """Which cached samples a trial used, and which one best-of-N selected per document."""

    __tablename__ = "ps_trial_outputs"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "generation_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(500))
    generation_key: Mapped[str] = mapped_column(String(64))
    selected: Mapped[bool] = mapped_column(Boolean)


class TrialMetricRow(TrialRecord, Base):
    __tablename__ = "ps_trial_metrics"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)


class ProxyRunRow(TrialRecord, Base):
    __tablename__ = "ps_proxy_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # hash of everything the result depends on (profile, mixture texts, ratio, seed): identical inputs reuse it
    input_key: Mapped[str] = mapped_column(String(64), index=True)
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


class AblationRow(TrialRecord, Base):
    """A promoted trial's full ablation: its bundle folder, overall state and ingested results."""

    __tablename__ = "ps_ablations"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "profile"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(200))  # the ablation profile
    proxy_profile: Mapped[str] = mapped_column(String(200))
    # the first objective, signed so that higher is better (the column kept its first name)
    proxy_objective: Mapped[float] = mapped_column("proxy_score", Float)
    promoted_by: Mapped[str] = mapped_column(String(100))  # manual | top_k | pareto | beats_best
    bundle_dir: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(50))  # PROMOTED, SUBMITTED, RUNNING, COMPLETED, FAILED, ...
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # GPU-hours: {"predicted": promptsearch.cost.predict_ablation at promotion, "actual": {stage: elapsed x GPUs}}
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
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


class StudyWorkerRow(Base):
    """A study worker running as a Slurm job (`study start --executor slurm`), recorded when sbatch returns."""

    __tablename__ = "ps_study_workers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    worker_index: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(50), default="SUBMITTED")  # last seen by squeue/sacct
    log_path: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class TrialSlotRow(Base):
    """A claim on one trial of a study's budget, inserted by a worker before it starts that trial; the unique
    (study, slot) lets two workers that reach the last slot at the same moment never both win it. Each slot runs
    exactly one trial (`trial_number`, set as it starts); a trial that fails gives its slot's place in the budget
    to one more slot, which its re-run takes (`promptsearch.study.claim_trial_slot`)."""

    __tablename__ = "ps_trial_slots"
    __table_args__ = (UniqueConstraint("study_name", "slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(200), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
