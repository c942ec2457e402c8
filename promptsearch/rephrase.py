"""Stage 2, rephrase: the trial's template × generator × sampling over the source documents.

In: source `Document`s, a `Recipe`, the `Store` (generation cache) and the worker's `GeneratorServers`.
Out: `RephraseResult` — for every document, its `best_of_n` cached samples, plus request counts
and timing for cost accounting.

Requests go through datatrove's `InferenceRunner` (no hand-rolled HTTP client). Every sample is
keyed by hash(template text, model id+revision, sampling, seed, doc id, sample index) and written
to the cache the moment it arrives, so a crashed or interrupted trial resumes with only the
missing requests and an identical trial makes none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.writers import JsonlWriter

from promptsearch.config import api_key_from_env
from promptsearch.corpus import truncate_at_newline
from promptsearch.embedded import (
    LocalModel,
    ServerReplicas,
    ServerSettings,
    ServingPlan,
    embedded_model,
    serving_plan,
)
from promptsearch.endpoint import wait_for_endpoint
from promptsearch.errors import UserError
from promptsearch.pipelines import run_inference_ranks
from promptsearch.recipe import GeneratorSpec, Recipe
from promptsearch.store import Store
from promptsearch.store.models import GenerationRow

MAX_SERVER_RESTARTS = 3


@dataclass
class RephraseResult:
    samples: dict[str, list[GenerationRow]]  # doc id → samples in index order
    requests_made: int
    requests_cached: int
    wall_seconds: float
    completion_tokens_generated: int = 0
    prompt_tokens_generated: int = 0
    server_starts: int = 0  # generator server processes started during this call, restarts included
    server_restarts: int = 0


class GeneratorServers:
    """The worker's generator backends: an embedded model's vLLM servers start once and serve all its trials
    and sampling settings (sampling travels in each request)."""

    def __init__(self, log_dir: Path, plan: ServingPlan | None = None):
        self.log_dir = log_dir
        self.plan = plan or serving_plan()
        self._servers: dict[tuple[Path, ServingPlan], ServerReplicas] = {}
        self._local: LocalModel | None = None

    def __enter__(self) -> GeneratorServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for replicas in self._servers.values():
            replicas.stop()
        self._servers.clear()

    def starts(self) -> int:
        """Server processes started so far (restarts included)."""
        return sum(replicas.starts for replicas in self._servers.values())

    def restarts(self) -> int:
        return sum(replicas.restarts for replicas in self._servers.values())

    def restarted_since(self, count: int, within_s: float = 3.0) -> bool:
        """Whether a server died and was restarted (the watcher notices a death within a second)."""
        deadline = time.monotonic() + within_s
        while self.restarts() == count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.restarts() > count

    def wait_ready(self) -> None:
        """Block until restarted embedded servers answer again."""
        for replicas in self._servers.values():
            replicas.wait_ready()

    def identity(self, generator: GeneratorSpec) -> tuple[str, str]:
        """(model id, revision) as used in cache keys and recipes; the embedded backend's revision also names
        the dtype, engine version, compile mode and flags it serves with, which change the samples."""
        if generator.backend == "embedded" and generator.model == "embedded":
            model_id, revision = self._embedded().model_id, self._embedded().revision
        else:
            model_id, revision = generator.model, generator.revision or "unversioned"
        if generator.backend != "embedded":
            return model_id, revision
        return model_id, f"{revision}-{self._plan_for(generator).settings[0].revision_suffix()}"

    def _embedded(self) -> LocalModel:
        if self._local is None:
            self._local = embedded_model()
        return self._local

    def _plan_for(self, generator: GeneratorSpec) -> ServingPlan:
        return self.plan.with_flags(generator.max_context, generator.serving)

    def _replicas(self, generator: GeneratorSpec) -> ServerReplicas:
        """This generator's servers, started or not; one generator is served at a time."""
        model_dir = self._embedded().path if generator.model == "embedded" else Path(generator.model)
        if not model_dir.is_dir():
            raise UserError(f"generator {generator.name}: model folder not found: {model_dir}")
        key = (model_dir, self._plan_for(generator))
        if key not in self._servers:
            self.close()  # another model or serving setting replaces the running servers (memory)
            self._servers[key] = ServerReplicas(model_dir, self.log_dir, key[1])
        return self._servers[key]

    def embedded_servers(self, generator: GeneratorSpec) -> ServerReplicas:
        """The running servers for this generator, started (or waited for, after `prestart`) on first use."""
        replicas = self._replicas(generator)
        if not replicas.ready:
            try:
                replicas.start()  # a server that dies mid-trial comes back on the same port
            except BaseException:
                self.close()
                raise
        return replicas

    def prestart(self, generator: GeneratorSpec) -> None:
        """Launch an embedded generator's servers without waiting, so that they load while the worker reads
        its corpora and models; its first trial then waits only for what is left of their start."""
        if generator.backend == "embedded":
            self._replicas(generator).launch()

    def embedded_endpoint(self, fallback: GeneratorSpec) -> tuple[str, str]:
        """(URL, served model name) of a running server of the embedded model, else of `fallback`'s servers
        (started now): the proposer LM shares the generator's server instead of starting its own."""
        embedded = self._embedded().path
        for (model_dir, _), replicas in self._servers.items():
            if model_dir == embedded and replicas.ready:
                return replicas.urls[0], str(model_dir)
        replicas = self.embedded_servers(fallback)
        return replicas.urls[0], str(replicas.model_dir)

    def inference_configs(
        self, generator: GeneratorSpec, rollouts_in_flight: int, reachable_here: bool = True
    ) -> list[InferenceConfig]:
        """datatrove InferenceConfigs for this generator, one per server replica (the embedded backend
        may run several; the others one); starts the embedded servers if needed. An endpoint is first
        waited for (`wait_for_endpoint`) unless it is only `reachable_here=False` (from Slurm nodes)."""
        if generator.backend == "embedded":
            replicas = self.embedded_servers(generator)
            share = generator.model_copy(update={"concurrency": max(1, generator.concurrency // len(replicas.urls))})
            common = common_inference_settings(share, rollouts_in_flight)
            return [
                InferenceConfig(
                    server_type="endpoint", endpoint_url=url, model_name_or_path=str(replicas.model_dir), **common
                )
                for url in replicas.urls
            ]
        common = common_inference_settings(generator, rollouts_in_flight)
        if generator.backend == "endpoint":
            _export_api_key(generator)
            if reachable_here:
                wait_for_endpoint(
                    str(generator.endpoint_url), f"generator {generator.name}", generator.ready_timeout_seconds
                )
            return [
                InferenceConfig(
                    server_type="endpoint",
                    endpoint_url=generator.endpoint_url,
                    model_name_or_path=generator.model,
                    # datatrove polls /v1/models every 5 s up to 300 times, then retries: bound it the same way
                    server_ready_delay_sec=1.0,
                    server_ready_max_attempts=max(1, math.ceil(generator.ready_timeout_seconds)),
                    server_start_max_retries=0,
                    **common,
                )
            ]
        _vllm_command_on_path()
        return [vllm_inference_config(generator, common)]


def _vllm_command_on_path() -> None:
    # datatrove's vLLM server type runs the `vllm` command it finds on PATH; a virtual environment used
    # without activation (`.venv/bin/promptsearch`, `make test`) has it beside its python, not on PATH.
    bin_dir = Path(sys.executable).parent
    if shutil.which("vllm") is None and (bin_dir / "vllm").is_file():
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def common_inference_settings(generator: GeneratorSpec, rollouts_in_flight: int) -> dict[str, Any]:
    """InferenceConfig fields every backend shares: context, concurrency, timeouts."""
    return {
        "model_max_context": generator.max_context,
        "max_concurrent_generations": generator.concurrency,
        "max_concurrent_documents": max(1, generator.concurrency // max(1, rollouts_in_flight)),
        "metric_interval": 3600,
        "request_timeout": 900,
    }


def on_datatrove_vllm(generator: GeneratorSpec) -> GeneratorSpec:
    """An embedded generator as datatrove's own vLLM server type runs it inside a (CPU) Slurm job: the same
    model folder and vLLM flags as the worker's embedded servers; other backends unchanged."""
    if generator.backend != "embedded":
        return generator
    model = embedded_model().path if generator.model == "embedded" else Path(generator.model)
    settings = ServerSettings(max_model_len=generator.max_context)
    return generator.model_copy(
        update={"backend": "vllm", "model": str(model), "serving": settings.vllm_flags() | generator.serving}
    )


def vllm_inference_config(generator: GeneratorSpec, common: dict[str, Any]) -> InferenceConfig:
    """vLLM on GPU nodes: `serving` flags become vLLM CLI flags (datatrove builds the command)."""
    serving = dict(generator.serving)
    tp, dp = int(serving.pop("tp", 1)), int(serving.pop("dp", 1))
    kwargs: dict[str, Any] = {k.replace("_", "-"): v for k, v in serving.items()}
    if generator.speculative is not None:
        kwargs["speculative-config"] = json.dumps(generator.speculative, sort_keys=True)
    if generator.revision:
        kwargs["revision"] = generator.revision
    return InferenceConfig(
        server_type="vllm",
        model_name_or_path=generator.model,
        tp=tp,
        dp=dp,
        model_kwargs=kwargs,
        server_start_timeout_sec=1800,
        **common,
    )


def _export_api_key(generator: GeneratorSpec) -> None:
    # datatrove's executor writes its InferenceConfig, api_key included, to executor.json in the
    # logging folder (ExecutorJSONEncoder dumps dataclasses whole). The key is therefore never put in
    # the config: datatrove's endpoint server builds an AsyncOpenAI client, which reads
    # OPENAI_API_KEY from the environment of this process when api_key is None.
    if generator.api_key_env is not None:
        os.environ["OPENAI_API_KEY"] = api_key_from_env(generator.api_key_env, f"generator {generator.name}")


def generation_key(
    template_text: str, model_id: str, revision: str, sampling: dict[str, Any], seed: int, doc_id: str, index: int
) -> str:
    """The cache key of one sample: everything that changes its text, so a key never serves another sample."""
    payload = json.dumps([template_text, model_id, revision, sampling, seed, doc_id, index], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def prompt_text(document: Document, recipe: Recipe) -> str:
    # FinePhrase's rule: the input may take (context - max new tokens) * 3 characters.
    budget = max(256, (recipe.generator.max_context - recipe.sampling.max_new_tokens) * 3)
    return recipe.template_text.replace("{document}", truncate_at_newline(document.text, budget))


def request_payload(document: Document, recipe: Recipe, sample_index: int) -> dict[str, Any]:
    """The OpenAI-style chat request for one sample (datatrove adds the model name)."""
    return {
        "messages": [{"role": "user", "content": prompt_text(document, recipe)}],
        **recipe.sampling.request_fields(),
        "seed": recipe.seed + sample_index,
    }


def rephrase(
    documents: list[Document], recipe: Recipe, store: Store, generators: GeneratorServers, workdir: Path
) -> RephraseResult:
    start = time.monotonic()
    model_id, revision = generators.identity(recipe.generator)
    sampling = recipe.sampling.request_fields()
    keys = {
        doc.id: [
            generation_key(recipe.template_text, model_id, revision, sampling, recipe.seed + i, doc.id, i)
            for i in range(recipe.best_of_n)
        ]
        for doc in documents
    }
    cached = store.cached_generations([k for ks in keys.values() for k in ks])
    missing = [doc for doc in documents if any(k not in cached for k in keys[doc.id])]
    produced: list[GenerationRow] = []
    starts_before, restarts_before = generators.starts(), generators.restarts()
    if missing:
        produced = _generate(missing, keys, cached, recipe, model_id, revision, sampling, store, generators, workdir)
    rows = cached | {row.key: row for row in produced}
    absent = [k for ks in keys.values() for k in ks if k not in rows]
    if absent:
        raise RuntimeError(f"{len(absent)} generation request(s) failed; see the logs under {workdir}")
    return RephraseResult(
        samples={doc_id: [rows[k] for k in ks] for doc_id, ks in keys.items()},
        requests_made=len(produced),
        requests_cached=sum(len(ks) for ks in keys.values()) - len(produced),
        wall_seconds=time.monotonic() - start,
        completion_tokens_generated=sum(r.completion_tokens for r in produced),
        prompt_tokens_generated=sum(r.prompt_tokens for r in produced),
        server_starts=generators.starts() - starts_before,
        server_restarts=generators.restarts() - restarts_before,
    )


def _generate(
    documents: list[Document],
    keys: dict[str, list[str]],
    cached: dict[str, GenerationRow],
    recipe: Recipe,
    model_id: str,
    revision: str,
    sampling: dict[str, Any],
    store: Store,
    generators: GeneratorServers,
    workdir: Path,
) -> list[GenerationRow]:
    produced: list[GenerationRow] = []
    have = set(cached)

    async def one_sample(document: Document, index: int, generate: Any) -> None:
        result = await generate(request_payload(document, recipe, index))
        row = GenerationRow(
            key=keys[document.id][index],
            template_hash=recipe.template_hash,
            model_id=model_id,
            model_revision=revision,
            sampling=sampling,
            seed=recipe.seed + index,
            doc_id=document.id,
            sample_index=index,
            text=result.text,
            finish_reason=result.finish_reason or "",
            prompt_tokens=int(result.usage.get("prompt_tokens", 0)),
            completion_tokens=int(result.usage.get("completion_tokens", 0)),
        )
        store.put_generation(row)
        produced.append(row)

    # One datatrove rollout per document issues its missing best-of-N samples concurrently: the
    # rollout callback does not expose its rollout index, which the cache key needs.
    async def rollout(document: Document, generate: Any) -> dict[str, int] | None:
        import asyncio

        todo = [i for i, k in enumerate(keys[document.id]) if k not in have]
        await asyncio.gather(*(one_sample(document, i, generate) for i in todo))
        return {"samples": len(todo)}

    # A dying embedded server is restarted by its watcher, but datatrove aborts the run on the dropped
    # connection (it reads as HTTP 500), so the run is repeated for what is still missing, from the cache.
    for attempt in range(MAX_SERVER_RESTARTS + 1):
        restarts = generators.restarts()
        todo = [d for d in documents if any(k not in have for k in keys[d.id])]
        run_dir = workdir / "rephrase" / uuid.uuid4().hex[:8]
        runners = [
            InferenceRunner(
                rollout_fn=rollout,
                config=config,
                output_writer=JsonlWriter(str(run_dir / "output"), output_filename="${rank}.jsonl", compression=None),
            )
            for config in generators.inference_configs(recipe.generator, recipe.best_of_n)
        ]
        try:
            run_inference_ranks(runners, todo, run_dir / "logs")
            break
        except Exception:
            if attempt == MAX_SERVER_RESTARTS or not generators.restarted_since(restarts):
                raise
            generators.wait_ready()
        finally:
            have.update(row.key for row in produced)
    return produced
