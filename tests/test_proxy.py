"""The proxy: real tokenization and training at small sizes."""

import json
import math
import re
import statistics
import time
from pathlib import Path

import pytest
from conftest import DATA, news
from tokenizers import Tokenizer

from promptsearch import lighteval_tasks
from promptsearch.cloze import build_cloze_items
from promptsearch.corpus import read_corpus
from promptsearch.proxy import Mixture, TokenStream, calibrate, corpus_tokenizer, run_proxy
from promptsearch.proxy_profile import LightevalTaskSpec, SuiteEvalSpec, load_proxy_profile
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


def test_sciq_knowledge_task_separates_sciq_passages_from_news(tmp_path: Path) -> None:
    """Sensitivity of the SciQ closed-book task (`lighteval.sciq.gold_bpb`, the gold answer's bits per byte): a
    proxy whose synthetic part is 100 SciQ support passages against one trained on Lee news instead, both scored
    on those passages' questions, 3 seeds each; noise = the seeds' pooled standard deviation."""
    started = time.monotonic()
    profile = load_proxy_profile(DATA / "proxy-knowledge.yaml")
    profile = profile.model_copy(update={"lighteval_tasks": [LightevalTaskSpec(name="sciq", kind="sciq")]})
    passages = [d.text for d in read_corpus(CorpusSpec(format="embedded", path="sciq", limit=100)).documents]
    news_text = [d.text for d in read_corpus(CorpusSpec(format="embedded", path="lee_background", limit=100)).documents]
    _, raw, heldout = _corpora()
    bpb: dict[str, list[float]] = {}
    for name, synthetic in (("sciq", passages), ("news", news_text)):
        for seed in range(3):
            mixture = Mixture(synthetic, raw, heldout, passages, 0.7)
            scores = run_proxy(mixture, profile, tmp_path / f"{name}-{seed}", seed).scores
            bpb.setdefault(name, []).append(scores["lighteval.sciq.gold_bpb"])
    noise = math.sqrt((statistics.variance(bpb["sciq"]) + statistics.variance(bpb["news"])) / 2)
    gap = statistics.fmean(bpb["news"]) - statistics.fmean(bpb["sciq"])
    print(
        f"sciq gold_bpb: trained on SciQ passages {statistics.fmean(bpb['sciq']):.4f}, on news "
        f"{statistics.fmean(bpb['news']):.4f}, gap {gap:.4f}, noise {noise:.4f} ({gap / noise:.1f} sigma), "
        f"{time.monotonic() - started:.0f} s"
    )
    assert gap > 3 * noise


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
    assert {f"lighteval.{n}.{m}" for n in names for m in ("acc_norm", "prob_norm", "gold_bpb")} <= set(result.scores)
    for name in names:
        assert 0 <= result.scores[f"lighteval.{name}.acc_norm"] <= 1
        assert 0 < result.scores[f"lighteval.{name}.prob_norm"] < 1
        assert result.scores[f"lighteval.{name}.gold_bpb"] > 0
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
    # the gold's bits per byte: 3.0 nats over its 3 bytes
    assert metrics["gold_bpb"].compute(doc=doc, model_response=response()) == pytest.approx(3.0 / math.log(2) / 3)


def test_suite_tasks_are_scored_at_every_eval_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile's `suite` runs the benchmark suite's offline tasks through lighteval at each eval checkpoint:
    per task, per category, macro and micro, in the checkpoint's scores (what the trial records and reports as
    `proxy.rung<r>.ck<k>.*`) and the run's final scores."""
    monkeypatch.setenv("PROMPTSEARCH_SUITE_SOURCE", "offline")
    monkeypatch.setenv("PROMPTSEARCH_CACHE", str(tmp_path / "cache"))
    profile = load_proxy_profile(DATA / "proxy-micro-checkpoints.yaml")
    tasks = ["arc_cf:easy", "openbookqa_cf", "xcsqa_cf"]  # GK; RES twice, so macro and micro differ
    profile = profile.model_copy(
        update={"eval_checkpoints": 2, "suite": SuiteEvalSpec(tasks=tasks, num_fewshot=3, max_samples=8)}
    )
    source, raw, heldout = _corpora()
    result = run_proxy(Mixture(source, raw, heldout, source, 0.5), profile, tmp_path / "run", 0)
    assert [c.index for c in result.checkpoints] == [1, 2]
    for checkpoint in result.checkpoints:
        scores = checkpoint.scores
        for metric in ("prob_norm_token", "acc_norm_token", "gold_bpb"):
            per_task = [scores[f"suite.{task}.{metric}"] for task in tasks]
            res = (per_task[1] + per_task[2]) / 2
            assert scores[f"suite.RES.{metric}"] == pytest.approx(res)
            assert scores[f"suite.macro.{metric}"] == pytest.approx((per_task[0] + res) / 2)
            assert scores[f"suite.micro.{metric}"] == pytest.approx(sum(per_task) / 3)
        assert all(scores[f"suite.{task}.gold_bpb"] > 0 for task in tasks)
        assert all(0 < scores[f"suite.{task}.prob_norm_token"] < 1 for task in tasks)
    assert {k: v for k, v in result.scores.items() if k.startswith("suite.")} == {
        k: v for k, v in result.checkpoints[-1].scores.items() if k.startswith("suite.")
    }
    assert len(list((tmp_path / "run" / "suite").rglob("results_*.json"))) == 2  # lighteval's own, per checkpoint
