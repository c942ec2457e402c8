"""Stage 1, templates: the prompt pool a study searches over.

In: a `TemplatePoolSpec` (its schema is here; seed names from `SEED_TEMPLATES`, user template files).
Out: validated `TemplateSpec`s (name, family, text with exactly one `{document}` placeholder),
which the study stores in the `templates` table and enqueues as trials.

The seeds themselves are in `promptsearch.seeds`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from promptsearch.config import StrictModel
from promptsearch.errors import UserError
from promptsearch.seeds import PLACEHOLDER, SEED_TEMPLATES, TemplateSpec, template_problem

OUTPUT_RULE = re.compile(r"\boutput only\b", re.IGNORECASE)


class TemplatePoolSpec(StrictModel):
    """Seed templates (names from the built-in pool) and user template files."""

    seeds: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    placeholder: str = "{document}"

    @field_validator("seeds")
    @classmethod
    def _known_seeds(cls, value: list[str]) -> list[str]:
        if unknown := [n for n in value if n not in SEED_TEMPLATES]:
            raise ValueError(f"unknown seed template(s) {unknown} (known: {', '.join(SEED_TEMPLATES)})")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TemplatePoolSpec:
        if not self.seeds and not self.files:
            raise ValueError("the pool needs at least one seed name or template file")
        return self


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
    if problem := template_problem(text):
        raise UserError(f"{origin}: {problem}")


def load_template_file(path: Path, placeholder: str) -> TemplateSpec:
    """A user template file: its name is the file stem, its family the parent folder's name.

    The file's own `placeholder` (e.g. `[TEXT]` or `[[DOCUMENT]]`) is rewritten to `{document}`.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
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
