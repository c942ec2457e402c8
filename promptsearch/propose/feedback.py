"""What the operators are told: parents chosen from the best trials, and each parent's feedback text.

Parents are the study's best trials, one per template: the Pareto set first (`study.best_trials`, which is
the single best trial of a one-objective study), then the other complete trials by their first objective,
then pruned ones. The feedback is what a reflective mutation needs: the objective values, collapse, fidelity
and format failures, and a few source/output pairs with what went wrong in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from promptsearch.measure.fidelity import is_echo, is_refusal, numbers
from promptsearch.measure.formats import is_valid_format
from promptsearch.objectives import objective_names, signed
from promptsearch.store import Store
from promptsearch.store.models import TemplateRow
from promptsearch.templates import split_template

EXCERPT_CHARS = 160


@dataclass(frozen=True)
class Parent:
    trial: FrozenTrial
    template: TemplateRow

    @property
    def instruction(self) -> str:
        return split_template(self.template.text)[0] or self.template.text

    @property
    def rule(self) -> str:
        return split_template(self.template.text)[1]

    @property
    def collapse(self) -> float:
        return float(self.trial.user_attrs.get("measure.unique_prefix_ratio_10", 1.0))


def _rank(study: optuna.Study) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = sorted(study.best_trials, key=lambda t: t.number) if complete else []  # best_trials raises when none
    rest = sorted((t for t in complete if t not in front), key=lambda t: -signed(study.directions[0], t.values[0]))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if "template_id" in t.user_attrs]
    return [*front, *rest, *pruned]


def choose_parents(study: optuna.Study, store: Store, limit: int) -> list[Parent]:
    """The best `limit` templates, each with its best trial."""
    chosen: dict[int, FrozenTrial] = {}
    for trial in _rank(study):
        template_id = int(trial.user_attrs["template_id"])
        if template_id not in chosen and len(chosen) < limit:
            chosen[template_id] = trial
    rows = {row.id: row for row in store.templates(chosen)}
    return [Parent(trial, rows[tid]) for tid, trial in chosen.items() if tid in rows]


def most_collapsed(study: optuna.Study, store: Store, below: float) -> Parent | None:
    """The finished trial whose outputs share their openings most, if under the collapse threshold."""
    candidates = [t for t in _rank(study) if t.user_attrs.get("measure.unique_prefix_ratio_10", 1.0) < below]
    if not candidates:
        return None
    trial = min(candidates, key=lambda t: t.user_attrs["measure.unique_prefix_ratio_10"])
    return Parent(trial, store.template(int(trial.user_attrs["template_id"])))


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "…"


def sample_problems(source: str, output: str, family: str, finish_reason: str) -> list[str]:
    """What went wrong in one output, in words the proposer can act on."""
    problems = []
    if not output.strip():
        return ["the output is empty"]
    if is_refusal(output):
        problems.append("the assistant refused")
    if is_echo(source, output):
        problems.append("it copies the document instead of rewriting it")
    if not is_valid_format(family, output):
        problems.append(f"it does not have the {family} format")
    if lost := sorted(numbers(source) - numbers(output))[:4]:
        problems.append(f"it drops the numbers {', '.join(lost)}")
    if finish_reason == "length":
        problems.append("it was cut off at the length limit")
    return problems


def feedback_text(study: optuna.Study, parent: Parent, store: Store, sources: dict[str, str], samples: int) -> str:
    """The parent trial's metric summary, proxy score and up to `samples` source/output pairs with problems."""
    attrs = parent.trial.user_attrs
    names = objective_names(study)
    lines = []
    if parent.trial.values:
        lines.append("Scores: " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, parent.trial.values, strict=True)))
    if "proxy.score" in attrs and "proxy.score" not in names:
        lines.append(f"Proxy score: {attrs['proxy.score']:.4f}")
    if reason := attrs.get("pruned_reason"):
        lines.append(f"The trial was stopped: {reason}")

    def metric(key: str) -> str:
        return f"{attrs[key]:.2f}" if key in attrs else "n/a"

    lines.append(
        f"Collapse: unique 10-character openings {metric('measure.unique_prefix_ratio_10')}; "
        f"most common opening {attrs.get('measure.top_opening', '')!r}"
    )
    lines.append(
        f"Fidelity: number recall {metric('measure.number_recall')}, entity recall {metric('measure.entity_recall')}"
    )
    lines.append(
        f"Format failures: format validity {metric('measure.format_validity')}, "
        f"failure rate {metric('measure.failure_rate')}, echo rate {metric('measure.echo_rate')}"
    )
    pairs = []
    for doc_id, row in store.selected_outputs(study.study_name, parent.trial.number):
        source = sources.get(doc_id, "")
        if problems := sample_problems(source, row.text, parent.template.family, row.finish_reason):
            pairs.append((len(problems), source, row.text, problems))
    for i, (_, source, output, problems) in enumerate(sorted(pairs, key=lambda p: -p[0])[:samples], start=1):
        lines += [
            f"Example {i}. Source: {_excerpt(source)}",
            f"Output: {_excerpt(output)}",
            f"Problem: {'; '.join(problems)}.",
        ]
    return "\n".join(lines)
