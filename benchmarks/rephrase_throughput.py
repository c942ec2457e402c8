"""Rephrase throughput: a naive one-request-at-a-time `generate()` loop vs the embedded backend.

Same model (the embedded SmolLM2-135M-Instruct), same documents, template and sampling, measured
side by side in one run, alternating, `--repeats` times; reports completion tokens/s of each and
the ratio (medians). The naive loop loads the model as a user would (`from_pretrained`, the
checkpoint's float32); the backend serves in `serving_plan()`'s dtype and replicas. To show what
the dtype alone is worth, each repeat also runs the naive loop in the backend's dtype on the first
`--same-dtype-docs` documents. Writes benchmarks/results/rephrase_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datatrove.data import Document
from transformers import AutoModelForCausalLM, AutoTokenizer

from promptsearch.corpus import read_corpus
from promptsearch.embedded import embedded_model, serving_plan
from promptsearch.recipe import GeneratorSpec, Recipe, Sampling
from promptsearch.rephrase import GeneratorServers, prompt_text, rephrase
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import CorpusSpec
from promptsearch.store import Store

RESULTS = Path(__file__).resolve().parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--max-chars", type=int, default=800, help="documents are cut at a newline to this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--same-dtype-docs", type=int, default=16)
    args = parser.parse_args()

    documents = read_corpus(
        CorpusSpec(format="embedded", path="lee_background", limit=args.docs, max_chars=args.max_chars)
    ).documents
    template = SEED_TEMPLATES["faq"]
    generator = GeneratorSpec(name="smollm2-135m", backend="embedded", model="embedded", concurrency=args.concurrency)
    local = embedded_model()
    plan = serving_plan()
    tokenizer = AutoTokenizer.from_pretrained(local.path)
    model = AutoModelForCausalLM.from_pretrained(local.path).eval()
    same_dtype_model = AutoModelForCausalLM.from_pretrained(
        local.path, dtype=getattr(torch, plan.settings.dtype)
    ).eval()
    runs = []
    sampling = Sampling(temperature=0.7, top_p=0.95, max_new_tokens=args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp, GeneratorServers(Path(tmp) / "logs", plan) as generators:
        generators.embedded_servers(generator, sampling)  # started outside the timing
        for repeat in range(args.repeats):
            recipe = Recipe.for_template(
                1,
                template,
                generator=generator,
                sampling=sampling,
                best_of_n=1,
                mix_ratio=0.5,
                seed=1000 * repeat,
            )
            torch.manual_seed(repeat)
            naive_tokens, naive_seconds = naive_loop(documents, recipe, model, tokenizer)
            same_tokens, same_seconds = naive_loop(
                documents[: args.same_dtype_docs], recipe, same_dtype_model, tokenizer
            )
            store = Store.open(f"sqlite:///{Path(tmp) / f'bench-{repeat}.db'}")  # empty cache: every request runs
            result = rephrase(documents, recipe, store, generators, Path(tmp) / f"run-{repeat}")
            run = {
                "naive_tokens": naive_tokens,
                "naive_seconds": naive_seconds,
                "naive_tokens_per_s": naive_tokens / naive_seconds,
                "naive_same_dtype_tokens_per_s": same_tokens / same_seconds,
                "embedded_tokens": result.completion_tokens_generated,
                "embedded_seconds": result.wall_seconds,
                "embedded_tokens_per_s": result.completion_tokens_generated / result.wall_seconds,
            }
            run["ratio"] = run["embedded_tokens_per_s"] / run["naive_tokens_per_s"]
            run["ratio_same_dtype"] = run["embedded_tokens_per_s"] / run["naive_same_dtype_tokens_per_s"]
            runs.append(run)
            print(json.dumps(run))
    report = {
        "benchmark": "rephrase_throughput",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "settings": {
            "documents": len(documents),
            "max_chars": args.max_chars,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 0.7,
            "top_p": 0.95,
            "template": "faq",
            "concurrency": args.concurrency,
            "naive_dtype": str(model.dtype),
            "same_dtype_docs": min(args.same_dtype_docs, len(documents)),
            "server_replicas": plan.replicas,
            "server": plan.settings.__dict__,
        },
        "runs": runs,
        "median": {
            k: statistics.median(r[k] for r in runs)
            for k in (
                "naive_tokens_per_s",
                "naive_same_dtype_tokens_per_s",
                "embedded_tokens_per_s",
                "ratio",
                "ratio_same_dtype",
            )
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rephrase_throughput.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["median"], indent=2))


if __name__ == "__main__":
    main()
