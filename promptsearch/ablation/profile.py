"""Ablation profiles: every number of the full experiment as a typed setting.

In: a YAML file with `kind: ablation` in `proxies/` (`full-21b`, `cpu-smoke`) or a path.
Out: an `AblationProfile`, or a `SpaceError` listing each mistake with its YAML path and line.

`runtime: cluster` is the real thing (vLLM, nanotron, lighteval on GPU nodes); `runtime: cpu-smoke`
runs the same Slurm chain with CPU stand-ins (see `promptsearch.ablation.executors` and
`promptsearch.ablation.jobs`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from promptsearch.config import StrictModel, load_model, resolve_relative
from promptsearch.errors import ConfigError, UserError
from promptsearch.pipelines import SlurmJob
from promptsearch.proxy_profile import DecoderShape
from promptsearch.resources import bundled_dir
from promptsearch.space import CorpusSpec
from promptsearch.suite import module_path as suite_module_path
from promptsearch.suite import request_names as suite_request_names


class Environments(StrictModel):
    """The Python environment each job activates: the path of a venv's `bin/activate`.

    They cannot share one venv (vLLM, nanotron's working branch and lighteval pin incompatible torch,
    numpy and huggingface_hub versions). `null` means the environment promptsearch itself runs in.
    """

    rephrase: str | None = Field(None, description="vLLM + datatrove[inference] + promptsearch (--no-deps)")
    tokenize: str | None = Field(None, description="datatrove[io,processing] + promptsearch (--no-deps)")
    train: str | None = Field(None, description="nanotron (nanotron-working-branch) + flash-attn + datatrove")
    evaluate: str | None = Field(None, description="lighteval (also runs nanotron's checkpoint conversion)")
    nanotron_dir: str | None = Field(None, description="nanotron checkout: run_train.py and examples/llama")

    def unset(self) -> list[str]:
        """The settings a `runtime: cluster` chain cannot run without, as `environments.<key>`, that are null."""
        return [f"environments.{key}" for key, value in self.model_dump().items() if not value]


class RephraseSettings(StrictModel):
    token_target: int = Field(ge=1, description="synthetic tokens to produce (documents = target / max_new_tokens)")
    source: CorpusSpec | None = Field(None, description="documents to rephrase (default: the study's source)")
    vllm_model: str | None = Field(
        None, description="model vLLM serves when the trial's generator is the embedded CPU one"
    )
    records_per_chunk: int = Field(1000, ge=1)
    slurm: SlurmJob = SlurmJob()


class TokenizeSettings(StrictModel):
    """datatrove DocumentTokenizer + DocumentTokenizerMerger, one folder per source."""

    tokenizer: str = Field(
        description="a Hub name or tokenizer.json path, or `bpe`: trained on the mix-in with model.vocab_size entries"
    )
    eos_token: str
    mix_in: CorpusSpec | None = Field(None, description="raw web text (default: the study's mix-in)")
    batch_size: int = Field(2000, ge=1)
    max_tokens_per_file: int = Field(100_000_000, ge=1000)
    shuffle_chunk_size: int | None = Field(None, ge=1)
    seed: int = 42
    slurm: SlurmJob = SlurmJob()


class ModelSettings(DecoderShape):
    """A Qwen2-style decoder (nanotron's `Qwen2Config`)."""

    tie_word_embeddings: bool = True
    vocab_size: int = Field(ge=256)
    bos_token_id: int | None = None
    eos_token_id: int = Field(ge=0)
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    init_std: float = 0.02
    dtype: Literal["bfloat16", "float32"] = "bfloat16"

    @property
    def non_embedding_parameters(self) -> int:
        """Weights of the decoder layers and the final norm, as nanotron's Qwen2 builds them (no biases:
        `attention_bias` defaults to false). Per layer: q and o projections h·h each, k and v h·(kv·h/heads)
        each, the gated MLP 3·h·ffn, two RMSNorm weights of h; then one final RMSNorm of h.
        full-21b: 28 x (2·2048² + 2·2048·1024 + 3·2048·6144 + 2·2048) + 2048 = 1,409,402,880."""
        h, kv = self.hidden_size, self.hidden_size // self.num_heads * self.num_kv_heads
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size + 2 * h
        return self.num_layers * per_layer + h

    @property
    def parameters(self) -> int:
        """All weights: the embedding (vocab·h) once when tied to the output projection, twice otherwise.
        full-21b: 1,409,402,880 + 128,256 x 2,048 = 1,672,071,168."""
        embedding = self.vocab_size * self.hidden_size
        return self.non_embedding_parameters + embedding * (1 if self.tie_word_embeddings else 2)


class TrainingSettings(StrictModel):
    """Warmup-stable-decay AdamW; global batch (sequences) = micro_batch_size × accumulation × dp."""

    sequence_length: int = Field(ge=16)
    global_batch_size: int = Field(ge=1)
    train_steps: int = Field(ge=1)
    micro_batch_size: int = Field(ge=1)
    dp: int = Field(1, ge=1)
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    learning_rate: float = Field(gt=0)
    warmup_fraction: float = Field(ge=0, le=0.5)
    decay_fraction: float = Field(ge=0, le=1, description="linear decay over this last share of the steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    clip_grad: float = 1.0
    seed: int = 6
    checkpoint_interval: int = Field(500, ge=1)
    slurm: SlurmJob = SlurmJob()

    @model_validator(mode="after")
    def _batch(self) -> TrainingSettings:
        if self.global_batch_size % (self.micro_batch_size * self.dp):
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size x dp "
                f"({self.micro_batch_size} x {self.dp})"
            )
        return self

    @property
    def accumulation(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.dp)

    @property
    def tokens(self) -> int:
        return self.sequence_length * self.global_batch_size * self.train_steps

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.train_steps * self.warmup_fraction))

    @property
    def decay_steps(self) -> int:
        return max(1, round(self.train_steps * self.decay_fraction))


class EvalTask(StrictModel):
    name: str = Field(
        description="the lighteval task requested (cpu-smoke: a task of promptsearch's suite); a superset name "
        "such as `mmlu_redux_cf` requests every `mmlu_redux_cf:*` task"
    )
    category: str
    metric: str = Field("acc_norm_token", description="the key read from lighteval's results JSON")
    result_key: str | None = Field(
        None,
        description="the task name the score is read under in lighteval's results (default: name); a superset's "
        "mean is reported as `<superset>:_average`",
    )

    @model_validator(mode="after")
    def _requestable(self) -> EvalTask:
        if self.name.endswith(":_average"):
            raise ValueError(
                f"{self.name!r} is the averaged result lighteval writes, not a task it can run: set name to "
                f"{self.name.removesuffix(':_average')!r} and result_key to {self.name!r}"
            )
        return self

    @property
    def result_name(self) -> str:
        return self.result_key or self.name


class EvaluationSettings(StrictModel):
    """lighteval on the final checkpoint; macro = mean of category means, micro = mean of tasks."""

    tasks: list[EvalTask] = Field(min_length=1)
    num_fewshot: int = Field(3, ge=0)
    max_samples: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
    max_length: int | None = Field(
        None,
        ge=2,
        description="lighteval's max_length: tokens per request (context + answer), the context cut from the left "
        "beyond it; default: the model's max_position_embeddings (its training sequence length)",
    )
    custom_tasks: str | None = Field(
        default_factory=suite_module_path,
        description="lighteval --custom-tasks module (a .py file) defining the tasks; relative to the profile's "
        "folder. Default: promptsearch's own suite (promptsearch/suite.py, FinePhrase's 12 tasks); null: none",
    )
    slurm: SlurmJob = SlurmJob()

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(t.category for t in self.tasks))


class CostSettings(StrictModel):
    """What `promote` assumes to predict the chain's GPU-hours (`promptsearch.cost.predict_ablation`)."""

    rephrase_tokens_per_gpu_hour: float = Field(
        18_900_000,
        gt=0,
        description="generated tokens per GPU-hour when the trial measured none on vLLM; default: SmolLM2-1.7B-"
        "Instruct on one H100 with vLLM's defaults, 5,255 output tokens/s (datatrove's inference benchmark) x 3,600",
    )
    gpu_peak_flops: float = Field(
        989e12, gt=0, description="peak FLOP/s of one training GPU; default: H100 SXM, bf16 dense (989 TFLOP/s)"
    )
    mfu: float = Field(
        0.35, gt=0, le=1, description="model FLOPs utilization assumed for training (6 x parameters x tokens FLOPs)"
    )
    evaluate_gpu_hours: float | None = Field(
        None, ge=0, description="the evaluate job's GPU-hours; default: its GPUs x its time limit (an upper bound)"
    )


class AblationProfile(StrictModel):
    kind: Literal["ablation"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    runtime: Literal["cluster", "cpu-smoke"]
    environments: Environments = Environments()
    rephrase: RephraseSettings
    tokenize: TokenizeSettings
    model: ModelSettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    cost: CostSettings = CostSettings()

    @model_validator(mode="after")
    def _runtime(self) -> AblationProfile:
        if self.runtime == "cpu-smoke":
            # its evaluate job runs promptsearch's suite in-process (`jobs.evaluate`), not a custom_tasks module
            known = suite_request_names()
            if unknown := [t.name for t in self.evaluation.tasks if t.name not in known]:
                raise ValueError(f"cpu-smoke evaluates the suite's tasks ({', '.join(known)}) only (got {unknown})")
        elif self.tokenize.tokenizer == "bpe":
            raise ValueError("a cluster profile needs a real tokenizer (tokenize.tokenizer), not bpe")
        return self

    def documents_to_rephrase(self, max_new_tokens: int, source: CorpusSpec) -> int:
        """Each selected output has at most max_new_tokens tokens, so this many documents reach the target
        (fewer when the source corpus has a limit)."""
        documents = math.ceil(self.rephrase.token_target / max_new_tokens)
        return min(documents, source.limit) if source.limit else documents

    def require_cluster_settings(self, where: str) -> None:
        """A `runtime: cluster` chain needs every environment and the nanotron checkout: with one unset, its
        jobs would activate promptsearch's own venv (no vLLM, nanotron or lighteval). One line, exit 2."""
        if self.runtime == "cluster" and (unset := self.environments.unset()):
            raise ConfigError(
                f"{where}: profile {self.name!r} (runtime: cluster) needs {', '.join(unset)} set "
                "(a venv's bin/activate for each job, and the nanotron checkout)"
            )


def ablation_profile_path(reference: str, base: Path | None = None) -> Path:
    """`full-21b` → proxies/full-21b.yaml (bundled); anything with a slash or .yaml → a path."""
    if "/" in reference or reference.endswith((".yaml", ".yml")):
        return Path(resolve_relative(base or Path.cwd(), reference))
    return bundled_dir("proxies") / f"{reference}.yaml"


def load_ablation_profile(reference: str, base: Path | None = None) -> AblationProfile:
    path = ablation_profile_path(reference, base)
    if not path.is_file():
        raise UserError(f"ablation profile not found: {path}")
    profile = load_model(path, AblationProfile)
    # paths in the profile are relative to its folder: the jobs run elsewhere
    environments = {k: resolve_relative(path.parent, v) for k, v in profile.environments.model_dump().items() if v}
    evaluation = profile.evaluation
    if evaluation.custom_tasks:
        module = resolve_relative(path.parent, evaluation.custom_tasks)
        if not Path(module).is_file():
            raise UserError(f"{path}: evaluation.custom_tasks {evaluation.custom_tasks!r}: no file at {module}")
        evaluation = evaluation.model_copy(update={"custom_tasks": module})
    return profile.model_copy(
        update={"environments": profile.environments.model_copy(update=environments), "evaluation": evaluation}
    )
