"""Rephrase throughput: the generation engines side by side on the embedded SmolLM2-135M-Instruct.

Same 64 Lee articles (<= 800 characters, cut at a newline), FAQ template, 160 new tokens, temperature 0.7,
top_p 0.95, in one run:
- `naive`: a one-request-at-a-time `model.generate()` loop on the model as `from_pretrained` loads it
  (float32), on the first `--naive-docs` articles (tokens/s does not depend on how many);
- `transformers-serve`: `transformers serve --continuous-batching` as the embedded backend ran it before
  vLLM: two single-threaded servers, one per core, bfloat16, a 512 x 32-token block pool, sampling baked
  into the served folder's generation_config (it ignores a request's sampling);
- vLLM's CPU build, as the embedded backend runs it (`promptsearch.embedded`): two single-threaded
  servers bound one per core, or one two-threaded server; eager (no torch.compile) or compiled; and with
  n-gram speculative decoding (FinePhrase's model-free method; `suffix` needs arctic-inference, which has
  no CPU build).
Every server engine is driven the same way: datatrove's InferenceRunner, one rank per server, 32 requests in
flight in all. Each engine's servers start once (timed: launch until /v1/models answers; RSS summed over
the server's processes after the runs), then `--repeats` runs with fresh seeds; medians are reported.
Writes benchmarks/results/rephrase_throughput.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import torch
from datatrove.data import Document
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.writers import JsonlWriter
from transformers import AutoModelForCausalLM, AutoTokenizer

from promptsearch.corpus import read_corpus
from promptsearch.embedded import (
    ServerReplicas,
    ServingPlan,
    embedded_model,
    engine_version,
    free_port,
    serving_plan,
)
from promptsearch.pipelines import run_inference_ranks
from promptsearch.recipe import GeneratorSpec, Recipe, Sampling
from promptsearch.rephrase import prompt_text
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import CorpusSpec

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLING = Sampling(temperature=0.7, top_p=0.95, max_new_tokens=160)
NGRAM = json.dumps({"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2})


def naive_loop(documents: list[Document], recipe: Recipe, model: Any, tokenizer: Any) -> tuple[int, float]:
    tokens, start = 0, time.monotonic()
    for document in documents:
        messages = [{"role": "user", "content": prompt_text(document, recipe)}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=recipe.sampling.max_new_tokens,
                do_sample=True,
                temperature=recipe.sampling.temperature,
                top_p=recipe.sampling.top_p,
            )
        tokens += out.shape[1] - inputs["input_ids"].shape[1]
    return tokens, time.monotonic() - start


def drive(urls: list[str], model_name: str, documents: list[Document], recipe: Recipe, workdir: Path) -> int:
    """All documents through InferenceRunner ranks, one per URL; returns the completion tokens."""
    tokens = 0
    seeds = {document.id: recipe.seed + index for index, document in enumerate(documents)}

    async def rollout(document: Document, generate: Any) -> dict[str, int]:
        nonlocal tokens
        payload = {"messages": [{"role": "user", "content": prompt_text(document, recipe)}]}
        result = await generate(payload | recipe.sampling.request_fields() | {"seed": seeds[document.id]})
        tokens += int(result.usage.get("completion_tokens", 0))
        return {}

    share = max(1, 32 // len(urls))
    runners = [
        InferenceRunner(
            rollout_fn=rollout,
            config=InferenceConfig(
                server_type="endpoint",
                endpoint_url=url,
                model_name_or_path=model_name,
                max_concurrent_generations=share,
                max_concurrent_documents=share,
                metric_interval=3600,
            ),
            output_writer=JsonlWriter(str(workdir / "output"), output_filename="${rank}.jsonl", compression=None),
        )
        for url in urls
    ]
    run_inference_ranks(runners, documents, workdir / "logs")
    return tokens


def group_rss_gb(leaders: list[int]) -> float:
    """RSS of every process in the process groups these servers lead (each is started with setsid)."""
    total = 0
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) in leaders:
                total += process.memory_info().rss
        except (psutil.Error, ProcessLookupError):
            continue
    return total / 2**30


class TransformersServe:
    """The pre-vLLM embedded server, started here only as the baseline."""

    def __init__(self, model_dir: Path, log_dir: Path, replicas: int):
        self.folder = log_dir / "served-model"
        self.folder.mkdir(parents=True)
        for item in model_dir.iterdir():
            if item.name != "generation_config.json":
                (self.folder / item.name).symlink_to(item.resolve())
        config = json.loads((model_dir / "generation_config.json").read_text())
        config |= {"do_sample": True, "temperature": SAMPLING.temperature, "top_p": SAMPLING.top_p, "top_k": None}
        (self.folder / "generation_config.json").write_text(json.dumps(config))
        self.ports = [free_port() for _ in range(replicas)]
        hub_cache = log_dir / "hf-hub"
        hub_cache.mkdir()
        env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "OMP_NUM_THREADS": "1"}
        self.processes = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "transformers.cli.transformers", "serve", str(self.folder)),
                    *("--continuous-batching", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)),
                    *("--cb-num-blocks", "512", "--cb-block-size", "32", "--cb-max-batch-tokens", "4096"),
                    *("--dtype", "bfloat16", "--log-level", "warning"),
                ],
                stdout=(log_dir / f"serve-{port}.log").open("wb"),
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            for port in self.ports
        ]
        for port in self.ports:
            _wait_answering(f"http://127.0.0.1:{port}")

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait()


def _wait_answering(url: str, timeout: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer")


def vllm_plan(replicas: int, enforce_eager: bool, speculative: bool) -> ServingPlan:
    plan = serving_plan(max_replicas=replicas)
    flags = (("speculative_config", NGRAM),) if speculative else ()
    return ServingPlan(
        tuple(replace(s, max_model_len=2048, enforce_eager=enforce_eager, flags=flags) for s in plan.settings)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--naive-docs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--engines",
        default="naive,transformers-serve,vllm-2x1-eager,vllm-2x1-compiled,vllm-1x2-eager,vllm-2x1-eager-ngram",
    )
    args = parser.parse_args()

    documents = read_corpus(
        CorpusSpec(format="embedded", path="lee_background", limit=args.docs, max_chars=800)
    ).documents
    local = embedded_model()
    generator = GeneratorSpec(name="smollm2-135m", backend="embedded", model="embedded")

    def recipe(repeat: int) -> Recipe:
        template = SEED_TEMPLATES["faq"]
        return Recipe.for_template(
            1, template, generator=generator, sampling=SAMPLING, best_of_n=1, mix_ratio=0.5, seed=1000 * repeat
        )

    engines: dict[str, Callable[[Path], tuple[list[str], str, Callable[[], None], list[int]]]] = {}

    def vllm_engine(replicas: int, eager: bool, speculative: bool) -> Callable[[Path], Any]:
        def start(tmp: Path) -> tuple[list[str], str, Callable[[], None], list[int]]:
            servers = ServerReplicas(local.path, tmp / "logs", vllm_plan(replicas, eager, speculative))
            servers.start()
            return servers.urls, str(local.path), servers.stop, [s.process.pid for s in servers.servers]

        return start

    def transformers_engine(tmp: Path) -> tuple[list[str], str, Callable[[], None], list[int]]:
        serve = TransformersServe(local.path, tmp, replicas=2)
        return serve.urls, str(serve.folder), serve.stop, [p.pid for p in serve.processes]

    engines["transformers-serve"] = transformers_engine
    engines["vllm-2x1-eager"] = vllm_engine(2, True, False)
    engines["vllm-2x1-compiled"] = vllm_engine(2, False, False)
    engines["vllm-1x2-eager"] = vllm_engine(1, True, False)
    engines["vllm-2x1-eager-ngram"] = vllm_engine(2, True, True)

    results: dict[str, Any] = {}
    for name in args.engines.split(","):
        runs = []
        if name == "naive":
            tokenizer = AutoTokenizer.from_pretrained(local.path)
            model = AutoModelForCausalLM.from_pretrained(local.path).eval()
            for repeat in range(args.repeats):
                torch.manual_seed(repeat)
                tokens, seconds = naive_loop(documents[: args.naive_docs], recipe(repeat), model, tokenizer)
                runs.append({"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})
                print(name, json.dumps(runs[-1]), flush=True)
            results[name] = {"runs": runs, "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs)}
            del model
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        start = time.monotonic()
        urls, model_name, stop, leaders = engines[name](tmp)
        start_seconds = time.monotonic() - start
        try:
            for repeat in range(args.repeats):
                began = time.monotonic()
                tokens = drive(urls, model_name, documents, recipe(repeat), tmp / f"run-{repeat}")
                seconds = time.monotonic() - began
                runs.append({"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})
                print(name, json.dumps(runs[-1]), flush=True)
            rss = group_rss_gb(leaders)
        finally:
            stop()
            shutil.rmtree(tmp, ignore_errors=True)
        results[name] = {
            "runs": runs,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
            "start_seconds": start_seconds,
            "rss_gb": rss,
            "servers": len(urls),
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}), flush=True)

    ratios = {}
    best_vllm = max(
        (n for n in results if n.startswith("vllm")), key=lambda n: results[n]["tokens_per_s"], default=None
    )
    if best_vllm:
        for baseline in ("transformers-serve", "naive"):
            if baseline in results:
                ratios[f"{best_vllm}/{baseline}"] = (
                    results[best_vllm]["tokens_per_s"] / results[baseline]["tokens_per_s"]
                )
    report = {
        "benchmark": "rephrase_throughput",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "vllm": engine_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {
            "documents": len(documents),
            "naive_documents": min(args.naive_docs, len(documents)),
            "max_chars": 800,
            **SAMPLING.request_fields(),
            "template": "faq",
            "in_flight": 32,
            "repeats": args.repeats,
            "ngram": json.loads(NGRAM),
        },
        "engines": results,
        "best_vllm": best_vllm,
        "ratios": ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rephrase_throughput.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"best_vllm": best_vllm, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
