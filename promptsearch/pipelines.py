"""Running datatrove pipelines in-process without their console log drowning the CLI's progress bar."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from loguru import logger


def run_local_pipeline(pipeline: Sequence[Any], logging_dir: Path, tasks: int = 1) -> None:
    """`tasks` ranks, one after another in this process; datatrove's log goes to `logging_dir`."""
    logging_dir.mkdir(parents=True, exist_ok=True)
    executor = LocalPipelineExecutor(list(pipeline), tasks=tasks, workers=1, logging_dir=str(logging_dir))
    # datatrove's task logger adds a sys.stderr sink when the task starts; point that at a file.
    with (logging_dir / "console.log").open("a") as console, contextlib.redirect_stderr(console):
        try:
            executor.run()
        finally:
            logger.remove()
            logger.add(sys.stderr, level="WARNING")
