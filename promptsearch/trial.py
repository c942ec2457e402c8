"""One trial: the recipe Optuna proposes, run through the stages rephrase → measure → proxy → score.

In: an Optuna `Trial` and its `Recipe` (knobs sampled by `SearchSpace.suggest_recipe`).
Out: the objective value(s); every stage's results are committed to the store as they are made.

Each stage is a class with `name` and `run(ctx)`; `build_stages(space)` lists the ones the
space uses (no proxy profile → no proxy stage). A stage that is not built is left out, never stubbed.
What a stage writes for people to look at is in `promptsearch.plots`; when a trial stops early,
`promptsearch.pruning` decides.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import optuna
from datatrove.data import Document
from optuna.artifacts import FileSystemArtifactStore

from promptsearch.cost import device_hours, predicted_rephrase_seconds
from promptsearch.errors import UserError
from promptsearch.measure import Embedder, OutputRecord, QualityClassifier, measure, most_common_opening, select_sample
from promptsearch.plots import save_measure_artifacts, save_proxy_curve, save_sample_artifacts
from promptsearch.proxy import EvalCheckpoint, Mixture, TooLittleData, run_proxy, weighted_score
from promptsearch.proxy_profile import PROXY_SCORES, ProxyProfile, load_proxy_profile
from promptsearch.pruning import dominating_trial, wilcoxon_pairing
from promptsearch.recipe import Recipe
from promptsearch.rephrase import GeneratorServers, rephrase
from promptsearch.space import PruneThresholds, SearchSpace, SuiteObjectiveSelection
from promptsearch.store import Store
from promptsearch.store.models import ProxyRunRow
from promptsearch.suite import suite_objective

SAMPLE_PAIRS = 8  # source/output pairs a trial shows in the dashboard


@dataclass
class Corpora:
    """The study's documents, read once per worker."""

    source: list[Document]
    mix_in: list[str]
    heldout: list[str]
    source_skipped: dict[str, int] = field(default_factory=dict)  # empty / binary / truncated source documents


@dataclass
class WorkerResources:
    """What a worker sets up once and every trial reuses."""

    generators: GeneratorServers
    embedder: Embedder | None
    classifiers: list[QualityClassifier]
    artifacts: FileSystemArtifactStore


@dataclass
class TrialContext:
    study_name: str
    trial: optuna.Trial
    recipe: Recipe
    family: str
    corpora: Corpora
    store: Store
    resources: WorkerResources
    workdir: Path
    records: list[OutputRecord] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, metrics: dict[str, float]) -> None:
        """Store metrics, immediately: in the metrics table (their source of truth), with a copy in Optuna's
        user attrs for the dashboard. The only place a trial's metrics are written. A NaN (a proxy whose training
        diverged) fails the trial in one line naming it, instead of as a database error on SQLite."""
        if nan := sorted(name for name, value in metrics.items() if math.isnan(value)):
            hint = " (its training diverged: lower the proxy profile's train.learning_rate)" if stage == "proxy" else ""
            raise UserError(f"trial {self.trial.number}: {stage} gave NaN for {', '.join(nan)}{hint}")
        self.metrics |= {f"{stage}.{k}": v for k, v in metrics.items()}
        self.store.record_metrics(
            self.study_name, self.trial.number, stage, {f"{stage}.{k}": v for k, v in metrics.items()}
        )
        for name, value in metrics.items():
            self.trial.set_user_attr(f"{stage}.{name}", value)


class Stage(Protocol):
    name: str

    def run(self, ctx: TrialContext) -> None: ...


class RephraseStage:
    name = "rephrase"

    @staticmethod
    def predicted_seconds(ctx: TrialContext) -> float | None:
        """Cost prediction before generating: this generator's measured throughput in earlier trials."""
        metrics = ctx.store.study_metrics(ctx.study_name)
        earlier = [
            metrics.get(t.number, {})
            for t in ctx.trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.params.get("generator") == ctx.recipe.generator.name
        ]
        return predicted_rephrase_seconds(earlier, len(ctx.corpora.source) * ctx.recipe.best_of_n)

    def run(self, ctx: TrialContext) -> None:
        if (predicted := self.predicted_seconds(ctx)) is not None:
            ctx.trial.set_user_attr("rephrase.predicted_seconds", predicted)
        if skipped := ctx.corpora.source_skipped:  # before generating: `study start` shows them while it runs
            ctx.record("rephrase", {f"source_{reason}": count for reason, count in skipped.items()})
        result = rephrase(ctx.corpora.source, ctx.recipe, ctx.store, ctx.resources.generators, ctx.workdir)
        outputs: list[tuple[str, str, bool]] = []
        openings: Counter[str] = Counter()
        for doc in ctx.corpora.source:
            samples = result.samples[doc.id]
            best = select_sample(doc.text, [s.text for s in samples], ctx.family, ctx.recipe.selection, openings)
            chosen = samples[best]
            openings[chosen.text.strip()[:20]] += 1
            ctx.records.append(
                OutputRecord(doc.text, chosen.text, ctx.family, chosen.finish_reason, chosen.completion_tokens)
            )
            outputs.extend((doc.id, s.key, i == best) for i, s in enumerate(samples))
        ctx.store.record_trial_outputs(ctx.study_name, ctx.trial.number, outputs)
        pairs = [
            {
                "doc_id": doc.id,
                "source": doc.text,
                "output": record.output,
                "samples": [s.text for s in result.samples[doc.id]],
            }
            for doc, record in zip(ctx.corpora.source[:SAMPLE_PAIRS], ctx.records, strict=False)
        ]
        save_sample_artifacts(ctx.trial, ctx.resources.artifacts, ctx.workdir, pairs)
        ctx.record(
            "rephrase",
            {
                "requests_made": result.requests_made,
                "requests_cached": result.requests_cached,
                "completion_tokens": result.completion_tokens_generated,
                "prompt_tokens": result.prompt_tokens_generated,
                "seconds": result.wall_seconds,
                "tokens_per_second": result.completion_tokens_generated / max(result.wall_seconds, 1e-9)
                if result.requests_made
                else 0.0,
                "server_starts": result.server_starts,
                "server_restarts": result.server_restarts,
                **device_hours(ctx.recipe.generator, result.wall_seconds if result.requests_made else 0.0),
            },
        )


class MeasureStage:
    """Metrics of the selected outputs; a trial breaking a threshold is PRUNED here, before the proxy."""

    name = "measure"

    def __init__(self, thresholds: PruneThresholds):
        self.thresholds = thresholds

    def violations(self, metrics: dict[str, float]) -> dict[str, float]:
        """Optuna constraint values (> 0 = broken), one per threshold."""
        t = self.thresholds
        return {
            "unique_prefix_ratio_10": t.min_unique_prefix_ratio_10 - metrics["unique_prefix_ratio_10"],
            "number_recall": t.min_number_recall - metrics["number_recall"],
            "format_validity": t.min_format_validity - metrics["format_validity"],
            "echo_rate": metrics["echo_rate"] - t.max_echo_rate,
            "failure_rate": metrics["failure_rate"] - t.max_failure_rate,
        }

    def run(self, ctx: TrialContext) -> None:
        metrics = measure(ctx.records, ctx.resources.embedder, ctx.resources.classifiers)
        ctx.record("measure", metrics)
        opening, _ = most_common_opening([r.output for r in ctx.records])
        ctx.trial.set_user_attr("measure.top_opening", opening)
        title = f"trial {ctx.trial.number}: {ctx.recipe.template_name} prefix collapse"
        save_measure_artifacts(ctx.trial, ctx.resources.artifacts, ctx.workdir / "measure", metrics, title)
        violations = self.violations(metrics)
        for name, value in violations.items():
            ctx.trial.set_constraint(name, value)
        if broken := [name for name, value in violations.items() if value > 0]:
            reason = "measure: " + ", ".join(f"{n} {metrics[n]:.2f} breaks its threshold" for n in broken)
            ctx.trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)


class ProxyStage:
    """The proxy ladder: each rung (a proxy profile, cheapest first) trains on the trial's mixture.

    Every eval checkpoint is recorded as it is made (`proxy.rung<r>.ck<k>.*`, so a pruned trial keeps
    its partial scores) and reported to Optuna; a single-objective study's pruner may stop the trial
    there. In multi-objective studies, where Optuna's pruners cannot run, a trial climbs to the next
    rung only if no other trial dominates it on the rung below. The last rung gives `proxy.*`.
    """

    name = "proxy"

    def __init__(
        self, rungs: list[ProxyProfile], space: SearchSpace, suite_objective: SuiteObjectiveSelection | None = None
    ):
        self.rungs = rungs
        self.weights = space.proxy_weights
        self.suite_objective = suite_objective  # `proxy.suite_objective`'s metric and tasks, as `study create` chose
        self.objectives = space.objectives
        self.wilcoxon = wilcoxon_pairing(space.pruner, space.objectives[0])
        self.last_step = sum(profile.eval_checkpoints for profile in rungs)
        self.scores_suite = any(profile.suite is not None for profile in rungs)  # through lighteval

    def input_key(self, ctx: TrialContext, profile: ProxyProfile) -> str:
        parts = [
            PROXY_SCORES,  # a run stored before a score existed cannot report it: it is not reused
            profile.model_dump(mode="json"),
            ctx.recipe.mix_ratio,
            ctx.recipe.seed,
            [r.output for r in ctx.records],
            ctx.corpora.mix_in,
            ctx.corpora.heldout,
        ]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()

    def run(self, ctx: TrialContext) -> None:
        mixture = Mixture(
            synthetic=[r.output for r in ctx.records],
            mix_in=ctx.corpora.mix_in,
            heldout=ctx.corpora.heldout,
            knowledge_sources=[r.source for r in ctx.records],
            mix_ratio=ctx.recipe.mix_ratio,
        )
        first_step = 0
        for rung, profile in enumerate(self.rungs):
            if rung and len(self.objectives) > 1:
                self._promote_by_pareto_rank(ctx, rung)
            scores, train_tokens, reused = self._run_rung(ctx, rung, profile, mixture, first_step)
            first_step += profile.eval_checkpoints
            if rung < len(self.rungs) - 1:  # what the next rung's Pareto promotion compares
                ctx.record("proxy", {f"rung{rung}.{k}": v for k, v in scores.items()})
        ctx.record("proxy", {**scores, "train_tokens": train_tokens, "reused": reused})

    def _run_rung(
        self, ctx: TrialContext, rung: int, profile: ProxyProfile, mixture: Mixture, first_step: int
    ) -> tuple[dict[str, float], int, int]:
        """Scores (with `score`), train tokens and 1 if an identical earlier run was reused."""
        key = self.input_key(ctx, profile)
        if (previous := ctx.store.proxy_run(key)) is not None:
            # Training is deterministic given its inputs: an identical mixture reuses the earlier run,
            # which reports its final scores at the rung's last checkpoint only.
            scores = self.combined(previous.scores)
            self._report(ctx, first_step + profile.eval_checkpoints, scores, None)
            return scores, previous.train_tokens, 1

        def on_checkpoint(checkpoint: EvalCheckpoint) -> None:
            scores = self.combined(checkpoint.scores)
            recorded = scores | {"train_tokens": checkpoint.train_tokens}
            ctx.record("proxy", {f"rung{rung}.ck{checkpoint.index}.{k}": v for k, v in recorded.items()})
            self._report(ctx, first_step + checkpoint.index, scores, checkpoint)

        started = time.monotonic()
        try:
            result = run_proxy(
                mixture, profile, ctx.workdir / f"proxy-{rung}-{profile.name}", ctx.recipe.seed, on_checkpoint
            )
        except TooLittleData as exc:
            ctx.trial.set_user_attr("pruned_reason", f"proxy: {exc}")
            raise optuna.TrialPruned(str(exc)) from exc
        ctx.store.add_proxy_run(
            ProxyRunRow(
                input_key=key,
                study_name=ctx.study_name,
                trial_number=ctx.trial.number,
                profile=profile.name,
                model_config_json=profile.model.model_dump(),
                seed=ctx.recipe.seed + profile.train.seed,
                train_tokens=result.train_tokens,
                synthetic_tokens=result.synthetic_tokens,
                mix_in_tokens=result.mix_in_tokens,
                wall_seconds=time.monotonic() - started,
                checkpoint_path=str(result.checkpoint),
                scores=result.scores,
            )
        )
        ctx.record("proxy", {f"rung{rung}.{k}_seconds": v for k, v in result.seconds.items()})
        curve = ctx.workdir / f"proxy_curve_rung{rung}.png"
        title = f"trial {ctx.trial.number}: proxy {profile.name}"
        save_proxy_curve(ctx.trial, ctx.resources.artifacts, curve, title, result)
        return self.combined(result.scores), result.train_tokens, 0

    def combined(self, scores: dict[str, float]) -> dict[str, float]:
        """A run's scores with those made of them: `score` (`proxy_weights`) and, in a study whose objective is
        `proxy.suite_objective`, `suite_objective` (when the run scored the suite: a rung below may not)."""
        out = {**scores, "score": weighted_score(scores, self.weights)}
        if self.suite_objective is not None:
            chosen = self.suite_objective
            if (value := suite_objective(scores, chosen.choice.metric, chosen.tasks)) is not None:
                out["suite_objective"] = value
        return out

    def _report(
        self, ctx: TrialContext, step: int, scores: dict[str, float], checkpoint: EvalCheckpoint | None
    ) -> None:
        """Feed the pruner; multi-objective studies cannot report (Optuna raises), they promote by rank.
        A reused run (`checkpoint` None) reports its final score only, or nothing to a Wilcoxon pruner."""
        if len(self.objectives) > 1:
            return
        if self.wilcoxon is not None:
            field_values = getattr(checkpoint, self.wilcoxon.field) if checkpoint is not None else []
            values = [self.wilcoxon.sign * v for v in field_values]
            for i, value in enumerate(values):
                ctx.trial.report(value, (step - 1) * len(values) + i)
        else:
            ctx.trial.report(scores[self.objectives[0].metric.removeprefix("proxy.")], step)
        # After the last checkpoint the training is spent: pruning would save nothing and lose the score.
        if step < self.last_step and ctx.trial.should_prune():
            reason = f"proxy: pruned by the pruner at checkpoint {step}"
            ctx.trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)

    def _promote_by_pareto_rank(self, ctx: TrialContext, rung: int) -> None:
        """Stop unless no trial that finished rung `rung - 1` dominates this one there."""
        keys = [o.metric.replace("proxy.", f"proxy.rung{rung - 1}.", 1) for o in self.objectives]
        metrics = ctx.store.study_metrics(ctx.study_name)
        others = [(n, metrics[n]) for n in sorted(metrics) if n != ctx.trial.number]
        dominating = dominating_trial(ctx.metrics, others, keys, [o.direction for o in self.objectives])
        if dominating is not None:
            reason = f"proxy: dominated on rung {rung - 1} by trial {dominating}; not promoted to rung {rung}"
            ctx.trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)


def build_stages(space: SearchSpace, suite_objective: SuiteObjectiveSelection | None = None) -> list[Stage]:
    """The stages a trial runs; `suite_objective`: what `study create` resolved the space's `suite_objective` to."""
    stages: list[Stage] = [RephraseStage(), MeasureStage(space.measure.prune)]
    if rungs := space.proxy_profiles():
        stages.append(ProxyStage([load_proxy_profile(Path(p)) for p in rungs], space, suite_objective))
    return stages


def objective_values(space: SearchSpace, metrics: dict[str, float]) -> list[float]:
    """Stage 5, score: the study's objectives read from the recorded metrics, in space order."""
    return [metrics[o.metric] for o in space.objectives]


def run_trial(ctx: TrialContext, stages: list[Stage], space: SearchSpace) -> list[float]:
    for stage in stages:
        ctx.trial.set_user_attr("stage", stage.name)
        started = time.monotonic()
        stage.run(ctx)
        ctx.trial.set_user_attr(f"seconds.{stage.name}", time.monotonic() - started)
    ctx.trial.set_user_attr("stage", "done")
    return objective_values(space, ctx.metrics)
