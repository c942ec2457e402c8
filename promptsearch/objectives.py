"""A study's objectives: their names, which way is better, and which trial states count as finished.

In: an Optuna study or one of its directions. Out: the objective names (`objective_names`, with a
fallback when the study set none), the best of some values (`best_value`), a value signed so that
higher is better (`signed`), and `FINISHED`. A leaf module, so the study lifecycle, its readers
(`queries`), the dashboard, export, plots and promotion all use the same rules without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

# A trial that will not run again: it counts towards the budget and the proposal rounds.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def objective_names(study: optuna.Study) -> list[str]:
    """The study's metric names, or `objective_<i>` for a study created without them."""
    return study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]


def maximizes(direction: StudyDirection) -> bool:
    return direction == StudyDirection.MAXIMIZE


def best_value(direction: StudyDirection, values: Iterable[float]) -> float:
    """The largest of `values` for a maximized objective, the smallest for a minimized one."""
    return (max if maximizes(direction) else min)(values)


def signed(direction: StudyDirection, value: float) -> float:
    """`value`, negated when its objective is minimized, so that higher is better."""
    return value if maximizes(direction) else -value
