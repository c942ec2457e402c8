"""Last stage, export: the best trial (or the Pareto set) as recipe YAML files.

In: a finished study. Out: one `recipe-trial-<n>.yaml` per exported trial with the template text and
hash, generator, sampling, best-of-N, mix ratio, objective values, metrics and library versions —
everything needed to regenerate the data. Secrets are never included: the generator's API key
stays an environment-variable name.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from promptsearch.errors import UserError
from promptsearch.space import Recipe
from promptsearch.store import Store

_VERSIONED = ("promptsearch", "optuna", "datatrove", "transformers", "torch", "sqlalchemy")


def library_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def trial_recipe(trial: FrozenTrial) -> Recipe:
    """The recipe exactly as the trial ran it (stored in its user attrs when it started)."""
    return Recipe.model_validate(trial.user_attrs["recipe"])


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {study.study_name!r} has no completed trial to export yet")
    return study.best_trials if len(study.directions) > 1 else [study.best_trial]


def recipe_document(study: optuna.Study, store: Store, trial: FrozenTrial) -> dict[str, Any]:
    recipe = trial_recipe(trial)
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    return {
        "study": study.study_name,
        "trial": trial.number,
        "objectives": {n: v for n, v in zip(names, trial.values or [], strict=True)},
        "recipe": recipe.model_dump(mode="json"),
        "metrics": store.trial_metrics(study.study_name, trial.number),
        "versions": library_versions(),
    }


def export_recipes(study: optuna.Study, store: Store, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for trial in best_trials(study):
        path = out_dir / f"recipe-trial-{trial.number}.yaml"
        path.write_text(yaml.safe_dump(recipe_document(study, store, trial), sort_keys=False, allow_unicode=True))
        paths.append(path)
    return paths
