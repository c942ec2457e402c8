"""Stage 3, measure: cheap statistics of a trial's outputs, computed before any proxy training.

In: (source text, output text) pairs — the selected sample per document.
Out: `measure(pairs)` → a flat dict of metrics (stored per trial in SQL and as Optuna user attrs);
`select_sample(source, samples)` → the index best-of-N keeps.

Template collapse is measured as in the FinePhrase study: the share of unique openings among the
outputs at a given prefix length (their Qwen3 math outputs had 40 unique 10-character prefixes in
10,000). Fidelity starts with number recall: how many of the source's numbers reappear.
"""

from __future__ import annotations

import re
from collections import Counter
from statistics import fmean

PREFIX_LENGTHS = (5, 10, 20, 40, 80)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|i can(no|')t|i cannot|as an ai|i'?m unable|i am unable|unfortunately, i)", re.I
)


def numbers(text: str) -> set[str]:
    """Numbers in a text, normalized so that "1,200" and "1200" match."""
    return {m.replace(",", "").rstrip(".") for m in _NUMBER.findall(text)}


def number_recall(source: str, output: str) -> float | None:
    """Share of the source's numbers found in the output; None when the source has none."""
    wanted = numbers(source)
    if not wanted:
        return None
    return len(wanted & numbers(output)) / len(wanted)


def unique_prefix_ratio(outputs: list[str], length: int) -> float:
    if not outputs:
        return 0.0
    return len({o.strip()[:length] for o in outputs}) / len(outputs)


def _is_echo(source: str, output: str) -> bool:
    """The output copies the source: most of its word 8-grams appear in the source."""
    out_words, src_words = output.split(), source.split()
    if len(out_words) < 8:
        return False
    src_grams = {tuple(src_words[i : i + 8]) for i in range(len(src_words) - 7)}
    out_grams = [tuple(out_words[i : i + 8]) for i in range(len(out_words) - 7)]
    return sum(g in src_grams for g in out_grams) / len(out_grams) > 0.8


def measure(pairs: list[tuple[str, str]]) -> dict[str, float]:
    outputs = [o for _, o in pairs]
    recalls = [r for s, o in pairs if (r := number_recall(s, o)) is not None]
    openings = Counter(o.strip()[:10] for o in outputs)
    top_share = openings.most_common(1)[0][1] / len(outputs) if outputs else 0.0
    metrics = {f"unique_prefix_ratio_{n}": unique_prefix_ratio(outputs, n) for n in PREFIX_LENGTHS}
    metrics |= {
        "number_recall": fmean(recalls) if recalls else 0.0,
        "top_opening_share": top_share,
        "empty_rate": sum(not o.strip() for o in outputs) / max(1, len(outputs)),
        "refusal_rate": sum(bool(_REFUSAL.match(o)) for o in outputs) / max(1, len(outputs)),
        "echo_rate": sum(_is_echo(s, o) for s, o in pairs) / max(1, len(pairs)),
        "mean_output_chars": fmean(len(o) for o in outputs) if outputs else 0.0,
        "output_input_ratio": fmean(len(o) / max(1, len(s)) for s, o in pairs) if pairs else 0.0,
    }
    return metrics


def select_sample(source: str, samples: list[str]) -> int:
    """Best-of-N: prefer non-empty, non-echo samples with the highest number recall, then the longest."""

    def rank(i: int) -> tuple[bool, bool, float, int]:
        text = samples[i]
        usable = bool(text.strip()) and not _REFUSAL.match(text)
        return (usable, not _is_echo(source, text), number_recall(source, text) or 0.0, len(text))

    return max(range(len(samples)), key=rank)
