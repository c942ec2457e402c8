"""What generation costs: measured in trials, predicted before spending.

In: a generator and the seconds it ran, or the rephrase metrics of earlier trials.
Out: device hours (GPU-hours for vLLM and a GPU-backed embedded server, CPU core-hours on CPU), the
seconds a trial's rephrase stage should take, and the cost of a million generated tokens (export).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from promptsearch.recipe import GeneratorSpec


def device_hours(generator: GeneratorSpec, seconds: float) -> dict[str, float]:
    """GPU-hours for vLLM (tp x dp GPUs), CPU core-hours for the embedded server on CPU."""
    import torch

    if generator.backend == "vllm":
        gpus = int(generator.serving.get("tp", 1)) * int(generator.serving.get("dp", 1))
        return {"gpu_hours": seconds * gpus / 3600}
    if generator.backend == "embedded":
        if torch.cuda.is_available():
            return {"gpu_hours": seconds / 3600}
        return {"cpu_core_hours": seconds * len(os.sched_getaffinity(0)) / 3600}
    return {}


def predicted_rephrase_seconds(earlier: Iterable[Mapping[str, float]], requests: int) -> float | None:
    """Seconds for `requests` generations at the throughput measured by earlier trials of the same generator
    (their metrics); None before any of them generated anything."""
    measured = [m for m in earlier if m.get("rephrase.requests_made")]
    if not measured:
        return None
    tokens_per_request = sum(m["rephrase.completion_tokens"] / m["rephrase.requests_made"] for m in measured)
    tokens_per_second = sum(m["rephrase.tokens_per_second"] for m in measured)
    return requests * tokens_per_request / tokens_per_second  # the len(measured) factors cancel


def cost_per_million_tokens(metrics: Mapping[str, float]) -> dict[str, float]:
    """What a million generated tokens cost at the throughput a trial measured (its metrics)."""
    tokens = metrics.get("rephrase.completion_tokens", 0)
    if not tokens:
        return {}  # served from the generation cache: nothing was measured
    per_million = 1e6 / tokens
    cost = {"seconds_per_million_tokens": metrics["rephrase.seconds"] * per_million}
    for unit in ("gpu_hours", "cpu_core_hours"):
        if f"rephrase.{unit}" in metrics:
            cost[f"{unit}_per_million_tokens"] = metrics[f"rephrase.{unit}"] * per_million
    return cost
