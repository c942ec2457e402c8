"""Format validity per template family: does the output have the shape its template asked for?"""

from __future__ import annotations

import re
from collections.abc import Callable

_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
_QUESTION = re.compile(r"^\s*(\*\*)?(Q(uestion)?\s*\d*\s*[:.)]|#+\s|\d+[.)]\s)?.*\?\s*(\*\*)?\s*$")
_ANSWER_LABEL = re.compile(r"^\s*(\*\*)?A(nswer)?\s*\d*\s*[:.)]", re.I)
_ORDERED_STEP = re.compile(r"^\s*(#+\s*)?(\*\*)?(step\s*\d+|\d+[.)])", re.I)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def qa_pairs(text: str) -> int:
    """Questions followed by a non-question line (an answer)."""
    lines = _lines(text)
    pairs = 0
    for i, line in enumerate(lines[:-1]):
        nxt = lines[i + 1]
        if _QUESTION.match(line) and (_ANSWER_LABEL.match(nxt) or not _QUESTION.match(nxt)):
            pairs += 1
    return pairs


def has_markdown_table(text: str) -> bool:
    lines = _lines(text)
    for i in range(len(lines) - 2):
        if _TABLE_ROW.match(lines[i]) and _TABLE_SEPARATOR.match(lines[i + 1]) and _TABLE_ROW.match(lines[i + 2]):
            return True
    return False


def ordered_steps(text: str) -> int:
    return sum(bool(_ORDERED_STEP.match(line)) for line in _lines(text))


def _table(text: str) -> bool:
    outside = "\n".join(line for line in text.splitlines() if not _TABLE_ROW.match(line))
    return has_markdown_table(text) and qa_pairs(outside) >= 1


def _faq(text: str) -> bool:
    return qa_pairs(text) >= 2


def _math(text: str) -> bool:
    return "?" in text and ordered_steps(text) >= 2 and bool(re.search(r"\d", text))


def _tutorial(text: str) -> bool:
    return ordered_steps(text) >= 2


def _knowledge_list(text: str) -> bool:
    return (
        sum(line.lstrip().startswith(("-", "*", "•")) or bool(_ORDERED_STEP.match(line)) for line in _lines(text)) >= 2
    )


CHECKS: dict[str, Callable[[str], bool]] = {
    "table": _table,
    "faq": _faq,
    "diverse_qa": _faq,
    "math": _math,
    "tutorial": _tutorial,
    "knowledge_list": _knowledge_list,
}


def is_valid_format(family: str, text: str) -> bool:
    """Families without a structural rule (paraphrase, summary, …) only need non-empty text."""
    check = CHECKS.get(family)
    return bool(text.strip()) and (check is None or check(text))
