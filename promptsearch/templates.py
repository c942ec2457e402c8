"""Stage 1, templates: the prompt pool a study searches over.

In: a `TemplatePoolSpec` (seed names from `SEED_TEMPLATES`, user template files).
Out: validated `TemplateSpec`s (name, family, text with exactly one `{document}` placeholder),
which the study stores in the `templates` table and enqueues as trials.

The seeds are written in this project's own words. Each is one user message, instruction first
and document last, ending with an "output only" rule, as in the FinePhrase study's prompts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from promptsearch.errors import UserError
from promptsearch.space import TemplatePoolSpec

PLACEHOLDER = "{document}"
MAX_TEMPLATE_CHARS = 4000
_ANY_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
OUTPUT_RULE = re.compile(r"\boutput only\b", re.IGNORECASE)


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    family: str
    text: str

    @property
    def text_hash(self) -> str:
        return template_hash(self.text)

    def render(self, document: str) -> str:
        return self.text.replace(PLACEHOLDER, document)


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compose(instruction: str, rule: str) -> str:
    """The layout every seed uses: instruction, the "output only" rule, then the document."""
    return f"{instruction}\n\n{rule}\n\nDocument:\n{PLACEHOLDER}"


def has_output_rule(text: str) -> bool:
    return bool(OUTPUT_RULE.search(text))


def split_template(text: str) -> tuple[str, str]:
    """(instruction, "output only" rule) of a template: the paragraphs before the document slot, the last
    one naming "output only" taken as the rule ("" when there is none)."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    paragraphs = [p for p in paragraphs if PLACEHOLDER not in p and p.rstrip(":").lower() != "document"]
    rules = [p for p in paragraphs if has_output_rule(p)]
    rule = rules[-1] if rules else ""
    return "\n\n".join(p for p in paragraphs if p != rule), rule


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


def validate_template(text: str, origin: str) -> None:
    """Raise `UserError` naming `origin` when a template cannot be used."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UserError(f"{origin}: template is {len(text)} characters (limit {MAX_TEMPLATE_CHARS})")
    count = text.count(PLACEHOLDER)
    if count != 1:
        raise UserError(f"{origin}: template must contain {PLACEHOLDER} exactly once (found {count})")
    unknown = sorted({m for m in _ANY_PLACEHOLDER.findall(text) if m != PLACEHOLDER})
    if unknown:
        raise UserError(f"{origin}: unknown placeholder(s) {', '.join(unknown)}")


def load_template_file(path: Path, placeholder: str) -> TemplateSpec:
    """A user template file: its name is the file stem, its family the parent folder's name.

    The file's own `placeholder` (e.g. `[TEXT]` or `[[DOCUMENT]]`) is rewritten to `{document}`.
    """
    text = path.read_text(encoding="utf-8").strip()
    count = text.count(placeholder)
    if count != 1:
        raise UserError(f"{path}: template must contain {placeholder} exactly once (found {count})")
    text = text.replace(placeholder, PLACEHOLDER) if placeholder != PLACEHOLDER else text
    validate_template(text, str(path))
    return TemplateSpec(path.stem, path.parent.name, text)


def template_pool(spec: TemplatePoolSpec) -> list[TemplateSpec]:
    """Templates named by the space, seeds first, in file order; duplicates (same text) dropped."""
    pool: list[TemplateSpec] = []
    for name in spec.seeds:
        if name not in SEED_TEMPLATES:
            raise UserError(f"templates.seeds: unknown seed template {name!r} (known: {', '.join(SEED_TEMPLATES)})")
        pool.append(SEED_TEMPLATES[name])
    pool.extend(load_template_file(Path(f), spec.placeholder) for f in spec.files)
    seen: set[str] = set()
    return [t for t in pool if not (t.text_hash in seen or seen.add(t.text_hash))]
