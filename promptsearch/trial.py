"""One trial: the recipe Optuna proposes, run through the stages rephrase → measure → proxy → score.

In: an Optuna `Trial` (template id in user attrs, knobs sampled here from the `SearchSpace`).
Out: the objective value(s); every stage's results are committed to the store as they are made.

Each stage is a class with `name` and `run(ctx)`; `build_stages(space)` lists the ones the
space uses (no proxy profile → no proxy stage). A stage that is not built is left out, never stubbed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import optuna
from datatrove.data import Document

from promptsearch.measure import measure, select_sample
from promptsearch.proxy import ProxyResult, TooLittleData, run_proxy
from promptsearch.rephrase import Generators, RephraseResult, rephrase
from promptsearch.space import ProxyProfile, Recipe, Sampling, SearchSpace, load_proxy_profile
from promptsearch.store import ProxyRunRow, Store
from promptsearch.templates import TemplateSpec


@dataclass
class Corpora:
    """The study's documents, read once per worker."""

    source: list[Document]
    mix_in: list[str]
    heldout: list[str]


@dataclass
class TrialContext:
    study_name: str
    trial: optuna.Trial
    recipe: Recipe
    corpora: Corpora
    store: Store
    generators: Generators
    workdir: Path
    rephrased: RephraseResult | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    proxy: ProxyResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, metrics: dict[str, float]) -> None:
        """Store metrics in the project table and as Optuna user attrs, immediately."""
        self.metrics |= {f"{stage}.{k}": v for k, v in metrics.items()}
        self.store.record_metrics(self.study_name, self.trial.number, stage,
                                  {f"{stage}.{k}": v for k, v in metrics.items()})
        for name, value in metrics.items():
            self.trial.set_user_attr(f"{stage}.{name}", value)


class Stage(Protocol):
    name: str

    def run(self, ctx: TrialContext) -> None: ...


class RephraseStage:
    name = "rephrase"

    def run(self, ctx: TrialContext) -> None:
        result = rephrase(ctx.corpora.source, ctx.recipe, ctx.store, ctx.generators, ctx.workdir)
        ctx.rephrased = result
        outputs: list[tuple[str, str, bool]] = []
        truncated = 0
        for doc in ctx.corpora.source:
            samples = result.samples[doc.id]
            best = select_sample(doc.text, [s.text for s in samples])
            ctx.pairs.append((doc.text, samples[best].text))
            truncated += samples[best].finish_reason == "length"
            outputs.extend((doc.id, s.key, i == best) for i, s in enumerate(samples))
        ctx.store.record_trial_outputs(ctx.study_name, ctx.trial.number, outputs)
        ctx.record("rephrase", {
            "requests_made": result.requests_made,
            "requests_cached": result.requests_cached,
            "completion_tokens": result.completion_tokens_generated,
            "prompt_tokens": result.prompt_tokens_generated,
            "seconds": result.wall_seconds,
            "tokens_per_second": result.completion_tokens_generated / max(result.wall_seconds, 1e-9)
            if result.requests_made else 0.0,
            "truncated_rate": truncated / max(1, len(ctx.corpora.source)),
            "server_restarts": result.server_restarts,
        })  # fmt: skip


class MeasureStage:
    name = "measure"

    def run(self, ctx: TrialContext) -> None:
        ctx.record("measure", measure(ctx.pairs))


class ProxyStage:
    name = "proxy"

    def __init__(self, profile: ProxyProfile):
        self.profile = profile

    def run(self, ctx: TrialContext) -> None:
        started = time.monotonic()
        try:
            result = run_proxy(
                synthetic=[o for _, o in ctx.pairs], raw=ctx.corpora.mix_in, heldout=ctx.corpora.heldout,
                mix_ratio=ctx.recipe.mix_ratio, profile=self.profile, workdir=ctx.workdir / "proxy",
                seed=ctx.recipe.seed,
            )  # fmt: skip
        except TooLittleData as exc:
            ctx.trial.set_user_attr("pruned_reason", f"proxy: {exc}")
            raise optuna.TrialPruned(str(exc)) from exc
        ctx.proxy = result
        ctx.store.add_proxy_run(ProxyRunRow(
            study_name=ctx.study_name, trial_number=ctx.trial.number, profile=self.profile.name,
            model_config_json=self.profile.model.model_dump(), seed=ctx.recipe.seed + self.profile.train.seed,
            train_tokens=result.train_tokens, synthetic_tokens=result.synthetic_tokens, raw_tokens=result.raw_tokens,
            wall_seconds=time.monotonic() - started, checkpoint_path=str(result.checkpoint),
            scores={"heldout_bpb": result.heldout_bpb},
        ))  # fmt: skip
        ctx.record("proxy", {"heldout_bpb": result.heldout_bpb, "train_tokens": result.train_tokens,
                             **{f"{k}_seconds": v for k, v in result.seconds.items()}})


def build_stages(space: SearchSpace) -> list[Stage]:
    stages: list[Stage] = [RephraseStage(), MeasureStage()]
    if space.proxy is not None:
        stages.append(ProxyStage(load_proxy_profile(Path(space.proxy))))
    return stages


def suggest_recipe(trial: optuna.Trial, space: SearchSpace, template_id: int, template: TemplateSpec) -> Recipe:
    """Optuna samples the fixed-shape knobs; the template comes from the enqueued trial."""
    s = space.sampling
    generator = trial.suggest_categorical("generator", [g.name for g in space.generators])
    return Recipe(
        template_id=template_id, template_name=template.name, template_text=template.text,
        template_hash=template.text_hash, generator=space.generator(str(generator)),
        sampling=Sampling(
            temperature=trial.suggest_float("temperature", s.temperature.low, s.temperature.high,
                                            log=s.temperature.log),
            top_p=trial.suggest_float("top_p", s.top_p.low, s.top_p.high, log=s.top_p.log),
            max_new_tokens=int(trial.suggest_categorical("max_new_tokens", s.max_new_tokens)),
            top_k=int(trial.suggest_categorical("top_k", s.top_k)),
        ),
        best_of_n=int(trial.suggest_categorical("best_of_n", space.best_of_n)),
        mix_ratio=trial.suggest_float("mix_ratio", space.mix_ratio.low, space.mix_ratio.high),
        seed=space.seed,
    )  # fmt: skip


def objective_values(space: SearchSpace, metrics: dict[str, float]) -> list[float]:
    """Stage 5, score: the study's objectives read from the recorded metrics, in space order."""
    return [metrics[o.metric] for o in space.objectives]


def run_trial(ctx: TrialContext, stages: list[Stage], space: SearchSpace) -> list[float]:
    for stage in stages:
        ctx.trial.set_user_attr("stage", stage.name)
        started = time.monotonic()
        stage.run(ctx)
        ctx.seconds[stage.name] = time.monotonic() - started
        ctx.trial.set_user_attr(f"seconds.{stage.name}", ctx.seconds[stage.name])
    ctx.trial.set_user_attr("stage", "done")
    return objective_values(space, ctx.metrics)
