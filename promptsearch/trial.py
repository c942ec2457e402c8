"""One trial: the recipe Optuna proposes, run through the stages rephrase → measure → proxy → score.

In: an Optuna `Trial` (template id in user attrs, knobs sampled here from the `SearchSpace`).
Out: the objective value(s); every stage's results are committed to the store as they are made.

Each stage is a class with `name` and `run(ctx)`; `build_stages(space)` lists the ones the
space uses (no proxy profile → no proxy stage). A stage that is not built is left out, never stubbed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

import optuna
from datatrove.data import Document
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from promptsearch.dashboard import samples_jsonl, samples_markdown
from promptsearch.measure import (
    PREFIX_LENGTHS,
    Embedder,
    OutputRecord,
    QualityClassifier,
    measure,
    most_common_opening,
    select_sample,
)
from promptsearch.proxy import EvalCheckpoint, Mixture, ProxyResult, TooLittleData, run_proxy
from promptsearch.rephrase import Generators, rephrase
from promptsearch.space import (
    PROXY_SCORES,
    WILCOXON_PAIRING,
    ProxyProfile,
    PruneThresholds,
    Recipe,
    Sampling,
    SearchSpace,
    TemplateLike,
    load_proxy_profile,
)
from promptsearch.store import GenerationRow, ProxyRunRow, Store


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

    generators: Generators
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
        """Store metrics in the project table and as Optuna user attrs, immediately."""
        self.metrics |= {f"{stage}.{k}": v for k, v in metrics.items()}
        self.store.record_metrics(
            self.study_name, self.trial.number, stage, {f"{stage}.{k}": v for k, v in metrics.items()}
        )
        for name, value in metrics.items():
            self.trial.set_user_attr(f"{stage}.{name}", value)


class Stage(Protocol):
    name: str

    def run(self, ctx: TrialContext) -> None: ...


def predicted_rephrase_seconds(ctx: TrialContext) -> float | None:
    """Cost prediction before generating: this generator's measured throughput in earlier trials."""
    earlier = [
        t.user_attrs
        for t in ctx.trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.params.get("generator") == ctx.recipe.generator.name and t.user_attrs.get("rephrase.requests_made")
    ]
    if not earlier:
        return None
    tokens_per_request = sum(a["rephrase.completion_tokens"] / a["rephrase.requests_made"] for a in earlier)
    tokens_per_second = sum(a["rephrase.tokens_per_second"] for a in earlier)
    requests = len(ctx.corpora.source) * ctx.recipe.best_of_n
    return requests * tokens_per_request / tokens_per_second  # the len(earlier) factors cancel


def _device_hours(ctx: TrialContext, seconds: float) -> dict[str, float]:
    """GPU-hours for vLLM (tp x dp GPUs), CPU core-hours for the embedded server on CPU."""
    import torch

    generator = ctx.recipe.generator
    if generator.backend == "vllm":
        gpus = int(generator.serving.get("tp", 1)) * int(generator.serving.get("dp", 1))
        return {"gpu_hours": seconds * gpus / 3600}
    if generator.backend == "embedded":
        if torch.cuda.is_available():
            return {"gpu_hours": seconds / 3600}
        return {"cpu_core_hours": seconds * len(os.sched_getaffinity(0)) / 3600}
    return {}


class RephraseStage:
    name = "rephrase"

    def run(self, ctx: TrialContext) -> None:
        if (predicted := predicted_rephrase_seconds(ctx)) is not None:
            ctx.trial.set_user_attr("rephrase.predicted_seconds", predicted)
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
        save_sample_artifacts(ctx, result.samples)
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
                "server_restarts": result.server_restarts,
                **{f"source_{reason}": count for reason, count in ctx.corpora.source_skipped.items()},
                **_device_hours(ctx, result.wall_seconds if result.requests_made else 0.0),
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
        save_measure_artifacts(ctx, metrics)
        violations = self.violations(metrics)
        for name, value in violations.items():
            ctx.trial.set_constraint(name, value)
        if broken := [name for name, value in violations.items() if value > 0]:
            reason = "measure: " + ", ".join(f"{n} {metrics[n]:.2f} breaks its threshold" for n in broken)
            ctx.trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attach_artifact(ctx: TrialContext, path: Path, mimetype: str) -> None:
    """Upload a file as an Optuna artifact of the trial (the dashboard lists it) and note its id."""
    artifact_id = upload_artifact(
        artifact_store=ctx.resources.artifacts, file_path=str(path), study_or_trial=ctx.trial, mimetype=mimetype
    )
    ctx.trial.set_user_attr(f"artifact.{path.name}", artifact_id)


SAMPLE_PAIRS = 8  # source/output pairs a trial shows in the dashboard


def save_sample_artifacts(ctx: TrialContext, samples: dict[str, list[GenerationRow]]) -> None:
    """A few source/output pairs (all N samples in the JSONL, the selected one side by side in Markdown)."""
    pairs = [
        {
            "doc_id": doc.id,
            "source": doc.text,
            "output": record.output,
            "samples": [s.text for s in samples[doc.id]],
        }
        for doc, record in zip(ctx.corpora.source[:SAMPLE_PAIRS], ctx.records, strict=False)
    ]
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    (ctx.workdir / "samples.jsonl").write_text(samples_jsonl(pairs), encoding="utf-8")
    (ctx.workdir / "samples.md").write_text(samples_markdown(pairs), encoding="utf-8")
    attach_artifact(ctx, ctx.workdir / "samples.jsonl", "application/jsonl")
    attach_artifact(ctx, ctx.workdir / "samples.md", "text/markdown")


def save_measure_artifacts(ctx: TrialContext, metrics: dict[str, float]) -> None:
    """The metrics JSON and the prefix-collapse plot, as Optuna artifacts of the trial."""
    plt = _pyplot()
    folder = ctx.workdir / "measure"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(PREFIX_LENGTHS, [metrics[f"unique_prefix_ratio_{n}"] for n in PREFIX_LENGTHS], marker="o")
    ax.set(
        xscale="log",
        xlabel="prefix length (characters)",
        ylabel="unique prefixes / outputs",
        ylim=(0, 1.05),
        title=f"trial {ctx.trial.number}: {ctx.recipe.template_name} prefix collapse",
    )
    ax.set_xticks(PREFIX_LENGTHS, [str(n) for n in PREFIX_LENGTHS])
    fig.tight_layout()
    fig.savefig(folder / "prefix_collapse.png", dpi=100)
    plt.close(fig)
    attach_artifact(ctx, folder / "metrics.json", "application/json")
    attach_artifact(ctx, folder / "prefix_collapse.png", "image/png")


def save_proxy_curve(ctx: TrialContext, rung: int, profile: ProxyProfile, result: ProxyResult) -> None:
    """The rung's learning curve: training loss per step, and bits per byte on held-out text and on the
    rephrased documents at each eval checkpoint."""
    plt = _pyplot()
    path = ctx.workdir / f"proxy_curve_rung{rung}.png"
    tokens_per_step = result.train_tokens / max(1, len(result.losses))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([(i + 1) * tokens_per_step for i in range(len(result.losses))], result.losses, lw=0.8, label="train loss")
    for score, label in (("heldout_bpb", "held-out bits/byte"), ("knowledge_bpb", "rephrased documents bits/byte")):
        ax.plot(
            [c.train_tokens for c in result.checkpoints],
            [c.scores[score] for c in result.checkpoints],
            marker="o",
            label=label,
        )
    ax.set(xlabel="training tokens", title=f"trial {ctx.trial.number}: proxy {profile.name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    attach_artifact(ctx, path, "image/png")


class ProxyStage:
    """The proxy ladder: each rung (a proxy profile, cheapest first) trains on the trial's mixture.

    Every eval checkpoint is recorded as it is made (`proxy.rung<r>.ck<k>.*`, so a pruned trial keeps
    its partial scores) and reported to Optuna; a single-objective study's pruner may stop the trial
    there. In multi-objective studies, where Optuna's pruners cannot run, a trial climbs to the next
    rung only if no other trial dominates it on the rung below. The last rung gives `proxy.*`.
    """

    name = "proxy"

    def __init__(self, rungs: list[ProxyProfile], space: SearchSpace):
        self.rungs = rungs
        self.weights = space.proxy_weights
        self.objectives = space.objectives
        self.instance_reports = wilcoxon_instances(space)
        self.last_step = sum(profile.eval_checkpoints for profile in rungs)

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
            raw=ctx.corpora.mix_in,
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
            scores = {**previous.scores, "score": proxy_score(previous.scores, self.weights)}
            self._report(ctx, first_step + profile.eval_checkpoints, scores, None)
            return scores, previous.train_tokens, 1

        def on_checkpoint(checkpoint: EvalCheckpoint) -> None:
            scores = {**checkpoint.scores, "score": proxy_score(checkpoint.scores, self.weights)}
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
                raw_tokens=result.raw_tokens,
                wall_seconds=time.monotonic() - started,
                checkpoint_path=str(result.checkpoint),
                scores=result.scores,
            )
        )
        ctx.record("proxy", {f"rung{rung}.{k}_seconds": v for k, v in result.seconds.items()})
        save_proxy_curve(ctx, rung, profile, result)
        return {**result.scores, "score": proxy_score(result.scores, self.weights)}, result.train_tokens, 0

    def _report(
        self, ctx: TrialContext, step: int, scores: dict[str, float], checkpoint: EvalCheckpoint | None
    ) -> None:
        """Feed the pruner; multi-objective studies cannot report (Optuna raises), they promote by rank.
        A reused run (`checkpoint` None) reports its final score only, or nothing to a Wilcoxon pruner."""
        if len(self.objectives) > 1:
            return
        if self.instance_reports is not None:
            values = self.instance_reports(checkpoint) if checkpoint is not None else []
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

        def values(attrs: dict[str, object]) -> list[float] | None:
            keys = [o.metric.replace("proxy.", f"proxy.rung{rung - 1}.", 1) for o in self.objectives]
            found = [attrs.get(k) for k in keys]
            return [float(v) for v in found] if all(isinstance(v, (int, float)) for v in found) else None

        signs = [1.0 if o.direction == "maximize" else -1.0 for o in self.objectives]
        own = values(dict(ctx.metrics))
        if own is None:
            return
        mine = [s * v for s, v in zip(signs, own, strict=True)]
        for other in ctx.trial.study.get_trials(deepcopy=False):
            found = values(other.user_attrs)
            if other.number == ctx.trial.number or found is None:
                continue
            theirs = [s * v for s, v in zip(signs, found, strict=True)]
            if all(t >= m for t, m in zip(theirs, mine, strict=True)) and theirs != mine:
                reason = f"proxy: dominated on rung {rung - 1} by trial {other.number}; not promoted to rung {rung}"
                ctx.trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)


def wilcoxon_instances(space: SearchSpace) -> Callable[[EvalCheckpoint], list[float]] | None:
    """What a Wilcoxon pruner compares, instance by instance, with the best trial: each cloze item's
    probability for a cloze objective, otherwise each rephrased document's knowledge bits per byte, negated
    when the objective is maximized (proxy.score). None for the other pruners."""
    if space.pruner is None or space.pruner.kind != "wilcoxon":
        return None
    _, field_name = WILCOXON_PAIRING[space.objectives[0].metric]
    if field_name == "item_probs":
        return lambda checkpoint: checkpoint.item_probs
    sign = -1.0 if space.objectives[0].direction == "maximize" else 1.0
    return lambda checkpoint: [sign * bpb for bpb in checkpoint.document_bpb]


def proxy_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """The proxy's single score: a weighted sum of its components (each is also stored on its own)."""
    return sum(weight * scores[name] for name, weight in weights.items())


def build_stages(space: SearchSpace) -> list[Stage]:
    stages: list[Stage] = [RephraseStage(), MeasureStage(space.measure.prune)]
    if rungs := space.proxy_profiles():
        stages.append(ProxyStage([load_proxy_profile(Path(p)) for p in rungs], space))
    return stages


def suggest_recipe(trial: optuna.Trial, space: SearchSpace, template_id: int, template: TemplateLike) -> Recipe:
    """Optuna samples the fixed-shape knobs; the template comes from the enqueued trial."""
    s = space.sampling
    generator = trial.suggest_categorical("generator", [g.name for g in space.generators])
    return Recipe.for_template(
        template_id,
        template,
        generator=space.generator(str(generator)),
        sampling=Sampling(
            temperature=trial.suggest_float(
                "temperature", s.temperature.low, s.temperature.high, log=s.temperature.log
            ),
            top_p=trial.suggest_float("top_p", s.top_p.low, s.top_p.high, log=s.top_p.log),
            max_new_tokens=int(trial.suggest_categorical("max_new_tokens", s.max_new_tokens)),
            top_k=int(trial.suggest_categorical("top_k", s.top_k)),
        ),
        best_of_n=int(trial.suggest_categorical("best_of_n", space.best_of_n)),
        selection=str(trial.suggest_categorical("selection", space.selection)),
        mix_ratio=trial.suggest_float("mix_ratio", space.mix_ratio.low, space.mix_ratio.high),
        seed=space.seed,
    )


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
