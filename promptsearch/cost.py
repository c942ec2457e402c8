"""What generation and full ablations cost: measured in trials, predicted before spending.

In: a generator and the seconds it ran, or the rephrase metrics of earlier trials.
Out: device hours (GPU-hours for vLLM and a GPU-backed embedded server, CPU core-hours on CPU), the
seconds a trial's rephrase stage should take, and the cost of a million generated tokens (export).

Full ablations, in: an ablation profile (its `cost` assumptions), the bundle's rephrase size and the
trial's metrics. Out: the chain's predicted GPU-hours per GPU stage (`predict_ablation`, recorded in the
ablation row at promotion), and the actual ones from Slurm's elapsed time x the job's GPUs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from promptsearch.recipe import GeneratorSpec

if TYPE_CHECKING:
    from promptsearch.ablation.profile import AblationProfile


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


# ---------------------------------------------------------------------------------------- full ablations

GPU_STAGES = ("rephrase", "train", "evaluate")  # tokenization and merging run on CPU nodes


def slurm_seconds(text: str) -> float:
    """Seconds in a Slurm duration: `--time` values and squeue's %M (`M:SS`, `H:MM:SS`, `D-HH:MM:SS`, `D-HH`)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"not a Slurm duration: {text!r}")
    days, first, second, third = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts = [int(first), int(second or 0), int(third or 0)]
    elif third is not None:  # H:M:S
        parts = [int(first), int(second), int(third)]
    elif second is not None:  # M:S
        parts = [0, int(first), int(second)]
    else:  # M
        parts = [0, int(first), 0]
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def training_flops(parameters: int, tokens: int) -> float:
    """6 FLOPs per parameter per token (2 forward, 4 backward). The attention-score term, 12 x layers x
    hidden x sequence per token (about +28% for full-21b's 4,096-token sequences), is left out, as in the
    6ND convention MFU figures are usually quoted in."""
    return 6.0 * parameters * tokens


def training_gpu_hours(parameters: int, tokens: int, peak_flops: float, mfu: float) -> float:
    """6 x parameters x tokens / (one GPU's peak FLOP/s x MFU), in hours."""
    return training_flops(parameters, tokens) / (peak_flops * mfu) / 3600


def measured_tokens_per_gpu_hour(backend: str, metrics: Mapping[str, float]) -> float | None:
    """The throughput the trial measured on vLLM (completion tokens / GPU-hours); None when it ran elsewhere or
    generated nothing (served from the cache)."""
    tokens, gpu_hours = metrics.get("rephrase.completion_tokens"), metrics.get("rephrase.gpu_hours")
    if backend != "vllm" or not tokens or not gpu_hours:
        return None
    return tokens / gpu_hours


def predict_ablation(
    profile: AblationProfile,
    rephrase_tokens: int,
    backend: str,
    trial_metrics: Mapping[str, float],
    stage_gpus: Mapping[str, int],
) -> dict[str, Any]:
    """The chain's GPU-hours before it runs. `rephrase_tokens`: the most the rephrase stage generates (documents x
    max_new_tokens x best_of_n); `stage_gpus`: the GPUs of one job of each stage (a stage without GPUs costs none).

    rephrase = tokens / tokens per GPU-hour (the trial's, measured on vLLM, else `cost.rephrase_tokens_per_gpu_hour`);
    train = 6 x parameters x training tokens / (cost.gpu_peak_flops x cost.mfu); evaluate = `cost.evaluate_gpu_hours`,
    else the evaluate job's GPUs x its time limit."""
    c = profile.cost
    measured = measured_tokens_per_gpu_hour(backend, trial_metrics)
    throughput = measured or c.rephrase_tokens_per_gpu_hour
    parameters, tokens = profile.model.parameters, profile.training.tokens
    evaluate_limit = stage_gpus["evaluate"] * slurm_seconds(profile.evaluation.slurm.time) / 3600
    gpu_hours = {
        "rephrase": rephrase_tokens / throughput,
        "train": training_gpu_hours(parameters, tokens, c.gpu_peak_flops, c.mfu),
        "evaluate": c.evaluate_gpu_hours if c.evaluate_gpu_hours is not None else evaluate_limit,
    }
    gpu_hours = {stage: hours if stage_gpus[stage] else 0.0 for stage, hours in gpu_hours.items()}
    return {
        "gpu_hours": gpu_hours,
        "total_gpu_hours": sum(gpu_hours.values()),
        "rephrase_tokens": rephrase_tokens,
        "rephrase_tokens_per_gpu_hour": throughput,
        "rephrase_throughput": "measured by the trial on vLLM"
        if measured
        else "assumed (cost.rephrase_tokens_per_gpu_hour)",
        "train_parameters": parameters,
        "train_tokens": tokens,
        "train_flops": training_flops(parameters, tokens),
        "gpu_peak_flops": c.gpu_peak_flops,
        "mfu": c.mfu,
        "evaluate": "cost.evaluate_gpu_hours"
        if c.evaluate_gpu_hours is not None
        else f"{stage_gpus['evaluate']} GPU(s) x time limit {profile.evaluation.slurm.time}",
    }


def _amount(n: float) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e9 else f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,.0f}"


def format_prediction(predicted: Mapping[str, Any]) -> str:
    """One line: the total and each GPU stage with what it rests on."""
    p, h = predicted, predicted["gpu_hours"]
    rephrase = (
        f"rephrase {h['rephrase']:,.1f} ({_amount(p['rephrase_tokens'])} tokens at "
        f"{p['rephrase_tokens_per_gpu_hour'] / 1e6:,.1f}M per GPU-hour, {p['rephrase_throughput']})"
    )
    train = (
        f"train {h['train']:,.1f} (6 x {p['train_parameters'] / 1e9:.2f}B parameters x "
        f"{p['train_tokens'] / 1e9:.2f}B tokens at {p['mfu']:.0%} MFU of {p['gpu_peak_flops'] / 1e12:,.0f} TFLOP/s)"
    )
    evaluate = f"evaluate {h['evaluate']:,.1f} ({p['evaluate']})"
    return f"predicted GPU-hours: {p['total_gpu_hours']:,.1f} = {rephrase} + {train} + {evaluate}; tokenization on CPU"


def actual_gpu_hours(seconds: float, gpus: int) -> dict[str, float]:
    """What a finished job held: Slurm's elapsed time (summed over an array's tasks) x the GPUs of one task."""
    return {"seconds": seconds, "gpus": gpus, "gpu_hours": seconds * gpus / 3600}


def cost_comparison(cost: Mapping[str, Any] | None, stages: Iterable[str]) -> list[tuple[str, str, str]]:
    """(stage, predicted, actual) GPU-hours: the GPU stages, the other stages together, and the total; an actual
    value once every job counted in it has ended ("-" before)."""
    cost = cost or {}
    predicted = (cost.get("predicted") or {}).get("gpu_hours", {})
    actual: dict[str, dict[str, float]] = cost.get("actual") or {}
    stages = list(stages)
    others = [s for s in stages if s not in GPU_STAGES]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    def ended(names: list[str]) -> float | None:
        return sum(actual[n]["gpu_hours"] for n in names) if names and all(n in actual for n in names) else None

    rows = [(stage, fmt(predicted.get(stage)), fmt(ended([stage]))) for stage in GPU_STAGES if stage in stages]
    rows.append(("other stages", "0.00" if predicted else "-", fmt(ended(others))))
    rows.append(("total", fmt(sum(predicted.values()) if predicted else None), fmt(ended(stages))))
    return rows
