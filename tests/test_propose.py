"""Template proposal: operator inputs and validation with DSPy's DummyLM, then two real rounds with SmolLM2-135M."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import dspy
import optuna
import pytest
from conftest import run_cli, write_space
from datatrove.data import Document
from dspy.utils.dummies import DummyLM
from sqlalchemy import func, select

from promptsearch.embedded import VllmServer
from promptsearch.measure import Embedder
from promptsearch.propose import ProposalLoop
from promptsearch.propose.operators import OPERATOR_MODULES, PlainTextAdapter
from promptsearch.propose.validate import Validator, output_rule_for
from promptsearch.rephrase import GeneratorServers
from promptsearch.seeds import SEED_TEMPLATES, compose
from promptsearch.space import ProposalSpec, load_space
from promptsearch.store import Store
from promptsearch.store.models import GenerationRow, ProposalRoundRow, ProposalRow, TemplateRow
from promptsearch.templates import split_template

SOURCE = "In 1996 the Sydney council spent 12 million dollars on 40 new buses for the western suburbs."
ALL_OPERATORS = {"mutate": 1, "generate": 1, "crossover": 1, "diversify": 1}


def _generation(store: Store, key: str, text: str, finish_reason: str = "stop") -> None:
    store.put_generation(
        GenerationRow(
            key=key,
            template_hash="h",
            model_id="m",
            model_revision="r",
            sampling={},
            seed=0,
            doc_id="d1",
            sample_index=0,
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=1,
            completion_tokens=1,
        )
    )


@pytest.fixture
def measured(tmp_path: Path) -> tuple[optuna.Study, Store, ProposalLoop]:
    """A study whose two seed templates each have a finished trial with metrics and a stored sample output."""
    dspy.configure_cache(enable_disk_cache=False)  # DummyLM answers are scripted; keep ~/.dspy_cache untouched
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store.open(url)
    faq, table = SEED_TEMPLATES["faq"], SEED_TEMPLATES["table"]
    ids = [store.add_template(t.name, t.family, t.text, t.text_hash, "seed") for t in (faq, table)]
    study = optuna.create_study(study_name="tiny", storage=store.optuna_storage(), directions=["maximize"])
    study.set_metric_names(["proxy.score"])
    study.set_user_attr("template_ids", ids)
    metrics = {
        "measure.unique_prefix_ratio_10": 0.5,
        "measure.top_opening": "Q: What i",
        "measure.number_recall": 0.25,
        "measure.entity_recall": 0.4,
        "measure.format_validity": 0.0,
        "measure.failure_rate": 0.5,
        "measure.echo_rate": 0.5,
    }
    for template_id, value, output in ((ids[0], 0.7, "Q: What is a bus?"), (ids[1], 0.2, SOURCE)):
        study.add_trial(optuna.trial.create_trial(values=[value], user_attrs={"template_id": template_id, **metrics}))
        number = study.trials[-1].number
        _generation(store, f"k{number}", output, "length")
        store.record_trial_outputs("tiny", number, [("d1", f"k{number}", True)])
    space_file = write_space(
        tmp_path / "space.yaml",
        None,
        proposal={
            "enabled": True,
            "operators": ALL_OPERATORS,
            "format_ideas": ["a timeline of the events, oldest first"],
            # nothing listens there: calls fail the way they do when the proposer's server is down
            "lm": {"backend": "endpoint", "endpoint_url": "http://127.0.0.1:9", "model": "nobody"},
        },
    )
    sources = [Document(text=SOURCE, id="d1")]
    loop = ProposalLoop("tiny", store, load_space(space_file), tmp_path / "runs", sources, GeneratorServers(tmp_path))
    return study, store, loop


def test_operator_inputs_carry_the_parents_feedback(measured: tuple[optuna.Study, Store, ProposalLoop]) -> None:
    study, _, loop = measured
    jobs = {job.operator: job for job in loop.jobs(study)}
    assert set(jobs) == set(ALL_OPERATORS)

    mutate = jobs["mutate"]
    faq_instruction, faq_rule = split_template(SEED_TEMPLATES["faq"].text)
    assert mutate.inputs["instruction"] == faq_instruction  # the best trial's template is the parent
    assert mutate.rule == faq_rule and mutate.family == "faq"
    feedback = mutate.inputs["feedback"]
    for expected in (
        "proxy.score 0.7000",
        "unique 10-character openings 0.50",
        "'Q: What i'",
        "number recall 0.25",
        "entity recall 0.40",
        "format validity 0.00",
        "failure rate 0.50",
        "Source: In 1996 the Sydney council",
        "Output: Q: What is a bus?",
        "it does not have the faq format",
        "it drops the numbers 12, 1996, 40",
        "cut off at the length limit",
    ):
        assert expected in feedback, (expected, feedback)
    assert mutate.feedback == feedback  # stored with the lineage as it was given

    table_instruction = split_template(SEED_TEMPLATES["table"].text)[0]
    assert jobs["crossover"].inputs == {"first_instruction": faq_instruction, "second_instruction": table_instruction}
    assert jobs["diversify"].inputs["repeated_opening"] == "Q: What i"
    assert jobs["generate"].inputs == {"format_idea": "a timeline of the events, oldest first"}
    assert jobs["generate"].must_mention == "timeline"
    assert jobs["generate"].rule == "Output only the timeline of the events, nothing else."

    # Each operator's prompt carries its inputs; the module returns what the model wrote.
    for job in jobs.values():
        answer = f"Rewrite the document below for operator {job.operator} as a clear text for learners."
        field = next(iter(OPERATOR_MODULES[job.operator].signature.output_fields))
        lm = DummyLM({"document": {field: answer}}, adapter=PlainTextAdapter())
        with dspy.context(lm=lm, adapter=PlainTextAdapter()):
            assert OPERATOR_MODULES[job.operator]()(**job.inputs) == answer
        prompt = lm.history[-1]["messages"][-1]["content"]
        assert all(value in prompt for value in job.inputs.values())


def test_attempts_are_recorded_with_lineage_and_failures(measured: tuple[optuna.Study, Store, ProposalLoop]) -> None:
    study, store, loop = measured
    mutate = next(job for job in loop.jobs(study) if job.operator == "mutate")
    validator = Validator(loop.spec, [t.text for t in store.templates(study.user_attrs["template_ids"])], Embedder())
    answer = "Turn the document below into a short quiz whose questions each open with a different number from it."
    lm = DummyLM({"Feedback": {"improved_instruction": f"Improved instruction:\n{answer}"}}, adapter=PlainTextAdapter())

    row = loop.attempt(mutate, lm, validator, 1, 0)
    assert (row.status, row.reason) == ("accepted", "")
    template = store.template(row.template_id)
    assert template.text == compose(answer, split_template(SEED_TEMPLATES["faq"].text)[1])
    assert template.origin == "proposed" and template.parents == [study.trials[0].user_attrs["template_id"]]
    assert row.parent_trials == [0] and "number recall 0.25" in row.feedback
    assert "number recall 0.25" in row.prompt[-1]["content"] and answer in row.response

    again = loop.attempt(mutate, lm, validator, 1, 1)
    assert (again.status, again.reason) == ("rejected", "duplicate")

    # The real dspy.LM against a port nothing listens on: recorded as a failure, nothing raised.
    down = loop.attempt(mutate, loop.proposer.lm(), validator, 1, 2)
    assert (down.status, down.reason, down.template_id) == ("failed", "unreachable", None)
    assert "litellm" not in sys.modules  # DSPy's native engine: no litellm, so no cost-map download


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        (
            "Improved instruction:\nProblem: the output does not have the faq format; the document must have the li…",
            "truncated",
        ),
        ("I'm sorry, I cannot help with rewriting this document for you today.", "refusal"),
        ("Rewrite the document.", "too_short"),
        ("Rewrite the document as a list of facts. " * 30, "too_long"),
        ("the document that stands on its own. " * 3, "repetitive"),
        ("Rewrite the document below as a short story. It is designed to be read aloud. " * 2, "repetitive"),
        ("Rewrite the {document} below as a list of the facts it states.", "placeholder"),
        ("Write a poem about the sea and the wind and the sky at dawn.", "no_document_reference"),
        (split_template(SEED_TEMPLATES["faq"].text)[0].upper(), "duplicate"),
        (
            "Turn the document below into a page of frequently asked questions that stands on its own, from the most "
            "basic questions to more detailed ones. Each answer must make sense without the document and keep its "
            "facts, names and numbers.",
            "near_duplicate",
        ),
    ],
)
def test_validation_rules(raw: str, reason: str) -> None:
    validator = Validator(ProposalSpec(), [SEED_TEMPLATES["faq"].text], Embedder())
    assert validator.judge(raw, "Output only the list, nothing else.").reason == reason


def test_generated_format_is_named_and_cleaned() -> None:
    validator = Validator(ProposalSpec(), [SEED_TEMPLATES["faq"].text], Embedder())
    rule = output_rule_for("a list of dates, oldest first")
    assert rule == "Output only the list of dates, nothing else."
    off = validator.judge("Rewrite the document below as a timeline of what happened, in order.", rule, "list")
    assert off.reason == "off_format"
    # a lead-in line and a last sentence cut off by the token limit are dropped; the rest is the instruction
    raw = "Here is the new instruction:\nList every date in the document below with what happened then. Start the"
    verdict = validator.judge(raw, rule, "list")
    assert verdict.template == compose("List every date in the document below with what happened then.", rule)


def test_proposer_endpoint_key_must_be_set(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        None,
        proposal={
            "enabled": True,
            "lm": {
                "backend": "endpoint",
                "endpoint_url": "http://127.0.0.1:9",
                "model": "m",
                "api_key_env": "PS_TEST_UNSET_KEY",
            },
        },
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: proposal.lm: environment variable PS_TEST_UNSET_KEY is not set"


def test_two_rounds_with_the_embedded_model(tmp_path: Path, embedded_server: VllmServer) -> None:
    """Real SmolLM2-135M proposals: accepted templates become trials with lineage; rejections counted by reason."""
    space = write_space(
        tmp_path / "space.yaml",
        embedded_server,
        # no proxy training: the test is about proposals, and a round after trials 2 and 4 of 6 keeps it short
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
        proxy=None,
        budget={"trials": 6},
        proposal={
            "enabled": True,
            "every": 2,
            "operators": {"mutate": 1, "generate": 1},
            "lm": {
                "backend": "endpoint",
                "endpoint_url": embedded_server.url,
                "model": str(embedded_server.model_dir),
                "max_tokens": 48,
            },
        },
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("study", "start", str(space), "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    store = Store.open(url)
    with store.session() as s:
        rounds = s.scalars(select(ProposalRoundRow).order_by(ProposalRoundRow.round_index)).all()
        proposals = s.scalars(select(ProposalRow)).all()
        counts = dict(
            s.execute(
                select(ProposalRow.reason, func.count())
                .where(ProposalRow.status == "rejected")
                .group_by(ProposalRow.reason)
            ).all()
        )
        proposed = s.scalars(select(TemplateRow).where(TemplateRow.origin == "proposed")).all()
    assert [r.round_index for r in rounds] == [1, 2] and all(r.error == "" for r in rounds)
    assert all(
        Counter(p.operator for p in proposals if p.round_index == r) == {"mutate": 1, "generate": 1} for r in (1, 2)
    )
    assert all(p.prompt and p.proposer_model == str(embedded_server.model_dir) for p in proposals)
    assert counts == Counter(p.reason for p in proposals if p.status == "rejected")
    accepted = [p for p in proposals if p.status == "accepted"]
    assert accepted, [(p.operator, p.reason, p.response) for p in proposals]
    assert {t.id for t in proposed} == {p.template_id for p in accepted}
    assert all(t.parents or t.family == "generated" for t in proposed)

    study = optuna.load_study(study_name="tiny", storage=url)
    assert {p.template_id for p in accepted} <= set(study.user_attrs["template_ids"])
    trial_templates = {t.user_attrs["template_id"] for t in study.trials}
    assert trial_templates & {p.template_id for p in accepted}  # enqueued as trials (run, or waiting past the budget)

    tree = run_cli("templates", "lineage", "tiny", "--db", url, cwd=tmp_path)
    assert tree.returncode == 0, tree.stderr
    assert f"#{accepted[0].template_id} {accepted[0].operator}-" in tree.stdout
    pool = run_cli("templates", "list", "tiny", "--db", url, cwd=tmp_path)
    assert f"{len(proposals)} proposal(s): " in pool.stdout
    shown = run_cli("templates", "show", "tiny", str(accepted[0].template_id), "--db", url, cwd=tmp_path)
    assert f"proposed in round {accepted[0].round_index} by {accepted[0].operator}" in shown.stdout
    assert "--- prompt" in shown.stdout and "--- response" in shown.stdout


def test_proposal_settings_are_checked(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        None,
        proposal={"enabled": True, "operators": {"mutate": 50}, "lm": {"backend": "endpoint", "model": "m"}},
    )
    result = run_cli("space", "validate", str(space), cwd=tmp_path)
    assert result.returncode == 2
    assert "proposal.operators: each operator makes 0-20 proposals per round" in result.stderr
    assert "proposal.lm: backend 'endpoint' needs an endpoint_url starting with http:// or https://" in result.stderr
