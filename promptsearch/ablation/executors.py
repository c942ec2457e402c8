"""The datatrove stages of an ablation, built from its bundle when the chain is submitted.

In: a `Bundle` (the manifest) and a stage name from `DATATROVE_STAGES`. Out: the stage's
`SlurmPipelineExecutor` (rephrase: reader → `InferenceRunner` → writer; tokenize: reader →
`DocumentTokenizer`; merge: `DocumentTokenizerMerger`), waiting (afterok) for the jobs it reads from.

The rephrase stage always runs datatrove's own vLLM server type. For the `cpu-smoke` runtime it serves the
embedded SmolLM2-135M folder with vLLM's CPU build, with the flags the embedded backend uses
(`ServerSettings.vllm_flags`): the GPU chain's path, run for real on a CPU node.
"""

from __future__ import annotations

import math
from typing import Any

from datatrove.executor import SlurmPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer, DocumentTokenizerMerger

from promptsearch.ablation.bundle import Bundle, stage_job
from promptsearch.corpus import corpus_reader
from promptsearch.generate import inference_pipeline
from promptsearch.pipelines import slurm_executor
from promptsearch.recipe import GeneratorSpec
from promptsearch.rephrase import common_inference_settings, on_datatrove_vllm, vllm_inference_config


def datatrove_executor(bundle: Bundle, stage: str, depends_job_id: str | None) -> SlurmPipelineExecutor:
    """The SlurmPipelineExecutor of one datatrove stage, waiting (afterok) for `depends_job_id`."""
    profile = bundle.profile
    pipeline: list[Any]
    if stage == "rephrase":
        job, env = profile.rephrase.slurm, bundle.environments["rephrase"]
        pipeline = _rephrase_pipeline(bundle)
    elif stage.startswith("tokenize-"):
        name = stage.removeprefix("tokenize-")
        job, env = profile.tokenize.slurm, bundle.environments["tokenize"]
        reader = (
            JsonlReader(str(bundle.path / "rephrased" / "data"))
            if name == "synthetic"
            else corpus_reader(bundle.mix_in, limit=bundle.mix_in.limit or -1, skip=bundle.mix_in.skip)
        )
        t = profile.tokenize
        pipeline = [
            reader,
            DocumentTokenizer(
                output_folder=str(bundle.tokenized(f"{name}-shards")),
                tokenizer_name_or_path=bundle.tokenizer,
                eos_token=t.eos_token,
                batch_size=t.batch_size,
                max_tokens_per_file=t.max_tokens_per_file,
                shuffle_documents=True,
                shuffle_chunk_size=t.shuffle_chunk_size,
                seed=t.seed,
            ),
        ]
    elif stage.startswith("merge-"):
        name = stage.removeprefix("merge-")
        t = profile.tokenize
        job, env = stage_job(profile, stage), bundle.environments["tokenize"]
        pipeline = [
            DocumentTokenizerMerger(
                input_folder=str(bundle.tokenized(f"{name}-shards")),
                output_folder=str(bundle.tokenized(name)),
                save_filename=name,
                max_tokens_per_file=t.max_tokens_per_file,
                shuffle_chunk_size=t.shuffle_chunk_size,
                seed=t.seed,
            )
        ]
    else:
        raise ValueError(f"{stage} is not a datatrove stage")
    return slurm_executor(pipeline, job, bundle.job_name(stage), bundle.logs(stage), env, depends_job_id)


def _rephrase_pipeline(bundle: Bundle) -> list[Any]:
    recipe, profile = bundle.recipe, bundle.profile
    # a datatrove reader's limit applies to each task's shard of the input
    per_task = math.ceil(bundle.documents / profile.rephrase.slurm.tasks)
    common = {"limit": per_task, "records_per_chunk": profile.rephrase.records_per_chunk}
    output = bundle.path / "rephrased"
    generator = recipe.generator
    if profile.runtime == "cpu-smoke":
        generator = on_datatrove_vllm(generator.model_copy(update={"backend": "embedded", "model": "embedded"}))
    elif generator.backend != "vllm":
        generator = GeneratorSpec(
            name=generator.name,
            backend="vllm",
            model=profile.rephrase.vllm_model or generator.model,
            max_context=generator.max_context,
            concurrency=generator.concurrency,
        )
    config = vllm_inference_config(generator, common_inference_settings(generator, recipe.best_of_n))
    return inference_pipeline(
        recipe, bundle.source, output, config, generator.model, generator.revision or "", **common
    )
