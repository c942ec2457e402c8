"""The plots and files users look at, as PNG/JSON/Markdown files and as Optuna artifacts the dashboard lists.

In: a study (and an artifact store). Out: `optimization_history[_<objective>].png`,
`param_importances[_<objective>].png` (once two trials have completed), `pareto_front.png`
(multi-objective) and `score_vs_cost.png` (each objective against the trial's measured seconds).
Optuna's own matplotlib plots are used where they exist.

Per trial, as its stages finish: sample pairs (`samples.jsonl`, `samples.md`), the metrics JSON and
prefix-collapse plot, and each proxy rung's learning curve.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from promptsearch.dashboard import samples_jsonl, samples_markdown
from promptsearch.errors import UserError
from promptsearch.measure import PREFIX_LENGTHS
from promptsearch.objectives import objective_names
from promptsearch.proxy import ProxyResult


def _save(plotted: Any, path: Path) -> Path:
    """Save what a plot function returned (a Figure, an Axes or an array of Axes) and close it."""
    figure = plotted if hasattr(plotted, "savefig") else getattr(plotted, "figure", None) or plotted.flat[0].figure
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def _trial_seconds(trial: FrozenTrial) -> float:
    return sum(v for k, v in trial.user_attrs.items() if k.startswith("seconds."))


def save_study_plots(
    study: optuna.Study, out_dir: Path, artifacts: FileSystemArtifactStore | None = None
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"study {study.study_name!r} has no completed trial to plot yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = objective_names(study)
    multi = len(names) > 1
    targets: list[tuple[str, Callable[[FrozenTrial], float] | None]] = [
        (name, (lambda t, i=i: t.values[i]) if multi else None) for i, name in enumerate(names)
    ]
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, target in targets:
            suffix = f"_{name.replace('.', '_')}" if multi else ""
            axes = ovm.plot_optimization_history(study, target=target, target_name=name)
            paths.append(_save(axes, out_dir / f"optimization_history{suffix}.png"))
            if len(complete) >= 2 and any(t.params for t in complete):
                axes = ovm.plot_param_importances(study, target=target, target_name=name)
                paths.append(_save(axes, out_dir / f"param_importances{suffix}.png"))
        if multi and len(names) <= 3:
            paths.append(_save(ovm.plot_pareto_front(study), out_dir / "pareto_front.png"))
    figure, axes = plt.subplots(1, len(names), squeeze=False)
    for ax, (i, name) in zip(axes[0], enumerate(names), strict=True):
        ax.scatter([_trial_seconds(t) for t in complete], [t.values[i] for t in complete])
        for t in complete:
            ax.annotate(str(t.number), (_trial_seconds(t), t.values[i]), fontsize=7)
        ax.set(xlabel="trial seconds (rephrase + measure + proxy)", ylabel=name, title="score vs cost")
    paths.append(_save(figure, out_dir / "score_vs_cost.png"))
    if artifacts is not None:
        for path in paths:
            upload_artifact(artifact_store=artifacts, file_path=str(path), study_or_trial=study, mimetype="image/png")
    return paths


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attach_artifact(trial: optuna.Trial, artifacts: FileSystemArtifactStore, path: Path, mimetype: str) -> None:
    """Upload a file as an Optuna artifact of the trial (the dashboard lists it) and note its id."""
    artifact_id = upload_artifact(
        artifact_store=artifacts, file_path=str(path), study_or_trial=trial, mimetype=mimetype
    )
    trial.set_user_attr(f"artifact.{path.name}", artifact_id)


def save_sample_artifacts(
    trial: optuna.Trial, artifacts: FileSystemArtifactStore, folder: Path, pairs: list[dict[str, object]]
) -> None:
    """Source/output pairs: all N samples in the JSONL, the selected one side by side in Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples.jsonl").write_text(samples_jsonl(pairs), encoding="utf-8")
    (folder / "samples.md").write_text(samples_markdown(pairs), encoding="utf-8")
    attach_artifact(trial, artifacts, folder / "samples.jsonl", "application/jsonl")
    attach_artifact(trial, artifacts, folder / "samples.md", "text/markdown")


def save_measure_artifacts(
    trial: optuna.Trial, artifacts: FileSystemArtifactStore, folder: Path, metrics: dict[str, float], title: str
) -> None:
    """The metrics JSON and the prefix-collapse plot, as Optuna artifacts of the trial."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(PREFIX_LENGTHS, [metrics[f"unique_prefix_ratio_{n}"] for n in PREFIX_LENGTHS], marker="o")
    ax.set(
        xscale="log",
        xlabel="prefix length (characters)",
        ylabel="unique prefixes / outputs",
        ylim=(0, 1.05),
        title=title,
    )
    ax.set_xticks(PREFIX_LENGTHS, [str(n) for n in PREFIX_LENGTHS])
    fig.tight_layout()
    fig.savefig(folder / "prefix_collapse.png", dpi=100)
    plt.close(fig)
    attach_artifact(trial, artifacts, folder / "metrics.json", "application/json")
    attach_artifact(trial, artifacts, folder / "prefix_collapse.png", "image/png")


def save_proxy_curve(
    trial: optuna.Trial, artifacts: FileSystemArtifactStore, path: Path, title: str, result: ProxyResult
) -> None:
    """A proxy rung's learning curve: training loss per step, and bits per byte on held-out text and on the
    rephrased documents at each eval checkpoint."""
    plt = _pyplot()
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
    ax.set(xlabel="training tokens", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    attach_artifact(trial, artifacts, path, "image/png")
