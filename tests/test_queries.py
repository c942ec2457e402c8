"""Study reading without the CLI: `queries` rows from a study built by hand, and the helpers the commands call."""

import json
from pathlib import Path

import optuna
import pytest
from conftest import DATA, write_space
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from promptsearch.corpus import input_corpus, read_output_records
from promptsearch.errors import UserError
from promptsearch.generate import chosen_recipe
from promptsearch.objectives import best_value, objective_names, signed
from promptsearch.proxy_profile import load_proxy_profile
from promptsearch.queries import study_list, study_status, study_templates
from promptsearch.store import Store
from promptsearch.store.models import AblationCalibrationRow, AblationRow, ProposalRow
from promptsearch.study import create_study, objective_noise, record_noise_floor

DISTRIBUTIONS = {
    "generator": CategoricalDistribution(["smollm2-135m"]),
    "temperature": FloatDistribution(0.2, 1.0),
    "best_of_n": CategoricalDistribution([1, 2]),
    "mix_ratio": FloatDistribution(0.3, 0.7),
}


def _add(study: optuna.Study, store: Store, state: TrialState, value: float | None, template_id: int, **kw) -> int:
    """A finished trial with its bookkeeping in user attrs and its metrics in the metrics table only."""
    params = {"generator": "smollm2-135m", "temperature": 0.5, "best_of_n": 2, "mix_ratio": 0.5}
    attrs = {"template_id": template_id, "seconds.rephrase": 3.0, "seconds.measure": 1.5} | kw.get("attrs", {})
    trial = create_trial(
        state=state,
        values=None if value is None else [value],
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        system_attrs=kw.get("system", {}),
    )
    study.add_trial(trial)
    number = study.get_trials(deepcopy=False)[-1].number
    for name, metric in kw.get("metrics", {}).items():
        store.record_metrics(study.study_name, number, name.split(".")[0], {name: metric})
    return number


@pytest.fixture
def study(tmp_path: Path) -> tuple[optuna.Study, Store]:
    """Study `tiny` (minimize proxy.heldout_bpb): the two seed templates, trials in every state, a
    calibration of its proxy profile, two promoted trials, and two proposed templates (one a crossover)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = create_study(write_space(tmp_path / "space.yaml", None), url)  # trials 0, 1: enqueued seeds
    store = Store.open(url)

    def measured(prefix: float, recall: float, tokens: int) -> dict:
        return {
            "metrics": {
                "measure.unique_prefix_ratio_10": prefix,
                "measure.number_recall": recall,
                "rephrase.completion_tokens": tokens,
            }
        }

    _add(study, store, TrialState.COMPLETE, 1.5, 1, **measured(0.5, 0.9, 100))  # 2
    _add(study, store, TrialState.COMPLETE, 1.2, 2, **measured(0.75, 0.8, 120))  # 3
    reason = "measure: echo_rate 0.9 breaks its threshold"
    _add(study, store, TrialState.PRUNED, None, 2, attrs={"pruned_reason": reason}, **measured(0.1, 0.2, 50))  # 4
    _add(study, store, TrialState.FAIL, None, 1, attrs={"interrupted": True})  # 5
    _add(study, store, TrialState.COMPLETE, 1.3, 1, attrs={"retry_of": 5}, **measured(0.6, 0.95, 80))  # 6
    _add(study, store, TrialState.COMPLETE, 1.25, 2, system={"failed_trial": 4})  # 7
    profile = load_proxy_profile(DATA / "proxy-micro.yaml")
    record_noise_floor(store, profile, [{"heldout_bpb": 1.0}, {"heldout_bpb": 1.1}, {"heldout_bpb": 1.2}])
    for number, state, results in ((3, "COMPLETED", {"macro": 0.41, "micro": 0.43}), (7, "PROMOTED", None)):
        row = AblationRow(
            study_name="tiny",
            trial_number=number,
            profile="cpu-smoke",
            proxy_profile=profile.name,
            proxy_objective=-1.2,
            promoted_by="top_k",
            bundle_dir="/bundle",
            state=state,
            results=results,
        )
        store.add_ablation(row)
    store.add_ablation_calibration(
        AblationCalibrationRow(proxy_profile=profile.name, profile="cpu-smoke", trials=2, kendall_tau=1.0, points=[])
    )
    child = store.add_template("faq-mut", "faq", "Rewrite:\n\n{document}", "h1", "proposed", [1])
    cross = store.add_template("cross", "table", "Cross:\n\n{document}", "h2", "proposed", [2, 1])
    study.set_user_attr("template_ids", [*study.user_attrs["template_ids"], child, cross])
    for operator, status, reason, template_id in (
        ("mutate", "accepted", "", child),
        ("crossover", "accepted", "", cross),
        ("mutate", "rejected", "echo", None),
    ):
        proposal = ProposalRow(
            study_name="tiny",
            round_index=0,
            operator=operator,
            status=status,
            reason=reason,
            template_id=template_id,
            proposer_model="m",
            proposer_revision="r",
        )
        store.add_proposal(proposal)
    _add(study, store, TrialState.COMPLETE, 1.1, child)  # 8
    return study, store


def test_status_rows(study: tuple[optuna.Study, Store]) -> None:
    status = study_status(*study)
    assert status.objectives == ["proxy.heldout_bpb"] and status.directions == ["minimize"]
    assert status.noise == {"proxy.heldout_bpb": pytest.approx(0.1)} and not status.needs_calibration
    rows = {r.number: r for r in status.trials}
    templates = ["faq", "table", "faq", "table", "table", "faq", "faq", "table", "faq-mut"]
    assert [rows[n].template for n in range(9)] == templates
    assert rows[0].state == "WAITING" and rows[0].values is None and rows[0].generator is None
    assert rows[3].values == [1.2] and rows[3].best_of_n == 2 and rows[3].temperature == 0.5
    # (value - best) / noise floor, minimized: the best trial (8, 1.1) is 0 noise floors away
    assert rows[8].from_best["proxy.heldout_bpb"] == pytest.approx(0.0)
    assert rows[3].from_best["proxy.heldout_bpb"] == pytest.approx(1.0)
    assert rows[4].from_best["proxy.heldout_bpb"] is None
    assert rows[4].note == "measure: echo_rate 0.9 breaks its threshold"
    assert rows[5].note == "interrupted"
    assert rows[6].note == "re-run of #5"
    assert rows[7].note == "re-run of #4 (worker lost)"
    # stage metrics from the metrics table (these trials carry no user-attr copy)
    assert rows[3].prefix_10 == 0.75 and rows[3].number_recall == 0.8 and rows[7].prefix_10 is None
    assert status.completion_tokens == 100 + 120 + 50 + 80
    assert status.stage_seconds == {"rephrase": 3.0 * 7, "measure": 1.5 * 7}
    assert [(a.trial_number, a.state, a.macro, a.micro) for a in status.ablations] == [
        (3, "COMPLETED", 0.41, 0.43),
        (7, "PROMOTED", None, None),
    ]
    (agreement,) = status.agreements
    assert (agreement.profile, agreement.trials, agreement.kendall_tau) == ("cpu-smoke", 2, 1.0)


def test_noise_floor_is_stored_for_the_study(study: tuple[optuna.Study, Store]) -> None:
    loaded, store = study
    calibration = store.latest_calibration("proxy-micro")
    assert calibration.seeds == 3 and calibration.means == {"heldout_bpb": pytest.approx(1.1)}
    assert calibration.stds == {"heldout_bpb": pytest.approx(0.1)}
    assert objective_noise(loaded, store) == {"proxy.heldout_bpb": pytest.approx(0.1)}


def test_study_list_counts_the_review_queue(study: tuple[optuna.Study, Store]) -> None:
    _, store = study
    review = optuna.create_study(study_name="tiny-review", storage=store.optuna_storage(), direction="maximize")
    review.add_trial(create_trial(state=TrialState.COMPLETE, value=4.0))
    review.ask()
    (row,) = study_list(store)
    assert (row.name, row.trials, row.directions, row.rated) == ("tiny", 9, ["minimize"], (1, 2))
    assert row.started is not None


def test_template_standings_and_lineage(study: tuple[optuna.Study, Store]) -> None:
    pool = study_templates(*study)
    by_name = {s.template.name: s for s in pool.templates}
    assert pool.objectives == ["proxy.heldout_bpb"]
    assert [(s.best, len(s.trials), s.finished) for s in pool.templates] == [
        (1.3, 4, 3),
        (1.2, 4, 3),
        (1.1, 1, 1),
        (None, 0, 0),
    ]
    assert by_name["faq"].operator is None and by_name["cross"].operator == "crossover"
    assert [s.template.name for s in pool.children(None)] == ["faq", "table"]
    assert [s.template.name for s in pool.children(by_name["faq"].template.id)] == ["faq-mut"]
    assert by_name["cross"].parent == 2 and by_name["cross"].crossed_with == [1]
    assert pool.find("faq-mut") is pool.find(str(by_name["faq-mut"].template.id)) is by_name["faq-mut"]
    assert pool.find("nope") is None
    assert pool.proposal_of(by_name["cross"].template.id).operator == "crossover"
    assert pool.proposal_counts() == {("accepted", ""): 2, ("rejected", "echo"): 1}


def test_objective_helpers(tmp_path: Path) -> None:
    unnamed = optuna.create_study(directions=["maximize", "minimize"])
    assert objective_names(unnamed) == ["objective_0", "objective_1"]
    assert best_value(StudyDirection.MAXIMIZE, [1.0, 3.0, 2.0]) == 3.0
    assert best_value(StudyDirection.MINIMIZE, [1.0, 3.0, 2.0]) == 1.0
    assert signed(StudyDirection.MINIMIZE, 2.0) == -2.0 and signed(StudyDirection.MAXIMIZE, 2.0) == 2.0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/rows.jsonl.gz", "jsonl"),
        ("rows.json", "jsonl"),
        ("shards/part-0.parquet", "parquet"),
        ("lee_background", "embedded"),
        ("books/", "text"),
    ],
)
def test_input_format_is_guessed_from_the_path(path: str, expected: str) -> None:
    assert input_corpus(path, "auto", "text", 5).format == expected
    assert input_corpus(path, "hub", "content", None).format == "hub"


def test_output_records_are_read_with_their_source(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    lines = [
        {"text": "Q: a?\nA: b.", "source_text": "a b"},
        {"text": "| x |", "source_text": "x"},
    ]
    rows.write_text("".join(json.dumps(r) + "\n" for r in lines))
    records = read_output_records(rows, "source_text", "text")
    assert [(r.source, r.output, r.family) for r in records] == [("a b", "Q: a?\nA: b.", ""), ("x", "| x |", "")]
    assert {r.family for r in read_output_records(rows, "source_text", "text", "table")} == {"table"}
    with pytest.raises(UserError, match="rows have no field 'src'"):
        read_output_records(rows, "src", "text")
    with pytest.raises(UserError, match="file not found"):
        read_output_records(tmp_path / "missing.jsonl", "source_text", "text")


def test_generate_needs_a_recipe_or_a_template(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", None)
    with pytest.raises(UserError, match="give either --recipe FILE"):
        chosen_recipe(None, None, None)
    with pytest.raises(UserError, match="--space needs --template NAME"):
        chosen_recipe(None, space, None)
    recipe = chosen_recipe(None, space, "faq", temperature=0.3, best_of_n=2)
    assert recipe.template_name == "faq" and recipe.sampling.temperature == 0.3 and recipe.best_of_n == 2
    assert recipe.sampling.max_new_tokens == 12 and recipe.mix_ratio == 0.5
