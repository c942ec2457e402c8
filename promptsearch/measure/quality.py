"""Optional quality classifiers (a DCLM-style fastText model, or a transformers text classifier).

Their scores are stored with the other metrics and never used as the objective: FinePhrase found
the FineWeb-Edu score misleading for rephrased data (Spearman rho -0.08 with benchmark results) and
the DCLM score only moderately predictive (rho 0.61).
"""

from __future__ import annotations

from statistics import fmean

from promptsearch.errors import UserError
from promptsearch.space import ClassifierSpec


class QualityClassifier:
    def __init__(self, spec: ClassifierSpec):
        self.spec = spec
        self._model = None

    def _load(self):
        if self._model is None:
            if self.spec.kind == "fasttext":
                try:
                    import fasttext
                except ImportError as exc:
                    raise UserError("fastText classifiers need `pip install fasttext-numpy2`") from exc
                self._model = fasttext.load_model(self.spec.path)
            else:
                from transformers import pipeline

                self._model = pipeline("text-classification", model=self.spec.path, top_k=None, truncation=True)
        return self._model

    def score(self, texts: list[str]) -> float:
        """Mean probability of `spec.label` over the texts (newlines collapsed, as DCLM scoring does)."""
        model = self._load()
        flat = [" ".join(t.split()) for t in texts]
        if self.spec.kind == "fasttext":
            labels, probs = model.predict(flat, k=-1)
            scores = [
                dict(zip(ls, ps, strict=True)).get(self.spec.label, 0.0) for ls, ps in zip(labels, probs, strict=True)
            ]
        else:
            scores = [next((r["score"] for r in rows if r["label"] == self.spec.label), 0.0) for rows in model(flat)]
        return float(fmean(scores)) if scores else 0.0
