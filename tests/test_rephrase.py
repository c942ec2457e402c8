import os
import signal
import threading
import time
from pathlib import Path

from conftest import news, seeded_recipe

from promptsearch.embedded import ServerSettings, ServingPlan, TransformersServer
from promptsearch.recipe import GeneratorSpec
from promptsearch.rephrase import GeneratorServers, rephrase
from promptsearch.store import Store
from promptsearch.store.models import GenerationRow


def test_generation_round_trip_and_cache(tmp_path: Path, embedded_server: TransformersServer) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    documents = news(2)
    generator = GeneratorSpec(
        name="smol", backend="endpoint", model=str(embedded_server.model_dir), endpoint_url=embedded_server.url
    )
    recipe = seeded_recipe(store, "faq", generator, best_of_n=2, seed=3)
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


def test_server_killed_mid_trial_resumes_each_document_once(tmp_path: Path) -> None:
    """Two replicas share the documents; one is killed after the first sample arrives."""
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    documents = news(6)
    generator = GeneratorSpec(name="smol", backend="embedded", model="embedded", concurrency=2)
    recipe = seeded_recipe(store, "summary", generator, max_new_tokens=24, temperature=0.5)
    with GeneratorServers(tmp_path / "logs", ServingPlan(2, ServerSettings(threads=1))) as generators:
        replicas = generators.embedded_servers(recipe.generator, recipe.sampling)
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
    assert result.server_restarts == 1
    assert result.requests_made == len(documents)
    with store.session() as s:
        doc_ids = [row.doc_id for row in s.query(GenerationRow)]
    assert sorted(doc_ids) == sorted(d.id for d in documents)  # each document generated exactly once
    for replica in replicas.servers:  # both replicas served requests
        assert 'POST /v1/chat/completions HTTP/1.1" 200' in replica.log_path.read_text()
