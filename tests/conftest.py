"""Shared fixtures: one real embedded generator server for the session, tiny real search spaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from datatrove.data import Document

from promptsearch.corpus import read_corpus
from promptsearch.embedded import VllmServer, embedded_model, serving_plan
from promptsearch.recipe import GeneratorSpec, Recipe, Sampling
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import CorpusSpec
from promptsearch.store import Store

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """vLLM (the CPU build) on the embedded SmolLM2-135M: real model, real HTTP, one core (the tests' proxy
    training gets the other), shared by every test that reaches it as an `endpoint` generator."""
    model = embedded_model()
    settings = serving_plan().settings[0]
    server = VllmServer(model.path, tmp_path_factory.mktemp("server") / "server.log", settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL schema for this test; CI=true turns a missing server into a failure."""
    url = os.environ.get("PROMPTSEARCH_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("PROMPTSEARCH_TEST_PG_URL is not set: .ci/run starts PostgreSQL and sets it")
        pytest.skip("no PostgreSQL (set PROMPTSEARCH_TEST_PG_URL, as .ci/run does)")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def slurm() -> str:
    """A real Slurm cluster (`.ci/slurm start`); CI=true turns a missing one into a failure."""
    problem = None
    if shutil.which("sbatch") is None:
        problem = "sbatch is not on PATH"
    else:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
        if result.returncode != 0 or not {"idle", "mixed", "allocated"} & set(result.stdout.split()):
            problem = f"no Slurm node is up: {(result.stderr or result.stdout).strip()}"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}: .ci/run starts Slurm with .ci/slurm start")
        pytest.skip(f"{problem} (start one with .ci/slurm start, as .ci/run does)")
    return "debug"


def seeded_recipe(
    store: Store,
    template_name: str,
    generator: GeneratorSpec,
    *,
    max_new_tokens: int = 12,
    best_of_n: int = 1,
    temperature: float = 0.7,
    seed: int = 0,
) -> Recipe:
    """A recipe for a seed template, registered in `store` as a study would."""
    template = SEED_TEMPLATES[template_name]
    template_id = store.add_template(template.name, template.family, template.text, template.text_hash, "seed")
    sampling = Sampling(temperature=temperature, top_p=0.95, max_new_tokens=max_new_tokens)
    return Recipe.for_template(
        template_id, template, generator=generator, sampling=sampling, best_of_n=best_of_n, mix_ratio=0.5, seed=seed
    )


def news(limit: int) -> list[Document]:
    """The first `limit` Lee news articles, cut to 300 characters."""
    return read_corpus(CorpusSpec(format="embedded", path="lee_background", limit=limit, max_chars=300)).documents


def write_space(path: Path, server: VllmServer | None, **overrides: object) -> Path:
    """A tiny real space: 2 short news documents, 12 new tokens, the micro proxy (or none)."""
    generator = (
        {
            "name": "smollm2-135m",
            "backend": "endpoint",
            "model": str(server.model_dir),
            "endpoint_url": server.url,
            "concurrency": 8,
        }
        if server is not None
        else {"name": "smollm2-135m", "backend": "embedded", "model": "embedded"}
    )
    space = {
        "name": "tiny",
        "objectives": [{"metric": "proxy.heldout_bpb", "direction": "minimize"}],
        "source": {"format": "embedded", "path": "lee_background", "limit": 2, "max_chars": 300},
        "mix_in": {"format": "embedded", "path": "lee_background", "skip": 100, "limit": 60},
        "heldout": {"format": "embedded", "path": "lee", "limit": 10},
        "templates": {"seeds": ["faq", "table"]},
        "generators": [generator],
        "sampling": {"temperature": {"low": 0.2, "high": 1.0}, "max_new_tokens": [12]},
        "best_of_n": [1, 2],
        "mix_ratio": {"low": 0.3, "high": 0.7},
        "proxy": str(DATA / "proxy-micro.yaml"),
        # 12 new tokens truncate nearly every output: only the pruning test sets real thresholds
        "measure": {
            "embeddings": False,
            "prune": {
                "min_unique_prefix_ratio_10": 0,
                "min_number_recall": 0,
                "max_echo_rate": 1,
                "max_failure_rate": 1,
            },
        },
        "budget": {"trials": 2},
        "seed": 0,
    }
    space.update(overrides)
    path.write_text(yaml.safe_dump(space))
    return path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=os.environ | (env or {}),
        timeout=timeout,
    )
