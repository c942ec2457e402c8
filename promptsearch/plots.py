"""The plots users expect of a study, as PNG files and as study artifacts the dashboard lists.

In: a study (and an artifact store). Out: `optimization_history[_<objective>].png`,
`param_importances[_<objective>].png` (once two trials have completed), `pareto_front.png`
(multi-objective) and `score_vs_cost.png` (each objective against the trial's measured seconds).
Optuna's own matplotlib plots are used where they exist.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from promptsearch.errors import UserError


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
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
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
