"""The datatrove stages of an ablation, built from its bundle when the chain is submitted.

In: a `Bundle` (the manifest) and a stage name from `DATATROVE_STAGES`. Out: the stage's
`SlurmPipelineExecutor` (rephrase: reader → `InferenceRunner` → writer; tokenize: reader →
`DocumentTokenizer`; merge: `DocumentTokenizerMerger`), waiting (afterok) for the jobs it reads from.

For the `cpu-smoke` runtime the rephrase stage runs a stand-in for vLLM: `EmbeddedInferenceRunner`
starts the embedded `transformers serve` inside the Slurm job and sends datatrove's requests to it.
It is an `InferenceRunner` subclass rather than an `InferenceServer` subclass because datatrove 0.10
picks the server in `InferenceRunner._init_server` from a fixed `server_type` list (sglang, vllm,
dummy, custom, endpoint) with no way to register another class; the runner is pickled by datatrove
and unpickled on the node, so it lives in this importable module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.executor import SlurmPipelineExecutor
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer, DocumentTokenizerMerger

from promptsearch.ablation.bundle import Bundle, stage_job
from promptsearch.corpus import corpus_reader
from promptsearch.embedded import TransformersServer, embedded_model
from promptsearch.generate import inference_pipeline
from promptsearch.pipelines import slurm_executor
from promptsearch.recipe import GeneratorSpec, Recipe
from promptsearch.rephrase import common_inference_settings, sampling_variant, vllm_inference_config


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
    if profile.runtime == "cpu-smoke":
        config = embedded_inference_config(recipe)
        return inference_pipeline(
            recipe, bundle.source, output, config, *_identity(recipe), runner_class=EmbeddedInferenceRunner, **common
        )
    generator = recipe.generator
    if generator.backend != "vllm":
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


def _identity(recipe: Recipe) -> tuple[str, str]:
    return recipe.generator.model, recipe.generator.revision or "unversioned"


def embedded_inference_config(recipe: Recipe) -> InferenceConfig:
    """Stands in for vLLM on a GPU cluster: an endpoint config whose URL `EmbeddedInferenceRunner` fills in."""
    folder = sampling_variant(embedded_model().path, recipe.sampling)
    return InferenceConfig(
        server_type="endpoint",
        endpoint_url="http://127.0.0.1:0",  # replaced once the job's server is up
        model_name_or_path=str(folder),
        **common_inference_settings(recipe.generator, recipe.best_of_n),
    )


class EmbeddedInferenceRunner(InferenceRunner):
    """Stands in for datatrove's vLLM server on a GPU cluster: inside the Slurm job it starts the
    embedded `transformers serve` (SmolLM2-135M on CPU, the trial's sampling) and sends the
    InferenceRunner's requests to it."""

    def run(self, data: Iterable[Document], rank: int = 0, world_size: int = 1) -> None:
        model_dir = Path(self.config.model_name_or_path)
        server = TransformersServer(model_dir, Path(self.output_writer.output_folder.path).parent / "server.log")
        self.config.endpoint_url = server.start()
        try:
            super().run(data, rank, world_size)
        finally:
            server.stop()
