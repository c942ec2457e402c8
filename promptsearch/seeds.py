"""The built-in seed templates: FinePhrase's prompt formats, written in this project's own words.

In: nothing. Out: `SEED_TEMPLATES`, name → `TemplateSpec` (name, family, text with one `{document}`).

Each seed is one user message, instruction first and document last, ending with an "output only"
rule, as in the FinePhrase study's prompts. This module is a leaf: the search-space schema checks
seed names against it, `templates` builds the pool from it, and `template_problem` is the check every
template (file, proposal, recipe) passes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PLACEHOLDER = "{document}"
MAX_TEMPLATE_CHARS = 4000
_ANY_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    family: str
    text: str

    @property
    def text_hash(self) -> str:
        return template_hash(self.text)


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def template_problem(text: str) -> str | None:
    """Why `text` cannot be a template (binary, too long, not exactly one document slot, another placeholder), or
    None. The one check for template files, proposals and recipe files alike."""
    control = next((i for i, c in enumerate(text) if ord(c) < 32 and c not in "\t\n\r"), None)
    if control is not None:
        return f"template holds a control character ({text[control]!r} at character {control}): is it a binary file?"
    if len(text) > MAX_TEMPLATE_CHARS:
        return f"template is {len(text)} characters (limit {MAX_TEMPLATE_CHARS})"
    if (count := text.count(PLACEHOLDER)) != 1:
        return f"template must contain {PLACEHOLDER} exactly once (found {count})"
    if unknown := sorted({m for m in _ANY_PLACEHOLDER.findall(text) if m != PLACEHOLDER}):
        return f"unknown placeholder(s) {', '.join(unknown)}"
    return None


def compose(instruction: str, rule: str) -> str:
    """The layout every seed uses: instruction, the "output only" rule, then the document."""
    return f"{instruction}\n\n{rule}\n\nDocument:\n{PLACEHOLDER}"


def _seed(name: str, family: str, instruction: str, rule: str) -> TemplateSpec:
    return TemplateSpec(name, family, compose(instruction, rule))


SEED_TEMPLATES: dict[str, TemplateSpec] = {
    t.name: t
    for t in [
        # The four structured formats FinePhrase found to beat raw web data.
        _seed(
            "math",
            "math",
            "Read the document below and build one math word problem from the quantities, dates or "
            "relationships it mentions. The problem should need several steps of basic arithmetic. "
            "After the problem, give a worked solution that shows every calculation step by step and "
            "ends with the final answer.",
            "Output only the problem and its solution, nothing else.",
        ),
        _seed(
            "table",
            "table",
            "Pull the key facts and figures out of the document below and arrange them in a markdown "
            "table with a header row. Below the table, write exactly one question that the table "
            "answers, followed by its answer.",
            "Output only the table and the question-answer pair, nothing else.",
        ),
        _seed(
            "faq",
            "faq",
            "Turn the document below into a frequently-asked-questions page that stands on its own. "
            "Start with the most basic questions and move on to more detailed ones. Each answer must "
            "make sense without the document and keep its facts, names and numbers.",
            "Output only the questions and answers, nothing else.",
        ),
        _seed(
            "tutorial",
            "tutorial",
            "Rewrite the document below as a step-by-step guide that teaches its content. Use numbered "
            "steps, keep every important fact, and explain each step clearly for a learner.",
            "Output only the guide, nothing else.",
        ),
        # Baseline styles from earlier synthetic-data work.
        _seed(
            "paraphrase",
            "paraphrase",
            "Rewrite the document below in clear, well-formed English, keeping all of its information.",
            "Output only the rewritten text, nothing else.",
        ),
        _seed(
            "wikipedia",
            "wikipedia",
            "Rewrite the document below in the neutral, encyclopedic register of a Wikipedia article, "
            "keeping its facts and removing opinion and filler.",
            "Output only the article text, nothing else.",
        ),
        _seed(
            "distill",
            "distill",
            "Condense the document below into a shorter text that keeps every fact that matters and "
            "drops repetition and filler.",
            "Output only the condensed text, nothing else.",
        ),
        _seed(
            "knowledge_list",
            "knowledge_list",
            "List the pieces of knowledge contained in the document below as a bulleted list of short, "
            "self-contained factual statements.",
            "Output only the list, nothing else.",
        ),
        _seed(
            "diverse_qa",
            "diverse_qa",
            "Write several question-answer pairs about the document below. Vary the kind of question: "
            "factual recall, yes/no, why, how, comparison and open-ended.",
            "Output only the question-answer pairs, nothing else.",
        ),
        _seed(
            "summary",
            "summary",
            "Summarize the document below so that a reader who never sees it learns its main points.",
            "Output only the summary, nothing else.",
        ),
        _seed(
            "continuation",
            "continuation",
            "Continue the document below with new text in the same style and on the same topic.",
            "Output only the continuation, nothing else.",
        ),
    ]
}
