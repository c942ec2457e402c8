"""Proxy compute saved by early pruning on a quickstart-sized study with a deliberately broken template.

Two otherwise identical studies (same seed, same templates: faq, table and a template that makes the
model echo its input, i.e. a third of the pool broken), one with the default thresholds and one with pruning
off, each in its own database. Reports proxy seconds spent, the saving and whether the best trial is
the same. Writes benchmarks/results/pruning.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from promptsearch.study import RunOptions, create_study, load_study, start_study

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BROKEN = "Repeat after me:\n\n{document}"  # SmolLM2-135M echoes the document
NO_PRUNING = {
    "min_unique_prefix_ratio_10": 0,
    "min_number_recall": 0,
    "min_format_validity": 0,
    "max_echo_rate": 1,
    "max_failure_rate": 1,
}


def run(tmp: Path, name: str, prune: dict[str, float] | None) -> dict:
    space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    broken = tmp / "broken" / "echo.txt"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text(BROKEN)
    space |= {
        "name": name,
        "proxy": str(REPO / "proxies" / "cpu-tiny.yaml"),
        "budget": {"trials": 3},
        "templates": {"seeds": ["faq", "table"], "files": [str(broken)]},
        "measure": {"embeddings": True, **({"prune": prune} if prune is not None else {})},
    }
    space_file = tmp / f"{name}.yaml"
    space_file.write_text(yaml.safe_dump(space))
    url = f"sqlite:///{tmp / f'{name}.db'}"
    create_study(space_file, url)
    start_study(name, RunOptions(db_url=url, workdir=tmp / "runs"))
    study, _ = load_study(name, url)
    trials = study.trials
    best = study.best_trial
    return {
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "template_id": t.user_attrs.get("template_id"),
                "value": t.value,
                "proxy_seconds": t.user_attrs.get("seconds.proxy", 0.0),
                "pruned_reason": t.user_attrs.get("pruned_reason"),
            }
            for t in trials
        ],
        "proxy_seconds": sum(t.user_attrs.get("seconds.proxy", 0.0) for t in trials),
        "best": {
            "number": best.number,
            "template_id": best.user_attrs["template_id"],
            "params": best.params,
            "value": best.value,
        },
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pruned = run(Path(tmp), "with-pruning", None)
        unpruned = run(Path(tmp), "without-pruning", NO_PRUNING)
    report = {
        "benchmark": "pruning",
        "with_pruning": pruned,
        "without_pruning": unpruned,
        "proxy_compute_saved": 1 - pruned["proxy_seconds"] / unpruned["proxy_seconds"],
        "best_trial_unchanged": pruned["best"]["template_id"] == unpruned["best"]["template_id"]
        and pruned["best"]["params"] == unpruned["best"]["params"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pruning.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("proxy_compute_saved", "best_trial_unchanged")}, indent=2))


if __name__ == "__main__":
    main()
