"""Promotion: which finished trials go on to a full ablation, and their bundles.

In: a study, its `promotion` rule (or one trial named by hand) and an ablation profile.
Out: for each newly promoted trial, a bundle folder under `<workdir>/<study>/ablations/` and an
`AblationRow` (state PROMOTED) holding the trial's proxy score, oriented so that higher is better, and
the chain's predicted GPU-hours (`promptsearch.cost.predict_ablation`).

Rules (`SearchSpace.promotion`): `top_k` by the first objective; `pareto`, the Pareto set of all
objectives; `beats_best`, the best trial if it beats the best promoted so far by more than
`noise_multiple` x the noise floor of the first objective (`study.objective_noise`).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from promptsearch.ablation.bundle import stage_gpus, write_bundle
from promptsearch.ablation.profile import ablation_profile_path, load_ablation_profile
from promptsearch.cost import GPU_STAGES, predict_ablation
from promptsearch.errors import UserError
from promptsearch.objectives import objective_names, signed
from promptsearch.proxy_profile import load_proxy_profile
from promptsearch.recipe import trial_recipe
from promptsearch.space import SearchSpace
from promptsearch.store import Store
from promptsearch.store.models import AblationRow
from promptsearch.study import objective_noise, study_space


def signed_objective(study: optuna.Study, trial: FrozenTrial) -> float:
    """The first objective, negated when it is minimized, so that higher is better."""
    return signed(study.directions[0], (trial.values or [float("nan")])[0])


def _by_rule(study: optuna.Study, space: SearchSpace, store: Store, complete: list[FrozenTrial]) -> list[FrozenTrial]:
    rule = space.promotion
    ranked = sorted(complete, key=lambda t: signed_objective(study, t), reverse=True)
    if rule.rule == "top_k":
        return ranked[: rule.k]
    if rule.rule == "pareto":
        return list(study.best_trials)
    metric = objective_names(study)[0]
    noise = objective_noise(study, store).get(metric)
    if noise is None:
        raise UserError(
            f"rule beats_best needs the noise floor of {metric}: run `promptsearch proxy calibrate --space FILE`"
        )
    promoted = {r.trial_number: r.proxy_objective for r in store.ablations(study.study_name)}
    best = ranked[0]
    if not promoted:
        return [best]
    incumbent = max(promoted.values())
    return [best] if signed_objective(study, best) - incumbent > rule.noise_multiple * noise else []


def promote(
    study: optuna.Study, store: Store, workdir: Path, trial: int | None = None, profile: str | None = None
) -> list[AblationRow]:
    """Promote `trial` (by hand) or what the space's rule selects; returns the newly promoted rows."""
    space = study_space(study)
    ablation = load_ablation_profile(profile or space.promotion.profile)
    ablation.require_cluster_settings(str(ablation_profile_path(profile or space.promotion.profile)))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if trial is not None:
        chosen = [t for t in complete if t.number == trial]
        if not chosen:
            numbers = ", ".join(str(t.number) for t in complete) or "none"
            raise UserError(f"study {study.study_name!r} has no COMPLETE trial {trial} (complete: {numbers})")
    elif not complete:
        raise UserError(f"study {study.study_name!r} has no completed trial to promote yet")
    else:
        chosen = _by_rule(study, space, store, complete)
    already = {r.trial_number for r in store.ablations(study.study_name) if r.profile == ablation.name}
    proxy_profile = load_proxy_profile(Path(space.proxy)).name if space.proxy else "none"
    rows = []
    for t in chosen:
        if t.number in already:
            continue
        folder = workdir / study.study_name / "ablations" / f"trial-{t.number}-{ablation.name}"
        recipe = trial_recipe(t)
        bundle = write_bundle(
            study.study_name,
            t.number,
            recipe,
            {"source": space.source, "mix_in": space.mix_in, "heldout": space.heldout},
            ablation,
            folder,
        )
        predicted = predict_ablation(
            ablation,
            bundle.documents * recipe.sampling.max_new_tokens * recipe.best_of_n,
            recipe.generator.backend,
            store.trial_metrics(study.study_name, t.number),
            {stage: stage_gpus(ablation, stage) for stage in GPU_STAGES},
        )
        rows.append(
            store.add_ablation(
                AblationRow(
                    study_name=study.study_name,
                    trial_number=t.number,
                    profile=ablation.name,
                    proxy_profile=proxy_profile,
                    proxy_objective=signed_objective(study, t),
                    promoted_by="manual" if trial is not None else space.promotion.rule,
                    bundle_dir=bundle.folder,
                    state="PROMOTED",
                    cost={"predicted": predicted},
                )
            )
        )
    return rows
