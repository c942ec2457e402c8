"""Issue 18's Done-when counts: several hundred bad inputs, each run through the real CLI, and three counts.

The cases are generated from the issue's kinds: every leaf of a working search space, proxy profile and recipe
file given a wrong type, a value out of range, NaN/inf, an unknown key or a missing required key; template
files and config files that are empty, binary, not UTF-8 or malformed; JSONL/Parquet inputs with damaged rows;
damaged, locked and unreachable databases; and every command of the CLI with bad arguments (walked from the
click command tree, so a new option is covered without editing this file).

Each case runs its command lines in a folder of its own, in a forked child of this process that calls
`promptsearch.cli.main` as the console script does (the CLI imported once: hundreds of cold starts would take
an hour on 2 cores). A step runs only if the one before it exited 0; a case whose first step (the check:
`space validate`, or the command itself) accepts a bad input goes on to the step that uses it (`study start`,
on a real endpoint: datatrove's dummy OpenAI server, so no generator model loads; the proxy is the tests' micro
one).

Counted, per case:
- data_lost: rows or a study that existed (or were produced) and were not kept, without a count saying so.
- silent_wait: a step that went more than 5 s without printing anything while mostly idle (CPU time under a quarter
  of the silence: a wait, not work).
- accepted_then_failing: the check accepted the input, and a later step failed (or any step crashed with a
  traceback or promptsearch's "a bug" line).
And for every bad input that was refused: `unclear` when it was not one clear line (a traceback, the generic
"run with --debug" line of an unexpected exception, several error lines, or an exit code of 0).

Run: `python benchmarks/bad_input_corpus.py [--label NAME] [--only KIND]`; writes
benchmarks/results/bad_input_corpus[-NAME].json with every case's outcome and the counts.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SILENCE_SECONDS = 5.0
STEP_TIMEOUT = 120.0  # the check: refusing an input takes seconds
RUN_TIMEOUT = 45.0  # a later step still working after this has accepted the input and runs: it is let go

Files = dict[str, bytes | str]


# ------------------------------------------------------------------------------------------ running


@dataclass
class Step:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    longest_silence: float
    cpu_seconds: float
    timed_out: bool


def run_cli(args: list[str], cwd: Path, timeout: float = STEP_TIMEOUT) -> Step:
    """`promptsearch ARGS` in a forked child (its own session, stdout/stderr to pipes), timed as it prints."""
    sys.stdout.flush()
    sys.stderr.flush()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exactly what the console script runs
        code = 1
        try:
            os.setsid()
            os.chdir(cwd)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            sys.argv = ["promptsearch", *args]
            from promptsearch.cli import main

            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what a console script would show: counted as a crash
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    start = last = time.monotonic()
    silence = 0.0
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    timed_out = False
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 0.5)
        now = time.monotonic()
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
                silence, last = max(silence, now - last), now
            else:
                open_fds.remove(fd)
                os.close(fd)
        if now - start > timeout and not timed_out:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    end = time.monotonic()
    silence = max(silence, end - last)
    code = os.waitstatus_to_exitcode(status)
    return Step(
        args=args,
        code=code,
        stdout=b"".join(chunks[out_r]).decode(errors="replace"),
        stderr=b"".join(chunks[err_r]).decode(errors="replace"),
        seconds=round(end - start, 2),
        longest_silence=round(silence, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        timed_out=timed_out,
    )


# ------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad input: files written into the case's folder, then command lines run in order.

    `steps[0]` is the check (a command that should refuse the input); the others use what it accepted.
    `rows` checks a data case's output (returns why rows were lost, or None).
    """

    id: str
    kind: str
    files: Files
    steps: list[list[str]]
    expect: list[str] = field(default_factory=list)  # words the refusal should contain (e.g. the file's name)
    rows: Callable[[Path, list[Step]], str | None] | None = None
    before: Callable[[Path], Any] | None = None  # set-up needing code (a database, a lock holder)


@dataclass
class Outcome:
    id: str
    kind: str
    verdict: str  # refused | unclear | accepted_then_failing | accepted_ok
    data_lost: str | None
    silent_wait: bool
    problems: list[str]
    steps: list[dict[str, Any]]


BUG_MARKERS = ("Traceback (most recent call last)", "(run with --debug for the traceback)")


def judge(case: Case, folder: Path, steps: list[Step]) -> Outcome:
    problems: list[str] = []
    crashed = [s for s in steps if any(m in s.stderr for m in BUG_MARKERS)]
    # a later step cut off while still working ran, and so did not fail
    failed = next((s for i, s in enumerate(steps) if s.code != 0 and not (i and s.timed_out)), None)
    if crashed:
        problems.append(f"crash in `{' '.join(crashed[0].args[:2])}`: {_last_line(crashed[0].stderr)}")
    if failed is None:
        verdict = "accepted_ok"
    elif failed is steps[0]:
        verdict = "refused"
        lines = [line for line in failed.stderr.splitlines() if line.strip() and not line.startswith("waiting for")]
        if failed.timed_out:
            problems.append(f"still running after {STEP_TIMEOUT:.0f} s")
        if not lines:
            problems.append("refused without a message")
        elif len(lines) > 1 and not _space_error(lines):
            problems.append(f"{len(lines)} lines: {' | '.join(line[:100] for line in lines[:3])}")
        if missing := [word for word in case.expect if word not in failed.stderr]:
            problems.append(f"message lacks {missing}: {_last_line(failed.stderr)}")
        if problems:
            verdict = "unclear"
    else:
        verdict = "accepted_then_failing"
        problems.append(
            f"accepted by `{' '.join(steps[0].args[:2])}`, failed in `{' '.join(failed.args[:2])}`: "
            f"{_last_line(failed.stderr)}"
        )
    if crashed:  # the input got past every check into code that did not expect it
        verdict = "accepted_then_failing"
    silent = [s for s in steps if s.longest_silence > SILENCE_SECONDS and s.cpu_seconds < s.longest_silence / 4]
    data_lost = case.rows(folder, steps) if case.rows is not None else None
    return Outcome(case.id, case.kind, verdict, data_lost, bool(silent), problems, [asdict(s) for s in steps])


def _space_error(lines: list[str]) -> bool:
    """A config file's mistakes are one line each, all naming the file (`space.yaml: a.b: … (line 3)`)."""
    first = lines[0].split(": ")[0]
    return all(line.startswith(first) for line in lines)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# ------------------------------------------------------------------------------------ shared inputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DummyEndpoint:
    """datatrove's own dummy OpenAI server (fixed answers), as a real HTTP endpoint in a process of its own."""

    def __enter__(self) -> DummyEndpoint:
        self.port = free_port()
        code = (
            "from http.server import ThreadingHTTPServer\n"
            "from datatrove.pipeline.inference.servers.dummy_server import DummyHandler\n"
            f"ThreadingHTTPServer(('127.0.0.1', {self.port}), DummyHandler).serve_forever()\n"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise RuntimeError("the dummy endpoint did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc: object) -> None:
        self.process.kill()
        self.process.wait()


def proxy_profile() -> dict[str, Any]:
    return yaml.safe_load((REPO / "tests" / "data" / "proxy-micro.yaml").read_text())


def base_space(endpoint: str) -> dict[str, Any]:
    """A space that works end to end in seconds: 2 short documents, the dummy endpoint, the micro proxy."""
    return {
        "name": "corpus",
        "objectives": [{"metric": "proxy.heldout_bpb", "direction": "minimize"}],
        "source": {"format": "embedded", "path": "lee_background", "limit": 2, "max_chars": 300},
        "mix_in": {"format": "embedded", "path": "lee_background", "skip": 100, "limit": 60},
        "heldout": {"format": "embedded", "path": "lee", "limit": 10},
        "templates": {"seeds": ["faq", "table"]},
        "generators": [
            {"name": "dummy", "backend": "endpoint", "model": "dummy-model", "endpoint_url": endpoint, "concurrency": 4}
        ],
        "sampling": {
            "temperature": {"low": 0.2, "high": 1.0},
            "top_p": {"low": 0.8, "high": 1.0},
            "max_new_tokens": [12],
        },
        "best_of_n": [1, 2],
        "selection": ["fidelity", "novelty"],
        "mix_ratio": {"low": 0.3, "high": 0.7},
        "measure": {"embeddings": False, "prune": {"min_unique_prefix_ratio_10": 0, "min_number_recall": 0}},
        "proxy_weights": {"heldout_bpb": -1.0},
        "proxy": "proxy.yaml",
        "budget": {"trials": 1, "wall_time_minutes": 10},
        "seed": 0,
    }


def base_recipe(endpoint: str) -> dict[str, Any]:
    from promptsearch.seeds import SEED_TEMPLATES

    template = SEED_TEMPLATES["faq"]
    return {
        "recipe": {
            "template_id": 1,
            "template_name": template.name,
            "template_family": template.family,
            "template_text": template.text,
            "template_hash": template.text_hash,
            "generator": {"name": "dummy", "backend": "endpoint", "model": "dummy-model", "endpoint_url": endpoint},
            "sampling": {"temperature": 0.5, "top_p": 0.9, "max_new_tokens": 16, "top_k": 0},
            "best_of_n": 1,
            "selection": "fidelity",
            "mix_ratio": 0.5,
            "seed": 0,
        }
    }


DB = "sqlite:///db.sqlite"
GOOD_DOCS = "".join(
    json.dumps({"text": f"Document {i}: the fire of 2001 burned {i} hectares."}) + "\n" for i in range(3)
)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------- field mutations


def leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every setting of a nested config, with its path (mappings and lists are walked, their items yielded)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), value
            yield from leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*path, index), value
            yield from leaves(value, (*path, index))


def replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(data)
    target = out
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()


def mutations(value: Any) -> list[tuple[str, Any]]:
    """Wrong values for a setting, by its type: the wrong type, out of range, NaN/inf, empty."""
    if isinstance(value, bool):
        return [("string", "maybe"), ("number 2", 2), ("list", [True])]
    if isinstance(value, int | float):
        return [
            ("string", "abc"),
            ("list", [value]),
            ("null", None),
            ("negative", -1 if isinstance(value, int) else -0.5),
            ("NaN", math.nan),
            ("inf", math.inf),
            ("huge", 10**20),
        ]
    if isinstance(value, str):
        return [("number", 7), ("list", [value]), ("mapping", {"a": 1}), ("empty", ""), ("unknown value", "zzz-nope")]
    if isinstance(value, list):
        return [("scalar", "x"), ("empty list", []), ("list of null", [None])]
    if isinstance(value, dict):
        return [("scalar", 5), ("unknown key", {**value, "bogus_key": 1}), ("empty mapping", {})]
    return []


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


# --------------------------------------------------------------------------------------- the kinds


def space_cases(endpoint: str) -> Iterator[Case]:
    """Every setting of a working space, broken; the check is `space validate`, then create and start."""
    base = base_space(endpoint)
    profile = dump(proxy_profile())
    steps = [["space", "validate", "space.yaml"], ["study", "start", "space.yaml", "--db", DB, "--workdir", "runs"]]
    for path, value in leaves(base):
        for label, wrong in mutations(value):
            data = replaced(base, path, wrong)
            yield Case(
                f"space {_dotted(path)} {label}", "space", {"space.yaml": dump(data), "proxy.yaml": profile}, steps
            )
    for key in base:
        yield Case(
            f"space without {key}",
            "space",
            {"space.yaml": dump(replaced(base, (key,), _DELETE)), "proxy.yaml": profile},
            steps,
        )
    extra = {
        "endpoint URL without host": ("generators", 0, "endpoint_url"),
        "endpoint URL port 99999": ("generators", 0, "endpoint_url"),
        "endpoint URL ftp": ("generators", 0, "endpoint_url"),
    }
    urls = ["http://", "http://127.0.0.1:99999", "ftp://host/x"]
    for (label, path), url in zip(extra.items(), urls, strict=True):
        yield Case(
            f"space {label}", "space", {"space.yaml": dump(replaced(base, path, url)), "proxy.yaml": profile}, steps
        )
    for label, change in [
        ("unknown promotion profile", {"promotion": {"profile": "full-99b"}}),
        ("proxy as promotion profile", {"promotion": {"profile": "cpu-tiny"}}),
        ("seed 2**32", {"seed": 2**32}),
        ("temperature range reversed", {"sampling": {**base["sampling"], "temperature": {"low": 1.0, "high": 0.2}}}),
        ("unknown objective metric", {"objectives": [{"metric": "proxy.nothing", "direction": "minimize"}]}),
        ("unknown seed template", {"templates": {"seeds": ["faq", "poem"]}}),
        ("proxy profile missing", {"proxy": "nothere.yaml"}),
        ("unknown proxy name", {"proxy": "cpu-huge"}),
        ("source jsonl missing", {"source": {"format": "jsonl", "path": "missing.jsonl"}}),
        ("source text folder missing", {"source": {"format": "text", "path": "nofolder"}}),
        ("unknown embedded corpus", {"source": {"format": "embedded", "path": "wiki"}}),
        ("name with slash", {"name": "a/b"}),
        ("name ../", {"name": "../up"}),
        ("duplicate generator names", {"generators": base["generators"] * 2}),
        ("proposal endpoint without URL", {"proposal": {"enabled": True, "lm": {"backend": "endpoint", "model": "m"}}}),
        (
            "proposal endpoint port 0",
            {"proposal": {"enabled": True, "lm": {"backend": "endpoint", "model": "m", "endpoint_url": "http://h:0"}}},
        ),
        ("cluster time soon", {"cluster": {"partition": "debug", "time": "soon"}}),
        ("budget 0 trials", {"budget": {"trials": 0}}),
        ("max_new_tokens 0", {"sampling": {**base["sampling"], "max_new_tokens": [0]}}),
        ("best_of_n 0", {"best_of_n": [0]}),
        ("best_of_n 1000", {"best_of_n": [1000]}),
        ("concurrency 0", {"generators": [{**base["generators"][0], "concurrency": 0}]}),
        ("concurrency 10**9", {"generators": [{**base["generators"][0], "concurrency": 10**9}]}),
        ("unknown selection rule", {"selection": ["random"]}),
    ]:
        yield Case(f"space {label}", "space", {"space.yaml": dump(base | change), "proxy.yaml": profile}, steps)


def config_file_cases(endpoint: str) -> Iterator[Case]:
    """A space, proxy profile or recipe file that is not a config at all."""
    space = dump(base_space(endpoint))
    profile = dump(proxy_profile())
    recipe = dump(base_recipe(endpoint))
    broken: dict[str, bytes] = {
        "empty": b"",
        "latin-1": "name: caf\xe9\n".encode("latin-1"),
        "utf-16": "name: x\n".encode("utf-16"),
        "binary": bytes(range(256)),
        "YAML syntax": b"name: [unclosed\n",
        "a list": b"- a\n- b\n",
        "a scalar": b"just words\n",
        "tabs": b"name:\tx\n\tsource: y\n",
        "duplicate keys": b"name: a\nname: b\n",
    }
    for label, content in broken.items():
        yield Case(
            f"space file {label}",
            "config file",
            {"space.yaml": content},
            [["space", "validate", "space.yaml"]],
            ["space.yaml"],
        )
        yield Case(
            f"proxy file {label}",
            "config file",
            {"space.yaml": space, "proxy.yaml": content},
            [["space", "validate", "space.yaml"]],
            ["proxy.yaml"],
        )
        yield Case(
            f"recipe file {label}",
            "config file",
            {"recipe.yaml": content, "in.jsonl": GOOD_DOCS},
            [["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out"]],
            ["recipe.yaml"],
        )
    for label, files, args, words in [
        ("space missing", {}, ["space", "validate", "nothere.yaml"], ["nothere.yaml"]),
        ("space is a folder", {"folder/x": ""}, ["space", "validate", "folder"], ["folder"]),
        (
            "recipe missing",
            {"in.jsonl": GOOD_DOCS},
            ["generate", "--recipe", "no.yaml", "--input", "in.jsonl", "--output", "o"],
            ["no.yaml"],
        ),
        (
            "recipe is a folder",
            {"r/x": "", "in.jsonl": GOOD_DOCS},
            ["generate", "--recipe", "r", "--input", "in.jsonl", "--output", "o"],
            [],
        ),
        (
            "recipe without recipe block",
            {"r.yaml": profile, "in.jsonl": GOOD_DOCS},
            ["generate", "--recipe", "r.yaml", "--input", "in.jsonl", "--output", "o"],
            ["r.yaml"],
        ),
        (
            "recipe diff of a space",
            {"space.yaml": space, "r.yaml": recipe},
            ["recipe", "diff", "space.yaml", "r.yaml"],
            ["space.yaml"],
        ),
        (
            "recipe diff missing file",
            {"r.yaml": recipe},
            ["recipe", "diff", "r.yaml", "nothere.yaml"],
            ["nothere.yaml"],
        ),
        (
            "recipe diff latin-1",
            {"r.yaml": recipe, "l.yaml": "a: caf\xe9\n".encode("latin-1")},
            ["recipe", "diff", "r.yaml", "l.yaml"],
            ["l.yaml"],
        ),
    ]:
        yield Case(f"{label}", "config file", files, [args], words)


def proxy_cases(endpoint: str) -> Iterator[Case]:
    """Every setting of a working proxy profile, broken; checked by `space validate`, then used by a study."""
    space = dump(base_space(endpoint))
    base = proxy_profile()
    steps = [["space", "validate", "space.yaml"], ["study", "start", "space.yaml", "--db", DB, "--workdir", "runs"]]
    for path, value in leaves(base):
        for label, wrong in mutations(value):
            yield Case(
                f"proxy {_dotted(path)} {label}",
                "proxy profile",
                {"space.yaml": space, "proxy.yaml": dump(replaced(base, path, wrong))},
                steps,
            )
    for key in base:
        yield Case(
            f"proxy without {key}",
            "proxy profile",
            {"space.yaml": space, "proxy.yaml": dump(replaced(base, (key,), _DELETE))},
            steps,
        )
    model = base["model"]
    for label, change in [
        ("heads do not divide hidden", {"num_heads": 5}),
        ("kv heads do not divide heads", {"num_kv_heads": 3}),
        ("zero layers", {"num_layers": 0}),
        ("seq_len 1", {"seq_len": 1}),
    ]:
        data = base | {"model": model | change}
        yield Case(f"proxy {label}", "proxy profile", {"space.yaml": space, "proxy.yaml": dump(data)}, steps)
    for label, change in [
        ("batch larger than tokens", {"batch_size": 100000}),
        ("zero learning rate", {"learning_rate": 0}),
    ]:
        data = base | {"train": base["train"] | change}
        yield Case(f"proxy {label}", "proxy profile", {"space.yaml": space, "proxy.yaml": dump(data)}, steps)


def template_cases(endpoint: str) -> Iterator[Case]:
    """A user template file that cannot be used, under each command that reads one."""
    contents: dict[str, bytes | str] = {
        "no slot": "Rewrite this as a FAQ.",
        "two slots": "Rewrite {document} and again {document}.",
        "unknown placeholder": "Rewrite {document} for {audience}.",
        "two unknown placeholders": "For {who} in {lang}: {document}",
        "latin-1": "Caf\xe9: rewrite {document}.".encode("latin-1"),
        "utf-16": "Rewrite {document}.".encode("utf-16"),
        "too long": "Rewrite {document}. " + "x" * 5000,
        "empty": "",
        "blank": "  \n\n ",
        "binary": b"\x00\x01{document}\x02",
    }
    space = base_space(endpoint)
    profile = dump(proxy_profile())
    for label, content in contents.items():
        data = space | {"templates": {"seeds": ["faq"], "files": ["mine.txt"]}}
        files = {"space.yaml": dump(data), "proxy.yaml": profile, "mine.txt": content, "in.jsonl": GOOD_DOCS}
        for command in (["space", "validate", "space.yaml"], ["study", "create", "space.yaml", "--db", DB]):
            yield Case(f"template {label} ({' '.join(command[:2])})", "template file", files, [command], ["mine.txt"])
        generate = ["generate", "--space", "space.yaml", "--template", "mine", "--input", "in.jsonl", "--output", "out"]
        yield Case(f"template {label} (generate)", "template file", files, [generate], ["mine.txt"])
    for label, files in [
        ("missing", {}),
        ("a folder", {"mine.txt/x": "Rewrite {document}."}),
        ("placeholder mismatch", {"mine.txt": "Rewrite {document}."}),
    ]:
        pool = {"seeds": ["faq"], "files": ["mine.txt"]} | ({"placeholder": "[TEXT]"} if "mismatch" in label else {})
        yield Case(
            f"template {label}",
            "template file",
            {"space.yaml": dump(space | {"templates": pool}), "proxy.yaml": profile, **files},
            [["space", "validate", "space.yaml"]],
            ["mine.txt"],
        )


def recipe_cases(endpoint: str) -> Iterator[Case]:
    """Every setting of an exported recipe, broken; `generate --recipe` must refuse it before generating."""
    base = base_recipe(endpoint)
    command = ["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out"]
    for path, value in leaves(base["recipe"]):
        for label, wrong in mutations(value):
            data = replaced(base, ("recipe", *path), wrong)
            yield Case(
                f"recipe {_dotted(path)} {label}",
                "recipe",
                {"recipe.yaml": dump(data), "in.jsonl": GOOD_DOCS},
                [command],
                rows=_rows_kept(3),
            )
    for key in base["recipe"]:
        data = replaced(base, ("recipe", key), _DELETE)
        yield Case(
            f"recipe without {key}",
            "recipe",
            {"recipe.yaml": dump(data), "in.jsonl": GOOD_DOCS},
            [command],
            rows=_rows_kept(3),
        )
    for label, text in [
        ("template without slot", "Rewrite it."),
        ("template unknown placeholder", "Rewrite {document} for {audience}."),
        ("template two slots", "{document} {document}"),
    ]:
        data = replaced(base, ("recipe", "template_text"), text)
        yield Case(
            f"recipe {label}",
            "recipe",
            {"recipe.yaml": dump(data), "in.jsonl": GOOD_DOCS},
            [command],
            ["template_text"],
        )


def _output_rows(folder: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in (folder / "out" / "data").glob("*.jsonl"))


def _rows_kept(rows: int) -> Callable[[Path, list[Step]], str | None]:
    """A `generate` that exits 0 must account for each of the input's `rows`: a row written, or one counted in
    its summary (`; skipped 1 empty`)."""

    def check(folder: Path, steps: list[Step]) -> str | None:
        if steps[-1].code != 0 or steps[-1].args[0] != "generate":
            return None
        written = _output_rows(folder)
        summary = steps[-1].stdout.partition("skipped")[2]
        skipped = sum(int(n) for n in re.findall(r"(\d+) [a-z0-9_]+(?=[,)])", summary))
        return None if written + skipped == rows else f"{rows} rows: {written} written, {skipped} counted as skipped"

    return check


BAD_ROWS: dict[str, bytes] = {
    "latin-1": '{"text": "caf\xe9"}\n'.encode("latin-1"),
    "broken JSON": b'{"text": "half a row\n',
    "JSON array": b"[1, 2]\n",
    "JSON string": b'"just a string"\n',
    "numeric text": b'{"text": 5}\n',
    "null text": b'{"text": null}\n',
    "list text": b'{"text": ["a"]}\n',
    "no text field": b'{"body": "x"}\n',
    "empty text": b'{"text": ""}\n',
    "blank text": b'{"text": "   "}\n',
    "NUL in text": b'{"text": "a\\u0000b"}\n',
    "lone surrogate": b'{"text": "a\\ud800b"}\n',
    "trailing garbage": b'{"text": "x"} trailing\n',
    "two objects on a line": b'{"text": "x"}{"text": "y"}\n',
    "NaN value": b'{"text": "x", "score": NaN}\n',
}


def _jsonl(n: int, key: str = "text") -> list[bytes]:
    rows = []
    for i in range(n):
        row = {key: f"Synthetic output {i} about the 2001 fire.", "source_text": f"Source {i} of the 2001 fire."}
        rows.append(json.dumps(row).encode() + b"\n")
    return rows


def _metrics_rows(total: int) -> Callable[[Path, list[Step]], str | None]:
    """`metrics --json` that exits 0 must account for every line: rows read + rows skipped (counted)."""

    def check(_folder: Path, steps: list[Step]) -> str | None:
        step = steps[-1]
        if step.code != 0:
            return None
        try:
            summary = json.loads(step.stdout)
        except json.JSONDecodeError:
            return f"exit 0 without a JSON summary: {step.stdout[:120]!r}"
        accounted = summary["rows"] + sum(summary.get("skipped_rows", {}).values())
        return (
            None
            if accounted == total
            else f"{total} lines, {summary['rows']} read + skipped {summary.get('skipped_rows')}"
        )

    return check


def row_cases(endpoint: str) -> Iterator[Case]:
    """Damaged rows at the start, middle and end of JSONL inputs (plain and gzipped), read by `metrics` (strict
    and --skip-bad-rows) and `generate --input`; nothing may be lost without being counted."""
    recipe = dump(base_recipe(endpoint))
    for label, bad in BAD_ROWS.items():
        for where, index in (("first", 0), ("middle", 50), ("last", 100)):
            rows = _jsonl(100)
            rows.insert(index, bad)
            content = b"".join(rows)
            for gz in (False, True):
                name = "data.jsonl.gz" if gz else "data.jsonl"
                data = gzip.compress(content) if gz else content
                metrics = ["metrics", name, "--no-embeddings", "--json"]
                tag = f"{label} {where}{' gz' if gz else ''}"
                yield Case(f"rows {tag} (metrics)", "rows", {name: data}, [metrics], [name], rows=_metrics_rows(101))
                yield Case(
                    f"rows {tag} (metrics --skip-bad-rows)",
                    "rows",
                    {name: data},
                    [[*metrics, "--skip-bad-rows"]],
                    [name],
                    rows=_metrics_rows(101),
                )
            if where == "middle":
                generate = [
                    "generate",
                    "--recipe",
                    "recipe.yaml",
                    "--input",
                    "in.jsonl",
                    "--output",
                    "out",
                    "--limit",
                    "200",
                ]
                small = b"".join([*_jsonl(3)[:1], bad, *_jsonl(3)[1:]])
                yield Case(
                    f"rows {label} (generate)",
                    "rows",
                    {"recipe.yaml": recipe, "in.jsonl": small},
                    [generate],
                    ["in.jsonl"],
                    rows=_generate_rows(small),
                )
    whole: dict[str, bytes] = {
        "empty file": b"",
        "only blank lines": b"\n\n\n",
        "binary file": bytes(range(256)) * 10,
        "UTF-8 BOM": b"\xef\xbb\xbf" + b"".join(_jsonl(3)),
        "UTF-16": "".join(json.dumps({"text": "x"}) + "\n" for _ in range(3)).encode("utf-16"),
        "CRLF line ends": b"".join(r.replace(b"\n", b"\r\n") for r in _jsonl(3)),
        "no final newline": b"".join(_jsonl(3)).rstrip(b"\n"),
        "text key missing everywhere": b"".join(_jsonl(3, key="body")),
        "gzip name, plain content": b"".join(_jsonl(3)),
        "truncated gzip": gzip.compress(b"".join(_jsonl(50)))[:-20],
    }
    for label, content in whole.items():
        name = "data.jsonl.gz" if "gzip" in label else "data.jsonl"
        metrics = ["metrics", name, "--no-embeddings", "--json"]
        lines = len([line for line in content.split(b"\n") if line.strip()]) if "gzip" not in label else 50
        yield Case(
            f"file {label} (metrics)",
            "rows",
            {name: content},
            [metrics],
            [name],
            rows=_metrics_rows(lines) if lines and "UTF-16" not in label else None,
        )
        generate = ["generate", "--recipe", "recipe.yaml", "--input", name, "--output", "out"]
        yield Case(
            f"file {label} (generate)",
            "rows",
            {"recipe.yaml": recipe, name: content},
            [generate],
            [name],
            rows=_generate_rows(content),
        )
    neighbours = {"data.jsonl": b"".join(_jsonl(3)), "old_data.jsonl": b"".join(_jsonl(5))}
    yield Case(
        "file argument with a neighbour (metrics)",
        "rows",
        neighbours,
        [["metrics", "data.jsonl", "--no-embeddings", "--json"]],
        rows=_metrics_rows(3),
    )
    for label, args in [
        ("metrics of a missing file", ["metrics", "nothere.jsonl", "--no-embeddings"]),
        ("metrics of a folder", ["metrics", ".", "--no-embeddings"]),
        (
            "generate from a missing file",
            ["generate", "--recipe", "recipe.yaml", "--input", "nothere.jsonl", "--output", "out"],
        ),
        (
            "generate with an unknown format",
            ["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out", "--input-format", "xml"],
        ),
        (
            "generate with an unknown output format",
            ["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out", "--format", "csv"],
        ),
        (
            "generate to an output that is a file",
            ["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "in.jsonl"],
        ),
        ("metrics with a text key that is missing", ["metrics", "in.jsonl", "--no-embeddings", "--output-key", "nope"]),
    ]:
        yield Case(
            label,
            "rows",
            {"recipe.yaml": recipe, "in.jsonl": GOOD_DOCS},
            [args],
            rows=_generate_rows(GOOD_DOCS.encode()) if args[0] == "generate" else None,
        )
    yield from parquet_cases(recipe)


def _generate_rows(content: bytes) -> Callable[[Path, list[Step]], str | None]:
    return _rows_kept(len([line for line in content.split(b"\n") if line.strip()]))


def parquet_cases(recipe: str) -> Iterator[Case]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()

    good = pa.table({"text": [f"Output {i}" for i in range(20)], "source_text": [f"Source {i}" for i in range(20)]})
    tables: dict[str, bytes] = {
        "not parquet": b"not parquet at all",
        "truncated": parquet(good)[:-100],
        "no text column": parquet(pa.table({"body": ["a", "b"], "source_text": ["x", "y"]})),
        "integer text column": parquet(pa.table({"text": [1, 2], "source_text": ["x", "y"]})),
        "zero rows": parquet(good.slice(0, 0)),
        "null texts": parquet(pa.table({"text": ["a", None, "b"], "source_text": ["x", "y", "z"]})),
    }
    for label, content in tables.items():
        yield Case(
            f"parquet {label} (metrics)",
            "rows",
            {"data.parquet": content},
            [["metrics", "data.parquet", "--no-embeddings", "--json"]],
            ["data.parquet"],
        )
        generate = ["generate", "--recipe", "recipe.yaml", "--input", "data.parquet", "--output", "out"]
        yield Case(
            f"parquet {label} (generate)",
            "rows",
            {"recipe.yaml": recipe, "data.parquet": content},
            [generate],
            ["data.parquet"],
        )


def database_cases(endpoint: str) -> Iterator[Case]:
    """Databases that are damaged, foreign, newer, locked or unreachable, under every command that opens one."""
    from optuna.storages._rdb.models import BaseModel as OptunaBase

    from promptsearch.store.models import Base

    space = dump(base_space(endpoint))
    profile = dump(proxy_profile())
    commands = [
        ["study", "list"],
        ["db", "upgrade"],
        ["study", "status", "corpus"],
        ["study", "create", "space.yaml"],
        ["export", "corpus"],
        ["templates", "list", "corpus"],
    ]
    changes: dict[str, str | None] = {
        f"dropped {t}": f"DROP TABLE {t};" for t in [*Base.metadata.tables, *OptunaBase.metadata.tables]
    }
    changes |= {
        "not sqlite": None,
        "empty file": None,
        "newer schema": "UPDATE promptsearch_alembic_version SET version_num = '0099';",
        "two schema rows": "INSERT INTO promptsearch_alembic_version VALUES ('0001');",
        "no schema row": "DELETE FROM promptsearch_alembic_version;",
        "older schema": "UPDATE promptsearch_alembic_version SET version_num = '0001';",
        "optuna schema newer": "UPDATE alembic_version SET version_num = 'v9.9.9.z';",
    }
    for label, change in changes.items():
        for command in commands:
            yield Case(
                f"db {label} ({' '.join(command[:2])})",
                "database",
                {"space.yaml": space, "proxy.yaml": profile},
                [[*command, "--db", DB]],
                before=_damage(change, label),
            )
    urls = {
        "unparsable URL": "not a url",
        "unknown dialect": "nosuchdb://host/x",
        "port not a number": "postgresql+psycopg://user:secret@localhost:abc/db",
        "nothing listening": f"postgresql+psycopg://user:secret@127.0.0.1:{free_port()}/db",
        "missing folder": "sqlite:///no/such/folder/db.sqlite",
        "a folder": "sqlite:///.",
    }
    for label, url in urls.items():
        for command in commands[:4]:
            yield Case(
                f"db {label} ({' '.join(command[:2])})",
                "database",
                {"space.yaml": space, "proxy.yaml": profile},
                [[*command, "--db", url]],
            )
    for command in (["study", "list"], ["db", "upgrade"], ["study", "create", "space.yaml"]):
        yield Case(
            f"db locked 8 s ({' '.join(command[:2])})",
            "database",
            {"space.yaml": space, "proxy.yaml": profile},
            [[*command, "--db", DB]],
            before=_lock_for(8),
        )


def _damage(change: str | None, label: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "db.sqlite"
        if label == "not sqlite":
            path.write_text("this is not a database")
        elif label == "empty file":
            path.write_bytes(b"")
        else:
            from promptsearch.store import upgrade

            upgrade(f"sqlite:///{path}")
            with sqlite3.connect(path) as conn:
                conn.executescript(change or "")

    return apply


def _lock_for(seconds: float) -> Callable[[Path], subprocess.Popen]:
    """A process holding the database's write lock for `seconds`, then letting go."""

    def apply(folder: Path) -> subprocess.Popen:
        from promptsearch.store import upgrade

        upgrade(f"sqlite:///{folder / 'db.sqlite'}")
        code = (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(folder / 'db.sqlite')!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
            f"time.sleep({seconds}); c.execute('COMMIT')\n"
        )
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return holder

    return apply


def study_cases(endpoint: str) -> Iterator[Case]:
    """Study names and life-cycle mistakes, against a database holding one real study."""
    space = dump(base_space(endpoint))
    files = {"space.yaml": space, "proxy.yaml": dump(proxy_profile())}
    for name in ["../escaped", "a/b c;rm", "-dash", "x" * 65, "", " ", "名前", "a\nb"]:
        yield Case(
            f"study create --name {name!r}",
            "study",
            files,
            [["study", "create", "space.yaml", "--name", name, "--db", DB]],
            ["--name"],
        )
    for args in [
        ["study", "start", "nothere"],
        ["study", "status", "nothere"],
        ["study", "delete", "nothere", "--yes"],
        ["study", "stop", "nothere"],
        ["export", "nothere"],
        ["plot", "nothere"],
        ["templates", "list", "nothere"],
        ["promote", "nothere", "3"],
        ["ablation", "status", "nothere", "3"],
        ["proxy", "calibrate", "--study", "nothere"],
        ["study", "start", "space.yaml", "--executor", "kubernetes"],
        ["study", "start", "space.yaml", "--workers", "2"],
        ["export", "corpus", "--top", "2", "--pareto"],
        ["export", "corpus", "--format", "xml"],
        ["proxy", "calibrate"],
        ["proxy", "calibrate", "--space", "space.yaml", "--study", "corpus"],
        ["proxy", "calibrate", "--space", "space.yaml", "--profile", "nothere"],
        ["study", "create", "space.yaml"],  # a second time: the study exists
        ["promote", "corpus", "99"],
        ["templates", "show", "corpus", "nothere"],
    ]:
        yield Case(
            f"study {' '.join(args)}",
            "study",
            files,
            [[*args, "--db", DB]],
            before=_created_study,
        )


def _created_study(folder: Path) -> None:
    result = run_cli(["study", "create", "space.yaml", "--db", DB], folder)
    if result.code != 0:
        raise RuntimeError(f"set-up: study create failed: {result.stderr}")


def endpoint_cases() -> Iterator[Case]:
    """An endpoint with nothing listening: each command that waits for one must say so, then stop in one line."""
    url = f"http://127.0.0.1:{free_port()}"
    space = base_space(url)
    space["generators"][0]["ready_timeout_seconds"] = 8
    recipe = base_recipe(url)
    recipe["recipe"]["generator"]["ready_timeout_seconds"] = 8
    files = {
        "space.yaml": dump(space),
        "proxy.yaml": dump(proxy_profile()),
        "recipe.yaml": dump(recipe),
        "in.jsonl": GOOD_DOCS,
    }
    yield Case(
        "endpoint silent (study start)",
        "endpoint",
        files,
        [["study", "start", "space.yaml", "--db", DB, "--workdir", "runs"]],
        [url],
    )
    yield Case(
        "endpoint silent (generate)",
        "endpoint",
        files,
        [["generate", "--recipe", "recipe.yaml", "--input", "in.jsonl", "--output", "out"]],
        [url],
    )


def usage_cases() -> Iterator[Case]:
    """Every command of the CLI, walked from its click tree: an unknown option, each required argument missing,
    an extra argument, each option without its value, and each numeric option given a value of the wrong kind."""
    import typing

    import typer.main
    from typer.core import TyperArgument, TyperOption

    from promptsearch.cli import app

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        if hasattr(command, "commands"):  # a group (typer ships its own click: no click.Group to test against)
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, command

    wrong = {int: ["abc", "-5", "1.5", "99999999999999999999"], float: ["abc", "nan", "-1e309"]}
    for path, command in walk(typer.main.get_command(app), []):
        name = " ".join(path)
        arguments = [p for p in command.params if isinstance(p, TyperArgument)]
        filler = ["x"] * len(arguments)
        yield Case(f"usage {name} --bogus", "usage", {}, [[*path, *filler, "--bogus"]], ["--bogus"])
        if any(a.required for a in arguments):
            yield Case(f"usage {name} without arguments", "usage", {}, [path], ["Missing"])
        yield Case(f"usage {name} extra arguments", "usage", {}, [[*path, *filler, "extra1", "extra2"]])
        for param in command.params:
            if not isinstance(param, TyperOption) or param.is_flag or not param.opts[0].startswith("-"):
                continue
            option = max(param.opts, key=len)
            yield Case(f"usage {name} {option} without value", "usage", {}, [[*path, *filler, option]], [option])
            annotation = param.type_descriptor.annotation
            for kind, values in wrong.items():
                if annotation is kind or kind in typing.get_args(annotation):
                    for value in values:
                        yield Case(f"usage {name} {option} {value}", "usage", {}, [[*path, *filler, option, value]], [])


KINDS: dict[str, Callable[[str], Iterator[Case]]] = {
    "space": space_cases,
    "config file": config_file_cases,
    "proxy profile": proxy_cases,
    "template file": template_cases,
    "recipe": recipe_cases,
    "rows": row_cases,
    "database": database_cases,
    "study": study_cases,
    "endpoint": lambda _url: endpoint_cases(),
    "usage": lambda _url: usage_cases(),
}


# ------------------------------------------------------------------------------------------- main


def run_case(case: Case, root: Path) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=root))
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    helper = case.before(folder) if case.before is not None else None
    steps: list[Step] = []
    try:
        for index, args in enumerate(case.steps):
            steps.append(run_cli(args, folder, STEP_TIMEOUT if index == 0 else RUN_TIMEOUT))
            if steps[-1].code != 0:
                break
    finally:
        if isinstance(helper, subprocess.Popen):
            helper.wait()
    return judge(case, folder, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. before, after)")
    parser.add_argument("--only", action="append", help="run only these kinds")
    parser.add_argument("--match", default="", help="run only cases whose id contains this")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
    import promptsearch.cli  # noqa: F401  (imported once, before the children fork)

    started = time.monotonic()
    outcomes: list[Outcome] = []
    with DummyEndpoint() as endpoint, tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        cases = [
            c for kind, make in KINDS.items() if not options.only or kind in options.only for c in make(endpoint.url)
        ]
        cases = [c for c in cases if options.match in c.id]
        for index, case in enumerate(cases, 1):
            outcome = run_case(case, Path(tmp))
            outcomes.append(outcome)
            mark = "" if outcome.verdict in ("refused", "accepted_ok") and not outcome.data_lost else " <--"
            seconds = sum(s["seconds"] for s in outcome.steps)
            print(f"[{index}/{len(cases)}] {outcome.verdict:22} {seconds:6.1f}s {case.id}{mark}", flush=True)
            if mark:
                for problem in [*outcome.problems, outcome.data_lost or ""]:
                    if problem:
                        print(f"      {problem}", flush=True)
    verdicts = Counter(o.verdict for o in outcomes)
    counts = {
        "cases": len(outcomes),
        "by_kind": dict(Counter(o.kind for o in outcomes)),
        "data_lost": sum(o.data_lost is not None for o in outcomes),
        "silent_waits_over_5s": sum(o.silent_wait for o in outcomes),
        "accepted_then_failing": verdicts["accepted_then_failing"],
        "unclear_refusals": verdicts["unclear"],
        "refused_clearly": verdicts["refused"],
        "accepted_and_worked": verdicts["accepted_ok"],
        "seconds": round(time.monotonic() - started),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bad_input_corpus{'-' + options.label if options.label else ''}.json"
    out.write_text(json.dumps({"counts": counts, "cases": [asdict(o) for o in outcomes]}, indent=1))
    print(json.dumps(counts, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
