"""Last stage, export: the winning trials as recipe files, each with a dataset card.

In: a finished study and a choice of trials (the best, the top K, or the Pareto set).
Out: `recipe-trial-<n>.yaml|json` per trial — template text and hash, generator (id, revision,
backend, serving flags, speculative config), sampling, best-of-N and selection rule, mix ratio,
objective values with their noise floor, measure/proxy metrics, full-ablation scores when ingested,
cost per million generated tokens and library versions — and `recipe-trial-<n>.md`, a dataset card in
the form Hugging Face dataset cards use. Secrets are never included: an API key stays the name of
its environment variable. `diff_recipes` compares two recipe files setting by setting.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import optuna
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from optuna.trial import FrozenTrial, TrialState

from promptsearch.cost import cost_per_million_tokens
from promptsearch.dashboard import review_ratings
from promptsearch.errors import UserError
from promptsearch.objectives import maximizes, objective_names
from promptsearch.recipe import Recipe, trial_recipe
from promptsearch.store import Store
from promptsearch.study import objective_noise, suite_objective_selection, suite_signal

_VERSIONED = ("promptsearch", "optuna", "datatrove", "transformers", "torch", "sqlalchemy", "vllm", "nanotron")


def library_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def select_trials(study: optuna.Study, top: int | None = None, pareto: bool = False) -> list[FrozenTrial]:
    """The best trial; the Pareto set (default for multi-objective); or the `top` K by the first objective."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"study {study.study_name!r} has no completed trial to export yet")
    if top is not None:
        return sorted(complete, key=lambda t: t.values[0], reverse=maximizes(study.directions[0]))[:top]
    if pareto or len(study.directions) > 1:
        return study.best_trials
    return [study.best_trial]


def recipe_document(study: optuna.Study, store: Store, trial: FrozenTrial) -> dict[str, Any]:
    recipe = trial_recipe(trial)
    names = objective_names(study)
    metrics = store.trial_metrics(study.study_name, trial.number)
    signal = suite_signal(study, store)
    selection = suite_objective_selection(study)
    return {
        "study": study.study_name,
        "trial": trial.number,
        "objectives": {n: v for n, v in zip(names, trial.values or [], strict=True)},
        "noise_floor": objective_noise(study, store),
        # the tasks `proxy.suite_objective` read, as `study create` chose them
        "suite_objective": None if selection is None else selection.model_dump(mode="json"),
        # per suite score: its spread over the study's trials, the noise floor and their ratio (`study.SuiteSignal`)
        "suite_signal": None if signal is None else dataclasses.asdict(signal),
        "recipe": recipe.model_dump(mode="json"),
        "metrics": {k: v for k, v in metrics.items() if not k.startswith("ablation.")},
        # full-ablation scores, once `promptsearch ablation ingest` has stored them
        "ablation": {k: v for k, v in metrics.items() if k.startswith("ablation.")},
        "cost": cost_per_million_tokens(metrics),
        "human_rating": review_ratings(study).get(trial.number),  # from the review study, if a person rated it
        "versions": library_versions(),
    }


def dataset_card(document: dict[str, Any]) -> str:
    """A Hugging Face dataset card for data generated with this recipe: `huggingface_hub` renders its metadata."""
    recipe = Recipe.model_validate(document["recipe"])
    g, s = recipe.generator, recipe.sampling
    metrics = document["metrics"]
    objectives = "\n".join(
        f"| {name} | {value:.4f} | {document['noise_floor'].get(name, float('nan')):.4f} |"
        for name, value in document["objectives"].items()
    )
    interesting = ("measure.unique_prefix_ratio_10", "measure.number_recall", "measure.format_validity")
    measured = "\n".join(f"- `{k}`: {metrics[k]:.3f}" for k in interesting if k in metrics)
    suite = _suite_section(document["suite_signal"], document["suite_objective"])
    body = f"""
# Synthetic pretraining data: `{recipe.template_name}` rephrasings

## Dataset summary
Source documents rephrased by `{g.model}` ({g.backend}) with the `{recipe.template_name}` template
(family `{recipe.template_family or "-"}`), found by promptsearch study `{document["study"]}`, trial
{document["trial"]}. It is meant to be mixed with raw web text: the study trained its proxy on
{recipe.mix_ratio:.0%} synthetic and {1 - recipe.mix_ratio:.0%} raw tokens.

## How the data was generated
- Template (sha256 `{recipe.template_hash[:16]}`):

```text
{recipe.template_text}
```

- Sampling: temperature {s.temperature:.2f}, top_p {s.top_p:.2f}, top_k {s.top_k}, at most {s.max_new_tokens} new tokens
- Best-of-{recipe.best_of_n}, selected by `{recipe.selection}`; seed {recipe.seed}
- Regenerate: `promptsearch generate --recipe recipe-trial-{document["trial"]}.yaml --input SRC --output DST`

## Evaluation in the search
| objective | value | noise floor (std) |
|---|---|---|
{objectives}

{measured}

Proxy scores come from a small model trained on the mixture; they rank recipes coarsely and are not
benchmark results. Differences below about twice the noise floor are not meaningful.
{suite}

## Limitations
Rephrasings can drop or invent facts (see number recall above) and inherit the generator's style.
Quality-classifier scores were stored but not optimized: they do not predict training value.
"""
    card = DatasetCard(body)  # no metadata block in the text: the card renders its own from `data`
    card.data = DatasetCardData(
        language=["en"],
        task_categories=["text-generation"],
        tags=["synthetic", "rephrased", "pretraining", "promptsearch"],
    )
    return str(card)


def _na(number: float | None, digits: int) -> str:
    """`number` with `digits` decimals, or '-' when there is none."""
    return "-" if number is None else f"{number:.{digits}f}"


def _suite_section(signal: dict[str, Any] | None, selection: dict[str, Any] | None) -> str:
    """The card's per-task signal-to-noise table and the tasks of `proxy.suite_objective` ('' without a suite)."""
    if signal is None and selection is None:
        return ""
    lines = ["", "## Benchmark suite: signal and noise"]
    if selection is not None:
        metric, tasks = selection["choice"]["metric"], ", ".join(selection["tasks"])
        lines.append(f"`proxy.suite_objective`: macro `{metric}` over {tasks}.")
    if signal is not None:
        seeds, profile = signal["calibration_seeds"], signal["profile"]
        noise = f"std over {seeds} training seeds of `{profile}`" if seeds else f"no calibration of `{profile}` yet"
        lines += [
            f"Signal: std over the study's {signal['trials']} complete trials; noise: {noise}.",
            "",
            "| task | category | metric | signal | noise | SNR |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['name']} | {r['category'] or '-'} | {r['metric']} | {_na(r['signal'], 4)} | {_na(r['noise'], 4)} "
            f"| {_na(r['snr'], 2)} |"
            for r in signal["rows"]
        ]
    return "\n".join(lines) + "\n"


def export_recipes(
    study: optuna.Study, store: Store, trials: list[FrozenTrial], out_dir: Path, file_format: str = "yaml"
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for trial in trials:
        document = recipe_document(study, store, trial)
        path = out_dir / f"recipe-trial-{trial.number}.{file_format}"
        if file_format == "json":
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        card = path.with_suffix(".md")
        card.write_text(dataset_card(document), encoding="utf-8")
        paths += [path, card]
    return paths


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


def diff_recipes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, value in a, value in b) for each flattened setting that differs; absent is None."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    return [(k, flat_a.get(k), flat_b.get(k)) for k in sorted(flat_a | flat_b) if flat_a.get(k) != flat_b.get(k)]
