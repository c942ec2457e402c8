"""A corpus of bad inputs (issue 18): each is run as a user would and must end with one clear line naming
what and where, the right exit code, and no rows lost or mixed in. Nothing here loads a model."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli, write_space

from promptsearch.corpus import read_corpus
from promptsearch.errors import UserError
from promptsearch.space import CorpusSpec

# ------------------------------------------------------------------------------------- usage errors

USAGE_ERRORS = [
    (("export", "quickstart", "--top", "0"), "'--top'"),
    (("dashboard", "--port", "0"), "'--port'"),
    (("dashboard", "--port", "99999"), "'--port'"),
    (("study", "start", "x", "--workers", "0"), "'--workers'"),
    (("proxy", "calibrate", "--seeds", "1"), "'--seeds'"),
    (("generate", "--input", "x", "--output", "y", "--tasks", "0"), "'--tasks'"),
    (("generate", "--input", "x", "--output", "y", "--best-of-n", "many"), "'--best-of-n'"),
    (("study", "create"), "Missing argument"),
    (("study", "status", "--bogus"), "--bogus"),
]


@pytest.mark.parametrize(("args", "named"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_a_usage_error_names_the_option_in_one_line_and_exits_2(tmp_path: Path, args: tuple[str, ...], named: str):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "BadParameter" not in result.stderr


# --------------------------------------------------------------------------------------- input rows


def _rows(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"text": f"output {i}", "source_text": f"source {i}"}).encode() + b"\n" for i in range(start, n)]


def _metrics(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("metrics", *args, "--no-embeddings", "--json", cwd=folder)


def test_a_file_argument_reads_that_file_only(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_bytes(b"".join(_rows(3)))
    (tmp_path / "old_data.jsonl").write_bytes(b"".join(_rows(5)))
    result = _metrics(tmp_path, "data.jsonl")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 3


def test_a_corpus_file_reads_that_file_only(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_bytes(b"".join(_rows(3)))
    (tmp_path / "old_data.jsonl").write_bytes(b"".join(_rows(5)))
    (tmp_path / "[odd] name.jsonl").write_bytes(b"".join(_rows(2)))
    assert len(read_corpus(CorpusSpec(format="jsonl", path=str(tmp_path / "data.jsonl"))).documents) == 3
    assert len(read_corpus(CorpusSpec(format="jsonl", path=str(tmp_path / "[odd] name.jsonl"))).documents) == 2
    assert len(read_corpus(CorpusSpec(format="jsonl", path=str(tmp_path))).documents) == 10  # a folder: all


BAD_LINES = [
    ("latin-1", '{"text": "caf\xe9", "source_text": "x"}\n'.encode("latin-1"), "not UTF-8", "not_utf8"),
    ("broken JSON", b'{"text": "half a row\n', "not valid JSON", "not_json"),
    ("not an object", b"[1, 2]\n", "not a JSON object", "not_json"),
    ("numeric text", b'{"text": 5, "source_text": "x"}\n', "is not a string", "not_text"),
]


@pytest.mark.parametrize(("bad", "reason", "key"), [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES])
def test_a_bad_row_stops_metrics_with_file_and_line(tmp_path: Path, bad: bytes, reason: str, key: str) -> None:
    rows = _rows(5000)
    rows.insert(4000, bad)  # line 4001, with 1000 good rows after it
    (tmp_path / "data.jsonl").write_bytes(b"".join(rows))
    result = _metrics(tmp_path, "data.jsonl")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "data.jsonl, line 4001" in line and reason in line and "--skip-bad-rows" in line, result.stderr
    skipped = _metrics(tmp_path, "data.jsonl", "--skip-bad-rows")
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads(skipped.stdout)
    assert summary["rows"] == 5000 and summary["skipped_rows"] == {key: 1}


def test_a_bad_row_in_a_gzipped_file_is_found_too(tmp_path: Path) -> None:
    rows = _rows(20)
    rows.insert(3, BAD_LINES[0][1])
    (tmp_path / "data.jsonl.gz").write_bytes(gzip.compress(b"".join(rows)))
    result = _metrics(tmp_path, "data.jsonl.gz")
    assert result.returncode == 1 and "line 4: not UTF-8" in result.stderr


def test_study_sources_read_strictly_or_skip_and_count(tmp_path: Path) -> None:
    rows = _rows(10)
    rows[2] = BAD_LINES[0][1]
    rows.insert(5, b'{"text": ""}\n')
    (tmp_path / "docs.jsonl").write_bytes(b"".join(rows))
    with pytest.raises(UserError, match=r"docs.jsonl, line 3: not UTF-8"):
        read_corpus(CorpusSpec(format="jsonl", path=str(tmp_path / "docs.jsonl")))
    corpus = read_corpus(CorpusSpec(format="jsonl", path=str(tmp_path / "docs.jsonl"), skip_bad_rows=True))
    assert len(corpus.documents) == 9 and dict(corpus.skipped) == {"not_utf8": 1, "empty": 1}


@pytest.fixture
def generate_folder(tmp_path: Path) -> Path:
    write_space(tmp_path / "space.yaml", None)
    return tmp_path


GENERATE_INPUTS = [
    ("empty.jsonl", b"", "no usable documents (it holds none)"),
    ("blob.bin", bytes(range(256)) * 40, "no usable documents (skipped: 1 not_utf8)"),
    ("nul.txt", b"\x00\x01 binary \x00" * 50, "no usable documents (skipped: 1 binary)"),
    ("blank.jsonl", b'{"text": ""}\n{"text": "  "}\n', "no usable documents (skipped: 2 empty)"),
    ("bad.jsonl", b'{"text": "fine"}\n' + BAD_LINES[0][1], "bad.jsonl, line 2: not UTF-8"),
]


@pytest.mark.parametrize(("name", "content", "message"), GENERATE_INPUTS, ids=[g[0] for g in GENERATE_INPUTS])
def test_generate_refuses_an_unusable_input_before_loading_a_model(
    generate_folder: Path, name: str, content: bytes, message: str
) -> None:
    (generate_folder / name).write_bytes(content)
    args = ("generate", "--input", name, "--output", "out", "--space", "space.yaml", "--template", "faq")
    result = run_cli(*args, cwd=generate_folder, timeout=120)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (generate_folder / "out" / "data").exists()
