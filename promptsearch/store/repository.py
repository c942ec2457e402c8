"""The repository: every read and write of the project tables, each committed as it is made.

In: a database URL (`Store.open` checks its schema first). Out: rows of `promptsearch.store.models`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from promptsearch.errors import UserError
from promptsearch.store.database import open_engine, optuna_storage, redact
from promptsearch.store.models import (
    AblationCalibrationRow,
    AblationJobRow,
    AblationRow,
    Base,
    GenerationRow,
    ProposalRoundRow,
    ProposalRow,
    ProxyCalibrationRow,
    ProxyRunRow,
    StudyWorkerRow,
    TemplateRow,
    TrialMetricRow,
    TrialOutputRow,
    TrialSlotRow,
)


class Store:
    """Access to the project tables; `Store.open(url)` checks the schema version first."""

    def __init__(self, url: str, engine: Engine):
        self.url = url
        self.engine = engine

    @classmethod
    def open(cls, url: str, create_if_empty: bool = True) -> Store:
        return cls(url, open_engine(url, create_if_empty))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def add(self, row: Base) -> None:
        """Insert one row, committed at once."""
        with self.session() as s:
            s.add(row)

    def optuna_storage(
        self, heartbeat_interval: int | None = None, grace_period: int | None = None
    ) -> optuna.storages.RDBStorage:
        return optuna_storage(self.url, heartbeat_interval, grace_period)

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
        self.add(row)

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
        self.add(row)

    def proxy_run(self, input_key: str) -> ProxyRunRow | None:
        with self.session() as s:
            return s.scalars(select(ProxyRunRow).where(ProxyRunRow.input_key == input_key).limit(1)).first()

    def add_calibration(self, row: ProxyCalibrationRow) -> None:
        self.add(row)

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
        self.add(row)
        return row

    def _update(self, table: type[Base], row_id: int, fields: dict[str, Any]) -> None:
        with self.session() as s:
            row = s.get(table, row_id)
            for key, value in fields.items():
                setattr(row, key, value)

    def update_ablation(self, ablation_id: int, **fields: Any) -> None:
        self._update(AblationRow, ablation_id, fields)

    def add_ablation_job(self, row: AblationJobRow) -> None:
        """Committed at once: a job id is never lost, even if the next submission fails."""
        self.add(row)

    def ablation_jobs(self, ablation_id: int) -> list[AblationJobRow]:
        with self.session() as s:
            query = select(AblationJobRow).where(AblationJobRow.ablation_id == ablation_id)
            return list(s.scalars(query.order_by(AblationJobRow.id)))

    def update_ablation_job(self, job_row_id: int, **fields: Any) -> None:
        self._update(AblationJobRow, job_row_id, fields)

    def add_ablation_calibration(self, row: AblationCalibrationRow) -> None:
        self.add(row)

    def latest_ablation_calibrations(self, proxy_profile: str) -> list[AblationCalibrationRow]:
        """The newest calibration against each ablation profile."""
        with self.session() as s:
            query = select(AblationCalibrationRow).where(AblationCalibrationRow.proxy_profile == proxy_profile)
            latest: dict[str, AblationCalibrationRow] = {}
            for row in s.scalars(query.order_by(AblationCalibrationRow.id)):
                latest[row.profile] = row
            return list(latest.values())

    # -- study workers on Slurm
    def add_study_worker(self, row: StudyWorkerRow) -> None:
        """Committed at once: a worker's job id is never lost, even if the next submission fails."""
        with self.session() as s:
            s.add(row)

    def study_workers(self, study: str) -> list[StudyWorkerRow]:
        with self.session() as s:
            query = select(StudyWorkerRow).where(StudyWorkerRow.study_name == study)
            return list(s.scalars(query.order_by(StudyWorkerRow.id)))

    def update_study_worker(self, row_id: int, **fields: Any) -> None:
        self._update(StudyWorkerRow, row_id, fields)

    # -- trial slots (the study's budget, claimed one trial at a time)
    def claim_trial_slot(self, study: str, limit: int) -> int | None:
        """The lowest slot below `limit` this call inserted, or None when all are taken. Two workers may pick the
        same free slot; the unique (study, slot) lets one insert win and the other try the next one."""
        with self.session() as s:
            taken = set(s.scalars(select(TrialSlotRow.slot).where(TrialSlotRow.study_name == study)))
        for slot in range(limit):
            if slot in taken:
                continue
            try:
                self.add(TrialSlotRow(study_name=study, slot=slot))
            except IntegrityError:
                continue
            return slot
        return None

    def start_trial_slot(self, study: str, slot: int, trial_number: int) -> None:
        with self.session() as s:
            s.execute(
                update(TrialSlotRow)
                .where(TrialSlotRow.study_name == study, TrialSlotRow.slot == slot)
                .values(trial_number=trial_number)
            )

    def slot_trials(self, study: str) -> set[int]:
        """The numbers of the trials started in a slot."""
        with self.session() as s:
            query = select(TrialSlotRow.trial_number).where(
                TrialSlotRow.study_name == study, TrialSlotRow.trial_number.is_not(None)
            )
            return {n for n in s.scalars(query) if n is not None}

    def release_unstarted_slots(self, study: str, claimed_before: dt.datetime) -> int:
        """Delete slots claimed before `claimed_before` that never started a trial (their worker died between
        claim and start); returns how many."""
        with self.session() as s:
            result = s.execute(
                delete(TrialSlotRow).where(
                    TrialSlotRow.study_name == study,
                    TrialSlotRow.trial_number.is_(None),
                    TrialSlotRow.claimed_at < claimed_before,
                )
            )
            return int(result.rowcount)

    def delete_study_rows(self, study: str) -> None:
        with self.session() as s:
            tables = (
                TrialOutputRow,
                TrialMetricRow,
                ProxyRunRow,
                ProposalRoundRow,
                ProposalRow,
                StudyWorkerRow,
                TrialSlotRow,
            )
            for table in tables:
                s.query(table).filter(table.study_name == study).delete()
            ablation_ids = select(AblationRow.id).where(AblationRow.study_name == study)
            s.query(AblationJobRow).filter(AblationJobRow.ablation_id.in_(ablation_ids)).delete()
            s.query(AblationRow).filter(AblationRow.study_name == study).delete()
