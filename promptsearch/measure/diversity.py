"""Diversity of a trial's outputs: distinct n-grams, compressibility, near-duplicates, Vendi score."""

from __future__ import annotations

import zlib

import numpy as np


def distinct_n(outputs: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams, over all outputs together."""
    grams: list[tuple[str, ...]] = []
    for text in outputs:
        words = text.lower().split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def compression_ratio(outputs: list[str]) -> float:
    """Raw bytes / zlib-compressed bytes of the concatenated outputs (higher = more repetitive)."""
    raw = "\n".join(outputs).encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 6)) if raw else 0.0


def near_duplicate_rate(outputs: list[str], threshold: float = 0.8, num_perm: int = 64) -> float:
    """Share of outputs whose word 5-gram MinHash (datasketch LSH) matches another output's."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures = []
    for i, text in enumerate(outputs):
        words = text.lower().split()
        shingles = {" ".join(words[j : j + 5]).encode() for j in range(max(1, len(words) - 4))}
        signature = MinHash(num_perm=num_perm, seed=1)
        signature.update_batch(list(shingles))
        lsh.insert(str(i), signature)
        signatures.append(signature)
    duplicated = sum(len(lsh.query(sig)) > 1 for sig in signatures)
    return duplicated / len(outputs) if outputs else 0.0


def vendi_score(embeddings: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of the cosine-similarity matrix / n): the effective number of
    distinct outputs (Friedman & Dieng, 2023). 1 = all the same, n = all orthogonal."""
    if len(embeddings) == 0:
        return 0.0
    unit = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
    eigenvalues = np.linalg.eigvalsh(unit @ unit.T / len(unit))
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))
