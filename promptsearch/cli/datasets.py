"""The dataset commands: `metrics` audits an existing synthetic dataset, `generate` makes one from a recipe."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from promptsearch.cli.common import console, table
from promptsearch.errors import UserError
from promptsearch.logs import quiet_libraries

if TYPE_CHECKING:
    from promptsearch.recipe import Recipe
    from promptsearch.space import CorpusSpec


SKIP_BAD_ROWS = typer.Option(
    "--skip-bad-rows", help="Skip (and count) rows that are not UTF-8 or not JSON instead of stopping at the first."
)


def metrics(
    file: Annotated[Path, typer.Argument(help="JSONL (optionally .gz) or Parquet of (source, output) rows.")],
    source_key: Annotated[str, typer.Option(help="Field with the source document.")] = "source_text",
    output_key: Annotated[str, typer.Option(help="Field with the synthetic output.")] = "text",
    family: Annotated[str, typer.Option(help="Template family for format validity (faq, table, math, …).")] = "",
    embeddings: Annotated[bool, typer.Option(help="Also Vendi score and similarity (MiniLM).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    skip_bad_rows: Annotated[bool, SKIP_BAD_ROWS] = False,
) -> None:
    """Audit an existing synthetic dataset with the same metrics a trial gets."""
    import json
    from collections import Counter

    from promptsearch.corpus import read_output_records
    from promptsearch.logs import warnings_only
    from promptsearch.measure import Embedder, measure, most_common_opening

    warnings_only()
    skipped: Counter[str] = Counter()
    records = read_output_records(file, source_key, output_key, family, skip_bad_rows=skip_bad_rows, skipped=skipped)
    report = measure(records, Embedder() if embeddings else None)
    opening, share = most_common_opening([r.output for r in records])
    if as_json:
        summary = {"rows": len(records), "skipped_rows": dict(skipped), "top_opening": opening, **report}
        console.print_json(json.dumps(summary))
        return
    rows = [*((name, f"{value:.4f}") for name, value in report.items()), ("top_opening", f"{opening!r} ({share:.0%})")]
    table(("metric", "value"), rows, title=f"{file} ({len(records)} rows{_skipped_note(skipped)})")


def _skipped_note(skipped: Mapping[str, int]) -> str:
    """`; skipped 2 not_utf8, 1 empty` for a summary line ('' when nothing was skipped)."""
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()) if n)
    return f"; skipped {counts}" if counts else ""


def generate(
    input: Annotated[str, typer.Option("--input", help="File or folder (jsonl/parquet/txt), or a Hub dataset.")],
    output: Annotated[Path, typer.Option("--output", help="Output folder (data/, checkpoints/, logs/).")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe YAML from `promptsearch export`.")] = None,
    space: Annotated[Path | None, typer.Option(help="Search space, with --template, instead of a recipe.")] = None,
    template: Annotated[str | None, typer.Option(help="Template name (with --space).")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator name in the space (default: the first).")] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    best_of_n: Annotated[int, typer.Option(min=1, max=64)] = 1,
    input_format: Annotated[str, typer.Option(help="auto|jsonl|parquet|text|hub|embedded")] = "auto",
    text_key: Annotated[str, typer.Option(help="Text field of jsonl/parquet/hub rows.")] = "text",
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many documents.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or parquet")] = "jsonl",
    tasks: Annotated[int, typer.Option(min=1, help="datatrove tasks (shards of the input).")] = 1,
    chunk_size: Annotated[int, typer.Option(min=1, help="Documents per checkpointed output chunk.")] = 100,
    executor: Annotated[str, typer.Option(help="local (this process) or slurm (a job array of --tasks)")] = "local",
    partition: Annotated[str, typer.Option(help="Slurm partition (--executor slurm).")] = "debug",
    time_limit: Annotated[str, typer.Option("--time", help="Slurm time limit per task.")] = "01:00:00",
    cpus_per_task: Annotated[int, typer.Option(min=1, help="Slurm CPUs per task.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="Slurm GPUs per task's node (vLLM).")] = 0,
    venv: Annotated[
        str | None, typer.Option(help="bin/activate the Slurm jobs source (default: this environment's)")
    ] = None,
    skip_bad_rows: Annotated[bool, SKIP_BAD_ROWS] = False,
) -> None:
    """Generate a synthetic dataset from a recipe (or a space's template); resumable."""
    from promptsearch.corpus import input_corpus, scan_corpus
    from promptsearch.generate import chosen_recipe, generate_dataset
    from promptsearch.logs import warnings_only
    from promptsearch.rephrase import GeneratorServers

    if output_format not in ("jsonl", "parquet"):
        raise UserError(f"--format must be jsonl or parquet (got {output_format!r})")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; give a folder (it gets data/, checkpoints/ and logs/)")
    knobs = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "best_of_n": best_of_n}
    chosen = chosen_recipe(recipe, space, template, generator, **knobs)
    corpus = input_corpus(input, input_format, text_key, limit, skip_bad_rows)
    # The whole input is read once before any model loads: a bad row, or nothing usable, stops here.
    warnings_only()
    scanned = scan_corpus(corpus) if corpus.format in ("jsonl", "parquet", "text") else None
    note = _skipped_note(scanned.skipped) if scanned is not None else ""
    quiet_libraries(output)
    if executor == "slurm":
        slurm = {"partition": partition, "time": time_limit, "tasks": tasks, "cpus_per_task": cpus_per_task}
        settings = slurm | {"gpus_per_node": gpus_per_node}
        _generate_on_slurm(chosen, corpus, output, settings, venv, output_format, chunk_size, note)
        return
    if executor != "local":
        raise UserError(f"--executor must be local or slurm (got {executor!r})")
    columns = (TextColumn("generating"), MofNCompleteColumn(), TextColumn("documents"), TimeElapsedColumn())
    with (
        Progress(*columns, console=console) as progress,
        GeneratorServers(output / "logs") as generators,
    ):
        task = progress.add_task("generate", total=limit)
        generate_dataset(
            chosen,
            corpus,
            output,
            generators,
            output_format=output_format,
            tasks=tasks,
            records_per_chunk=chunk_size,
            on_document=lambda: progress.advance(task),
        )
    console.print(f"wrote {output / 'data'} (template {chosen.template_name}, generator {chosen.generator.name}{note})")


def _generate_on_slurm(
    recipe: Recipe,
    corpus: CorpusSpec,
    output: Path,
    settings: dict[str, object],
    venv: str | None,
    output_format: str,
    chunk_size: int,
    note: str,
) -> None:
    """Submit the job array; `note` is the skipped-row summary of the scan before submitting."""
    from promptsearch.generate import slurm_job, submit_dataset_job
    from promptsearch.rephrase import GeneratorServers

    job = slurm_job(**settings)
    activate = venv or str(Path(sys.prefix) / "bin" / "activate")
    with GeneratorServers(output / "logs") as generators:
        job_id = submit_dataset_job(
            recipe, corpus, output.resolve(), generators, job, activate, output_format, chunk_size
        )
    if job_id == "-1":
        console.print(f"every task of {output} has already completed; nothing submitted{note}")
    else:
        console.print(
            f"submitted Slurm job {job_id} ({job.tasks} datatrove task(s){note}); logs in {output / 'logs'}; "
            "run the same command again to resume what did not finish"
        )
