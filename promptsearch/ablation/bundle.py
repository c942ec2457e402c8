"""The bundle of a promoted trial: everything its full ablation runs, written into one folder.

In: the trial's `Recipe`, the study's corpora and an `AblationProfile`.
Out: a folder holding `bundle.yaml` (this manifest), `nanotron.yaml`, `train.sbatch`,
`evaluate.sbatch` (plus `lighteval_tasks.txt` on a cluster) and, for `bpe`, the tokenizer. The
datatrove stages (rephrase, tokenize, merge) are built from the manifest by
`promptsearch.ablation.executors.datatrove_executor` when the chain is submitted; datatrove then
writes each one's `launch_script.slurm` under `logs/`.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import yaml

from promptsearch.ablation.nanotron import nanotron_config
from promptsearch.ablation.profile import AblationProfile
from promptsearch.config import StrictModel, load_model
from promptsearch.corpus import read_corpus
from promptsearch.errors import UserError
from promptsearch.pipelines import SlurmJob
from promptsearch.proxy import corpus_tokenizer
from promptsearch.recipe import Recipe
from promptsearch.space import CorpusSpec

# The chain, in submission order: stage → the stages it waits for (afterok).
STAGES: dict[str, tuple[str, ...]] = {
    "rephrase": (),
    "tokenize-synthetic": ("rephrase",),
    "merge-synthetic": ("tokenize-synthetic",),
    "tokenize-mix-in": (),
    "merge-mix-in": ("tokenize-mix-in",),
    "train": ("merge-synthetic", "merge-mix-in"),
    "evaluate": ("train",),
}
DATATROVE_STAGES = ("rephrase", "tokenize-synthetic", "merge-synthetic", "tokenize-mix-in", "merge-mix-in")


def stage_job(profile: AblationProfile, stage: str) -> SlurmJob:
    """The sbatch settings a stage's job (each task of an array) runs with."""
    if stage == "rephrase":
        return profile.rephrase.slurm
    if stage.startswith("tokenize-"):
        return profile.tokenize.slurm
    if stage.startswith("merge-"):
        return profile.tokenize.slurm.model_copy(update={"tasks": 1})
    return profile.training.slurm if stage == "train" else profile.evaluation.slurm


def stage_gpus(profile: AblationProfile, stage: str) -> int:
    """GPUs held by one job (one array task) of the stage: GPUs per node x nodes."""
    job = stage_job(profile, stage)
    return job.gpus_per_node * job.nodes


class Bundle(StrictModel):
    """The manifest (`bundle.yaml`): what was promoted and where each stage reads and writes."""

    study: str
    trial: int
    folder: str
    profile: AblationProfile
    recipe: Recipe
    source: CorpusSpec
    mix_in: CorpusSpec
    heldout: CorpusSpec
    documents: int
    tokenizer: str
    environments: dict[str, str]  # stage kind → activate script, resolved when the bundle was written

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def weights(self) -> dict[str, float]:
        return {"synthetic": self.recipe.mix_ratio, "mix-in": 1 - self.recipe.mix_ratio}

    def tokenized(self, name: str) -> Path:
        return self.path / "tokenized" / name

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def logs(self, stage: str) -> Path:
        return self.path / "logs" / stage

    def log_glob(self, stage: str, job_id: str) -> str:
        """Where Slurm writes the stage's output (datatrove: one file per array task)."""
        if stage in DATATROVE_STAGES:
            return str(self.logs(stage) / "slurm_logs" / f"{job_id}_*.out")
        return str(self.path / "logs" / f"{stage}-{job_id}.out")

    def job_name(self, stage: str) -> str:
        return f"ps-{self.study}-{self.trial}-{stage}"


def load_bundle(folder: Path) -> Bundle:
    """Read `bundle.yaml`; a mistake in it is reported with its YAML path and line."""
    manifest = folder / "bundle.yaml"
    if not manifest.is_file():
        raise UserError(f"no bundle at {folder} (bundle.yaml missing)")
    return load_model(manifest, Bundle)


def _activate(setting: str | None) -> str:
    return setting or str(Path(sys.prefix) / "bin" / "activate")


def write_bundle(
    study: str,
    trial: int,
    recipe: Recipe,
    corpora: dict[str, CorpusSpec],
    profile: AblationProfile,
    folder: Path,
) -> Bundle:
    """Write the folder; `corpora` holds the study's source, mix_in and heldout (the profile may override)."""
    folder = folder.resolve()
    profile.require_cluster_settings(f"bundle {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    if recipe.generator.backend != "vllm" and profile.runtime == "cluster" and not profile.rephrase.vllm_model:
        raise UserError(
            f"profile {profile.name}: the trial's generator is {recipe.generator.backend!r}; "
            "set rephrase.vllm_model to the model vLLM should serve"
        )
    source = profile.rephrase.source or corpora["source"]
    mix_in = profile.tokenize.mix_in or corpora["mix_in"]
    env = profile.environments
    bundle = Bundle(
        study=study,
        trial=trial,
        folder=str(folder),
        profile=profile,
        recipe=recipe,
        source=source,
        mix_in=mix_in,
        heldout=corpora["heldout"],
        documents=profile.documents_to_rephrase(recipe.sampling.max_new_tokens, source),
        tokenizer=_tokenizer(profile, mix_in, folder),
        environments={
            "rephrase": _activate(env.rephrase),
            "tokenize": _activate(env.tokenize),
            "train": _activate(env.train),
            "evaluate": _activate(env.evaluate),
        },
    )
    config = nanotron_config(
        profile,
        run_name=f"{study}-trial-{trial}",
        tokenizer=bundle.tokenizer,
        folders={name: str(bundle.tokenized(name)) for name in bundle.weights},
        weights=bundle.weights,
        checkpoints_path=str(bundle.checkpoints),
    )
    (folder / "nanotron.yaml").write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    (folder / "train.sbatch").write_text(_sbatch(bundle, "train", profile.training.slurm, _train_body(bundle)))
    (folder / "evaluate.sbatch").write_text(
        _sbatch(bundle, "evaluate", profile.evaluation.slurm, _evaluate_body(bundle))
    )
    if profile.runtime == "cluster":
        e = profile.evaluation
        (folder / "lighteval_tasks.txt").write_text("".join(f"{t.name}|{e.num_fewshot}\n" for t in e.tasks))
    (folder / "bundle.yaml").write_text(yaml.safe_dump(bundle.model_dump(mode="json"), sort_keys=False))
    return bundle


def _tokenizer(profile: AblationProfile, mix_in: CorpusSpec, folder: Path) -> str:
    if profile.tokenize.tokenizer != "bpe":
        return profile.tokenize.tokenizer
    texts = [d.text for d in read_corpus(mix_in).documents]
    trained = corpus_tokenizer(texts, profile.model.vocab_size, folder / "tokenizer-cache")
    target = folder / "tokenizer.json"
    shutil.copyfile(trained, target)
    return str(target)


def _sbatch(bundle: Bundle, stage: str, job: SlurmJob, body: str) -> str:
    """An sbatch script for the non-datatrove stages; dependencies are given to sbatch at submission."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={bundle.job_name(stage)}",
        f"#SBATCH --partition={job.partition}",
        f"#SBATCH --time={job.time}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={job.cpus_per_task}",
        f"#SBATCH --mem-per-cpu={job.mem_per_cpu_gb}G",
        f"#SBATCH --output={bundle.path / 'logs' / f'{stage}-%j.out'}",
    ]
    if job.gpus_per_node:
        lines.append(f"#SBATCH --gres=gpu:{job.gpus_per_node}")
    if job.qos:
        lines.append(f"#SBATCH --qos={job.qos}")
    lines += [f"#SBATCH --{key}={value}" if value else f"#SBATCH --{key}" for key, value in job.sbatch_args.items()]
    return "\n".join([*lines, "set -euo pipefail", "export PYTHONUNBUFFERED=1", body.strip(), ""])


def _train_body(bundle: Bundle) -> str:
    config = bundle.path / "nanotron.yaml"
    activate = f"source {shlex.quote(bundle.environments['train'])}"
    if bundle.profile.runtime == "cpu-smoke":
        return f"{activate}\nsrun -n 1 python -m promptsearch.ablation.jobs train {shlex.quote(bundle.folder)}"
    job = bundle.profile.training.slurm
    nanotron = Path(_nanotron_dir(bundle))
    # One srun task per node; torchrun starts one process per GPU and rendezvouses on the first node.
    torchrun = (
        f"torchrun --nproc_per_node {job.gpus_per_node} --nnodes $SLURM_NNODES --node_rank $SLURM_PROCID "
        "--rdzv-backend c10d --rdzv-endpoint $MASTER_ADDR:$MASTER_PORT --rdzv-id $SLURM_JOB_ID "
        f"--max_restarts 0 --tee 3 {nanotron / 'run_train.py'} --config-file {config}"
    )
    return "\n".join(
        [
            activate,
            'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "export MASTER_PORT=29500",
            "export CUDA_DEVICE_MAX_CONNECTIONS=1",
            f"srun --ntasks-per-node=1 bash -c {shlex.quote(torchrun)}",
        ]
    )


def _evaluate_body(bundle: Bundle) -> str:
    if bundle.profile.runtime == "cpu-smoke":
        activate = f"source {shlex.quote(bundle.environments['evaluate'])}"
        return f"{activate}\nsrun -n 1 python -m promptsearch.ablation.jobs evaluate {shlex.quote(bundle.folder)}"
    e = bundle.profile.evaluation
    custom = f" --custom-tasks {shlex.quote(e.custom_tasks)}" if e.custom_tasks else ""
    model_args = f"model_name=$CKPT/hf_model,dtype={bundle.profile.model.dtype},batch_size={e.batch_size}"
    if e.max_length:
        model_args += f",max_length={e.max_length}"
    return "\n".join(
        [
            # nanotron writes the last saved step to latest.txt; conversion needs nanotron's own environment
            f"CKPT={bundle.checkpoints}/$(cat {bundle.checkpoints / 'latest.txt'})",
            f"source {shlex.quote(bundle.environments['train'])}",
            # the converter imports `.convert_weights` (a relative import): it runs as a module of the checkout
            f"(cd {shlex.quote(_nanotron_dir(bundle))} && torchrun --standalone --nproc_per_node=1 "
            '-m examples.llama.convert_nanotron_to_hf --checkpoint_path "$CKPT" --save_path "$CKPT/hf_model")',
            f"source {shlex.quote(bundle.environments['evaluate'])}",
            f'srun -n 1 lighteval accelerate "{model_args}" {bundle.path / "lighteval_tasks.txt"}{custom} '
            f"--max-samples {e.max_samples} --output-dir {bundle.eval_dir}",
        ]
    )


def _nanotron_dir(bundle: Bundle) -> str:
    """The nanotron checkout (`require_cluster_settings` refuses a cluster profile without one)."""
    nanotron = bundle.profile.environments.nanotron_dir
    if not nanotron:
        raise UserError(f"profile {bundle.profile.name!r}: environments.nanotron_dir is not set")
    return nanotron
