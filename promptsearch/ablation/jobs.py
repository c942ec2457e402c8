"""What runs inside an ablation's train and evaluate Slurm jobs for the `cpu-smoke` runtime.

`python -m promptsearch.ablation.jobs train|evaluate BUNDLE_DIR`.

In: a bundle folder (`bundle.yaml`, `nanotron.yaml`, the tokenized folders, then the checkpoint).
Out: `train` writes an HF checkpoint at `checkpoints/<step>/hf_model` and `checkpoints/latest.txt`
(nanotron's layout after conversion); `evaluate` runs lighteval itself on the benchmark suite's offline
tasks (`promptsearch.suite`), which writes `eval/results/<model>/results_<ts>.json`, the file
`ablation ingest` reads from either runtime.

`train` stands in for nanotron (the proxy trainer), so that the whole submit → track → ingest path
runs for real on a CPU Slurm node. The rephrase stage needs no stand-in: datatrove starts vLLM's CPU build
on the embedded model (`promptsearch.ablation.executors`); nor does evaluation: lighteval runs on CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from promptsearch.ablation.bundle import Bundle, load_bundle
from promptsearch.ablation.nanotron import NanotronConfig
from promptsearch.ablation.results import results_file
from promptsearch.proxy import train_llama
from promptsearch.proxy_profile import ProxyModelSpec, ProxyTrainSpec, SuiteEvalSpec
from promptsearch.suite import evaluate_suite


def train(bundle: Bundle) -> Path:
    """Stands in for nanotron on a GPU cluster: the proxy trainer, configured from `nanotron.yaml`
    (nanotron's schedule ends at `min_decay_lr`, the profile's `min_lr_ratio` of the peak rate)."""
    from datatrove.utils.dataset import DatatroveFolderDataset  # torch
    from transformers import PreTrainedTokenizerFast

    config = NanotronConfig.model_validate(yaml.safe_load((bundle.path / "nanotron.yaml").read_text()))
    qwen, tokens = config.model.model_config_, config.tokens
    dataset = config.data_stages[0].data.dataset
    scheduler = config.optimizer.learning_rate_scheduler
    global_batch = tokens.micro_batch_size * tokens.batch_accumulation_per_replica * config.parallelism.dp
    datasets = {
        folder: DatatroveFolderDataset(
            folder,
            seq_len=tokens.sequence_length,
            filename_pattern="*.ds",
            recursive=False,
            token_size=dataset.token_size_in_bytes,
        )
        for folder in dataset.dataset_folder
    }
    if empty := [folder for folder, data in datasets.items() if len(data) == 0]:
        raise SystemExit(f"fewer than {tokens.sequence_length + 1} tokens in {', '.join(empty)}")
    model, losses, steps = train_llama(
        datasets,
        dict(zip(dataset.dataset_folder, dataset.dataset_weights, strict=True)),
        qwen.vocab_size,
        ProxyModelSpec(
            hidden_size=qwen.hidden_size,
            num_layers=qwen.num_hidden_layers,
            num_heads=qwen.num_attention_heads,
            num_kv_heads=qwen.num_key_value_heads,
            intermediate_size=qwen.intermediate_size,
            seq_len=tokens.sequence_length,
        ),
        ProxyTrainSpec(
            tokens=tokens.sequence_length * global_batch * tokens.train_steps,
            batch_size=global_batch,
            learning_rate=scheduler.learning_rate,
            warmup_fraction=scheduler.lr_warmup_steps / tokens.train_steps,
            decay_fraction=scheduler.lr_decay_steps / tokens.train_steps,
            min_lr_ratio=bundle.profile.training.min_lr_ratio,
        ),
        "cpu",
        config.general.seed,
    )
    checkpoints = Path(config.checkpoints.checkpoints_path)
    target = checkpoints / str(steps) / "hf_model"
    model.save_pretrained(target)
    PreTrainedTokenizerFast(
        tokenizer_file=bundle.tokenizer, eos_token=bundle.profile.tokenize.eos_token
    ).save_pretrained(target)
    (checkpoints / "latest.txt").write_text(str(steps))
    print(f"trained {steps} steps; loss {losses[0]:.3f} -> {losses[-1]:.3f}; saved {target}")
    return target


def evaluate(bundle: Bundle) -> Path:
    """lighteval itself, on a CPU node: the profile's tasks of promptsearch's suite (`suite.evaluate_suite`, the
    proxy's code path) on the final checkpoint, in one pipeline run, from the offline copies. Out: lighteval's
    results JSON under `eval/results/`; a task whose offline data is missing fails the job with one line."""
    import torch

    step = (bundle.checkpoints / "latest.txt").read_text().strip()
    checkpoint = bundle.checkpoints / step / "hf_model"
    settings = bundle.profile.evaluation
    # A CPU Slurm node (CI's) has no internet, and the Hub probe would cost seconds to find out
    os.environ.setdefault("PROMPTSEARCH_SUITE_SOURCE", "offline")
    # torch starts a thread per core, which contend with the node's other jobs: scoring the suite took 31 s
    # instead of 5 s on 2 busy cores. Use the CPUs Slurm gave the job.
    torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    spec = SuiteEvalSpec(
        tasks=[task.name for task in settings.tasks],
        num_fewshot=settings.num_fewshot,
        max_samples=settings.max_samples,
    )
    evaluate_suite(checkpoint, spec, bundle.eval_dir, "cpu", settings.max_length)
    out = results_file(bundle.eval_dir)
    print(f"wrote {out}")
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("train", "evaluate"):
        raise SystemExit("usage: python -m promptsearch.ablation.jobs train|evaluate BUNDLE_DIR")
    bundle = load_bundle(Path(argv[1]))
    (train if argv[0] == "train" else evaluate)(bundle)


if __name__ == "__main__":
    main(sys.argv[1:])
