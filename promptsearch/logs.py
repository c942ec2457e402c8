"""Where library logs go when promptsearch runs from the command line.

In: the run's working folder. Out: loguru, Optuna and asyncio log to `<workdir>/promptsearch.log`;
the terminal keeps the progress bar and errors (`quiet_libraries`), or warnings (`warnings_only`, for
commands that write no log file).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def quiet_libraries(workdir: Path) -> None:
    """Library logs go to <workdir>/promptsearch.log; the terminal keeps the progress bar and errors."""
    import optuna
    from loguru import logger

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()  # weight loading/saving bars would break the live progress display
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "promptsearch.log"
    logger.remove()
    logger.add(log_file, level="INFO")
    logger.add(sys.stderr, level="ERROR")
    optuna.logging.disable_default_handler()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s optuna: %(message)s"))
    optuna.logging.get_logger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    # asyncio reports tasks left behind by an interrupted InferenceRunner when they are collected
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    asyncio_logger.propagate = False


def warnings_only() -> None:
    """loguru (datatrove's logger) shows warnings and errors on stderr, nothing else."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
