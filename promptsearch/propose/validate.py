"""Validation of a proposed instruction: it becomes a template only if it passes every rule.

Rules, each a rejection reason counted in `ps_proposals`: empty, truncated (no finished sentence), refusal,
too_short, too_long, repetitive, placeholder (the model wrote a `{slot}` of its own), no_document_reference
(says nothing about the input), off_format (a generated instruction that does not name its format), then on
the assembled template: the project's template rules, no_output_rule, duplicate (normalized-text hash) and
near_duplicate (MiniLM cosine similarity to a template of the pool at or above the space's threshold).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from promptsearch.errors import UserError
from promptsearch.measure import Embedder
from promptsearch.measure.fidelity import is_refusal
from promptsearch.seeds import compose
from promptsearch.space import ProposalSpec
from promptsearch.templates import has_output_rule, split_template, validate_template

MIN_WORDS = 8
MIN_DISTINCT_WORD_SHARE = 0.5  # below (or a sentence said twice): a degenerate loop, as 135M models write
_SLOT = re.compile(r"\{[^{}]*\}")
_INPUT_WORDS = re.compile(r"\b(document|text|article|passage|source)s?\b", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
_SENTENCE_END = ".!?"


@dataclass(frozen=True)
class Verdict:
    template: str | None  # the assembled template when accepted
    reason: str  # "" when accepted


def normalized_hash(text: str) -> str:
    """Case, punctuation and spacing do not make a template new."""
    return hashlib.sha256(re.sub(r"\W+", " ", text.lower()).strip().encode()).hexdigest()


def clean_instruction(raw: str) -> str:
    """The first paragraph once lead-in lines ("Here is the improved instruction:") are dropped, unquoted,
    less a last sentence the token limit cut off."""
    lines = [line for line in raw.splitlines() if not line.strip().endswith(":")]
    paragraphs = [p.strip().strip(_QUOTES).strip() for p in "\n".join(lines).split("\n\n")]
    text = next((p for p in paragraphs if p), "")
    if text and text[-1] not in _SENTENCE_END:
        text = text[: max(text.rfind(c) for c in _SENTENCE_END) + 1].strip()
    return text


def format_head(format_idea: str) -> str:
    """'a timeline of the events, oldest first' → 'timeline of the events'."""
    head = format_idea.split(",")[0].strip().rstrip(".")
    return re.sub(r"^(a|an|the)\s+", "", head, flags=re.IGNORECASE)


def output_rule_for(format_idea: str) -> str:
    """The "output only" rule a generated format gets: 'Output only the timeline of the events, nothing else.'"""
    return f"Output only the {format_head(format_idea)}, nothing else."


class Validator:
    """Judges proposals against a pool of template texts that grows as proposals are accepted."""

    def __init__(self, spec: ProposalSpec, pool: list[str], embedder: Embedder):
        self.spec = spec
        self.embedder = embedder
        self.hashes = {normalized_hash(t) for t in pool}
        self.instructions = [split_template(t)[0] or t for t in pool]

    def judge(self, raw: str, rule: str, must_mention: str = "") -> Verdict:
        """`must_mention`: the word a generated format is named by ("timeline"); an instruction without it
        describes some other format than the one its rule names."""
        instruction = clean_instruction(raw)
        if not instruction and raw.strip():
            return Verdict(None, "truncated")  # text, but not one finished sentence
        if reason := self._instruction_problem(instruction):
            return Verdict(None, reason)
        if must_mention and must_mention.lower() not in instruction.lower():
            return Verdict(None, "off_format")
        text = compose(instruction, rule)
        try:
            validate_template(text, "proposal")
        except UserError:
            return Verdict(None, "template_rules")
        if not has_output_rule(text):
            return Verdict(None, "no_output_rule")
        digest = normalized_hash(text)
        if digest in self.hashes or normalized_hash(instruction) in {normalized_hash(i) for i in self.instructions}:
            return Verdict(None, "duplicate")
        if self.instructions:
            vectors = self.embedder.embed([instruction, *self.instructions])
            if float(np.max(vectors[1:] @ vectors[0])) >= self.spec.near_duplicate_similarity:
                return Verdict(None, "near_duplicate")
        self.hashes.add(digest)
        self.instructions.append(instruction)
        return Verdict(text, "")

    def _instruction_problem(self, instruction: str) -> str:
        if not instruction:
            return "empty"
        if is_refusal(instruction):
            return "refusal"
        if len(instruction.split()) < MIN_WORDS:
            return "too_short"
        if len(instruction) > self.spec.max_instruction_chars:
            return "too_long"
        words = instruction.lower().split()
        sentences = [normalized_hash(x) for x in re.split(r"(?<=[.!?])\s+", instruction)]
        if len(set(words)) < MIN_DISTINCT_WORD_SHARE * len(words) or len(set(sentences)) < len(sentences):
            return "repetitive"
        if _SLOT.search(instruction):
            return "placeholder"
        if not _INPUT_WORDS.search(instruction):
            return "no_document_reference"
        return ""
