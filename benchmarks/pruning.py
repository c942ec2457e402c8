"""Proxy compute saved by pruning on a quickstart-sized study where a third of the templates are broken.

Two otherwise identical studies (quickstart corpus, generator, proxy and objective; same seed; templates
faq, table, math, tutorial and two broken ones: yes/no questions about the document, so the model answers
with the same few words whatever the document says; temperature 0.2-0.4, see BROKEN), sharing one
database so that the second study reads the first one's generations from the cache and both train on
the same samples:
- with pruning (run first): the default `measure.prune` thresholds (fidelity F0: broken trials stop
  before the proxy) and Optuna's successive halving over the proxy's eval checkpoints, rungs at 1/4, 1/2
  and all of training (weak trials stop at a rung where they are not in the better half);
- without pruning: no thresholds, no pruner. A trial whose proxy input equals one the first study
  trained to the end reuses that run; it is counted at the tokens that run trained, since that is
  what the study needs on its own.
Reports the proxy compute (tokens trained, which machine load does not change), the saving, the trials
each kind of pruning stopped, whether the best trial is the same recipe, the rank correlation (Kendall
tau) of each checkpoint's score with the final score over the unpruned study's trials (is an early rung
worth pruning on?), and the gap between the two studies' best scores in units of the proxy score's
noise floor (std over 3 training seeds of the unpruned study's best trial). Writes
benchmarks/results/pruning.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial
from scipy.stats import kendalltau

from promptsearch.proxy import calibrate, weighted_score
from promptsearch.proxy_profile import load_proxy_profile, proxy_profile_path
from promptsearch.study import RunOptions, create_study, open_study, start_study, study_space, trial_mixture

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
# A classification prompt used as a rephrasing prompt: the output opens with the same sentence for every
# document ("No, the text is not a poem.") and keeps none of its numbers. SmolLM2-135M ignores "write only
# this sentence" instructions and rephrases anyway, and at temperature 0.65 it often does so for these
# too (12 articles: unique-prefix ratio@10 0.42, number recall 0.08); at 0.3 it answers (0.17, <= 0.006).
BROKEN_TEMPERATURE = {"low": 0.2, "high": 0.4}
BROKEN = {
    "yes-no-poem.txt": "Is the following text a poem? Answer with yes or no only.\n\n{document}",
    "yes-no-news.txt": "Is the following text a news article? Answer with yes or no only.\n\n{document}",
}
PRUNER = {"kind": "successive_halving", "min_resource": 1, "reduction_factor": 2}
NO_PRUNING = {
    "min_unique_prefix_ratio_10": 0,
    "min_number_recall": 0,
    "min_format_validity": 0,
    "max_echo_rate": 1,
    "max_failure_rate": 1,
}


def run(tmp: Path, name: str, pruning: bool, trials: int, checkpoints: int) -> dict[str, Any]:
    """One study in `tmp`'s shared database; its trials, the proxy compute they spent and the best one."""
    space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    profile = yaml.safe_load((REPO / "proxies" / "cpu-tiny.yaml").read_text()) | {"eval_checkpoints": checkpoints}
    # The objective the README's figures were measured with, `-(knowledge_bpb + heldout_bpb)`: without the
    # suite, which would run lighteval at each of the checkpoints.
    profile.pop("suite", None)
    space.pop("suite_objective", None)
    space["objectives"] = [{"metric": "proxy.score", "direction": "maximize"}]
    (tmp / "cpu-tiny-checkpoints.yaml").write_text(yaml.safe_dump(profile))
    files = []
    for file_name, text in BROKEN.items():
        (tmp / file_name).write_text(text)
        files.append(str(tmp / file_name))
    space |= {
        "name": name,
        "proxy": str(tmp / "cpu-tiny-checkpoints.yaml"),
        "budget": {"trials": trials},
        "templates": {"seeds": ["faq", "table", "math", "tutorial"], "files": files},
        "sampling": space["sampling"] | {"temperature": BROKEN_TEMPERATURE},
        "measure": {"embeddings": True, **({} if pruning else {"prune": NO_PRUNING})},
    }
    space.pop("human_review", None)
    if pruning:
        space["pruner"] = PRUNER
    space_file = tmp / f"{name}.yaml"
    space_file.write_text(yaml.safe_dump(space))
    url = f"sqlite:///{tmp / 'studies.db'}"
    create_study(space_file, url)
    start_study(name, RunOptions(db_url=url, workdir=tmp / "runs"))
    study, _ = open_study(name, url)
    best = study.best_trial
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "template": t.user_attrs["recipe"]["template_name"],
            "value": t.value,
            "proxy_seconds": t.user_attrs.get("seconds.proxy", 0.0),
            # tokens trained up to the last checkpoint reached (or by the reused run): compute that does
            # not depend on machine load
            "proxy_train_tokens": max(
                (
                    v
                    for k, v in t.user_attrs.items()
                    if k == "proxy.train_tokens" or (k.startswith("proxy.rung") and k.endswith(".train_tokens"))
                ),
                default=0,
            ),
            "proxy_reused": bool(t.user_attrs.get("proxy.reused")),
            "pruned_reason": t.user_attrs.get("pruned_reason"),
            "generation_requests": t.user_attrs.get("rephrase.requests_made"),
        }
        for t in study.trials
    ]
    return {
        "trials": rows,
        "proxy_seconds": sum(r["proxy_seconds"] for r in rows),
        "proxy_train_tokens": sum(r["proxy_train_tokens"] for r in rows),
        "best": {"number": best.number, "recipe": best.user_attrs["recipe"], "value": best.value},
    }


def checkpoint_scores(trial: FrozenTrial, fallback: FrozenTrial | None) -> dict[int, float]:
    """proxy.score at each eval checkpoint, as reported to Optuna; a reused run reports only its final
    score, so its checkpoints come from the trial that trained it."""
    source = fallback if trial.user_attrs.get("proxy.reused") and fallback is not None else trial
    return dict(source.intermediate_values)


def rank_correlation(url: str, checkpoints: int) -> dict[str, float]:
    """Kendall tau between each checkpoint's score and the final one over the unpruned study's trials."""
    unpruned, _ = open_study("without-pruning", url)
    pruned, _ = open_study("with-pruning", url)
    by_number = {t.number: t for t in pruned.trials}
    curves = [checkpoint_scores(t, by_number.get(t.number)) for t in unpruned.trials]
    curves = [c for c in curves if len(c) == checkpoints]
    final = [c[checkpoints] for c in curves]
    return {f"ck{k}": float(kendalltau([c[k] for c in curves], final).statistic) for k in range(1, checkpoints)}


def score_noise(url: str, workdir: Path, seeds: int = 3) -> float:
    """Std of proxy.score over training seeds on the unpruned study's best trial's own mixture (as
    `promptsearch proxy calibrate --study without-pruning`)."""
    study, store = open_study("without-pruning", url)
    space = study_space(study)
    profile = load_proxy_profile(proxy_profile_path(space.proxy, REPO))
    runs = calibrate(trial_mixture(study, store), profile, workdir, seeds)
    return statistics.stdev(weighted_score(r, space.proxy_weights) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--checkpoints", type=int, default=4, help="proxy eval checkpoints (pruner steps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pruned = run(Path(tmp), "with-pruning", True, args.trials, args.checkpoints)
        unpruned = run(Path(tmp), "without-pruning", False, args.trials, args.checkpoints)
        url = f"sqlite:///{Path(tmp) / 'studies.db'}"
        correlation = rank_correlation(url, args.checkpoints)
        noise = score_noise(url, Path(tmp) / "calibration")
    by_measure = [r for r in pruned["trials"] if (r["pruned_reason"] or "").startswith("measure:")]
    by_pruner = [r for r in pruned["trials"] if (r["pruned_reason"] or "").startswith("proxy: pruned")]
    report = {
        "benchmark": "pruning",
        "settings": {
            "trials": args.trials,
            "proxy_checkpoints": args.checkpoints,
            "pruner": PRUNER,
            "broken_templates": list(BROKEN),
            "temperature": BROKEN_TEMPERATURE,
        },
        "with_pruning": pruned,
        "without_pruning": unpruned,
        "proxy_compute_saved": 1 - pruned["proxy_train_tokens"] / unpruned["proxy_train_tokens"],
        "proxy_seconds_saved": 1 - pruned["proxy_seconds"] / unpruned["proxy_seconds"],
        "trials_pruned_by_measure": len(by_measure),
        "trials_pruned_by_pruner": len(by_pruner),
        "best_trial_unchanged": pruned["best"]["recipe"] == unpruned["best"]["recipe"],
        "checkpoint_final_kendall_tau": correlation,
        "proxy_score_noise_std": noise,
        "best_score_gap_in_noise_std": (unpruned["best"]["value"] - pruned["best"]["value"]) / noise,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pruning.json").write_text(json.dumps(report, indent=2))
    keys = (
        "proxy_compute_saved",
        "proxy_seconds_saved",
        "trials_pruned_by_measure",
        "trials_pruned_by_pruner",
        "best_trial_unchanged",
        "checkpoint_final_kendall_tau",
        "proxy_score_noise_std",
        "best_score_gap_in_noise_std",
    )
    print(json.dumps({k: report[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
