"""Fidelity to the source: numbers and named entities carried over, echoes, refusals, invented numbers."""

from __future__ import annotations

import re
from itertools import combinations

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_ENTITY = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|i can(no|')t|i cannot|as an ai|i'?m unable|i am unable|unfortunately, i)", re.I
)
# Capitalized words that open sentences or are common function words are not entities.
_NOT_ENTITIES = {
    "The",
    "A",
    "An",
    "In",
    "On",
    "At",
    "It",
    "This",
    "That",
    "He",
    "She",
    "They",
    "We",
    "I",
    "And",
    "But",
    "Or",
    "If",
    "When",
    "What",
    "Why",
    "How",
    "Who",
    "Which",
    "Where",
    "Q",
    "Question",
    "Answer",
    "Step",
    "Problem",
    "Solution",
    "Document",
    "FAQ",
    "Yes",
    "No",
}


def numbers(text: str) -> set[str]:
    """Numbers in a text, normalized so that "1,200" and "1200" match."""
    return {m.replace(",", "").rstrip(".") for m in _NUMBER.findall(text)}


def entities(text: str) -> set[str]:
    return {m for m in _ENTITY.findall(text) if m not in _NOT_ENTITIES}


def _recall(wanted: set[str], found: set[str]) -> float | None:
    return len(wanted & found) / len(wanted) if wanted else None


def number_recall(source: str, output: str) -> float | None:
    """Share of the source's numbers found in the output; None when the source has none."""
    return _recall(numbers(source), numbers(output))


def entity_recall(source: str, output: str) -> float | None:
    return _recall(entities(source), entities(output))


def _as_float(number: str) -> float | None:
    try:
        return float(number)
    except ValueError:
        return None


def hallucinated_number_rate(source: str, output: str) -> float | None:
    """Share of the output's numbers that are neither in the source nor a sum, difference, product or
    quotient of two source numbers (the math family's worked solutions derive new numbers that way)."""
    produced = numbers(output)
    if not produced:
        return None
    given = [v for n in numbers(source) if (v := _as_float(n)) is not None]
    derivable = set(given)
    for a, b in combinations(given[:60], 2):
        derivable |= {a + b, abs(a - b), a * b}
        if b:
            derivable.add(a / b)
        if a:
            derivable.add(b / a)
    rounded = {round(v, 2) for v in derivable}
    invented = [n for n in produced if (v := _as_float(n)) is None or round(v, 2) not in rounded]
    return len(invented) / len(produced)


def is_echo(source: str, output: str, n: int = 5, share: float = 0.5) -> bool:
    """The output copies the source: half or more of its word 5-grams appear in the source (a copy with a word
    moved here and there, as small models produce when asked to rewrite, still counts)."""
    out_words, src_words = output.lower().split(), source.lower().split()
    if len(out_words) < n:
        return False
    src_grams = {tuple(src_words[i : i + n]) for i in range(len(src_words) - n + 1)}
    out_grams = [tuple(out_words[i : i + n]) for i in range(len(out_words) - n + 1)]
    return sum(g in src_grams for g in out_grams) / len(out_grams) >= share


def is_refusal(output: str) -> bool:
    return bool(_REFUSAL.match(output))
