from promptsearch.measure import measure, number_recall, select_sample, unique_prefix_ratio


def test_collapsed_openings() -> None:
    outputs = [f"**Problem:** case {i} with more text" for i in range(100)]
    assert unique_prefix_ratio(outputs, 10) == 0.01
    assert measure([("src", o) for o in outputs])["top_opening_share"] == 1.0


def test_number_recall_and_echo() -> None:
    source = "In 2001, 1,200 residents of 3 towns left; 45 people were hurt near the river bank today."
    assert number_recall(source, "About 1200 residents left in 2001.") == 0.5
    metrics = measure([(source, source)])
    assert metrics["number_recall"] == 1.0
    assert metrics["echo_rate"] == 1.0


def test_best_of_n_prefers_faithful_non_echo() -> None:
    source = "The fire burned 300 homes in 2001 and 12 people were evacuated from the town of Hill Top."
    samples = ["", source, "Q: How many homes burned? A: 300, in 2001; 12 people left.", "Q: What happened? A: a fire."]
    assert select_sample(source, samples) == 2
