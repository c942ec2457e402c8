"""Running datatrove pipelines: in-process without their console log drowning the CLI's progress bar,
or as Slurm job arrays through datatrove's `SlurmPipelineExecutor` with typed sbatch settings."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.inference.run_inference import InferenceRunner
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field


def run_local_pipeline(pipeline: Sequence[Any], logging_dir: Path, tasks: int = 1) -> None:
    """`tasks` ranks, one after another in this process; datatrove's log goes to `logging_dir`."""
    logging_dir.mkdir(parents=True, exist_ok=True)
    executor = LocalPipelineExecutor(list(pipeline), tasks=tasks, workers=1, logging_dir=str(logging_dir))
    with _console_to_file(logging_dir):
        executor.run()


def run_inference_ranks(runners: Sequence[InferenceRunner], documents: Iterable[Document], logging_dir: Path) -> None:
    """Runner i as datatrove rank i, all at once in one event loop, pulling from one shared stream of
    `documents` (a replica that answers faster takes more of them); datatrove's log goes to `logging_dir`."""
    logging_dir.mkdir(parents=True, exist_ok=True)
    # Each runner reads through its own thread; a list iterator's next() is atomic, a generator's is not.
    shared = iter(list(documents))

    async def all_ranks() -> None:
        await asyncio.gather(*(runner.run_async(shared, rank) for rank, runner in enumerate(runners)))

    with _console_to_file(logging_dir):
        logger.add(logging_dir / "console.log", level="INFO")
        asyncio.run(all_ranks())


@contextlib.contextmanager
def _console_to_file(logging_dir: Path) -> Iterator[None]:
    # datatrove's task logger adds a sys.stderr sink when the task starts; point that at a file.
    logger.remove()
    with (logging_dir / "console.log").open("a") as console, contextlib.redirect_stderr(console):
        try:
            yield
        finally:
            logger.remove()
            logger.add(sys.stderr, level="WARNING")


class SlurmJob(BaseModel):
    """sbatch settings of one job; datatrove stages also take `tasks` (their array size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str = "debug"
    time: str = Field("01:00:00", pattern=r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
    nodes: int = Field(1, ge=1)
    tasks: int = Field(1, ge=1, description="datatrove tasks (array size); ignored by train and evaluate")
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: int = Field(2, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    qos: str | None = None
    sbatch_args: dict[str, str] = Field(default_factory=dict, description="extra #SBATCH flags, e.g. account")


def slurm_executor(
    pipeline: Sequence[Any],
    job: SlurmJob,
    job_name: str,
    logging_dir: Path,
    venv_activate: str | None,
    depends_job_id: str | None = None,
) -> SlurmPipelineExecutor:
    """datatrove's Slurm executor for `pipeline`; `venv_activate` is the `bin/activate` the job sources
    (datatrove runs `launch_pickled_pipeline`, which must be on the job's PATH)."""
    return SlurmPipelineExecutor(
        pipeline=list(pipeline),
        tasks=job.tasks,
        time=job.time,
        partition=job.partition,
        cpus_per_task=job.cpus_per_task,
        mem_per_cpu_gb=job.mem_per_cpu_gb,
        gpus_per_task=job.gpus_per_node,
        nodes_per_task=job.nodes,
        job_name=job_name,
        qos=job.qos or "",
        venv_path=venv_activate,
        sbatch_args=dict(job.sbatch_args),
        depends_job_id=depends_job_id,
        logging_dir=str(logging_dir),
        mail_type="NONE",
    )
