"""Stage 2, rephrase, on vLLM's CPU build: the cache, per-request sampling and seeds, a server killed
mid-trial, and datatrove's own vLLM server type (the GPU cluster's path) run for real."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import news, seeded_recipe

from promptsearch.embedded import ServerSettings, VllmServer, embedded_model, serving_plan
from promptsearch.errors import UserError
from promptsearch.propose.lm import EMBEDDED_PROPOSER
from promptsearch.recipe import GeneratorSpec
from promptsearch.rephrase import GeneratorServers, rephrase
from promptsearch.store import Store
from promptsearch.store.models import GenerationRow


def _endpoint(server: VllmServer) -> GeneratorSpec:
    return GeneratorSpec(name="smol", backend="endpoint", model=str(server.model_dir), endpoint_url=server.url)


def test_generation_round_trip_and_cache(tmp_path: Path, embedded_server: VllmServer) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    documents = news(2)
    recipe = seeded_recipe(store, "faq", _endpoint(embedded_server), best_of_n=2, seed=3)
    with GeneratorServers(tmp_path / "logs") as generators:
        first = rephrase(documents, recipe, store, generators, tmp_path)
        again = rephrase(documents, recipe, store, generators, tmp_path)
        best_of_one = rephrase(documents, recipe.model_copy(update={"best_of_n": 1}), store, generators, tmp_path)
    assert (first.requests_made, first.requests_cached) == (4, 0)
    assert 0 < first.completion_tokens_generated <= 4 * 12
    assert (again.requests_made, again.requests_cached) == (0, 4)
    assert (best_of_one.requests_made, best_of_one.requests_cached) == (0, 2)  # best-of-1 from the cached 2
    for doc in documents:
        texts = [s.text for s in first.samples[doc.id]]
        assert [s.text for s in again.samples[doc.id]] == texts
        assert any(t.strip() for t in texts)
    with store.session() as s:
        assert s.query(GenerationRow).count() == 4


def _texts(tmp_path: Path, server: VllmServer, name: str, temperature: float, best_of_n: int) -> list[str]:
    """Every sample's text, generated afresh (a new store: no cache) for 2 documents."""
    store = Store.open(f"sqlite:///{tmp_path / f'{name}.db'}")
    recipe = seeded_recipe(
        store, "faq", _endpoint(server), best_of_n=best_of_n, temperature=temperature, max_new_tokens=24, seed=7
    )
    with GeneratorServers(tmp_path / "logs") as generators:
        result = rephrase(news(2), recipe, store, generators, tmp_path / name)
    return [sample.text for samples in result.samples.values() for sample in samples]


def test_seeded_samples_repeat_and_sampling_travels_per_request(tmp_path: Path, embedded_server: VllmServer) -> None:
    """One running server, three settings: the same seeds give the same texts twice; at temperature 1 the
    seeds of one document differ; at temperature 0 they are the same greedy text (the server did not start
    with either setting: each request carries its own)."""
    hot = _texts(tmp_path, embedded_server, "hot", 1.0, 3)
    assert _texts(tmp_path, embedded_server, "hot-again", 1.0, 3) == hot
    assert len(set(hot[:3])) > 1 and len(set(hot[3:])) > 1
    greedy = _texts(tmp_path, embedded_server, "greedy", 0.0, 3)
    assert len(set(greedy[:3])) == 1 and len(set(greedy[3:])) == 1


def test_server_killed_mid_trial_resumes_each_document_once(tmp_path: Path) -> None:
    """Two replicas (one per core) share the documents; one is killed after the first sample arrives."""
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    documents = news(6)
    generator = GeneratorSpec(name="smol", backend="embedded", model="embedded", concurrency=2, max_context=2048)
    recipe = seeded_recipe(store, "summary", generator, max_new_tokens=24, temperature=0.5)
    with GeneratorServers(tmp_path / "logs", serving_plan(max_replicas=2)) as generators:
        assert "-vllm" in generators.identity(generator)[1]  # the engine's version is part of the cache key
        generators.prestart(recipe.generator)  # launched without waiting, as a worker does at its start
        replicas = generators.embedded_servers(recipe.generator)  # waits for those, starts none
        assert generators.starts() == len(replicas.servers)
        server = replicas.servers[0]

        def kill_after_first_sample() -> None:
            while True:
                with store.session() as s:
                    if s.query(GenerationRow).count() >= 1:
                        break
                time.sleep(0.1)
            os.kill(server.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_after_first_sample, daemon=True)
        killer.start()
        result = rephrase(documents, recipe, store, generators, tmp_path)
        killer.join(timeout=1)
        starts = generators.starts()
        url, _ = generators.embedded_endpoint(EMBEDDED_PROPOSER)  # the proposer LM shares the running servers
        assert url in replicas.urls and generators.starts() == starts
    assert result.server_restarts == 1
    assert result.server_starts == 1  # the restart: the replicas were started before the call
    assert result.requests_made == len(documents)
    with store.session() as s:
        doc_ids = [row.doc_id for row in s.query(GenerationRow)]
    assert sorted(doc_ids) == sorted(d.id for d in documents)  # each document generated exactly once
    if len(replicas.servers) > 1:  # both replicas served requests
        for replica in replicas.servers:
            assert 'POST /v1/chat/completions HTTP/1.1" 200' in replica.log_path.read_text()


def test_datatrove_vllm_server_type_rephrases_on_the_cpu_build(tmp_path: Path) -> None:
    """The `vllm` backend (GPU clusters) as it runs there: datatrove starts `vllm serve` itself."""
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    documents = news(3)
    generator = GeneratorSpec(
        name="smol",
        backend="vllm",
        model=str(embedded_model().path),
        max_context=2048,
        concurrency=4,
        serving=ServerSettings(max_model_len=2048).vllm_flags(),
    )
    recipe = seeded_recipe(store, "faq", generator, max_new_tokens=16)
    with GeneratorServers(tmp_path / "logs") as generators:
        result = rephrase(documents, recipe, store, generators, tmp_path)
    assert result.requests_made == len(documents)
    assert all(samples[0].text.strip() for samples in result.samples.values())
    assert 0 < result.completion_tokens_generated <= 16 * len(documents)


def test_a_model_folder_vllm_cannot_load_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    generator = GeneratorSpec(name="broken", backend="embedded", model=str(folder), max_context=2048)
    with GeneratorServers(tmp_path / "logs") as generators, pytest.raises(UserError) as error:
        generators.embedded_servers(generator)
    message = str(error.value)
    assert "exited at start" in message and "\n" not in message
    assert "no-such-architecture" in message or "Error" in message
