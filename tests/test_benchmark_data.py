"""Benchmark data offline (promptsearch/benchmark_data.py): SciQ's passages as a corpus, its questions as a task."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptsearch.benchmark_data import sciq_questions, sciq_rows
from promptsearch.corpus import read_corpus
from promptsearch.errors import UserError
from promptsearch.space import CorpusSpec


def test_sciq_passages_are_a_corpus_without_the_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `embedded` corpus `sciq`: the 887 support passages of SciQ's validation split, each once, with ids
    that name their row; none of the 1,000 questions' answer lists (question, answer, distractors) rides along."""
    monkeypatch.setenv("PROMPTSEARCH_CACHE", str(tmp_path / "cache"))
    documents = read_corpus(CorpusSpec(format="embedded", path="sciq")).documents
    rows = sciq_rows()
    assert len(documents) == len(rows) == 887
    assert [d.text for d in documents] == [r["support"].strip() for r in rows]
    assert [d.id for d in documents] == [f"sciq-{r['row']}" for r in rows]
    assert set(documents[0].metadata) <= {"file_path"}  # only the passage: no question or answer fields
    assert (tmp_path / "cache" / "sciq").is_dir()  # written once, under the cache


def test_sciq_questions_are_those_whose_passage_was_a_source() -> None:
    """The closed-book task holds exactly the questions whose support passage is among the sources, except one
    whose passage states the question word for word (row 125: "Oxygen and glucose are both reactants in the
    process of" + the answer): no item can be answered by copying a sentence trained on."""
    rows = sciq_rows()
    first = [r["support"].strip() for r in rows[:50]]
    items = sciq_questions(first, seed=0)
    assert [item.prefix for item in items] == [f"Question: {r['question'].strip()}\nAnswer:" for r in rows[:50]]
    for item, row in zip(items, rows, strict=False):
        assert item.choices[item.gold] == row["correct_answer"]
        assert sorted(item.choices) == sorted([row["correct_answer"], *(row[f"distractor{i}"] for i in (1, 2, 3))])
    every = sciq_questions([r["support"] for r in rows], seed=0)
    assert len(every) == 886
    assert not any(item.prefix.startswith("Question: Oxygen and glucose are both reactants") for item in every)
    for item in every:  # no question appears in any passage the proxy may train on
        question = item.prefix.removeprefix("Question: ").removesuffix("\nAnswer:")
        assert not any(question in r["support"] for r in rows)
    with pytest.raises(UserError, match="none of the documents trained on is a SciQ support passage"):
        sciq_questions(["An unrelated news article about the weather in Sydney."])
