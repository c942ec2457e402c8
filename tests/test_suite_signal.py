"""Signal-to-noise of the suite's scores (`study.suite_signal`) and the task choice of `proxy.suite_objective`
(`study.resolve_suite_objective`), on studies whose trial metrics and calibration are written by hand: no model
is trained. Expected numbers are computed here from the hand-written values."""

import json
import statistics
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import DATA, run_cli, seeded_recipe, write_space
from optuna.trial import TrialState, create_trial

from promptsearch.errors import SpaceError, UserError
from promptsearch.export import export_recipes
from promptsearch.proxy_profile import load_proxy_profile
from promptsearch.queries import study_status as read_status
from promptsearch.recipe import GeneratorSpec
from promptsearch.store import Store
from promptsearch.study import (
    create_study,
    objective_noise,
    record_noise_floor,
    study_space,
    suite_objective_selection,
    suite_signal,
)
from promptsearch.suite import aggregate_tasks
from promptsearch.trial import ProxyStage, build_stages

METRIC = "prob_norm_token"
# The profile's suite: arc_cf:easy is GK, openbookqa_cf and piqa_cf are RES.
TASKS = ["arc_cf:easy", "openbookqa_cf", "piqa_cf"]
# Final scores of the three complete trials: arc spreads widely, openbookqa hardly, piqa in between.
FINALS = {"arc_cf:easy": [0.30, 0.40, 0.50], "openbookqa_cf": [0.250, 0.252, 0.254], "piqa_cf": [0.50, 0.525, 0.55]}
# The same tasks over three training seeds: a noise of 0.01 each.
SEEDS = {"arc_cf:easy": [0.40, 0.41, 0.42], "openbookqa_cf": [0.25, 0.26, 0.27], "piqa_cf": [0.50, 0.51, 0.52]}


def _scores(per_task: dict[str, list[float]], i: int) -> dict[str, float]:
    """Run `i`'s suite scores as a run reports them (`suite.*`: tasks, categories, macro, micro)."""
    return aggregate_tasks({task: {METRIC: values[i]} for task, values in per_task.items()})


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """The tests' micro proxy, scoring three tasks of the suite."""
    document = yaml.safe_load((DATA / "proxy-micro.yaml").read_text())
    path = tmp_path / "proxy-suite.yaml"
    path.write_text(yaml.safe_dump(document | {"name": "proxy-suite", "suite": {"tasks": TASKS}}))
    return path


def _space(tmp_path: Path, profile: Path, name: str, **overrides: object) -> Path:
    return write_space(tmp_path / f"{name}.yaml", None, name=name, proxy=str(profile), **overrides)


def _complete(study: optuna.Study, store: Store, scores: dict[str, float], state: TrialState) -> None:
    """A finished trial whose final proxy scores are `scores` (stored as the proxy stage stores them)."""
    recipe = seeded_recipe(store, "faq", GeneratorSpec(name="g", backend="embedded", model="embedded"))
    attrs = {"recipe": recipe.model_dump(mode="json")}  # what `export` reads
    study.add_trial(create_trial(state=state, values=[1.0] if state == TrialState.COMPLETE else None, user_attrs=attrs))
    number = study.get_trials(deepcopy=False)[-1].number
    store.record_metrics(study.study_name, number, "proxy", {f"proxy.{k}": v for k, v in scores.items()})


def _source_study(tmp_path: Path, profile: Path, url: str, trials: int = 3) -> tuple[optuna.Study, Store]:
    """Study `source` with `trials` complete trials scored on the suite, and a pruned one that must not count."""
    study = create_study(_space(tmp_path, profile, "source"), url)
    store = Store.open(url)
    for i in range(trials):
        _complete(study, store, _scores(FINALS, i), TrialState.COMPLETE)
    _complete(study, store, _scores({task: [0.0] for task in TASKS}, 0), TrialState.PRUNED)
    return study, store


def _calibrate(store: Store, profile: Path) -> None:
    runs = [{"heldout_bpb": 1.0 + i / 10} | _scores(SEEDS, i) for i in range(3)]
    record_noise_floor(store, load_proxy_profile(profile), runs)


def test_signal_noise_and_snr_per_task_category_and_macro(tmp_path: Path, profile: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, store = _source_study(tmp_path, profile, url)
    uncalibrated = suite_signal(study, store)
    assert uncalibrated is not None and uncalibrated.trials == 3 and uncalibrated.calibration_seeds is None
    assert all(r.noise is None and r.snr is None for r in uncalibrated.rows)

    _calibrate(store, profile)
    signal = suite_signal(study, store)
    assert signal is not None and signal.profile == "proxy-suite" and signal.calibration_seeds == 3
    rows = {(r.name, r.metric): r for r in signal.rows}
    for task in TASKS:
        row = rows[(task, METRIC)]
        assert row.kind == "task" and row.category == ("GK" if task == "arc_cf:easy" else "RES")
        assert row.signal == pytest.approx(statistics.stdev(FINALS[task]))
        assert row.noise == pytest.approx(0.01)
        assert row.snr == pytest.approx(statistics.stdev(FINALS[task]) / 0.01)
    assert [rows[(t, METRIC)].snr for t in TASKS] == pytest.approx([10.0, 0.2, 2.5])
    res = [(FINALS["openbookqa_cf"][i] + FINALS["piqa_cf"][i]) / 2 for i in range(3)]
    res_noise = statistics.stdev((SEEDS["openbookqa_cf"][i] + SEEDS["piqa_cf"][i]) / 2 for i in range(3))
    assert rows[("RES", METRIC)].kind == "category"
    assert rows[("RES", METRIC)].snr == pytest.approx(statistics.stdev(res) / res_noise)
    macro = [(FINALS["arc_cf:easy"][i] + res[i]) / 2 for i in range(3)]
    assert rows[("macro", METRIC)].signal == pytest.approx(statistics.stdev(macro))
    assert rows[("macro", METRIC)].category is None
    # per metric: the tasks by category (GK before RES), then the categories, then macro and micro
    assert [r.name for r in signal.rows] == [*TASKS, "GK", "RES", "macro", "micro"]
    assert signal.tasks_at_least(METRIC, 1.5) == ["arc_cf:easy", "piqa_cf"]
    assert signal.tasks_at_least(METRIC, 3.0) == ["arc_cf:easy"]

    status = read_status(study, store)
    assert status.suite_signal == signal and status.suite_objective is None
    assert (status.snr_metric, status.snr_threshold, status.snr_tasks) == (METRIC, 2.0, ["arc_cf:easy", "piqa_cf"])

    complete = study.get_trials(states=(TrialState.COMPLETE,))
    json_path, card = export_recipes(study, store, complete[:1], tmp_path / "out", "json")
    document = json.loads(json_path.read_text())
    exported = {r["name"]: r for r in document["suite_signal"]["rows"]}
    assert exported["piqa_cf"]["snr"] == pytest.approx(2.5) and document["suite_objective"] is None
    assert "| arc_cf:easy | GK | prob_norm_token | 0.1000 | 0.0100 | 10.00 |" in card.read_text()


def test_suite_objective_tasks_are_chosen_once_at_create_and_recorded(tmp_path: Path, profile: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    source, store = _source_study(tmp_path, profile, url)
    _calibrate(store, profile)
    objective = [{"metric": "proxy.suite_objective", "direction": "maximize"}]
    choice = {"metric": METRIC, "tasks": "all", "min_snr": 1.5, "snr_study": "source"}
    picked = create_study(_space(tmp_path, profile, "picked", objectives=objective, suite_objective=choice), url)
    selection = suite_objective_selection(picked)
    assert selection is not None and selection.tasks == ["arc_cf:easy", "piqa_cf"]
    assert picked.user_attrs["suite_objective"] == {"choice": choice, "tasks": ["arc_cf:easy", "piqa_cf"]}

    # A trial of `source` that raises openbookqa's spread above the threshold leaves the study's choice as it was.
    _complete(source, store, _scores({**FINALS, "openbookqa_cf": [0.9]}, 0), TrialState.COMPLETE)
    assert suite_signal(source, store).tasks_at_least(METRIC, 1.5) == TASKS  # type: ignore[union-attr]
    assert suite_objective_selection(optuna.load_study(study_name="picked", storage=url)) == selection
    assert read_status(picked, store).suite_objective == selection
    # its noise floor: the macro over the chosen tasks on each calibration seed, (arc + piqa) / 2 = 0.45, 0.46, 0.47
    assert objective_noise(picked, store)["proxy.suite_objective"] == pytest.approx(0.01)
    _complete(picked, store, _scores(FINALS, 0), TrialState.COMPLETE)
    printed = run_cli("study", "status", "picked", "--db", url, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    out = " ".join(printed.stdout.split())  # Rich wraps lines to the terminal's width
    assert "suite signal-to-noise (1 complete trials; noise: proxy-suite, 3 seeds)" in out
    assert "tasks with SNR >= 1.5 on prob_norm_token: none" in out  # one trial: no spread to measure yet
    expected = "proxy.suite_objective: macro prob_norm_token over arc_cf:easy, piqa_cf (chosen: all, SNR >= 1.5 on"
    assert expected in out and "study source)" in out

    # The objective is the macro over the chosen tasks only: arc (GK) and piqa (RES), openbookqa left out.
    stage = build_stages(study_space(picked), selection)[-1]
    assert isinstance(stage, ProxyStage)
    run = {"heldout_bpb": 1.0, "knowledge_bpb": 1.0} | _scores(FINALS, 0)
    assert stage.combined(run)["suite_objective"] == pytest.approx((0.30 + 0.50) / 2)
    assert "suite_objective" not in stage.combined({"heldout_bpb": 1.0, "knowledge_bpb": 1.0})  # a rung without suite

    everything = create_study(
        _space(tmp_path, profile, "everything", objectives=objective, suite_objective={"tasks": "all"}), url
    )
    assert suite_objective_selection(everything).tasks == TASKS  # type: ignore[union-attr]


def test_suite_objective_mistakes_are_one_line_errors(tmp_path: Path, profile: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _source_study(tmp_path, profile, url)
    objective = [{"metric": "proxy.suite_objective", "direction": "maximize"}]

    def create(name: str, choice: dict | None) -> str:
        """`study create`'s one error line for a space choosing `choice` (a mistake in the file, or in what
        `snr_study` can measure)."""
        overrides = {"objectives": objective} | ({} if choice is None else {"suite_objective": choice})
        result = run_cli(
            "study", "create", str(_space(tmp_path, profile, name, **overrides)), "--db", url, cwd=tmp_path
        )
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr

    snr = {"min_snr": 1.5, "snr_study": "source"}
    assert "needs a `suite_objective:` block" in create("none", None)
    assert "min_snr and snr_study go together" in create("half", {"min_snr": 1.5})
    assert "unknown suite task 'arc:easy'" in create("unknown", {"tasks": ["arc_cf:easy", "arc:easy"]})
    assert "'hellaswag_cf' is not one of proxy-suite.yaml's suite.tasks" in create("other", {"tasks": ["hellaswag_cf"]})
    assert "has no calibration of its proxy profile proxy-suite" in create("nocal", snr)
    store = Store.open(url)
    _calibrate(store, profile)
    few = create_study(_space(tmp_path, profile, "few"), url)
    _complete(few, store, _scores(FINALS, 0), TrialState.COMPLETE)
    assert "'few' has 1 complete trial(s) with suite scores" in create("fewer", {**snr, "snr_study": "few"})
    error = create("strict", {**snr, "min_snr": 50.0})
    assert "suite_objective leaves no task: none of arc_cf:easy, openbookqa_cf, piqa_cf" in error
    ladder = _space(
        tmp_path,
        profile,
        "ladder",
        objectives=objective,
        suite_objective={},
        proxy_ladder=[str(DATA / "proxy-micro.yaml")],
    )
    with pytest.raises(SpaceError) as err:
        create_study(ladder, url)
    [message] = err.value.messages
    assert message.startswith("proxy_ladder[0]: proxy-micro.yaml scores no suite (no `suite:`), which proxy.suite_obj")
    lost = _space(tmp_path, profile, "lost", objectives=objective, suite_objective={**snr, "snr_study": "missing"})
    with pytest.raises(UserError, match="no study named 'missing'"):
        create_study(lost, url)
