from pathlib import Path

import pytest

from promptsearch.corpus import read_corpus, truncate_at_newline
from promptsearch.errors import UserError
from promptsearch.space import CorpusSpec


def test_bad_documents_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("A normal document about a bushfire in 2001.")
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02 binary payload \x00" * 10)
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "huge.txt").write_text(("A line of a very long document.\n") * 3000)
    corpus = read_corpus(CorpusSpec(format="text", path=str(tmp_path), max_chars=1000))
    assert len(corpus.documents) == 2
    assert dict(corpus.skipped) == {"empty": 1, "binary": 1, "not_utf8": 1, "truncated": 1}
    assert max(len(d.text) for d in corpus.documents) <= 1000


def test_jsonl_corpus_and_skip_limit(tmp_path: Path) -> None:
    rows = "\n".join(f'{{"id": "d{i}", "content": "document number {i}"}}' for i in range(10))
    (tmp_path / "docs.jsonl").write_text(rows)
    corpus = read_corpus(
        CorpusSpec(format="jsonl", path=str(tmp_path / "docs.jsonl"), text_key="content", skip=2, limit=3)
    )
    assert [d.id for d in corpus.documents] == ["d2", "d3", "d4"]


def test_truncation_cuts_at_a_newline() -> None:
    text = "first line\nsecond line\nthird line that is long"
    assert truncate_at_newline(text, 25) == "first line\nsecond line"


def test_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="yielded no usable documents"):
        read_corpus(CorpusSpec(format="text", path=str(tmp_path)))
