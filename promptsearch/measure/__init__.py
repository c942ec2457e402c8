"""Stage 3, measure: cheap statistics of a trial's outputs, computed before any proxy training.

In: `OutputRecord`s — each document's source, the selected output, the template family.
Out: `measure(records)` → a flat dict of metrics (stored per trial in SQL and as Optuna user attrs);
`select_sample(...)` → the sample best-of-N keeps, under the trial's selection rule.

Template collapse is measured as in the FinePhrase study: unique openings among the outputs at
prefix lengths of 5-80 characters (their Qwen3 math outputs had 40 unique 10-character openings in
10,000). Diversity, fidelity and format validity live in the sibling modules; embedding-based
metrics (Vendi score, source↔output similarity) need an `Embedder` and are skipped without one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from statistics import fmean

import numpy as np

from promptsearch.measure.diversity import compression_ratio, distinct_n, near_duplicate_rate, vendi_score
from promptsearch.measure.embeddings import Embedder
from promptsearch.measure.fidelity import (
    entity_recall,
    hallucinated_number_rate,
    is_echo,
    is_refusal,
    number_recall,
)
from promptsearch.measure.formats import is_valid_format
from promptsearch.measure.quality import QualityClassifier

PREFIX_LENGTHS = (5, 10, 20, 40, 80)
__all__ = ["Embedder", "OutputRecord", "QualityClassifier", "measure", "most_common_opening", "select_sample"]


@dataclass(frozen=True)
class OutputRecord:
    source: str
    output: str
    family: str
    finish_reason: str = "stop"
    output_tokens: int | None = None


def unique_prefix_ratio(outputs: list[str], length: int) -> float:
    return len({o.strip()[:length] for o in outputs}) / len(outputs) if outputs else 0.0


def most_common_opening(outputs: list[str], length: int = 10) -> tuple[str, float]:
    if not outputs:
        return "", 0.0
    opening, count = Counter(o.strip()[:length] for o in outputs).most_common(1)[0]
    return opening, count / len(outputs)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return fmean(kept) if kept else None


def measure(
    records: list[OutputRecord], embedder: Embedder | None = None, classifiers: list[QualityClassifier] = ()
) -> dict[str, float]:
    outputs = [r.output for r in records]
    n = max(1, len(records))
    metrics: dict[str, float | None] = {}
    for length in PREFIX_LENGTHS:
        metrics[f"unique_prefixes_{length}"] = len({o.strip()[:length] for o in outputs})
        metrics[f"unique_prefix_ratio_{length}"] = unique_prefix_ratio(outputs, length)
    metrics["top_opening_share"] = most_common_opening(outputs)[1]
    metrics |= {f"distinct_{k}": distinct_n(outputs, k) for k in (1, 2, 3)}
    metrics["compression_ratio"] = compression_ratio(outputs)
    metrics["near_duplicate_rate"] = near_duplicate_rate(outputs)

    metrics["number_recall"] = _mean([number_recall(r.source, r.output) for r in records]) or 0.0
    metrics["entity_recall"] = _mean([entity_recall(r.source, r.output) for r in records]) or 0.0
    math = [r for r in records if r.family == "math"]
    if math:
        metrics["hallucinated_number_rate"] = _mean([hallucinated_number_rate(r.source, r.output) for r in math])

    empty = [not r.output.strip() for r in records]
    refusal = [is_refusal(r.output) for r in records]
    echo = [is_echo(r.source, r.output) for r in records]
    truncated = [r.finish_reason == "length" for r in records]
    metrics["format_validity"] = sum(is_valid_format(r.family, r.output) for r in records) / n
    metrics["empty_rate"] = sum(empty) / n
    metrics["refusal_rate"] = sum(refusal) / n
    metrics["echo_rate"] = sum(echo) / n
    metrics["truncated_rate"] = sum(truncated) / n
    # Truncation is reported on its own: it says more about max_new_tokens than about the template.
    metrics["failure_rate"] = sum(any(f) for f in zip(empty, refusal, echo, strict=True)) / n

    tokens = [r.output_tokens for r in records if r.output_tokens is not None]
    if tokens:
        metrics["mean_output_tokens"] = fmean(tokens)
    metrics["output_input_ratio"] = fmean(len(r.output) / max(1, len(r.source)) for r in records) if records else 0.0

    if embedder is not None and records:
        out_vectors = embedder.embed(outputs)
        src_vectors = embedder.embed([r.source for r in records])
        metrics["vendi_score"] = vendi_score(out_vectors)
        metrics["embedding_similarity"] = float(np.mean(np.sum(out_vectors * src_vectors, axis=1)))
    for classifier in classifiers:
        metrics[f"quality.{classifier.spec.name}"] = classifier.score(outputs)
    return {k: float(v) for k, v in metrics.items() if v is not None}


def select_sample(
    source: str,
    samples: list[str],
    family: str = "",
    rule: str = "fidelity",
    chosen_openings: Counter[str] | None = None,
) -> int:
    """Best-of-N. Unusable samples (empty, refusal, echo) lose under every rule; then:
    fidelity — most source numbers kept; format — valid for the family first; novelty — the opening
    least used by outputs already selected in this trial (fights template collapse); length — longest."""
    openings = chosen_openings or Counter()

    def rank(i: int) -> tuple[float, ...]:
        text = samples[i]
        usable = bool(text.strip()) and not is_refusal(text) and not is_echo(source, text)
        recall = number_recall(source, text) or 0.0
        by_rule = {
            "fidelity": (recall,),
            "format": (float(is_valid_format(family, text)), recall),
            "novelty": (-openings[text.strip()[:20]], recall),
            "length": (float(len(text)),),
        }[rule]
        return (float(usable), *by_rule, float(len(text)))

    return max(range(len(samples)), key=rank)
