"""Re-running an identical trial: time and generation requests vs its first run.

Runs one quickstart trial (faq template, embedded generator, cpu-tiny proxy), enqueues a trial with
the same template and parameters, runs it, and compares. Writes
benchmarks/results/rerun_identical_trial.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from promptsearch.space import Budget
from promptsearch.study import RunOptions, create_study, open_study, start_study, study_space

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
        space |= {
            "name": "rerun",
            "proxy": str(REPO / "proxies" / "cpu-tiny.yaml"),
            "templates": {"seeds": ["faq"]},
            "budget": {"trials": 1},
        }
        space_file = Path(tmp) / "space.yaml"
        space_file.write_text(yaml.safe_dump(space))
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        options = RunOptions(db_url=url, workdir=Path(tmp) / "runs")
        create_study(space_file, url)
        start_study("rerun", options)
        study, _ = open_study("rerun", url)
        first = study.trials[0]
        widened = study_space(study).model_copy(update={"budget": Budget(trials=2)})
        study.set_user_attr("space", widened.model_dump(mode="json"))
        study.enqueue_trial(first.params, user_attrs={"template_id": first.user_attrs["template_id"]})
        start_study("rerun", options)
        study, _ = open_study("rerun", url)
        second = study.trials[1]

    def seconds(trial) -> float:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()

    report = {
        "benchmark": "rerun_identical_trial",
        "first": {
            "seconds": seconds(first),
            "requests_made": first.user_attrs["rephrase.requests_made"],
            "value": first.value,
        },
        "rerun": {
            "seconds": seconds(second),
            "requests_made": second.user_attrs["rephrase.requests_made"],
            "requests_cached": second.user_attrs["rephrase.requests_cached"],
            "proxy_reused": second.user_attrs["proxy.reused"],
            "value": second.value,
        },
    }
    report["time_ratio"] = report["rerun"]["seconds"] / report["first"]["seconds"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rerun_identical_trial.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
