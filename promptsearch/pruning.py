"""Pruning, in one place: which trials stop early, and why.

In: the space's `pruner` settings and objectives; during a trial, the proxy's eval checkpoints.
Out: the Optuna pruner a study runs with (`build_pruner`), what a Wilcoxon pruner compares
(`wilcoxon_pairing`), and, for multi-objective ladders where Optuna's pruners cannot run, the trial
that dominates this one on the rung below (`dominating_trial`).

The measure stage's thresholds (`PruneThresholds`) prune before any of this: they are Optuna
constraints, set by the measure stage in `promptsearch.trial`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import optuna
from pydantic import Field

from promptsearch.config import StrictModel

# The objectives a Wilcoxon pruner can pair trials on: metric → (direction, the `EvalCheckpoint` field whose
# per-instance values it compares: each rephrased document's bits per byte, or each cloze item's probability).
WILCOXON_PAIRING = {
    "proxy.score": ("maximize", "document_bpb"),
    "proxy.knowledge_bpb": ("minimize", "document_bpb"),
    "proxy.knowledge_prob": ("maximize", "item_probs"),
    "proxy.knowledge_acc": ("maximize", "item_probs"),
}


class PrunerSpec(StrictModel):
    """Optuna pruner for single-objective studies, fed by the proxy's eval checkpoints (`trial.report`).

    `successive_halving` / `hyperband` compare trials at the same checkpoint (steps count checkpoints
    over the whole ladder); `wilcoxon` compares a trial's per-document knowledge bits per byte (per-item
    cloze scores for a cloze objective) with the best trial's, one by one. Multi-objective studies cannot
    use Optuna's pruners: there a trial climbs to the next rung of `proxy_ladder` only if no trial
    dominates it on the rung below (Pareto rank 1).
    """

    kind: Literal["successive_halving", "hyperband", "wilcoxon"]
    min_resource: int = Field(1, ge=1, description="checkpoints before a trial can be pruned (SH / Hyperband)")
    reduction_factor: int = Field(3, ge=2)
    p_threshold: float = Field(0.1, gt=0, lt=1, description="wilcoxon: prune when p < this")
    n_startup_steps: int = Field(2, ge=0, description="wilcoxon: items scored before pruning may start")


class ObjectiveLike(Protocol):
    metric: str
    direction: str


def check_pruner(spec: PrunerSpec, objectives: Sequence[ObjectiveLike]) -> None:
    """Raise ValueError when the pruner cannot work with these objectives (space validation)."""
    if len(objectives) > 1:
        raise ValueError(
            "pruner: multi-objective studies cannot use Optuna's pruners; leave it out and the ladder "
            "promotes by Pareto rank"
        )
    objective = objectives[0]
    if not objective.metric.startswith("proxy."):
        raise ValueError(f"pruner: the objective {objective.metric} is not reported during proxy training")
    paired = WILCOXON_PAIRING.get(objective.metric)
    if spec.kind == "wilcoxon" and (paired is None or paired[0] != objective.direction):
        raise ValueError(
            "pruner: wilcoxon compares rephrased documents' bits per byte (or cloze items) one by one, so "
            "the objective must be proxy.score or a cloze score maximized, or proxy.knowledge_bpb minimized"
        )


def build_pruner(spec: PrunerSpec | None, checkpoints: int) -> optuna.pruners.BasePruner:
    """The space's pruner over `checkpoints` eval checkpoints (the whole ladder); none means none
    (Optuna's default MedianPruner would prune silently)."""
    if spec is None:
        return optuna.pruners.NopPruner()
    if spec.kind == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=spec.p_threshold, n_startup_steps=spec.n_startup_steps)
    if spec.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, max_resource=checkpoints, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
    )


@dataclass(frozen=True)
class WilcoxonPairing:
    """What a Wilcoxon pruner reports at a checkpoint: `sign` x each value of the checkpoint's `field`."""

    field: str  # "document_bpb" or "item_probs"
    sign: float


def wilcoxon_pairing(spec: PrunerSpec | None, objective: ObjectiveLike) -> WilcoxonPairing | None:
    """Each cloze item's probability for a cloze objective, otherwise each rephrased document's knowledge
    bits per byte, negated when the objective is maximized (proxy.score). None for the other pruners."""
    if spec is None or spec.kind != "wilcoxon":
        return None
    _, field = WILCOXON_PAIRING[objective.metric]
    if field == "item_probs":
        return WilcoxonPairing(field, 1.0)
    return WilcoxonPairing(field, -1.0 if objective.direction == "maximize" else 1.0)


def dominating_trial(
    own: Mapping[str, object],
    others: Iterable[tuple[int, Mapping[str, object]]],
    keys: Sequence[str],
    directions: Sequence[str],
) -> int | None:
    """The number of a trial whose values at `keys` dominate `own`'s (all at least as good, one better),
    or None; trials missing a key are not compared. Values are metrics by name, trials (number, metrics)."""

    def signed(metrics: Mapping[str, object]) -> list[float] | None:
        found = [metrics.get(k) for k in keys]
        if not all(isinstance(v, (int, float)) for v in found):
            return None
        return [(1.0 if d == "maximize" else -1.0) * float(v) for d, v in zip(directions, found, strict=True)]  # type: ignore[arg-type]

    mine = signed(own)
    if mine is None:
        return None
    for number, metrics in others:
        theirs = signed(metrics)
        if theirs is not None and all(t >= m for t, m in zip(theirs, mine, strict=True)) and theirs != mine:
            return number
    return None
