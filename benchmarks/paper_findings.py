"""FinePhrase's directional findings, checked at proxy scale side by side in one run.

The same source documents (the quickstart's Lee articles), the same generator (the embedded SmolLM2-135M on
vLLM, one sampling setting, one sample per document) and the same proxy profile for every condition:

- (a) format: each of the four structured formats (faq, table, math, tutorial) and the two unstructured
  rewrites (paraphrase, summary) mixed 50/50 with the raw mix-in text; the source documents themselves in
  the same 50/50 mix (no rephrasing); and the raw mix-in text alone;
- (b) mixing: the four structured formats' outputs together, alone (synthetic only), 50/50 with the raw
  text, against the raw text alone.

Each condition trains the proxy with `--seeds` training seeds and data orders (`proxy.calibrate`). A score's
noise is its pooled standard deviation over seeds (the mean of the conditions' variances); a difference
between two conditions is reported in units of the standard error of a difference of two means over
`--seeds` runs each (noise x sqrt(2 / seeds)), signed so that a positive z goes the paper's way. A finding
holds at proxy scale when z >= 2, is contradicted when z <= -2, and is within noise otherwise. The run also
reports each suite score's signal-to-noise across the conditions (the spread of the condition means over the
noise), the quantity the quickstart's `suite_objective` uses to choose its tasks.

Writes benchmarks/results/paper_findings-<profile>.json and prints the tables the README quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from promptsearch.corpus import read_corpus
from promptsearch.proxy import Mixture, calibrate
from promptsearch.proxy_profile import load_proxy_profile, proxy_profile_path
from promptsearch.recipe import Recipe, Sampling
from promptsearch.rephrase import GeneratorServers, rephrase
from promptsearch.seeds import SEED_TEMPLATES
from promptsearch.space import SearchSpace
from promptsearch.store import Store

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
STRUCTURED = ["faq", "table", "math", "tutorial"]
UNSTRUCTURED = ["paraphrase", "summary"]
METRICS = ["prob_norm_token", "gold_bpb", "acc_norm_token"]
LOWER_IS_BETTER = ("gold_bpb", "knowledge_bpb", "heldout_bpb")


def generate(space: SearchSpace, documents: list[Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Each format's output for every document (template → outputs in document order), with timing."""
    store = Store.open(f"sqlite:///{tmp / 'generations.db'}")
    generator = space.generators[0]
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    outputs: dict[str, list[str]] = {}
    tokens = 0
    started = time.monotonic()
    with GeneratorServers(tmp / "logs") as servers:
        for index, name in enumerate(STRUCTURED + UNSTRUCTURED):
            recipe = Recipe.for_template(
                index,
                SEED_TEMPLATES[name],
                generator=generator,
                sampling=sampling,
                best_of_n=1,
                mix_ratio=args.mix,
                seed=space.seed,
            )
            result = rephrase(documents, recipe, store, servers, tmp / "rephrase" / name)
            outputs[name] = [result.samples[doc.id][0].text for doc in documents]
            tokens += result.completion_tokens_generated
    return {"outputs": outputs, "completion_tokens": tokens, "seconds": time.monotonic() - started}


def conditions(
    space: SearchSpace, documents: list[Any], outputs: dict[str, list[str]], mix: float
) -> dict[str, Mixture]:
    """The mixtures compared: name → what the proxy trains on (the knowledge scores read the source documents)."""
    mix_in = [d.text for d in read_corpus(space.mix_in).documents]
    heldout = [d.text for d in read_corpus(space.heldout).documents]
    sources = [d.text for d in documents]
    structured = [text for name in STRUCTURED for text in outputs[name]]

    def mixture(synthetic: list[str], ratio: float) -> Mixture:
        return Mixture(synthetic, mix_in, heldout, sources, ratio)

    return (
        {name: mixture(outputs[name], mix) for name in STRUCTURED + UNSTRUCTURED}
        | {"source documents": mixture(sources, mix), "raw only": mixture(sources, 0.0)}
        | {"structured only": mixture(structured, 1.0), "structured mix": mixture(structured, mix)}
    )


def reported_scores(runs: list[dict[str, float]]) -> list[str]:
    """The suite's categories and macro per metric, and the proxy's own bits-per-byte diagnostics."""
    keys = set(runs[0])
    suite = sorted(k for k in keys if k.startswith("suite.") and k.rsplit(".", 1)[-1] in METRICS)
    return [*suite, "knowledge_bpb", "heldout_bpb"]


def summarize(runs: dict[str, list[dict[str, float]]], seeds: int) -> dict[str, Any]:
    names = reported_scores(next(iter(runs.values())))
    means = {c: {k: statistics.fmean(r[k] for r in rs) for k in names} for c, rs in runs.items()}
    noise = {
        k: math.sqrt(statistics.fmean(statistics.variance([r[k] for r in rs]) for rs in runs.values())) for k in names
    }
    signal = {k: statistics.stdev(m[k] for m in means.values()) for k in names}

    def z(better: str, worse: str, key: str) -> float | None:
        """(better - worse) in standard errors of the difference, positive when `better` is ahead."""
        if noise[key] == 0:
            return None
        sign = -1.0 if key.endswith(LOWER_IS_BETTER) else 1.0
        return sign * (means[better][key] - means[worse][key]) / (noise[key] * math.sqrt(2 / seeds))

    claims = [(f, u) for f in STRUCTURED for u in UNSTRUCTURED]
    claims += [(f, "raw only") for f in STRUCTURED] + [(f, "source documents") for f in STRUCTURED]
    claims += [("structured mix", "structured only"), ("structured mix", "raw only"), ("raw only", "structured only")]
    comparisons = [
        {"paper": f"{better} > {worse}", "z": {k: z(better, worse, k) for k in names}} for better, worse in claims
    ]
    return {
        "means": means,
        "noise": noise,
        "snr_across_conditions": {k: (signal[k] / noise[k] if noise[k] else None) for k in names},
        "comparisons": comparisons,
    }


def verdict(value: float | None) -> str:
    if value is None:
        return "no noise"
    return "holds" if value >= 2 else "contradicted" if value <= -2 else "within noise"


def print_tables(summary: dict[str, Any], metric: str) -> None:
    macro = f"suite.macro.{metric}"
    categories = sorted(k for k in summary["noise"] if k.endswith(f".{metric}") and k != macro)
    categories = [k for k in categories if not k.startswith("suite.micro")]
    head = [macro, *categories]
    print(f"\n### z of each paper claim on {metric} (positive: the paper's way; |z| >= 2 beyond noise)")
    print("| claim | " + " | ".join(k.split(".")[1] for k in head) + " | knowledge_bpb | heldout_bpb |")
    print("|---" * (len(head) + 3) + "|")
    for row in summary["comparisons"]:
        cells = [row["z"][k] for k in [*head, "knowledge_bpb", "heldout_bpb"]]
        print(f"| {row['paper']} | " + " | ".join("-" if c is None else f"{c:+.1f}" for c in cells) + " |")
    snr = summary["snr_across_conditions"]
    print(f"\n### signal-to-noise across conditions, {metric}")
    print(" ".join(f"{k.split('.')[1]}={snr[k]:.2f}" for k in sorted(snr) if k.endswith(metric) and snr[k]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu-tiny", help="proxy profile (name or YAML path)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per condition")
    parser.add_argument("--documents", type=int, default=24, help="source documents rephrased per format")
    parser.add_argument(
        "--train-tokens", type=int, help="train the profile's model on this many tokens instead of its own budget"
    )
    parser.add_argument("--mix", type=float, default=0.5, help="synthetic share of the mixed conditions")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    document = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    document["source"]["limit"] = args.documents
    document["proxy"] = str(proxy_profile_path(args.profile, Path.cwd()))
    document.pop("suite_objective", None)
    document["objectives"] = [{"metric": "proxy.score", "direction": "maximize"}]
    space = SearchSpace.model_validate(document)
    profile = load_proxy_profile(proxy_profile_path(args.profile, Path.cwd()))
    if args.train_tokens is not None:
        train = profile.train.model_copy(update={"tokens": args.train_tokens})
        profile = profile.model_copy(update={"train": train})
    if profile.suite is None:
        raise SystemExit(f"proxy profile {args.profile} scores no benchmark suite (its `suite:` block)")
    documents = read_corpus(space.source).documents
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generated = generate(space, documents, args, tmp)
        print(f"generated {generated['completion_tokens']} completion tokens in {generated['seconds']:.0f} s")
        runs: dict[str, list[dict[str, float]]] = {}
        train_started = time.monotonic()
        for name, mixture in conditions(space, documents, generated["outputs"], args.mix).items():
            runs[name] = calibrate(mixture, profile, tmp / "proxy" / name.replace(" ", "-"), args.seeds)
            print(f"{name}: {args.seeds} proxy runs, {time.monotonic() - train_started:.0f} s so far", flush=True)
        proxy_seconds = time.monotonic() - train_started
    summary = summarize(runs, args.seeds)
    report = {
        "benchmark": "paper_findings",
        "profile": profile.name,
        "train_tokens": profile.train.tokens,
        "suite": profile.suite.model_dump(),
        "seeds": args.seeds,
        "documents": len(documents),
        "mix": args.mix,
        "sampling": {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens},
        "completion_tokens": generated["completion_tokens"],
        "seconds": {
            "generate": generated["seconds"],
            "proxy": proxy_seconds,
            "total": time.monotonic() - started,
        },
        "runs": runs,
        **summary,
        "verdicts": [
            {"paper": row["paper"], "score": key, "z": value, "verdict": verdict(value)}
            for row in summary["comparisons"]
            for key, value in row["z"].items()
            if key.startswith("suite.macro.") or key in LOWER_IS_BETTER
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    scale = "" if args.train_tokens is None else f"-{args.train_tokens // 1000}k"
    out = RESULTS / f"paper_findings-{profile.name}{scale}.json"
    out.write_text(json.dumps(report, indent=2))
    for metric in METRICS:
        print_tables(summary, metric)
    print(f"\n{out} ({report['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
