"""What the terminal shows when promptsearch runs from the command line.

In: the run's working folder. Out: loguru, Optuna and asyncio log to `<workdir>/promptsearch.log`;
the terminal keeps the progress bar and errors (`quiet_libraries`), or warnings (`warnings_only`, for
commands that write no log file); a wait on something outside (a database lock, an endpoint) is never silent
for more than a few seconds (`WaitNotice`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path


class WaitNotice:
    """While the `with` block runs longer than `first_seconds`, say `waiting for <what>` on stderr, then
    `still waiting …` every `every_seconds` with the time waited, so no wait is silent for longer than that."""

    def __init__(self, what: str, limit: str, first_seconds: float, every_seconds: float = 5.0):
        self.what = what
        self.limit = limit
        self.first_seconds = first_seconds
        self.every_seconds = every_seconds
        self._done = threading.Event()

    def __enter__(self) -> WaitNotice:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._say_waiting, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()

    def _say_waiting(self) -> None:
        if self._done.wait(self.first_seconds):
            return
        print(f"waiting for {self.what} ({self.limit})", file=sys.stderr, flush=True)
        while not self._done.wait(self.every_seconds):
            waited = time.monotonic() - self._start
            print(f"still waiting for {self.what}: {waited:.0f} s ({self.limit})", file=sys.stderr, flush=True)


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
