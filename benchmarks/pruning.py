"""Proxy compute saved by pruning on a quickstart-sized study where a third of the templates are broken.

Two otherwise identical studies (quickstart corpus, generator and proxy; same seed; templates faq,
table, math, tutorial and two broken ones: yes/no questions about the document, so the model answers
with the same few words whatever the document says), sharing one database so that the second study
reads the first one's generations from the cache and both train on the same samples:
- with pruning: the default `measure.prune` thresholds (fidelity F0: broken trials stop before the
  proxy) and a successive-halving pruner over the proxy's eval checkpoints (weak trials stop mid-training);
- without pruning: no thresholds, no pruner.
Reports the proxy compute spent (tokens trained, which machine load does not change, and seconds),
the saving, the trials each kind of pruning stopped, and whether the best trial is the same recipe.
Writes benchmarks/results/pruning.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from promptsearch.study import RunOptions, create_study, load_study, start_study

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
# A classification prompt used as a rephrasing prompt: the output is (nearly) the same string for every
# document. SmolLM2-135M ignores "write only this sentence" instructions and rephrases anyway, but it
# answers yes/no questions.
BROKEN = {
    "yes-no-english.txt": "Is the following text written in English? Answer with yes or no only.\n\n{document}",
    "yes-no-news.txt": "Is the following text a news article? Answer with yes or no only.\n\n{document}",
}
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
        "measure": {"embeddings": True, **({} if pruning else {"prune": NO_PRUNING})},
    }
    space.pop("human_review", None)
    if pruning:
        space["pruner"] = {"kind": "successive_halving", "min_resource": 1, "reduction_factor": 2}
    space_file = tmp / f"{name}.yaml"
    space_file.write_text(yaml.safe_dump(space))
    url = f"sqlite:///{tmp / 'studies.db'}"
    create_study(space_file, url)
    start_study(name, RunOptions(db_url=url, workdir=tmp / "runs"))
    study, _ = load_study(name, url)
    best = study.best_trial
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "template": t.user_attrs["recipe"]["template_name"],
            "value": t.value,
            "proxy_seconds": t.user_attrs.get("seconds.proxy", 0.0),
            # tokens trained up to the last checkpoint reached: compute that does not depend on machine load
            "proxy_train_tokens": max(
                (v for k, v in t.user_attrs.items() if k.startswith("proxy.rung") and k.endswith(".train_tokens")),
                default=0,
            ),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--checkpoints", type=int, default=4, help="proxy eval checkpoints (pruner steps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pruned = run(Path(tmp), "with-pruning", True, args.trials, args.checkpoints)
        unpruned = run(Path(tmp), "without-pruning", False, args.trials, args.checkpoints)
    by_measure = [r for r in pruned["trials"] if (r["pruned_reason"] or "").startswith("measure:")]
    by_pruner = [r for r in pruned["trials"] if (r["pruned_reason"] or "").startswith("proxy: pruned")]
    report = {
        "benchmark": "pruning",
        "settings": {"trials": args.trials, "proxy_checkpoints": args.checkpoints, "broken_templates": list(BROKEN)},
        "with_pruning": pruned,
        "without_pruning": unpruned,
        "proxy_compute_saved": 1 - pruned["proxy_train_tokens"] / unpruned["proxy_train_tokens"],
        "proxy_seconds_saved": 1 - pruned["proxy_seconds"] / unpruned["proxy_seconds"],
        "trials_pruned_by_measure": len(by_measure),
        "trials_pruned_by_pruner": len(by_pruner),
        "best_trial_unchanged": pruned["best"]["recipe"] == unpruned["best"]["recipe"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pruning.json").write_text(json.dumps(report, indent=2))
    keys = (
        "proxy_compute_saved",
        "proxy_seconds_saved",
        "trials_pruned_by_measure",
        "trials_pruned_by_pruner",
        "best_trial_unchanged",
    )
    print(json.dumps({k: report[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
