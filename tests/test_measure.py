"""Metrics on hand-built output sets whose answers are known."""

import subprocess
import sys
from collections import Counter

import numpy as np

from promptsearch.measure import Embedder, OutputRecord, measure, select_sample, unique_prefix_ratio
from promptsearch.measure.diversity import distinct_n, near_duplicate_rate, vendi_score
from promptsearch.measure.fidelity import hallucinated_number_rate, number_recall
from promptsearch.measure.formats import is_valid_format

SOURCE = "In 2001, 1,200 residents of Hill Top left; 45 people were hurt near Mittagong on Tuesday afternoon."


def test_collapsed_openings() -> None:
    outputs = [f"**Problem:** case {i} with different words {i * 7}" for i in range(100)]
    assert unique_prefix_ratio(outputs, 10) == 0.01
    metrics = measure([OutputRecord("src", o, "math") for o in outputs])
    assert metrics["unique_prefix_ratio_10"] == 0.01 and metrics["unique_prefixes_10"] == 1
    assert metrics["top_opening_share"] == 1.0
    assert metrics["unique_prefixes_80"] == 100


def test_copy_of_source_is_faithful_and_flagged_as_echo() -> None:
    metrics = measure([OutputRecord(SOURCE, SOURCE, "paraphrase")])
    assert metrics["number_recall"] == 1.0 and metrics["entity_recall"] == 1.0
    assert metrics["echo_rate"] == 1.0 and metrics["failure_rate"] == 1.0


def test_failures_are_counted() -> None:
    records = [
        OutputRecord(SOURCE, "", "faq"),
        OutputRecord(SOURCE, "I'm sorry, I cannot help with that.", "faq"),
        OutputRecord(SOURCE, "Q: Who left? A: residents", "faq", finish_reason="length"),
        OutputRecord(SOURCE, "What happened?\nA fire.\nWho left?\n1,200 residents in 2001.", "faq"),
    ]
    metrics = measure(records)
    assert (metrics["empty_rate"], metrics["refusal_rate"], metrics["truncated_rate"]) == (0.25, 0.25, 0.25)
    assert metrics["failure_rate"] == 0.5  # empty and refusal; truncation is reported on its own
    assert metrics["format_validity"] == 0.25


def test_format_validity_per_family() -> None:
    table = "| year | people |\n|---|---|\n| 2001 | 1200 |\n\nQuestion: How many left?\nAnswer: 1200."
    assert is_valid_format("table", table)
    assert not is_valid_format("table", "In 2001, 1,200 people left.\n\nQuestion: How many?\nAnswer: 1200.")
    assert not is_valid_format("table", "| year | people |\n|---|---|\n| 2001 | 1200 |")  # no QA pair
    assert is_valid_format("faq", "What is it?\nA fire.\n\nWhen?\nIn 2001.")
    assert not is_valid_format("faq", "What is it?\nA fire.")
    math = "Problem: 3 towns had 400 people each. How many?\n1. 3 x 400 = 1200\n2. Answer: 1200"
    assert is_valid_format("math", math)
    assert not is_valid_format("math", "A story without any steps or numbers?")
    assert is_valid_format("tutorial", "Step 1: leave.\nStep 2: call.")
    assert not is_valid_format("tutorial", "Leave and call.")
    assert is_valid_format("summary", "Anything non-empty.") and not is_valid_format("summary", "  ")


def test_numbers_recall_and_hallucination() -> None:
    assert number_recall(SOURCE, "About 1200 residents left in 2001.") == 2 / 3
    assert hallucinated_number_rate(SOURCE, "1200 + 45 = 1245 people; 2001.") == 0.0  # all derivable
    assert hallucinated_number_rate(SOURCE, "It cost 777 dollars.") == 1.0


def test_diversity() -> None:
    same = ["the cat sat on the mat and looked out of the window all day long"] * 10
    assert distinct_n(same, 2) == 0.1
    assert near_duplicate_rate(same) == 1.0
    varied = [
        f"document {i} talks about topic {i} with words {' '.join(str(i * k) for k in range(12))}" for i in range(10)
    ]
    assert near_duplicate_rate(varied) == 0.0
    assert abs(vendi_score(np.ones((5, 4))) - 1.0) < 1e-6
    assert abs(vendi_score(np.eye(5)) - 5.0) < 1e-6


def test_embedding_metrics_with_embedded_minilm() -> None:
    embedder = Embedder()
    related = measure([OutputRecord(SOURCE, "Residents of Hill Top fled a bushfire in 2001.", "summary")], embedder)
    unrelated = measure([OutputRecord(SOURCE, "A recipe for lemon cake with sugar and butter.", "summary")], embedder)
    assert related["embedding_similarity"] > unrelated["embedding_similarity"] + 0.2
    vectors = embedder.embed(["a", "a", "completely different sentence"])
    assert vectors.shape == (3, 384) and np.allclose(vectors[0], vectors[1])


def test_best_of_n_rules() -> None:
    source = "The fire burned 300 homes in 2001 and 12 people were evacuated from the town of Hill Top."
    samples = [
        "",
        source,
        "Q: How many homes burned?\nA: 300, in 2001; 12 people left.",
        "Q: What happened?\nA: a fire.",
    ]
    assert select_sample(source, samples, "faq", "fidelity") == 2
    assert select_sample(source, ["Sure! Fire.", "Q: x?\nA: y\nQ: z?\nA: w"], "faq", "format") == 1
    used = Counter({"Q: How many homes bu": 3})
    assert select_sample(source, samples, "faq", "novelty", used) == 3
    assert select_sample(source, samples, "faq", "length") == 2


def test_fasttext_quality_classifier_is_stored_not_optimized(tmp_path) -> None:
    from conftest import news

    from promptsearch.measure import QualityClassifier
    from promptsearch.space import ClassifierSpec

    articles = [" ".join(d.text.split()) for d in news(40)]
    junk = [" ".join(["click here buy now free"] * 8) + f" {i}" for i in range(40)]
    train = tmp_path / "train.txt"
    train.write_text("\n".join([f"__label__hq {a}" for a in articles] + [f"__label__lq {j}" for j in junk]))
    model_path = tmp_path / "quality.bin"
    # Trained in a fresh process: fastText's trainer hits NaN in a process that already loaded torch.
    script = (
        "import fasttext, sys; fasttext.train_supervised(sys.argv[1], epoch=30, lr=0.1, verbose=0, seed=0, "
        "thread=1).save_model(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", script, str(train), str(model_path)], check=True)
    classifier = QualityClassifier(ClassifierSpec(name="dclm_like", path=str(model_path)))
    good = measure([OutputRecord(a, a, "paraphrase") for a in articles[:5]], classifiers=[classifier])
    bad = measure(
        [OutputRecord(a, j, "paraphrase") for a, j in zip(articles[:5], junk[:5], strict=True)],
        classifiers=[classifier],
    )
    assert good["quality.dclm_like"] > 0.8 > 0.2 > bad["quality.dclm_like"]
