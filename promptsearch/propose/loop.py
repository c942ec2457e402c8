"""The proposal round, run as an Optuna callback in each worker (see `ProposalLoop`)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
import optuna
from datatrove.data import Document
from dspy.utils.exceptions import AdapterParseError, LMTimeoutError, LMTransportError
from loguru import logger
from optuna.trial import FrozenTrial, TrialState

from promptsearch.errors import UserError
from promptsearch.measure import Embedder
from promptsearch.objectives import FINISHED
from promptsearch.propose.feedback import Parent, choose_parents, feedback_text, most_collapsed
from promptsearch.propose.lm import ProposerLM
from promptsearch.propose.operators import OPERATOR_MODULES, adapter_for
from promptsearch.propose.validate import Validator, format_head, output_rule_for
from promptsearch.rephrase import GeneratorServers
from promptsearch.seeds import template_hash
from promptsearch.space import OPERATORS, SearchSpace
from promptsearch.store import Store
from promptsearch.store.models import ProposalRow

DEFAULT_RULE = "Output only the rewritten text, nothing else."


@dataclass(frozen=True)
class Job:
    """One operator call to make: its DSPy inputs and how its answer becomes a template."""

    operator: str
    inputs: dict[str, str]
    rule: str
    family: str
    parents: list[Parent] = field(default_factory=list)
    feedback: str = ""
    must_mention: str = ""  # the word a generated format is named by


def failure_reason(exc: Exception) -> str:
    """Why an operator call produced nothing: timeout, unreachable, unparseable, or the error's class."""
    if isinstance(exc, LMTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, LMTransportError | ConnectionError):
        return "unreachable"
    if isinstance(exc, AdapterParseError):
        return "unparseable"
    return f"error:{type(exc).__name__}"


class ProposalLoop:
    """Optuna callback: after every `proposal.every` finished trials, one round of proposals.

    A round is claimed in `ps_proposal_rounds` (one worker runs it), chooses parents, runs the operators,
    validates each answer, stores every attempt in `ps_proposals` and the accepted ones as templates with their
    parents, adds them to the study's `template_ids` and enqueues as many as the trial budget has room for.
    Nothing the proposer does stops the study: failures are logged and recorded, and the study goes on.
    """

    def __init__(
        self,
        study_name: str,
        store: Store,
        space: SearchSpace,
        workdir: Path,
        sources: list[Document],
        generators: GeneratorServers,
    ):
        self.study_name = study_name
        self.store = store
        self.spec = space.proposal
        self.budget = space.budget.trials
        self.sources = {d.id: d.text for d in sources}
        folder = workdir / study_name
        self.proposer = ProposerLM(self.spec.lm, folder / "dspy-cache", generators)
        self.embedder = Embedder()

    def __call__(self, study: optuna.Study, _: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        round_index = finished // self.spec.every
        if round_index == 0 or self._room(trials) <= 0:
            return
        if not self.store.claim_round(self.study_name, round_index, finished, self.proposer.name):
            return
        error = ""
        try:
            self.run_round(study, round_index)
        except UserError as exc:  # e.g. the proposer's endpoint never answered: one line, not a traceback
            logger.error(f"proposal round {round_index} of {self.study_name} skipped: {exc}")
            error = str(exc)
        except Exception as exc:  # the study goes on with the pool it has
            logger.exception(f"proposal round {round_index} of {self.study_name} failed")
            error = f"{type(exc).__name__}: {exc}"
        self.store.end_round(self.study_name, round_index, error)

    def _room(self, trials: list[FrozenTrial]) -> int:
        planned = sum(t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING) for t in trials)
        return self.budget - planned

    def run_round(self, study: optuna.Study, round_index: int) -> list[int]:
        """Run the operators once; return the accepted template ids."""
        pool = self.store.templates(study.user_attrs["template_ids"])
        validator = Validator(self.spec, [t.text for t in pool], self.embedder)
        jobs = self.jobs(study)
        if not jobs:
            return []
        self.proposer.wait_ready()
        lm = self.proposer.lm()
        accepted = []
        for index, job in enumerate(jobs):
            row = self.attempt(job, lm, validator, round_index, index)
            self.store.add_proposal(row)
            logger.info(f"proposal r{round_index}.{index} {job.operator}: {row.status} {row.reason}".rstrip())
            if row.template_id is not None:
                accepted.append(row.template_id)
        self._enqueue(study, accepted)
        return accepted

    def jobs(self, study: optuna.Study) -> list[Job]:
        """The round's operator calls, in `OPERATORS` order; an operator without suitable parents is skipped."""
        spec = self.spec
        parents = choose_parents(study, self.store, spec.parents)
        jobs: list[Job] = []
        for operator in OPERATORS:
            count = spec.operators.get(operator, 0)
            if operator == "mutate" and parents:
                jobs += [self._mutate(study, parents[i % len(parents)]) for i in range(count)]
            elif operator == "crossover" and len(parents) >= 2:
                pairs = [(parents[0], parents[1 + i % (len(parents) - 1)]) for i in range(count)]
                jobs += [self._crossover(a, b) for a, b in pairs]
            elif operator == "diversify" and count:
                collapsed = most_collapsed(study, self.store, spec.collapse_below)
                jobs += [self._diversify(collapsed)] * count if collapsed else []
            elif operator == "generate":
                done = sum(p.operator == "generate" for p in self.store.proposals(self.study_name))
                ideas = [spec.format_ideas[(done + i) % len(spec.format_ideas)] for i in range(count)]
                jobs += [self._generate(idea) for idea in ideas]
        return jobs

    @staticmethod
    def _generate(idea: str) -> Job:
        head = format_head(idea)
        return Job("generate", {"format_idea": idea}, output_rule_for(idea), "generated", must_mention=head.split()[0])

    def _mutate(self, study: optuna.Study, parent: Parent) -> Job:
        feedback = feedback_text(study, parent, self.store, self.sources, self.spec.samples_in_feedback)
        inputs = {"instruction": parent.instruction, "feedback": feedback}
        return Job("mutate", inputs, parent.rule or DEFAULT_RULE, parent.template.family, [parent], feedback)

    @staticmethod
    def _crossover(first: Parent, second: Parent) -> Job:
        inputs = {"first_instruction": first.instruction, "second_instruction": second.instruction}
        return Job("crossover", inputs, first.rule or DEFAULT_RULE, first.template.family, [first, second])

    @staticmethod
    def _diversify(parent: Parent) -> Job:
        opening = str(parent.trial.user_attrs.get("measure.top_opening", ""))
        feedback = f"unique 10-character openings {parent.collapse:.2f}; most common opening {opening!r}"
        inputs = {"instruction": parent.instruction, "repeated_opening": opening}
        return Job("diversify", inputs, parent.rule or DEFAULT_RULE, parent.template.family, [parent], feedback)

    def attempt(self, job: Job, lm: dspy.LM, validator: Validator, round_index: int, index: int) -> ProposalRow:
        # A rollout id per (study, round, call): a fresh sample from the proposer, cached for a resumed study.
        rollout = int(hashlib.sha256(f"{self.study_name}/{round_index}/{index}".encode()).hexdigest()[:8], 16)
        call_lm = lm.copy(rollout_id=rollout)  # its own history, so the prompt and response can be stored
        started = time.monotonic()
        row = ProposalRow(
            study_name=self.study_name,
            round_index=round_index,
            operator=job.operator,
            status="failed",
            reason="",
            parent_template_ids=[p.template.id for p in job.parents],
            parent_trials=[p.trial.number for p in job.parents],
            proposer_model=self.proposer.model_id,
            proposer_revision=self.proposer.revision,
            feedback=job.feedback,
        )
        try:
            with dspy.context(lm=call_lm, adapter=adapter_for(self.spec.lm.adapter)):
                raw = OPERATOR_MODULES[job.operator]()(**job.inputs)
        except Exception as exc:  # timeouts, a server that is down, output no adapter can parse
            logger.warning(f"proposal {job.operator} failed: {type(exc).__name__}: {exc}")
            row.reason = failure_reason(exc)
        else:
            verdict = validator.judge(raw, job.rule, job.must_mention)
            row.status, row.reason = ("accepted", "") if verdict.template else ("rejected", verdict.reason)
            if verdict.template is not None:
                digest = template_hash(verdict.template)
                row.template_id = self.store.add_template(
                    f"{job.operator}-{digest[:8]}",
                    job.family,
                    verdict.template,
                    digest,
                    "proposed",
                    row.parent_template_ids,
                )
        row.seconds = time.monotonic() - started
        row.prompt, row.response = _exchange(call_lm)
        return row

    def _enqueue(self, study: optuna.Study, accepted: list[int]) -> None:
        ids: list[int] = list(study.user_attrs["template_ids"])
        study.set_user_attr("template_ids", ids + [t for t in accepted if t not in ids])
        room = self._room(study.get_trials(deepcopy=False))
        for template_id in accepted[: max(0, room)]:
            study.enqueue_trial({}, user_attrs={"template_id": template_id})


def _exchange(lm: dspy.LM) -> tuple[list[dict[str, Any]], str]:
    """The messages DSPy sent and the text that came back (empty when the call never returned)."""
    if not lm.history:
        return [], ""
    entry = lm.history[-1]
    messages = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in entry["messages"] or []]
    outputs = entry.get("outputs") or []
    first = outputs[0] if outputs else ""
    return messages, str(first.get("text", first) if isinstance(first, dict) else first)
