"""The proxy: real tokenization and training at small sizes."""

import json
import math
import re
import statistics
from pathlib import Path

import pytest
from conftest import DATA, news
from tokenizers import Tokenizer

from promptsearch import lighteval_tasks
from promptsearch.cloze import build_cloze_items
from promptsearch.corpus import read_corpus
from promptsearch.proxy import Mixture, TokenStream, calibrate, corpus_tokenizer, run_proxy
from promptsearch.proxy_profile import load_proxy_profile
from promptsearch.space import CorpusSpec


def _corpora() -> tuple[list[str], list[str], list[str]]:
    source = [d.text for d in news(12)]
    raw = [
        d.text
        for d in read_corpus(
            CorpusSpec(format="embedded", path="lee_background", skip=100, limit=80, max_chars=600)
        ).documents
    ]
    heldout = [d.text for d in read_corpus(CorpusSpec(format="embedded", path="lee", limit=10)).documents]
    return source, raw, heldout


def test_cloze_items_come_from_the_sources() -> None:
    source = [d.text for d in news(12)]
    items = build_cloze_items(source, seed=0)
    assert len(items) >= 12
    for item in items:
        assert len(set(item.choices)) == 4
        assert any(item.prefix in text for text in source)
        gold = item.choices[item.gold]
        assert any(f"{item.prefix} {gold}" in " ".join(text.split()) or gold in text for text in source)
    assert build_cloze_items(source, seed=0) == items  # deterministic


def test_knowledge_retention_separates_source_from_garbage(tmp_path: Path) -> None:
    """Sensitivity of both knowledge scores: a synthetic part that carries the sources' content (their
    sentences in reverse order, so no document is seen as it is scored) vs garbage, against the noise floor."""
    profile = load_proxy_profile(DATA / "proxy-knowledge.yaml")
    source, raw, heldout = _corpora()
    reordered = [" ".join(reversed(re.split(r"(?<=[.!?])\s+", text))) for text in source]
    runs = calibrate(Mixture(reordered, raw, heldout, source, 0.7), profile, tmp_path / "calibration", seeds=3)
    garbage = ["lorem ipsum dolor sit amet " * 20 for _ in source]
    uninformed = run_proxy(Mixture(garbage, raw, heldout, source, 0.7), profile, tmp_path / "garbage", 0).scores
    for score, sign in (("knowledge_prob", 1), ("knowledge_bpb", -1)):
        noise = statistics.stdev(r[score] for r in runs)
        informed = statistics.fmean(r[score] for r in runs)
        gap = sign * (informed - uninformed[score])
        print(
            f"{score}: content {informed:.4f}, garbage {uninformed[score]:.4f}, "
            f"gap {gap:.4f}, noise floor {noise:.4f} ({gap / max(noise, 1e-9):.1f}x)"
        )
        assert gap > 3 * noise
    assert all(r["heldout_bpb"] > 0 for r in runs)


def test_knowledge_bpb_is_the_byte_weighted_mean_of_its_documents(tmp_path: Path) -> None:
    """The per-document values a Wilcoxon pruner compares add up to the run's knowledge_bpb."""
    profile = load_proxy_profile(DATA / "proxy-micro.yaml")
    source, raw, heldout = _corpora()
    result = run_proxy(Mixture(source, raw, heldout, source, 0.5), profile, tmp_path / "run", 0)
    tokenizer = Tokenizer.from_file(str(corpus_tokenizer(raw, profile.tokenizer.vocab_size, tmp_path / "tokenizers")))
    stream = TokenStream.encode(tokenizer, source, profile.heldout_tokens, "source")
    final = result.checkpoints[-1]
    assert len(final.document_bpb) == len(stream.doc_bytes) >= 2
    assert all(bpb > 0 for bpb in final.document_bpb)
    weighted = sum(b * n for b, n in zip(final.document_bpb, stream.doc_bytes, strict=True)) / sum(stream.doc_bytes)
    assert weighted == pytest.approx(result.scores["knowledge_bpb"], rel=1e-9)


def test_lighteval_tasks_score_the_final_checkpoint(tmp_path: Path) -> None:
    profile = load_proxy_profile(DATA / "proxy-micro-lighteval.yaml")
    assert profile.lighteval_tasks[1].path == str(DATA / "mc-task.jsonl")  # relative to the profile
    source, raw, heldout = _corpora()
    result = run_proxy(Mixture(source, raw, heldout, source, 0.5), profile, tmp_path / "run", 0)
    names = {"source_cloze", "local_mc"}
    assert {f"lighteval.{n}.{m}" for n in names for m in ("acc_norm", "prob_norm")} <= set(result.scores)
    assert all(0 <= v <= 1 for k, v in result.scores.items() if k.startswith("lighteval."))
    # lighteval's own results file, the format full ablations are ingested from
    (results_file,) = (tmp_path / "run" / "lighteval" / "results").rglob("results_*.json")
    assert {"source_cloze|0", "local_mc|0"} <= set(json.loads(results_file.read_text())["results"])
    assert result.seconds["lighteval"] > 0


def test_local_tasks_report_the_gold_continuations_probability(tmp_path: Path) -> None:
    """lighteval 0.13's `Probability` returns the most probable choice's probability; the proxy's local tasks
    report the gold's: here the gold " ab" at -3.0 (exp(-3.0 / 3) per character), the other choice more likely."""
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    lighteval_tasks.keep_every_choice_row()
    config = lighteval_tasks._local_task("local", tmp_path)
    metrics = {m.metric_name: m.sample_level_fn for m in config.metrics}
    doc = Doc(task_name="local|0", query="q", choices=[" ab", " cdef"], gold_index=0)

    def response() -> ModelResponse:  # as lighteval's backend returns it: token rows padded with -1
        return ModelResponse(logprobs=[-3.0, -1.0], output_tokens=[[5, -1], [6, 7]])

    assert metrics["prob_norm"].compute(doc=doc, model_response=response()) == pytest.approx(math.exp(-3.0 / 3))
    assert metrics["acc_norm"].compute(doc=doc, model_response=response()) == 0  # -1.0 per char against -0.2
