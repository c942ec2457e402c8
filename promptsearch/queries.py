"""Study reading: what the `study` and `templates` commands report, computed from a study and its tables.

In: an Optuna study (from `study.open_study`) and its `Store`; `study_list` needs only the store.
Out: typed rows, numbers left unformatted — `StudyStatus` (a `TrialStatusRow` per trial: template, knobs,
objective values, distance to the best in noise floors, key metrics, seconds and a note; the token total
and the time by stage; the full-ablation summary), a `StudyListRow` per study, and `StudyTemplates` (each
template of the pool with its trials, best value, proposal and place in the lineage), and `study.SuiteSignal` (per
benchmark-suite score, its spread over the trials against the proxy's noise floor; `resolve_suite_objective`
picks `proxy.suite_objective`'s tasks by it at `study create`). Stage metrics come
from the metrics table (`Store.study_metrics`), trial bookkeeping (`seconds.<stage>`, `template_id`,
`pruned_reason`) from Optuna's user attrs. The CLI turns these rows into tables.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from promptsearch.dashboard import review_study_name
from promptsearch.objectives import best_value, objective_names
from promptsearch.space import SuiteObjectiveSelection
from promptsearch.store import Store
from promptsearch.store.models import ProposalRow, TemplateRow
from promptsearch.study import (
    DEFAULT_MIN_SNR,
    SuiteSignal,
    objective_noise,
    study_space,
    suite_objective_selection,
    suite_signal,
)

# ------------------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class TrialStatusRow:
    """One trial of `study status`."""

    number: int
    state: str
    template: str | None
    generator: str | None
    temperature: float | None
    top_p: float | None
    best_of_n: int | None
    mix_ratio: float | None
    values: list[float] | None
    # objective → (value - best value) / noise floor, for the objectives with a noise floor
    from_best: dict[str, float | None]
    prefix_10: float | None
    number_recall: float | None
    seconds: float | None
    note: str


@dataclass(frozen=True)
class AblationSummaryRow:
    """A promoted trial with its full-ablation scores (`macro`/`micro` once ingested)."""

    trial_number: int
    profile: str
    promoted_by: str
    proxy_objective: float
    state: str
    macro: float | None
    micro: float | None


@dataclass(frozen=True)
class ProxyAgreement:
    """How well a proxy profile ranked recipes the way an ablation profile did."""

    proxy_profile: str
    profile: str
    trials: int
    kendall_tau: float | None
    pairwise_accuracy: float | None


@dataclass(frozen=True)
class StudyStatus:
    name: str
    objectives: list[str]
    directions: list[str]  # "minimize" | "maximize", one per objective
    noise: dict[str, float]  # objective → its noise floor, for the objectives that have one
    trials: list[TrialStatusRow]
    completion_tokens: int
    generator_starts: int  # generator server processes the trials started, restarts included
    generator_restarts: int  # of which restarts after a server died
    stage_seconds: dict[str, float]  # stage → seconds summed over the trials
    ablations: list[AblationSummaryRow]
    agreements: list[ProxyAgreement]
    source_skipped: dict[str, int]  # reason → source documents the trials skipped (see `source_skipped`)
    suite_signal: SuiteSignal | None  # per suite score, its spread over the trials against the noise floor
    suite_objective: SuiteObjectiveSelection | None  # the tasks `proxy.suite_objective` reads, if an objective
    snr_metric: str  # the metric of `snr_tasks`: the space's `suite_objective.metric` (default prob_norm_token)
    snr_threshold: float  # the SNR of `snr_tasks`: the space's `suite_objective.min_snr` (default DEFAULT_MIN_SNR)
    snr_tasks: list[str]  # the tasks whose SNR on `snr_metric` is >= `snr_threshold`

    @property
    def needs_calibration(self) -> bool:
        """A proxy objective without a noise floor yet."""
        return not self.noise and any(n.startswith("proxy.") for n in self.objectives)


def _note(trial: FrozenTrial) -> str:
    """Why a trial ended as it did, or which trial it re-runs."""
    if "retry_of" in trial.user_attrs:
        return f"re-run of #{trial.user_attrs['retry_of']}"
    if "failed_trial" in trial.system_attrs:
        return f"re-run of #{trial.system_attrs['failed_trial']} (worker lost)"
    return trial.user_attrs.get("pruned_reason") or ("interrupted" if trial.user_attrs.get("interrupted") else "")


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_complete and trial.datetime_start:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def best_values(study: optuna.Study) -> dict[str, float]:
    """Objective → its best value over the COMPLETE trials (empty before any completed)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return {}
    return {
        name: best_value(direction, (t.values[i] for t in complete))
        for i, (name, direction) in enumerate(zip(objective_names(study), study.directions, strict=True))
    }


def stage_seconds(trials: list[FrozenTrial]) -> dict[str, float]:
    """Stage → seconds spent in it, summed over the trials, in the order the stages first appear."""
    out: dict[str, float] = {}
    for t in trials:
        for key, value in t.user_attrs.items():
            if key.startswith("seconds."):
                stage = key.removeprefix("seconds.")
                out[stage] = out.get(stage, 0.0) + value
    return out


def study_status(study: optuna.Study, store: Store) -> StudyStatus:
    """Every trial of the study as `study status` shows it, with the study's totals and ablations."""
    names = objective_names(study)
    noise = objective_noise(study, store)
    best = best_values(study)
    metrics = store.study_metrics(study.study_name)
    template_names: dict[int, str] = {}
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        p, measured = t.params, metrics.get(t.number, {})
        template_id = t.user_attrs.get("template_id")
        if template_id is not None and int(template_id) not in template_names:
            template_names[int(template_id)] = store.template(int(template_id)).name
        rows.append(
            TrialStatusRow(
                number=t.number,
                state=t.state.name,
                template=None if template_id is None else template_names[int(template_id)],
                generator=p.get("generator"),
                temperature=p.get("temperature"),
                top_p=p.get("top_p"),
                best_of_n=p.get("best_of_n"),
                mix_ratio=p.get("mix_ratio"),
                values=list(t.values) if t.values else None,
                from_best={
                    n: (t.values[names.index(n)] - best[n]) / sigma if t.values and sigma and n in best else None
                    for n, sigma in noise.items()
                },
                prefix_10=measured.get("measure.unique_prefix_ratio_10"),
                number_recall=measured.get("measure.number_recall"),
                seconds=_seconds(t),
                note=_note(t),
            )
        )
    space = study_space(study)
    signal = suite_signal(study, store)
    choice = space.suite_objective
    snr_metric = "prob_norm_token" if choice is None else choice.metric
    snr_threshold = DEFAULT_MIN_SNR if choice is None or choice.min_snr is None else choice.min_snr
    return StudyStatus(
        name=study.study_name,
        objectives=names,
        directions=[d.name.lower() for d in study.directions],
        noise=noise,
        trials=rows,
        completion_tokens=sum(int(m.get("rephrase.completion_tokens", 0)) for m in metrics.values()),
        generator_starts=sum(int(m.get("rephrase.server_starts", 0)) for m in metrics.values()),
        generator_restarts=sum(int(m.get("rephrase.server_restarts", 0)) for m in metrics.values()),
        stage_seconds=stage_seconds(trials),
        ablations=ablation_summary(study.study_name, store),
        agreements=proxy_agreements(study.study_name, store),
        source_skipped=source_skipped(metrics),
        suite_signal=signal,
        suite_objective=suite_objective_selection(study),
        snr_metric=snr_metric,
        snr_threshold=snr_threshold,
        snr_tasks=[] if signal is None else signal.tasks_at_least(snr_metric, snr_threshold),
    )


SKIPPED_PREFIX = "rephrase.source_"  # `trial.RephraseStage` records the source's skipped documents by reason


def source_skipped(metrics: Mapping[int, Mapping[str, Any]]) -> dict[str, int]:
    """Source documents skipped by reason (empty, binary, not_utf8, not_json, truncated, …), as the latest
    trial that read the source recorded them (every trial of a study reads the same source). `metrics` are
    the metrics table's, or the trials' user attrs (which hold a copy) while a study runs."""
    for number in sorted(metrics, reverse=True):
        found = {
            k.removeprefix(SKIPPED_PREFIX): int(v) for k, v in metrics[number].items() if k.startswith(SKIPPED_PREFIX)
        }
        if found:
            return {reason: n for reason, n in sorted(found.items()) if n}
    return {}


def describe_skipped(skipped: dict[str, int]) -> str:
    """`source documents skipped: 1 binary, 2 empty` ('' when none were)."""
    if not skipped:
        return ""
    return "source documents skipped: " + ", ".join(f"{n} {reason}" for reason, n in skipped.items())


def ablation_summary(study_name: str, store: Store) -> list[AblationSummaryRow]:
    """The study's promoted trials, in promotion order, with their full-ablation scores."""
    return [
        AblationSummaryRow(
            trial_number=r.trial_number,
            profile=r.profile,
            promoted_by=r.promoted_by,
            proxy_objective=r.proxy_objective,
            state=r.state,
            macro=(r.results or {}).get("macro"),
            micro=(r.results or {}).get("micro"),
        )
        for r in store.ablations(study_name)
    ]


def proxy_agreements(study_name: str, store: Store) -> list[ProxyAgreement]:
    """The latest calibration against each ablation profile of every proxy profile the study promoted with."""
    proxies = sorted({r.proxy_profile for r in store.ablations(study_name)})
    return [
        ProxyAgreement(proxy, c.profile, c.trials, c.kendall_tau, c.pairwise_accuracy)
        for proxy in proxies
        for c in store.latest_ablation_calibrations(proxy)
    ]


def running_stages(study: optuna.Study) -> str:
    """What the running trials are doing, e.g. `#3 rephrase, #4 proxy` (or `idle`)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return ", ".join(f"#{t.number} {t.user_attrs.get('stage', 'starting')}" for t in running) or "idle"


# -------------------------------------------------------------------------------------------- list


@dataclass(frozen=True)
class StudyListRow:
    name: str
    trials: int
    directions: list[str]
    rated: tuple[int, int] | None  # (rated, queued) trials of its review study, if it has one
    started: dt.datetime | None  # when its first trial started


def study_list(store: Store) -> list[StudyListRow]:
    """The studies of the database; a review study is its study's `rated`, not a row of its own."""
    storage = store.optuna_storage()
    studies = {s.study_name: s for s in storage.get_all_studies()}
    trials = {name: storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False) for name in studies}
    reviews = {review_study_name(name) for name in studies} & set(studies)
    rows = []
    for name, s in studies.items():
        if name in reviews:
            continue
        review = trials.get(review_study_name(name))
        started = [t.datetime_start for t in trials[name] if t.datetime_start]
        rows.append(
            StudyListRow(
                name=name,
                trials=len(trials[name]),
                directions=[d.name.lower() for d in s.directions],
                rated=None if review is None else (sum(t.state == TrialState.COMPLETE for t in review), len(review)),
                started=min(started) if started else None,
            )
        )
    return rows


# --------------------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateStanding:
    """A template of the study's pool with its trials and where it sits in the lineage."""

    template: TemplateRow
    operator: str | None  # the proposal operator that made it (None for seed and file templates)
    trials: list[FrozenTrial]
    best: float | None  # best value of the first objective over its COMPLETE trials
    parent: int | None  # its first parent in the pool: the lineage shows it under that one
    crossed_with: list[int]  # its other parents in the pool (a crossover's)

    @property
    def finished(self) -> int:
        return sum(t.state.is_finished() for t in self.trials)


@dataclass(frozen=True)
class StudyTemplates:
    study: str
    objectives: list[str]
    templates: list[TemplateStanding]
    proposals: list[ProposalRow]

    def find(self, key: str) -> TemplateStanding | None:
        """The template with this id or name."""
        return next((s for s in self.templates if str(s.template.id) == key or s.template.name == key), None)

    def proposal_of(self, template_id: int) -> ProposalRow | None:
        return next((p for p in self.proposals if p.template_id == template_id), None)

    def children(self, parent: int | None) -> list[TemplateStanding]:
        """The templates whose first parent in the pool is `parent` (None: the roots)."""
        return [s for s in self.templates if s.parent == parent]

    def proposal_counts(self) -> dict[tuple[str, str], int]:
        """(status, reason) → how many proposals ended so."""
        return dict(Counter((p.status, p.reason) for p in self.proposals))


def study_templates(study: optuna.Study, store: Store) -> StudyTemplates:
    """The study's template pool, each template with its trials and best first-objective value."""
    by_template: dict[int, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        if "template_id" in t.user_attrs:
            by_template.setdefault(int(t.user_attrs["template_id"]), []).append(t)
    proposals = store.proposals(study.study_name)
    operator = {p.template_id: p.operator for p in proposals if p.template_id is not None}
    rows = store.templates(study.user_attrs["template_ids"])
    known = {r.id for r in rows}
    standings = []
    for r in rows:
        mine = by_template.get(r.id, [])
        values = [t.values[0] for t in mine if t.state == TrialState.COMPLETE]
        standings.append(
            TemplateStanding(
                template=r,
                operator=operator.get(r.id),
                trials=mine,
                best=best_value(study.directions[0], values) if values else None,
                parent=next((p for p in r.parents if p in known), None),
                crossed_with=[p for p in r.parents[1:] if p in known],
            )
        )
    return StudyTemplates(study.study_name, objective_names(study), standings, proposals)
