"""Ingesting an ablation's lighteval results, and calibrating the proxy against them.

In: the newest `results_*.json` under a bundle's `eval/results/` (lighteval's layout: `results` maps
`task|fewshot` to metric values) and the profile's task list. Out: `AblationScores` — per-task
scores, category means, macro (mean of category means) and micro (mean of tasks). `ingest` refreshes
the chain's job states from Slurm first and refuses unless the evaluate job is COMPLETED.

RankAgreement, in: (proxy score, full macro score) of two or more ablated trials of one proxy profile.
Out: Kendall's tau (scipy's tau-b) and the pairwise decision accuracy: the share of trial pairs that
the proxy orders the same way as the full ablation (pairs tied in the full score are left out).
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from promptsearch.ablation.bundle import load_bundle
from promptsearch.ablation.profile import EvaluationSettings
from promptsearch.ablation.slurm import refresh
from promptsearch.errors import UserError
from promptsearch.store import Store
from promptsearch.store.models import AblationCalibrationRow, AblationRow


@dataclass(frozen=True)
class AblationScores:
    tasks: dict[str, float]
    categories: dict[str, float]
    macro: float
    micro: float
    results_file: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def results_file(eval_dir: Path) -> Path:
    files = sorted((eval_dir / "results").glob("**/results_*.json"), key=lambda p: p.name)
    if not files:
        raise UserError(f"no lighteval results under {eval_dir / 'results'} (has the evaluate job finished?)")
    return files[-1]  # lighteval stamps names with an ISO time, so the last is the newest


def read_scores(path: Path, settings: EvaluationSettings) -> AblationScores:
    try:
        results = json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise UserError(f"{path}: not a lighteval results file ({exc})") from exc
    by_task = {key.split("|")[0] if "|" in key else key: value for key, value in results.items()}
    tasks: dict[str, float] = {}
    for task in settings.tasks:
        metrics = by_task.get(task.result_name)
        if metrics is None or task.metric not in metrics:
            raise UserError(f"{path}: no {task.metric!r} for task {task.result_name!r}")
        tasks[task.name] = float(metrics[task.metric])
    categories = {
        c: statistics.fmean(tasks[t.name] for t in settings.tasks if t.category == c) for c in settings.categories
    }
    return AblationScores(
        tasks=tasks,
        categories=categories,
        macro=statistics.fmean(categories.values()),
        micro=statistics.fmean(tasks.values()),
        results_file=str(path),
    )


@dataclass(frozen=True)
class RankAgreement:
    trials: int
    kendall_tau: float | None  # None when either score is constant
    pairwise_accuracy: float | None  # None when every pair is tied in the full score


def rank_agreement(points: list[tuple[float, float]]) -> RankAgreement:
    """`points` = (proxy score, full macro score), both oriented so that higher is better."""
    from scipy.stats import kendalltau

    if len(points) < 2:
        raise UserError("calibration needs two or more trials with full results")
    proxy, full = zip(*points, strict=True)
    tau = kendalltau(proxy, full).statistic
    agree = total = 0
    for (p1, f1), (p2, f2) in itertools.combinations(points, 2):
        if f1 == f2:
            continue
        total += 1
        agree += (p1 - p2) * (f1 - f2) > 0
    return RankAgreement(
        trials=len(points),
        kendall_tau=None if tau != tau else float(tau),  # NaN for constant input
        pairwise_accuracy=agree / total if total else None,
    )


def ingest(study: optuna.Study, store: Store, ablation: AblationRow) -> AblationScores:
    """Store the scores (ablation row, trial metrics, the study's user attrs), then recalibrate.

    The chain's states are refreshed from Slurm first; only a COMPLETED evaluate job is ingested."""
    evaluate = [r for r in refresh(ablation, store) if r.stage == "evaluate"]
    if not evaluate or evaluate[0].state != "COMPLETED":
        state = evaluate[0].state if evaluate else "not submitted"
        raise UserError(f"the evaluate job of trial {ablation.trial_number} is {state}; ingest once it is COMPLETED")
    bundle = load_bundle(Path(ablation.bundle_dir))
    scores = read_scores(results_file(bundle.eval_dir), bundle.profile.evaluation)
    store.update_ablation(ablation.id, results=scores.to_json(), state="INGESTED")
    prefix = f"ablation.{ablation.profile}"
    store.record_metrics(
        study.study_name,
        ablation.trial_number,
        "ablation",
        {
            f"{prefix}.macro": scores.macro,
            f"{prefix}.micro": scores.micro,
            **{f"{prefix}.task.{k}": v for k, v in scores.tasks.items()},
            **{f"{prefix}.category.{k}": v for k, v in scores.categories.items()},
        },
    )
    # Optuna refuses user attrs on finished trials (UpdateFinishedTrialError), so the study carries them.
    study.set_user_attr(
        f"{prefix}.trial-{ablation.trial_number}",
        {"macro": scores.macro, "micro": scores.micro, "tasks": scores.tasks, "categories": scores.categories},
    )
    update_rank_agreement(store, ablation.proxy_profile, ablation.profile)
    return scores


def update_rank_agreement(store: Store, proxy_profile: str, profile: str) -> RankAgreement | None:
    """Calibrate over every ingested ablation of this proxy profile; stored when there are two or more."""
    rows = [
        r
        for r in store.ablations()
        if r.proxy_profile == proxy_profile and r.profile == profile and r.results is not None
    ]
    if len(rows) < 2:
        return None
    result = rank_agreement([(r.proxy_objective, float(r.results["macro"])) for r in rows])
    store.add_ablation_calibration(
        AblationCalibrationRow(
            proxy_profile=proxy_profile,
            profile=profile,
            trials=result.trials,
            kendall_tau=result.kendall_tau,
            pairwise_accuracy=result.pairwise_accuracy,
            points=[
                {
                    "study": r.study_name,
                    "trial": r.trial_number,
                    "proxy": r.proxy_objective,
                    "macro": r.results["macro"],
                }
                for r in rows
            ],
        )
    )
    return result
