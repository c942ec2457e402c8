"""Stage 1, templates: the prompt pool a study searches over.

In: a `TemplatePoolSpec` (seed names from `SEED_TEMPLATES`, user template files).
Out: validated `TemplateSpec`s (name, family, text with exactly one `{document}` placeholder),
which the study stores in the `templates` table and enqueues as trials.

The seeds themselves are in `promptsearch.seeds`.
"""

from __future__ import annotations

import re
from pathlib import Path

from promptsearch.errors import UserError
from promptsearch.seeds import PLACEHOLDER, SEED_TEMPLATES, TemplateSpec
from promptsearch.space import TemplatePoolSpec

MAX_TEMPLATE_CHARS = 4000
_ANY_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
OUTPUT_RULE = re.compile(r"\boutput only\b", re.IGNORECASE)


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
    pool.extend(SEED_TEMPLATES[name] for name in spec.seeds)  # the schema checked the names
    pool.extend(load_template_file(Path(f), spec.placeholder) for f in spec.files)
    seen: set[str] = set()
    return [t for t in pool if not (t.text_hash in seen or seen.add(t.text_hash))]
