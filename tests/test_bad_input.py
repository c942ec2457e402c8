"""A corpus of bad inputs (issue 18): each is run as a user would and must end with one clear line naming
what and where, the right exit code, and no rows lost or mixed in. Nothing here loads a model."""

from __future__ import annotations

import gzip
import http.server
import importlib.metadata
import io
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import DATA, REPO, run_cli, seeded_recipe, write_space

from promptsearch.corpus import read_corpus
from promptsearch.endpoint import wait_for_endpoint
from promptsearch.errors import UserError
from promptsearch.propose.lm import ProposerLM
from promptsearch.recipe import GeneratorSpec, Recipe, Sampling
from promptsearch.rephrase import GeneratorServers
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import CorpusSpec, ProposerLMSpec
from promptsearch.store import Store, upgrade
from promptsearch.study import create_study

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


DAMAGED_FILES = [
    ("plain text named .gz", "data.jsonl.gz", b"".join(_rows(3)), "data.jsonl.gz: cannot be read (Not a gzipped file"),
    ("truncated gzip", "data.jsonl.gz", gzip.compress(b"".join(_rows(50)))[:-20], "data.jsonl.gz: cannot be read"),
    ("parquet without the column", "data.parquet", None, "data.parquet: no column 'text' (its columns: body"),
    ("parquet of numbers", "data.parquet", 5, "data.parquet: column 'text' holds int values, not text"),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), [d[1:] for d in DAMAGED_FILES], ids=[d[0] for d in DAMAGED_FILES]
)
def test_a_damaged_file_is_named_in_one_line(tmp_path: Path, name: str, content: bytes | int | None, message: str):
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        column = {"body": ["a", "b"]} if content is None else {"text": [content, content]}
        pq.write_table(pa.table(column | {"source_text": ["x", "y"]}), tmp_path / name)
    result = _metrics(tmp_path, name)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_generate_drops_the_documents_its_scan_counted_as_skipped() -> None:
    """The pipeline's own reader yields blank and binary texts: `UsableDocuments` drops them as the scan did."""
    from datatrove.data import Document

    from promptsearch.corpus import UsableDocuments

    texts = ["A document.", "   ", "\x00\x01 binary", "Another one."]
    kept = UsableDocuments().run(iter(Document(text=t, id=str(i)) for i, t in enumerate(texts)))
    assert [d.text for d in kept] == ["A document.", "Another one."]


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


@pytest.mark.parametrize(
    ("option", "message"),
    [(("--input-format", "xml"), "--input-format must be auto or one of"), (("--output", "in.jsonl"), "is a file")],
)
def test_generate_refuses_a_bad_option_value_in_one_line(generate_folder: Path, option: tuple[str, str], message: str):
    (generate_folder / "in.jsonl").write_text('{"text": "a document"}\n')
    args = ("generate", "--input", "in.jsonl", "--output", "out", "--space", "space.yaml", "--template", "faq")
    result = run_cli(*args, *option, cwd=generate_folder, timeout=120)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


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


# ------------------------------------------------------------------ checked before any work starts


def _template(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return name


TEMPLATE_FILES = [
    ("no-slot.txt", "Rewrite this as a FAQ.", "exactly once (found 0)"),
    ("two-slots.txt", "Rewrite {document} and again {document}.", "exactly once (found 2)"),
    ("unknown.txt", "Rewrite {document} for {audience}.", "unknown placeholder(s) {audience}"),
    ("latin1.txt", "Caf\xe9: rewrite {document}.".encode("latin-1"), "not UTF-8"),
    ("long.txt", "Rewrite {document}. " + "x" * 5000, "(limit 4000)"),
    ("binary.txt", b"\x00\x01{document}\x02", "control character"),
]

SPACE_MISTAKES = [
    ("seed negative", {"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ("seed 2**32", {"seed": 2**32}, "seed: Input should be less than 4294967296"),
    (
        "NaN temperature",
        {"sampling": {"temperature": {"low": float("nan"), "high": 1.0}}},
        "sampling.temperature.low: Input should be a finite number",
    ),
    ("inf mix ratio", {"mix_ratio": {"low": 0.2, "high": float("inf")}}, "mix_ratio.high: Input should be a finite"),
    ("NaN weight", {"proxy_weights": {"heldout_bpb": float("nan")}}, "proxy_weights.heldout_bpb: Input should be a"),
    (
        "URL without host",
        {"generators": [{"name": "g", "backend": "endpoint", "model": "m", "endpoint_url": "http://"}]},
        "endpoint_url 'http://' names no host",
    ),
    (
        "port 99999",
        {"generators": [{"name": "g", "backend": "endpoint", "model": "m", "endpoint_url": "http://127.0.0.1:99999"}]},
        "generators[0]: endpoint_url 'http://127.0.0.1:99999': Port out of range",
    ),
    (
        "unknown promotion profile",
        {"promotion": {"profile": "full-99b"}},
        "promotion.profile: ablation profile not found",
    ),
    ("proxy as promotion profile", {"promotion": {"profile": "cpu-tiny"}}, "is not an ablation profile"),
    (
        "skip past the end",
        {"mix_in": {"format": "embedded", "path": "lee", "skip": 10**6}},
        "after skipping the first 1000000",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), TEMPLATE_FILES, ids=[t[0] for t in TEMPLATE_FILES])
@pytest.mark.parametrize("command", ["space validate", "study create"])
def test_a_bad_template_file_is_refused_before_work_starts(
    tmp_path: Path, command: str, name: str, content: str | bytes, message: str
) -> None:
    space = write_space(
        tmp_path / "space.yaml", None, templates={"seeds": ["faq"], "files": [_template(tmp_path, name, content)]}
    )
    db = ("--db", f"sqlite:///{tmp_path / 'db.sqlite'}") if command == "study create" else ()
    result = run_cli(*command.split(), str(space), *db, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"templates.files[0]: {tmp_path / name}" in result.stderr and message in result.stderr, result.stderr
    assert "(line " in result.stderr


@pytest.mark.parametrize(("case", "overrides", "message"), SPACE_MISTAKES, ids=[s[0] for s in SPACE_MISTAKES])
def test_a_space_mistake_is_found_by_validate(tmp_path: Path, case: str, overrides: dict, message: str) -> None:
    space = write_space(tmp_path / "space.yaml", None, **overrides)
    result = run_cli("space", "validate", str(space), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "(line " in result.stderr, result.stderr


PROXY_MISTAKES = [
    ("heads", {"num_heads": 5}, "hidden_size 32 is not divisible by num_heads 5"),
    ("kv heads", {"num_kv_heads": 3}, "num_heads 2 is not divisible by num_kv_heads 3"),
    ("batch", {"batch_size": 100000}, "not one training step"),
    ("overflowing width", {"hidden_size": 10**20}, "hidden_size: Input should be less than or equal to 65536"),
    ("diverging learning rate", {"learning_rate": 1e20}, "learning_rate: Input should be less than or equal to 1"),
]


@pytest.mark.parametrize(("case", "change", "message"), PROXY_MISTAKES, ids=[p[0] for p in PROXY_MISTAKES])
def test_a_proxy_profile_mistake_is_found_by_validate(tmp_path: Path, case: str, change: dict, message: str) -> None:
    profile = yaml.safe_load((DATA / "proxy-micro.yaml").read_text())
    for section in ("model", "train"):
        profile[section].update({k: v for k, v in change.items() if k in profile[section]})
    (tmp_path / "proxy.yaml").write_text(yaml.safe_dump(profile))
    space = write_space(tmp_path / "space.yaml", None, proxy="proxy.yaml")
    result = run_cli("space", "validate", str(space), cwd=tmp_path)
    assert result.returncode == 2 and "proxy: proxy.yaml:" in result.stderr and message in result.stderr, result.stderr


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", None, description="Café")
    space.write_bytes(space.read_text().replace("Caf\\xE9", "Café").encode("latin-1"))
    result = run_cli("space", "validate", str(space), cwd=tmp_path)
    assert result.returncode == 2 and f"{space}: not UTF-8" in result.stderr, result.stderr
    assert "UnicodeDecodeError" not in result.stderr


RECIPE_MISTAKES = [
    ("best_of_n 0", {"best_of_n": 0}, "recipe.best_of_n: Input should be greater than or equal to 1"),
    ("negative tokens", {"sampling": {"max_new_tokens": -5}}, "recipe.sampling.max_new_tokens: Input should be"),
    ("mix 7", {"mix_ratio": 7}, "recipe.mix_ratio: Input should be less than or equal to 1"),
    ("no slot", {"template_text": "Rewrite it."}, "must contain {document} exactly once (found 0)"),
    ("unknown placeholder", {"template_text": "Rewrite {document} for {who}."}, "unknown placeholder(s) {who}"),
    ("unknown selection", {"selection": "random"}, "recipe.selection: Input should be 'fidelity'"),
    ("top_k overflow", {"sampling": {"top_k": 10**20}}, "recipe.sampling.top_k: Input should be less than"),
    ("hash not the text's", {"template_hash": "0" * 64}, "template_hash does not match template_text"),
    ("empty generator name", {"generator": {"name": ""}}, "recipe.generator.name: String should have at least"),
]


@pytest.mark.parametrize(("case", "change", "message"), RECIPE_MISTAKES, ids=[r[0] for r in RECIPE_MISTAKES])
def test_generate_refuses_a_bad_recipe_before_loading_a_model(
    tmp_path: Path, case: str, change: dict, message: str
) -> None:
    template = SEED_TEMPLATES["faq"]
    generator = GeneratorSpec(name="g", backend="embedded", model="embedded")
    recipe = Recipe.for_template(
        1,
        template,
        generator=generator,
        sampling=Sampling(temperature=0.5, top_p=0.9, max_new_tokens=32),
        best_of_n=1,
        mix_ratio=0.5,
        seed=0,
    ).model_dump(mode="json")
    for key, value in change.items():
        recipe[key] = recipe[key] | value if isinstance(value, dict) else value
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"recipe": recipe}))
    (tmp_path / "in.jsonl").write_text('{"text": "a document"}\n')
    args = ("generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out")
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- atomic creation


@pytest.mark.parametrize("name", ["../escaped", "a/b c;rm", "-dash", "x" * 65])
def test_a_study_name_outside_the_pattern_is_refused_at_create(tmp_path: Path, name: str) -> None:
    space = write_space(tmp_path / "space.yaml", None)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = run_cli("study", "create", str(space), "--name", name, "--db", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'--name'" in lines[0] and "must be 1-64 letters" in lines[0], result.stderr
    assert not (tmp_path / "db.sqlite").exists()
    with pytest.raises(UserError, match="must be 1-64 letters"):
        create_study(space, f"sqlite:///{tmp_path / 'lib.sqlite'}", name)


def test_a_failed_create_leaves_no_study_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _template(tmp_path, "mine.txt", "Rewrite this as a FAQ.")
    space = write_space(tmp_path / "space.yaml", None, templates={"seeds": ["faq"], "files": ["mine.txt"]})
    refused = run_cli("study", "create", str(space), "--db", url, cwd=tmp_path)
    assert refused.returncode == 2 and "mine.txt" in refused.stderr
    _template(tmp_path, "mine.txt", "Rewrite this as a FAQ:\n\n{document}")
    created = run_cli("study", "create", str(space), "--db", url, cwd=tmp_path)
    assert created.returncode == 0 and "created study 'tiny'" in created.stdout, created.stderr


def test_a_create_that_fails_part_way_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from promptsearch import study as study_module

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = write_space(tmp_path / "space.yaml", None)

    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(study_module, "_enqueue_templates", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        create_study(space, url)
    assert optuna.get_all_study_names(storage=url) == []
    monkeypatch.undo()
    assert create_study(space, url).study_name == "tiny"


# ------------------------------------------------------------------------------------ silent waits


def _locked_database(tmp_path: Path, reader: bool = False) -> tuple[str, sqlite3.Connection]:
    """A database another connection holds: exclusively (a statement waits), or as a reader in a transaction
    (a write goes through, its COMMIT waits for the reader)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    lock = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None, check_same_thread=False)
    if reader:
        lock.execute("BEGIN")
        lock.execute("SELECT * FROM ps_templates").fetchall()
    else:
        lock.execute("BEGIN EXCLUSIVE")
    return url, lock


@pytest.mark.parametrize("reader", [False, True], ids=["statement waits", "commit waits"])
def test_a_locked_database_is_never_silent_for_5_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: bool
) -> None:
    url, lock = _locked_database(tmp_path, reader)
    space = write_space(tmp_path / "space.yaml", None)
    said: list[tuple[float, str]] = []

    class Stderr(io.StringIO):
        def write(self, text: str) -> int:
            said.append((time.monotonic(), text))
            return len(text)

    monkeypatch.setattr(sys, "stderr", Stderr())
    release = threading.Timer(7, lambda: lock.execute("COMMIT"))
    release.start()
    start = time.monotonic()
    try:
        assert create_study(space, url).study_name == "tiny"  # it waited, then went on
    finally:
        release.join()
    end = time.monotonic()
    assert end - start >= 7
    waits = [t for t, text in said if "waiting for database" in text]  # then "still waiting for database …"
    assert waits and waits[0] - start < 5, said
    assert all(later - earlier <= 5.5 for earlier, later in zip([start, *waits], [*waits, end], strict=True)), said


def test_a_locked_database_is_reported_on_the_terminal(tmp_path: Path) -> None:
    url, lock = _locked_database(tmp_path)
    space = write_space(tmp_path / "space.yaml", None)
    command = [sys.executable, str(REPO / "cli.py"), "study", "create", str(space), "--db", url]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stderr.readline() if process.stderr else ""
    lock.execute("COMMIT")
    out, _ = process.communicate(timeout=120)
    assert "waiting for database" in first and "another process holds its lock" in first
    assert process.returncode == 0 and "created study 'tiny'" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_endpoint_with_nothing_listening_fails_within_its_bound() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"generator remote: nothing answers at {url} .*waited 2 s"):
        wait_for_endpoint(url, "generator remote", 2)
    assert time.monotonic() - start < 10
    assert GeneratorSpec(name="g", backend="endpoint", model="m", endpoint_url=url).ready_timeout_seconds <= 60


def test_the_proposer_endpoint_is_waited_for_within_its_bound(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    spec = ProposerLMSpec(backend="endpoint", model="m", endpoint_url=url, ready_timeout_seconds=2)
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"proposal.lm: nothing answers at {url} .*waited 2 s"):
        ProposerLM(spec, tmp_path / "cache", GeneratorServers(tmp_path / "logs")).wait_ready()
    assert time.monotonic() - start < 10 and ProposerLMSpec().ready_timeout_seconds <= 60


def test_an_endpoint_that_answers_anything_is_ready(tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        wait_for_endpoint(f"http://127.0.0.1:{server.server_port}", "generator remote", 30)
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()


def test_a_trial_on_a_silent_endpoint_fails_in_one_line_naming_the_url(tmp_path: Path) -> None:
    """Also: the source's skipped documents are shown while the study runs (the trial never finishes)."""
    url = f"http://127.0.0.1:{_free_port()}"
    (tmp_path / "docs.jsonl").write_text('{"text": "A document about a bushfire."}\n{"text": ""}\n')
    space = write_space(
        tmp_path / "space.yaml",
        None,
        source={"format": "jsonl", "path": "docs.jsonl"},
        generators=[
            {"name": "remote", "backend": "endpoint", "model": "m", "endpoint_url": url, "ready_timeout_seconds": 3}
        ],
        proxy=None,
        objectives=[{"metric": "measure.number_recall", "direction": "maximize"}],
        budget={"trials": 1},
    )
    start = time.monotonic()
    result = run_cli("study", "start", str(space), "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", cwd=tmp_path)
    assert result.returncode == 1 and time.monotonic() - start < 60
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"nothing answers at {url}" in errors[0], result.stderr
    assert "source documents skipped: 1 empty" in result.stdout, result.stdout


# ----------------------------------------------------------------- skipped source documents, shown


def test_status_shows_skipped_source_documents_by_reason(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "good.txt").write_text("A normal document about a bushfire in 2001. " * 10)
    (source / "empty.txt").write_text("  \n")
    (source / "binary.txt").write_bytes(b"\x00\x01\x02 binary payload \x00" * 10)
    (source / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    (source / "huge.txt").write_text("A line of a very long document.\n" * 3000)
    spec = {"format": "text", "path": "source", "max_chars": 1000}
    space = write_space(tmp_path / "space.yaml", None, source=spec)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = create_study(space, url)
    corpus = read_corpus(CorpusSpec(**spec | {"path": str(source)}))
    assert len(corpus.documents) == 2
    # what trial.RephraseStage records for every trial
    trial = study.ask()
    Store.open(url).record_metrics(
        "tiny", trial.number, "rephrase", {f"rephrase.source_{r}": n for r, n in corpus.skipped.items()}
    )
    result = run_cli("study", "status", "tiny", "--db", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "source documents skipped: 1 binary, 1 empty, 1 not_utf8, 1 truncated" in result.stdout


# ------------------------------------------------------------------------------------- databases


def _database(tmp_path: Path, change: str) -> str:
    path = tmp_path / "db.sqlite"
    if change == "not sqlite":
        path.write_text("not a database, just text")
    else:
        upgrade(f"sqlite:///{path}")
        with sqlite3.connect(path) as conn:
            conn.executescript(change)
    return f"sqlite:///{path}"


OPTUNA = importlib.metadata.version("optuna")  # the runtime's version, which both refusals name
DATABASES = [
    ("not sqlite", "not sqlite", "cannot reach database", "file is not a database"),
    ("dropped tables", "DROP TABLE ps_trial_metrics;", "is damaged", "ps_trial_metrics are missing"),
    ("dropped Optuna table", "DROP TABLE trials;", "is damaged", "table(s) trials are missing"),
    ("newer schema", "UPDATE promptsearch_alembic_version SET version_num = '0099';", "a newer promptsearch", "0099"),
    # Optuna's own migration environment printed Alembic's INFO lines before the error (store.database)
    ("newer Optuna schema", "UPDATE alembic_version SET version_num = 'v9.9.9.z';", "error: database", OPTUNA),
    (
        "two schema rows",
        "INSERT INTO promptsearch_alembic_version VALUES ('0001');",
        "is damaged",
        "records several schema revisions",
    ),
]


@pytest.mark.parametrize(("case", "change", "first", "second"), DATABASES, ids=[d[0] for d in DATABASES])
@pytest.mark.parametrize("command", ["study list", "db upgrade"])
def test_a_broken_database_is_one_line_saying_what_is_wrong(
    tmp_path: Path, command: str, case: str, change: str, first: str, second: str
) -> None:
    url = _database(tmp_path, change)
    result = run_cli(*command.split(), "--db", url, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and first in lines[0] and second in lines[0], result.stderr


def test_a_port_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    result = run_cli("study", "list", "--db", "postgresql+psycopg://user:secret@localhost:abc/db", cwd=tmp_path)
    assert result.returncode == 1 and "not a database URL" in result.stderr and "'abc'" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------ other options


def test_a_slurm_time_limit_that_is_not_one_is_named(generate_folder: Path) -> None:
    (generate_folder / "in.jsonl").write_text('{"text": "a document"}\n')
    args = ("generate", "--input", "in.jsonl", "--output", "out", "--space", "space.yaml", "--template", "faq")
    result = run_cli(*args, "--executor", "slurm", "--time", "soon", cwd=generate_folder, timeout=120)
    assert result.returncode == 1 and "Slurm settings: --time 'soon'" in result.stderr, result.stderr
    assert "errors.pydantic.dev" not in result.stderr


def test_a_slurm_generate_says_which_rows_it_skipped(tmp_path: Path, slurm: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # only the nodes need to reach it; the job is cancelled unrun
    generator = {"name": "remote", "backend": "endpoint", "model": "m", "endpoint_url": url}
    write_space(tmp_path / "space.yaml", None, generators=[generator])
    (tmp_path / "in.jsonl").write_text('{"text": "a document"}\n{"text": ""}\n')
    args = ("generate", "--input", "in.jsonl", "--output", "out", "--space", "space.yaml", "--template", "faq")
    result = run_cli(*args, "--executor", "slurm", "--partition", slurm, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split("submitted Slurm job ")[1].split()[0]
    subprocess.run(["scancel", job_id], check=True)
    assert "(1 datatrove task(s); skipped 1 empty)" in result.stdout, result.stdout


def test_a_dashboard_port_in_use_is_refused_before_it_says_it_listens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("dashboard", "--db", url, "--port", str(port), cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "dashboard for" not in result.stdout


def test_many_empty_rows_are_counted_not_warned_about_one_by_one(tmp_path: Path) -> None:
    empty = b'{"text": "", "source_text": "x"}\n' * 100_000
    (tmp_path / "data.jsonl").write_bytes(b"".join(_rows(2)) + empty + b"\n\n")
    result = _metrics(tmp_path, "data.jsonl")
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr[:500]
    summary = json.loads(result.stdout)
    assert summary["rows"] == 2 and summary["skipped_rows"] == {"empty": 100_000}


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_text("not parquet at all")
    result = _metrics(tmp_path, "data.parquet")
    assert result.returncode == 1, result.stderr
    assert f"{tmp_path / 'data.parquet'}: not a readable Parquet file" in result.stderr
    assert "ArrowInvalid" not in result.stderr


def test_a_half_created_study_points_to_study_delete(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    optuna.create_study(study_name="tiny", storage=url)  # what a failed create used to leave
    result = run_cli("study", "start", "tiny", "--db", url, "--workdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 1 and "never fully created" in result.stderr, result.stderr
    assert "promptsearch study delete tiny" in result.stderr and "KeyError" not in result.stderr
    deleted = run_cli("study", "delete", "tiny", "--yes", "--db", url, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr


def test_a_nan_metric_fails_the_trial_in_one_line_and_stores_none_of_its_stage(tmp_path: Path) -> None:
    """A proxy whose training diverged gives NaN: the trial fails with one line naming the metric and the knob,
    and neither the metrics table nor the dashboard's user attrs get a NaN (SQLite would refuse it mid-write)."""
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from promptsearch.trial import Corpora, TrialContext, WorkerResources

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_study(write_space(tmp_path / "space.yaml", None), url)
    store = Store.open(url)
    trial = optuna.load_study(study_name="tiny", storage=store.optuna_storage()).ask()
    generator = GeneratorSpec(name="g", backend="embedded", model="embedded")
    resources = WorkerResources(GeneratorServers(tmp_path), None, [], FileSystemArtifactStore(str(tmp_path)))
    context = TrialContext(
        "tiny", trial, seeded_recipe(store, "faq", generator), "faq", Corpora([], [], []), store, resources, tmp_path
    )
    context.record("measure", {"number_recall": 0.5})
    with pytest.raises(UserError) as raised:
        context.record("proxy", {"knowledge_bpb": 1.7, "heldout_bpb": float("nan")})
    assert str(raised.value) == (
        f"trial {trial.number}: proxy gave NaN for heldout_bpb "
        "(its training diverged: lower the proxy profile's train.learning_rate)"
    )
    assert store.trial_metrics("tiny", trial.number) == {"measure.number_recall": 0.5}
    assert not any(name.startswith("proxy.") for name in trial.user_attrs) and context.metrics == {
        "measure.number_recall": 0.5
    }
