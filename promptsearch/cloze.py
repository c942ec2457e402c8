"""Knowledge-retention cloze items built from the source documents a trial rephrased.

In: source texts. Out: `ClozeItem`s — a sentence prefix from one document, its gold continuation (a
number, date or named entity that the sentence states) and distractors of the same kind taken from
other documents. A proxy model that learned the documents' facts from the synthetic data puts more
probability on the gold continuation; `score_cloze` reports accuracy and lighteval's
`prob_norm_token` (the gold choice's share of the token-length-normalized choice probabilities).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
_ENTITY = re.compile(r"(?<=\s)[A-Z][a-z]{2,}(?:\s+[A-Z][a-z]{2,})*")


@dataclass(frozen=True)
class ClozeItem:
    prefix: str
    choices: tuple[str, ...]
    gold: int


def _candidates(text: str) -> list[tuple[str, str, str]]:
    """(prefix, answer, kind) for each number or mid-sentence entity, with the sentence start as prefix."""
    out = []
    for sentence in _SENTENCE.split(text):
        for kind, pattern in (("number", _NUMBER), ("entity", _ENTITY)):
            for match in pattern.finditer(sentence):
                prefix = sentence[: match.start()].rstrip()
                if len(prefix.split()) >= 4:
                    out.append((prefix, match.group(0), kind))
    return out


def build_cloze_items(documents: list[str], per_document: int = 2, choices: int = 4, seed: int = 0) -> list[ClozeItem]:
    """Deterministic items; distractors are same-kind answers from the other documents."""
    rng = random.Random(seed)
    per_doc = [_candidates(text) for text in documents]
    pools: dict[str, list[tuple[int, str]]] = {"number": [], "entity": []}
    for index, candidates in enumerate(per_doc):
        for _, answer, kind in candidates:
            pools[kind].append((index, answer))
    items = []
    for index, candidates in enumerate(per_doc):
        rng.shuffle(candidates)
        for prefix, answer, kind in candidates[:per_document]:
            others = sorted({a for i, a in pools[kind] if i != index and a != answer})
            if len(others) < choices - 1:
                continue
            options = [answer, *rng.sample(others, choices - 1)]
            rng.shuffle(options)
            items.append(ClozeItem(prefix, tuple(options), options.index(answer)))
    return items


def score_cloze(
    model, tokenizer, items: list[ClozeItem], device: str, max_tokens: int
) -> tuple[dict[str, float], list[float]]:
    """Accuracy and prob_norm_token of the gold continuation (a `tokenizers.Tokenizer`, a causal LM),
    and each item's prob_norm_token (what the Wilcoxon pruner compares between trials)."""
    import torch

    if not items:
        return {}, []
    correct = 0
    item_probs: list[float] = []
    model.eval()
    with torch.no_grad():
        for item in items:
            encoded = [tokenizer.encode(" " + choice).ids for choice in item.choices]
            prefix_ids = tokenizer.encode(item.prefix).ids[-(max_tokens - max(map(len, encoded))) :]
            normalized = []
            for choice_ids in encoded:
                ids = torch.tensor([prefix_ids + choice_ids], device=device)
                logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
                targets = ids[0, len(prefix_ids) :]
                positions = torch.arange(len(prefix_ids) - 1, ids.shape[1] - 1, device=device)
                total = logprobs[positions, targets].sum().item()
                normalized.append(total / len(choice_ids))
            best = max(range(len(normalized)), key=normalized.__getitem__)
            correct += best == item.gold
            weights = [math.exp(v - max(normalized)) for v in normalized]
            item_probs.append(weights[item.gold] / sum(weights))
    return {"knowledge_acc": correct / len(items), "knowledge_prob": sum(item_probs) / len(items)}, item_probs
