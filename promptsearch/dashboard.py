"""Watch a study in optuna-dashboard, with the data next to the numbers.

In: the study database URL and the working folder whose `artifacts/` holds the trials' files.
Out: `serve` runs optuna-dashboard (blocking) with that artifact store, so each trial page lists
its samples, metrics JSON and plots. The Markdown notes it shows are written while the study runs:
`trial_note` (template, lineage, recipe) when a trial starts and `study_note` (best recipes, noise
floor) after each trial. With `human_review`, `queue_for_review` gives each finished trial a twin in
the study `<study>-review`, waiting with the trial's note and samples for a person to rate it with
optuna-dashboard's objective form; the rating is that review trial's value, never the study's objective.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import yaml
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from promptsearch.errors import UserError
from promptsearch.objectives import objective_names
from promptsearch.recipe import Recipe
from promptsearch.store import Store
from promptsearch.store.models import TemplateRow


def trial_note(recipe: Recipe, template: TemplateRow) -> str:
    """The trial page's note: which template (and where it came from) with which knobs."""
    lineage = f"origin: **{template.origin}**"
    if template.parents:
        lineage += ", parents: " + ", ".join(f"template {p}" for p in template.parents)
    knobs = recipe.model_dump(mode="json", exclude={"template_text", "template_id", "template_name"})
    return "\n".join(
        [
            f"## Template `{template.name}` (family {template.family or '-'}, id {template.id})",
            lineage,
            "",
            "```text",
            recipe.template_text,
            "```",
            "",
            "## Recipe",
            "```yaml",
            yaml.safe_dump(knobs, sort_keys=False).rstrip(),
            "```",
        ]
    )


def study_note(study: optuna.Study, store: Store, noise: dict[str, float]) -> str:
    """The study page's note: the best recipes so far and how much the proxy's scores can be trusted."""
    names = objective_names(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = (study.best_trials if len(study.directions) > 1 else [study.best_trial]) if complete else []
    lines = ["## Best recipes so far", ""]
    if not best:
        lines.append("No completed trial yet.")
    else:
        lines += [
            "| trial | template | " + " | ".join(names) + " | temperature | best-of-N | mix |",
            "|---" * (5 + len(names)) + "|",
        ]
        for t in best:
            recipe = Recipe.model_validate(t.user_attrs["recipe"])
            values = " | ".join(f"{v:.4f}" for v in t.values or [])
            lines.append(
                f"| {t.number} | {recipe.template_name} | {values} | {recipe.sampling.temperature:.2f} "
                f"| {recipe.best_of_n} | {recipe.mix_ratio:.2f} |"
            )
    counts = {s.name: sum(t.state == s for t in study.get_trials(deepcopy=False)) for s in TrialState}
    lines += ["", "Trials: " + ", ".join(f"{n.lower()} {c}" for n, c in counts.items() if c), "", "## Calibration", ""]
    if noise:
        lines.append(
            "Noise floor (std over proxy training seeds): " + ", ".join(f"{k} {v:.4f}" for k, v in noise.items())
        )
        lines.append("Differences between trials smaller than about 2 of these are noise.")
    else:
        lines.append("No noise floor yet: run `promptsearch proxy calibrate` for this study's proxy profile.")
    return "\n".join(lines)


def samples_markdown(pairs: list[dict[str, object]]) -> str:
    """A readable side-by-side of source documents and the selected outputs."""
    parts = []
    for pair in pairs:
        parts += [
            f"### document {pair['doc_id']}",
            "| source | output |",
            "|---|---|",
            f"| {_cell(str(pair['source']))} | {_cell(str(pair['output']))} |",
            "",
        ]
    return "\n".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def samples_jsonl(pairs: list[dict[str, object]]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)


def review_study_name(study_name: str) -> str:
    return f"{study_name}-review"


def save_note(target: optuna.Study | optuna.Trial | optuna.trial.FrozenTrial, text: str) -> None:
    """`optuna_dashboard.save_note`, imported only when a note is written: importing optuna_dashboard (its web
    app) takes 2-3 s, which every command and worker that reads `promptsearch.study` paid."""
    from optuna_dashboard import save_note as dashboard_save_note

    dashboard_save_note(target, text)


def queue_for_review(
    study: optuna.Study,
    store: Store,
    trial: optuna.trial.FrozenTrial,
    trial_dir: Path,
    artifacts: FileSystemArtifactStore,
) -> None:
    """A waiting review trial for a finished `trial`: its note, its samples (from `trial_dir`), a 1-5 rating form.

    Optuna refuses to change a finished trial (the dashboard's user-attr form fails on one), so the rating
    lives in a review study whose RUNNING trials the dashboard's objective form completes.
    """
    from optuna_dashboard import ObjectiveSliderWidget, register_objective_form_widgets

    if trial.state != TrialState.COMPLETE or "artifact.samples.md" not in trial.user_attrs:
        return
    review = optuna.create_study(
        study_name=review_study_name(study.study_name),
        # Without heartbeats: a review trial stays RUNNING until someone rates it, which is not a dead worker.
        storage=store.optuna_storage(),
        direction="maximize",
        load_if_exists=True,
    )
    if not review.user_attrs.get("form_registered"):
        slider = ObjectiveSliderWidget(
            min=1, max=5, step=1, description="Rate these samples as pretraining text (1 = unusable, 5 = ideal)"
        )
        register_objective_form_widgets(review, widgets=[slider])
        review.set_metric_names(["human.rating"])
        review.set_user_attr("form_registered", True)
    pending = review.ask()
    pending.set_user_attr("source_trial", trial.number)
    recipe = Recipe.model_validate(trial.user_attrs["recipe"])
    header = f"# Review of trial {trial.number} of study `{study.study_name}`\nRate its samples (artifacts below).\n\n"
    save_note(pending, header + trial_note(recipe, store.template(int(trial.user_attrs["template_id"]))))
    for name, mimetype in (("samples.md", "text/markdown"), ("samples.jsonl", "application/jsonl")):
        upload_artifact(
            artifact_store=artifacts, file_path=str(trial_dir / name), study_or_trial=pending, mimetype=mimetype
        )


def review_ratings(study: optuna.Study) -> dict[int, float]:
    """Trial number → the rating a person gave its samples (only rated trials)."""
    try:
        review = optuna.load_study(study_name=review_study_name(study.study_name), storage=study._storage)
    except KeyError:
        return {}
    return {
        int(t.user_attrs["source_trial"]): float(t.values[0])
        for t in review.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }


def check_port(host: str, port: int) -> None:
    """Refuse a `host:port` another process already serves on, before saying the dashboard listens there."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (pass another --port)") from exc


def serve(storage: optuna.storages.BaseStorage, artifacts_dir: Path, host: str, port: int) -> None:
    from optuna_dashboard import run_server

    artifacts_dir.mkdir(parents=True, exist_ok=True)
    run_server(storage, host=host, port=port, artifact_store=FileSystemArtifactStore(str(artifacts_dir)))
