"""Generator backends: the vLLM command datatrove builds from a space, and API keys kept out of storage."""

import asyncio
from pathlib import Path

import pytest
from conftest import REPO, news, seeded_recipe

from promptsearch.embedded import VllmServer
from promptsearch.generate import generate_dataset
from promptsearch.recipe import GeneratorSpec
from promptsearch.rephrase import GeneratorServers, rephrase, vllm_inference_config
from promptsearch.space import CorpusSpec, load_space
from promptsearch.store import Store


def _vllm_command(generator: GeneratorSpec, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The argv datatrove's VLLMServer would exec.

    Stand-in for a GPU node: vLLM is not installed here, so datatrove's dependency check is skipped and
    the process spawn is captured instead of run; the command itself is built by datatrove's own code.
    """
    from datatrove.pipeline.inference.servers import vllm_server

    captured: list[str] = []

    async def fake_exec(*argv: str, **_: object) -> None:
        captured.extend(argv)

    monkeypatch.setattr(vllm_server, "check_required_dependencies", lambda *a, **k: None)
    monkeypatch.setattr(vllm_server.asyncio, "create_subprocess_exec", fake_exec)
    config = vllm_inference_config(generator, {"model_max_context": generator.max_context})

    async def build() -> None:
        server = vllm_server.VLLMServer(config, rank=0)
        server._port = 8000
        await server._start_vllm_task()

    asyncio.run(build())
    return captured


def test_vllm_command_and_speculative_config_from_space(monkeypatch: pytest.MonkeyPatch) -> None:
    space = load_space(REPO / "search_spaces" / "finephrase.yaml")
    smol = _vllm_command(space.generator("smollm2-1.7b"), monkeypatch)
    assert smol[:3] == ["vllm", "serve", "HuggingFaceTB/SmolLM2-1.7B-Instruct"]
    assert smol[smol.index("--max-model-len") + 1] == "8192"
    assert '--speculative-config={"method": "suffix", "num_speculative_tokens": 32}' in smol
    assert {"--max-num-seqs=2048", "--max-num-batched-tokens=16384", "--gpu-memory-utilization=0.9"} <= set(smol)
    assert not any(arg.startswith("--tp") for arg in smol)  # tp=1 is vLLM's default; not passed

    llama = _vllm_command(
        space.generator("llama-3.2-1b").model_copy(update={"serving": {"tp": 2, "max_num_seqs": 512}}), monkeypatch
    )
    assert "--tensor-parallel-size=2" in llama and "--max-num-seqs=512" in llama
    assert '--speculative-config={"method": "ngram", "num_speculative_tokens": 7, "prompt_lookup_max": 6}' in llama


def test_endpoint_api_key_never_stored(
    tmp_path: Path, embedded_server: VllmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-DO-NOT-STORE-4242"
    monkeypatch.setenv("PROMPTSEARCH_TEST_KEY", secret)
    store = Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    generator = GeneratorSpec(
        name="remote",
        backend="endpoint",
        model=str(embedded_server.model_dir),
        endpoint_url=embedded_server.url,
        api_key_env="PROMPTSEARCH_TEST_KEY",
    )
    recipe = seeded_recipe(store, "table", generator, max_new_tokens=8)
    documents = news(1)
    source = CorpusSpec(format="embedded", path="lee_background", limit=1, max_chars=300)
    with GeneratorServers(tmp_path / "logs") as generators:
        assert rephrase(documents, recipe, store, generators, tmp_path).requests_made == 1
        generate_dataset(recipe, source, tmp_path / "dataset", generators)  # through datatrove's executor
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "executor.json" for p in written)  # datatrove's config dump exists and was checked
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_missing_api_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptsearch.errors import UserError

    monkeypatch.delenv("PROMPTSEARCH_TEST_KEY", raising=False)
    generator = GeneratorSpec(
        name="remote",
        backend="endpoint",
        model="m",
        endpoint_url="https://api.example.org/v1",
        api_key_env="PROMPTSEARCH_TEST_KEY",
    )
    with GeneratorServers(tmp_path) as generators, pytest.raises(UserError, match="PROMPTSEARCH_TEST_KEY is not set"):
        generators.inference_configs(generator, 1)
