"""Generate a synthetic dataset from a recipe, outside a study, with datatrove.

In: a `Recipe` (from `promptsearch export`, or a space + template name), an input corpus and an
output folder. Out: JSONL or Parquet files whose rows hold the selected rephrasing as `text`, the
source as `source_text`, and the recipe (template hash, model, sampling, best-of-N) in `metadata`.

The pipeline is datatrove's own: a reader → `InferenceRunner` (best-of-N samples per document,
selected as in a study) → writer, under the Local or Slurm executor. It resumes from datatrove's
chunk checkpoints in the output folder, so an interrupted run produces each document exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from datatrove.data import Document
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
from pydantic import ValidationError

from promptsearch.corpus import UsableDocuments, corpus_reader
from promptsearch.errors import UserError
from promptsearch.measure import select_sample
from promptsearch.pipelines import SlurmJob, run_local_pipeline, slurm_executor
from promptsearch.recipe import Recipe, Sampling, load_recipe
from promptsearch.rephrase import GeneratorServers, on_datatrove_vllm, request_payload
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import CorpusSpec, SearchSpace, load_space
from promptsearch.templates import template_pool


def recipe_from_space(
    space: SearchSpace, template_name: str, generator: str | None, sampling: Sampling, best_of_n: int
) -> Recipe:
    """A recipe for one template of a space; unset knobs take the middle of their ranges."""
    pool = {t.name: t for t in template_pool(space.templates)} | SEED_TEMPLATES
    if template_name not in pool:
        raise UserError(f"unknown template {template_name!r} (known: {', '.join(sorted(pool))})")
    template = pool[template_name]
    names = [g.name for g in space.generators]
    if generator is not None and generator not in names:
        raise UserError(f"unknown generator {generator!r} (the space has: {', '.join(names)})")
    return Recipe.for_template(
        0,
        template,
        generator=space.generator(generator or names[0]),
        sampling=sampling,
        best_of_n=best_of_n,
        mix_ratio=space.mix_ratio.midpoint,
        seed=space.seed,
    )


def chosen_recipe(
    recipe_file: Path | None,
    space_file: Path | None,
    template: str | None,
    generator: str | None = None,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    best_of_n: int = 1,
) -> Recipe:
    """What `generate` runs: a recipe file, or a space's template with the space's default sampling where
    no knob is given."""
    if (recipe_file is None) == (space_file is None):
        raise UserError("give either --recipe FILE or --space FILE --template NAME")
    if recipe_file is not None:
        return load_recipe(recipe_file)
    if template is None:
        raise UserError("--space needs --template NAME")
    space = load_space(space_file)
    base = space.default_sampling()
    sampling = Sampling(
        temperature=base.temperature if temperature is None else temperature,
        top_p=base.top_p if top_p is None else top_p,
        max_new_tokens=base.max_new_tokens if max_new_tokens is None else max_new_tokens,
        top_k=base.top_k,
    )
    return recipe_from_space(space, template, generator, sampling, best_of_n)


def slurm_job(**settings: Any) -> SlurmJob:
    """sbatch settings from the command line; a mistake in one is a UserError naming it."""
    try:
        return SlurmJob(**settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')} {e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise UserError(f"Slurm settings: {problems}") from exc


def _rollout(recipe: Recipe, on_document: Callable[[], None] | None) -> Callable[..., Any]:
    async def rollout(document: Document, generate: Any) -> dict[str, Any] | None:
        results = await asyncio.gather(
            *(generate(request_payload(document, recipe, i)) for i in range(recipe.best_of_n))
        )
        texts = [r.text for r in results]
        best = select_sample(document.text, texts, recipe.template_family, recipe.selection)
        if on_document is not None:
            on_document()
        return {
            "text": texts[best],
            "finish_reason": results[best].finish_reason,
            "samples": texts,
            "completion_tokens": sum(int(r.usage.get("completion_tokens", 0)) for r in results),
        }

    return rollout


def _row_adapter(recipe: Recipe, model_id: str, revision: str) -> Callable[..., dict[str, Any]]:
    info = {
        "template_name": recipe.template_name,
        "template_family": recipe.template_family,
        "template_hash": recipe.template_hash,
        "model_id": model_id,
        "model_revision": revision,
        "sampling": recipe.sampling.model_dump(),
        "best_of_n": recipe.best_of_n,
        "seed": recipe.seed,
    }

    def adapter(_writer: Any, document: Document) -> dict[str, Any]:
        result = document.metadata["rollout_results"][0]
        return {
            "id": document.id,
            "text": result["text"],
            "source_text": document.text,
            "metadata": {
                **info,
                "finish_reason": result["finish_reason"],
                "completion_tokens": result["completion_tokens"],
                "samples": result["samples"],
            },
        }

    return adapter


def inference_pipeline(
    recipe: Recipe,
    source: CorpusSpec,
    output: Path,
    config: InferenceConfig,
    model_id: str,
    revision: str,
    *,
    output_format: Literal["jsonl", "parquet"] = "jsonl",
    records_per_chunk: int = 100,
    limit: int = -1,
    on_document: Callable[[], None] | None = None,
    runner_class: type[InferenceRunner] = InferenceRunner,
) -> list[Any]:
    """reader → InferenceRunner → writer (rows in `<output>/data`); the executor is the caller's choice."""
    writer_cls = JsonlWriter if output_format == "jsonl" else ParquetWriter
    suffix = "jsonl" if output_format == "jsonl" else "parquet"
    writer_kwargs: dict[str, Any] = {"compression": None} if output_format == "jsonl" else {}
    writer = writer_cls(
        str(output / "data"),
        output_filename=f"${{rank}}_${{chunk_index}}.{suffix}",
        adapter=_row_adapter(recipe, model_id, revision),
        **writer_kwargs,
    )
    runner = runner_class(
        rollout_fn=_rollout(recipe, on_document),
        config=config,
        output_writer=writer,
        checkpoints_local_dir=str(output / "checkpoints"),
        records_per_chunk=records_per_chunk,
        skip_bad_requests=True,
    )
    return [corpus_reader(source, limit=limit, skip=source.skip), UsableDocuments(), runner]


def _dataset_pipeline(
    recipe: Recipe,
    source: CorpusSpec,
    output: Path,
    generators: GeneratorServers,
    output_format: Literal["jsonl", "parquet"],
    records_per_chunk: int,
    on_document: Callable[[], None] | None = None,
    on_slurm: bool = False,
) -> list[Any]:
    model_id, revision = generators.identity(recipe.generator)
    # on Slurm an endpoint need only answer the nodes, not this machine, and an embedded generator runs on
    # the node as datatrove's vLLM server, with the folder and flags it has here
    generator = on_datatrove_vllm(recipe.generator) if on_slurm else recipe.generator
    configs = generators.inference_configs(generator, recipe.best_of_n, reachable_here=not on_slurm)
    return inference_pipeline(
        recipe,
        source,
        output,
        configs[0],
        model_id,
        revision,
        output_format=output_format,
        records_per_chunk=records_per_chunk,
        limit=source.limit or -1,
        on_document=on_document,
    )


def generate_dataset(
    recipe: Recipe,
    source: CorpusSpec,
    output: Path,
    generators: GeneratorServers,
    output_format: Literal["jsonl", "parquet"] = "jsonl",
    tasks: int = 1,
    records_per_chunk: int = 100,
    on_document: Callable[[], None] | None = None,
) -> Path:
    """Run the local pipeline; returns the output folder. Re-running resumes where it stopped."""
    pipeline = _dataset_pipeline(recipe, source, output, generators, output_format, records_per_chunk, on_document)
    run_local_pipeline(pipeline, output / "logs", tasks=tasks)
    return output


def submit_dataset_job(
    recipe: Recipe,
    source: CorpusSpec,
    output: Path,
    generators: GeneratorServers,
    job: SlurmJob,
    venv_activate: str | None,
    output_format: Literal["jsonl", "parquet"] = "jsonl",
    records_per_chunk: int = 100,
) -> str:
    """Submit the same pipeline as a Slurm job array of `job.tasks` datatrove tasks; returns its job id
    ("-1" when every task had already completed). Submitting again resumes from the chunk checkpoints."""
    pipeline = _dataset_pipeline(recipe, source, output, generators, output_format, records_per_chunk, on_slurm=True)
    executor = slurm_executor(pipeline, job, f"promptsearch-generate-{output.name}", output / "logs", venv_activate)
    executor.run()
    return str(executor.job_id)
