"""Benchmark tasks on a proxy checkpoint through lighteval, the harness the full ablations use too.

In: a Hugging Face-format checkpoint, the profile's `lighteval_tasks` and the documents the trial
rephrased. Out: `{"lighteval.<task>.<metric>": value}` and lighteval's own results JSON under `out_dir`.

Task kinds: `source_cloze` (the knowledge cloze items of the rephrased documents, written as a local
JSONL task), `sciq` (SciQ's questions, closed book, whose support passages were among the rephrased
documents: `benchmark_data.sciq_questions`), `file` (a local multiple-choice JSONL: rows of `query`,
`choices`, `gold`) and `hub` (a lighteval built-in task such as `arc:easy`, for users with network or a
warm HF cache). Local tasks are scored as cloze multiple choice with `acc_norm`, and two continuous
scores of the gold continuation: `prob_norm` (its probability per character) and `gold_bpb` (its bits
per byte, lower is better).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import threading
import types
from pathlib import Path
from typing import Any

from promptsearch.benchmark_data import sciq_questions
from promptsearch.cloze import ClozeItem, build_cloze_items
from promptsearch.proxy_profile import LightevalTaskSpec


def _offline_lighteval(local_only: bool) -> None:
    """The workarounds lighteval 0.13 needs here, all in one place.

    - xxhash >= 4 refuses str, which lighteval's details logger hashes (huggingface/lighteval#1330):
      hash the UTF-8 bytes, as xxhash 3 did.
    - Building the task registry imports every built-in task module; one downloads tinyBenchmarks.pkl
      from GitHub at import and another lists Hub models (huggingface/lighteval#802, offline runs):
      when every task is local, the registry holds only ours.
    - The pipeline imports litellm, which fetches its model price list from GitHub three times (~7 s of
      retries) before falling back to its bundled copy: when every task is local, it uses the copy at once.
    """
    if local_only:  # before the first import of litellm, which reads it then
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import xxhash
    from lighteval.logging import info_loggers
    from lighteval.tasks.registry import Registry

    class _Utf8Xxhash:
        @staticmethod
        def xxh64(data: str | bytes) -> Any:
            return xxhash.xxh64(data.encode("utf-8") if isinstance(data, str) else data)

    info_loggers.xxhash = _Utf8Xxhash  # type: ignore[assignment]
    if local_only:

        def custom_only(custom_tasks: Any = None, load_multilingual: bool = False) -> dict[str, Any]:
            return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))

        Registry.load_all_task_configs = staticmethod(custom_only)  # type: ignore[method-assign]


def gold_scored(metrics: list[Any]) -> list[Any]:
    """`metrics` (lighteval 0.13 log-likelihood metrics) with two fixes, for every task promptsearch defines
    (the proxy's local tasks here, the benchmark suite in `promptsearch.suite`):
    - its transformers backend pads each document's continuation tokens with -1 and token normalization counts
      the padding, so every choice is divided by the longest one's length (huggingface/lighteval#1170; fixes
      open as #1180, #1290): count only real tokens. Should the backend still drop rows (the same issue's
      IndexError, prevented by `keep_every_choice_row`), refuse with one line rather than normalize by a guess;
    - `Probability` returns the highest probability among all choices (it is meant for tasks whose choices are
      all gold answers): give it the gold choices only, so `prob_norm*` is the gold continuation's."""
    from lighteval.metrics.metrics_sample import Probability

    for metric in metrics:
        computation = metric.sample_level_fn
        gold_only = isinstance(computation, Probability)
        computation.compute = _fixed_compute(computation.compute, gold_only)
    return metrics


def _fixed_compute(compute: Any, gold_only: bool) -> Any:
    def fixed(doc: Any, model_response: Any, **kwargs: Any) -> Any:
        rows = [[int(t) for t in row if int(t) != -1] for row in model_response.output_tokens]
        if len(rows) < len(doc.choices):
            raise ValueError(
                f"{doc.task_name}: lighteval returned {len(rows)} token lists for {len(doc.choices)} choices "
                "(huggingface/lighteval#1170); token normalization needs one per choice"
            )
        model_response.output_tokens = rows
        if gold_only:
            golds = [doc.gold_index] if isinstance(doc.gold_index, int) else list(doc.gold_index)
            doc = copy.copy(doc)
            doc.choices = [doc.choices[i] for i in golds]
            model_response = copy.copy(model_response)
            model_response.logprobs = [model_response.logprobs[i] for i in golds]
            model_response.output_tokens = [rows[i] for i in golds]
        return compute(doc, model_response, **kwargs)

    return fixed


def keep_every_choice_row() -> None:
    """The other half of huggingface/lighteval#1170: after gathering, 0.13's transformers backend slices a
    document's continuation tokens `[:num_choices][:len_choice]`, dropping rows whenever every choice is shorter
    (in tokens) than the number of choices. Its only `pad_sequence` call pads those rows with -1: pad them to at
    least as many columns as rows, so the slice keeps them all (`gold_scored` strips the -1s again)."""
    import torch.nn.functional as F
    from lighteval.models.transformers import transformers_model as backend

    original = backend.pad_sequence
    if getattr(original, "keeps_every_row", False):
        return

    def pad_sequence(sequences: Any, batch_first: bool = False, padding_value: float = 0.0, **kwargs: Any) -> Any:
        padded = original(sequences, batch_first=batch_first, padding_value=padding_value, **kwargs)
        if batch_first and padding_value == -1 and padded.dim() == 2 and padded.shape[1] < padded.shape[0]:
            padded = F.pad(padded, (0, padded.shape[0] - padded.shape[1]), value=-1)
        return padded

    pad_sequence.keeps_every_row = True  # type: ignore[attr-defined]
    backend.pad_sequence = pad_sequence


def fit_continuations() -> None:
    """lighteval 0.13 left-truncates each request (context + continuation) to the model's `max_length` tokens,
    which is right for a long context but not for a continuation of `max_length` tokens or more: its
    transformers backend then slices the continuation's logits from a negative index and fails on the shape
    mismatch (`The size of tensor a (16) must match the size of tensor b (112)`). A small proxy's `max_length`
    is its training sequence length, shorter than many gold answers (GSM8K's worked solutions, DROP's spans). Keep each
    continuation's first `max_length - 1` tokens, so at least one context token predicts them: its probability
    and accuracy are those of the answer's beginning (`gold_bpb` still divides by the whole answer's bytes).
    No upstream report of this case was found; the nearest is huggingface/lighteval#892 ("truncation likely
    buggy"). Remove this when lighteval truncates the context only."""
    from lighteval.models.transformers.transformers_model import TransformersModel

    original = TransformersModel.tok_encode_pair
    if getattr(original, "fits_continuations", False):
        return

    def tok_encode_pair(
        self: Any, context: str, continuations: list[str], pairwise: bool = False
    ) -> tuple[list[list[int]], list[list[int]]]:
        contexts, encoded = original(self, context, continuations, pairwise=pairwise)
        return contexts, [tokens[: self.max_length - 1] for tokens in encoded]

    tok_encode_pair.fits_continuations = True  # type: ignore[attr-defined]
    TransformersModel.tok_encode_pair = tok_encode_pair  # type: ignore[method-assign]


def gold_bpb_metric() -> Any:
    """The gold continuation's bits per byte, -log2 P(gold | query) / its UTF-8 bytes (leading space included):
    OLMES's `bpb`, the continuous metric DataDecide found predictive at small scale; lower is better."""
    import numpy as np
    from lighteval.metrics.metrics_sample import SampleLevelComputation
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    class GoldBitsPerByte(SampleLevelComputation):
        def compute(self, doc: Any, model_response: Any, **kwargs: Any) -> float:
            golds = [doc.gold_index] if isinstance(doc.gold_index, int) else list(doc.gold_index)
            return min(-model_response.logprobs[i] / math.log(2) / len(doc.choices[i].encode("utf-8")) for i in golds)

    return SampleLevelMetric(
        metric_name="gold_bpb",
        sample_level_fn=GoldBitsPerByte(),
        category=SamplingMethod.LOGPROBS,
        corpus_level_fn=np.mean,
        higher_is_better=False,
    )


def _local_task(name: str, folder: Path) -> Any:
    from lighteval.metrics.dynamic_metrics import LogLikelihoodAccMetric, ProbabilityMetric
    from lighteval.metrics.normalizations import LogProbCharNorm
    from lighteval.tasks.lighteval_task import LightevalTaskConfig
    from lighteval.tasks.requests import Doc

    def prompt(line: dict[str, Any], task_name: str) -> Doc:
        return Doc(
            task_name=task_name,
            query=line["query"],
            choices=[" " + c for c in line["choices"]],
            gold_index=int(line["gold"]),
        )

    return LightevalTaskConfig(
        name=name,
        prompt_function=prompt,
        hf_repo=str(folder),
        hf_subset="default",
        hf_avail_splits=["test"],
        evaluation_splits=["test"],
        few_shots_split=None,
        few_shots_select=None,
        # Character normalization, as before `gold_scored` fixed token normalization: the scores keep their
        # names (`acc_norm`, `prob_norm`), which spaces weight and stored studies hold.
        metrics=[
            *gold_scored(
                [
                    LogLikelihoodAccMetric(normalization=LogProbCharNorm()),
                    ProbabilityMetric(normalization=LogProbCharNorm()),
                ]
            ),
            gold_bpb_metric(),
        ],
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One split of a local lighteval dataset: lighteval loads the folder with `load_dataset(folder)`, which
    names each split after its file (`test.jsonl`, `train.jsonl`; a `dev` file would become `validation`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def write_task_file(folder: Path, items: list[ClozeItem]) -> Path:
    """Cloze items as a local lighteval task: `<folder>/test.jsonl` of `query`, `choices`, `gold` rows."""
    rows = [{"query": item.prefix, "choices": list(item.choices), "gold": item.gold} for item in items]
    return write_jsonl(folder / "test.jsonl", rows)


_PREPARED = threading.Lock()


def prepare_lighteval(local_only: bool) -> None:
    """Import lighteval (seconds) with the workarounds above in place, each applied once: `run_pipeline` calls
    it, and a worker calls it early (`suite.preload`), in a background thread, while its generator server starts."""
    import datasets

    with _PREPARED:
        datasets.disable_progress_bars()  # the CLI's progress display owns the terminal
        if local_only:
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        _offline_lighteval(local_only)
        keep_every_choice_row()  # `gold_scored` needs one token row per choice
        fit_continuations()
        import lighteval.pipeline  # noqa: F401  # the slow part, so that run_pipeline's import finds it loaded


def run_pipeline(
    checkpoint: Path,
    configs: list[Any],
    requests: list[tuple[str, int]],
    out_dir: Path,
    device: str,
    max_samples: int | None,
    local_only: bool,
    max_length: int | None = None,
) -> dict[str, dict[str, float]]:
    """lighteval's Pipeline on `checkpoint` for `requests` (task, few-shot count), the tasks it does not know
    given as `configs` (`local_only`: all of them, their data on disk, no network), each request cut to
    `max_length` tokens (default: the model's `max_position_embeddings`; `fit_continuations`); results
    (lighteval's JSON under `out_dir` too) by task name, without the stderr rows."""
    prepare_lighteval(local_only)
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    module = types.ModuleType("promptsearch_lighteval_tasks")
    module.TASKS_TABLE = configs  # type: ignore[attr-defined]
    out_dir.mkdir(parents=True, exist_ok=True)
    # lighteval draws tqdm bars (one with `disable=False` written in, so TQDM_DISABLE cannot help) and warns per
    # task and per run on stderr: in the CLI they would tear its progress display, so they go to a log file.
    with open(out_dir / "lighteval.log", "a") as log, contextlib.redirect_stderr(log):
        pipeline = Pipeline(
            tasks=",".join(f"{name}|{fewshot}" for name, fewshot in requests),
            pipeline_parameters=PipelineParameters(
                launcher_type=ParallelismManager.ACCELERATE,
                custom_tasks_directory=module,  # type: ignore[arg-type]  # the registry also takes a module
                max_samples=max_samples,
            ),
            evaluation_tracker=EvaluationTracker(output_dir=str(out_dir), save_details=False),
            model_config=TransformersModelConfig(
                model_name=str(checkpoint), dtype="float32", device=device, batch_size=8, max_length=max_length
            ),
        )
        # lighteval 0.13 caches each sample's result under `cache_dir / model_name / hash(model config)`: for a local
        # checkpoint, its absolute path discards `cache_dir` and the key is the path, not the weights (the design of
        # huggingface/lighteval#239 checks a Hub commit, which a local folder lacks). Every trial and calibration
        # seed writes its model at a path an earlier run used, and would be scored with that run's results; its
        # `cached` wrapper runs uncached when the model has no cache.
        pipeline.model._cache = None
        pipeline.evaluate()
        pipeline.save_and_push_results()
    results = pipeline.get_results()["results"]
    by_task = {}
    for name, fewshot in requests:
        # lighteval keys results by task and shot count, joined by ":" or "|" depending on the version
        key = next(k for k in results if k in (f"{name}:{fewshot}", f"{name}|{fewshot}"))
        by_task[name] = {m: float(v) for m, v in results[key].items() if not m.endswith("_stderr")}
    return by_task


def evaluate_checkpoint(
    checkpoint: Path,
    tasks: list[LightevalTaskSpec],
    knowledge_sources: list[str],
    out_dir: Path,
    device: str,
    seed: int,
    max_samples: int | None = None,
) -> dict[str, float]:
    """Run `tasks` on `checkpoint`; `source_cloze` and `sciq` tasks are built from `knowledge_sources`."""
    local = [t for t in tasks if t.kind != "hub"]
    configs = []
    for task in local:
        folder = out_dir / "data" / task.name
        if task.kind == "source_cloze":
            write_task_file(folder, build_cloze_items(knowledge_sources, seed=seed))
        elif task.kind == "sciq":
            write_task_file(folder, sciq_questions(knowledge_sources, seed=seed))
        else:  # lighteval loads a folder whose file names give the splits
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(task.path or "", folder / "test.jsonl")
        configs.append(_local_task(task.name, folder))
    requests = [(t.name, t.fewshot) for t in tasks]
    results = run_pipeline(checkpoint, configs, requests, out_dir, device, max_samples, len(local) == len(tasks))
    return {
        f"lighteval.{name}.{metric}": value for name, metrics in results.items() for metric, value in metrics.items()
    }
