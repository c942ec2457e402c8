"""Speed of the trial metrics on 1,000 (source, output) pairs of ~300 tokens, as `promptsearch metrics` runs them.

Budget (issue 4): everything except the embedding-based metrics under 5 s on 2 cores; embeddings are
timed separately (first call embeds; a second call hits the per-process cache).
Writes benchmarks/results/metrics_speed.json.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from promptsearch.corpus import read_corpus
from promptsearch.measure import Embedder, OutputRecord, measure
from promptsearch.space import CorpusSpec

RESULTS = Path(__file__).resolve().parent / "results"
OPENINGS = ["Question:", "Here is", "**Problem:**", "| Fact |", "Step 1:", "In summary,", "FAQ", "The article"]


def pairs(n: int = 1000) -> list[OutputRecord]:
    """Outputs built from the Lee articles: sentences shuffled behind varied openings (deterministic)."""
    rng = random.Random(0)
    docs = [d.text for d in read_corpus(CorpusSpec(format="embedded", path="lee_background", max_chars=2000)).documents]
    records = []
    for i in range(n):
        source = docs[i % len(docs)]
        sentences = source.split(". ")
        rng.shuffle(sentences)
        records.append(OutputRecord(source, f"{rng.choice(OPENINGS)} " + ". ".join(sentences), "faq"))
    return records


def main() -> None:
    records = pairs()
    tokens = sum(len(r.output.split()) for r in records) * 1.3 / len(records)
    start = time.monotonic()
    measure(records)
    cheap = time.monotonic() - start
    embedder = Embedder()
    start = time.monotonic()
    measure(records, embedder)
    with_embeddings = time.monotonic() - start
    start = time.monotonic()
    measure(records, embedder)
    cached = time.monotonic() - start
    report = {
        "benchmark": "metrics_speed",
        "pairs": len(records),
        "approx_tokens_per_output": round(tokens),
        "seconds_without_embeddings": cheap,
        "seconds_with_embeddings_first": with_embeddings,
        "seconds_with_embeddings_cached": cached,
        "budget_seconds_without_embeddings": 5.0,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics_speed.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
