"""Proxy profiles (`proxies/*.yaml` with `kind: proxy`): the small model a trial trains, and how.

In: a profile name (`cpu-tiny` → the bundled `proxies/cpu-tiny.yaml`) or a YAML path.
Out: a `ProxyProfile` (tokenizer, model shape, training, evaluation), or a `SpaceError` with every
mistake located. `promptsearch.proxy` trains and scores what a profile describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from promptsearch.config import SEED_LIMIT, StrictModel, YamlDocument, resolve_relative
from promptsearch.errors import SpaceError
from promptsearch.resources import bundled_dir

# What every proxy run scores (`promptsearch.proxy`); `proxy_weights` in a space combine them.
PROXY_SCORES = ("heldout_bpb", "knowledge_bpb", "knowledge_prob", "knowledge_acc")
# What the suite's tasks report (`suite._metrics`; the generative tasks have no `acc_norm_token`).
SuiteMetric = Literal["prob_norm_token", "acc_norm_token", "gold_bpb"]


class TokenizerSpec(StrictModel):
    """`bpe`: a byte-level BPE trained on the study's raw text (deterministic, cached); or `path`."""

    kind: Literal["bpe", "path"] = "bpe"
    vocab_size: int = Field(4096, ge=256, le=65536)
    path: str | None = None


class DecoderShape(StrictModel):
    """The shape of a Llama-style decoder, shared by proxy models and full-ablation models. The upper bounds are
    far above any model trained here: past them a size overflows torch's shapes mid-trial instead of failing here."""

    hidden_size: int = Field(ge=16, le=65536)
    num_layers: int = Field(ge=1, le=1024)
    num_heads: int = Field(ge=1, le=1024)
    num_kv_heads: int = Field(ge=1, le=1024)
    intermediate_size: int = Field(ge=16, le=262144)

    @model_validator(mode="after")
    def _heads(self) -> DecoderShape:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        return self


class ProxyModelSpec(DecoderShape):
    seq_len: int = Field(ge=16, le=131072)


class ProxyTrainSpec(StrictModel):
    tokens: int = Field(ge=1000, description="training tokens (steps = tokens / (batch_size * seq_len))")
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=1)  # AdamW above 1 diverges at once: every score would be NaN
    warmup_fraction: float = Field(0.05, ge=0, le=0.5)
    decay_fraction: float = Field(0.2, ge=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the decay ends at this share of the peak rate")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)


class LightevalTaskSpec(StrictModel):
    """A lighteval task scored on the proxy's final checkpoint (`promptsearch/lighteval_tasks.py`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_:-]+$")
    kind: Literal["source_cloze", "sciq", "file", "hub"] = Field(
        description="source_cloze: cloze items of the rephrased documents; sciq: SciQ's questions, closed book, "
        "whose support passages were among the rephrased documents (source: the embedded corpus sciq); file: a "
        "local multiple-choice JSONL (query, choices, gold); hub: a lighteval built-in task, e.g. arc:easy "
        "(needs network or cache)"
    )
    path: str | None = Field(None, description="the JSONL file (kind: file), relative to the profile")
    fewshot: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _path_for_files(self) -> LightevalTaskSpec:
        if (self.kind == "file") != (self.path is not None):
            raise ValueError("`path` is set for kind: file, and only for it")
        return self


class SuiteEvalSpec(StrictModel):
    """The benchmark suite (`promptsearch/suite.py`: FinePhrase's tasks, offline copies when the Hub is out of
    reach) scored through lighteval at every eval checkpoint: `suite.<task|category|macro|micro>.<metric>`."""

    tasks: list[str] = Field(
        min_length=1, description="suite task names, e.g. arc_cf:easy, mmlu_redux_cf (checked by the space)"
    )
    num_fewshot: int = Field(3, ge=0)
    max_samples: int | None = Field(1000, ge=1, description="items scored per task at most (FinePhrase: 1,000)")


class ProxyProfile(StrictModel):
    """A proxy rung: a small Llama trained with torch on the trial's mixture, then evaluated."""

    kind: Literal["proxy"] = "proxy"
    name: str
    description: str = ""
    tokenizer: TokenizerSpec = TokenizerSpec()
    model: ProxyModelSpec
    train: ProxyTrainSpec
    heldout_tokens: int = Field(
        20000,
        ge=256,
        description="tokens scored for bits-per-byte, from the held-out text and from the rephrased documents each",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)
    eval_checkpoints: int = Field(
        1, ge=1, le=50, description="evaluations spread over training (the last at the end); each reports to Optuna"
    )
    lighteval_tasks: list[LightevalTaskSpec] = Field(
        default_factory=list, description="benchmark tasks run with lighteval on the final checkpoint"
    )
    lighteval_max_samples: int | None = Field(None, ge=1, description="items scored per lighteval task at most")
    suite: SuiteEvalSpec | None = Field(
        None, description="benchmark suite tasks scored at every eval checkpoint (slow: off in the small profiles)"
    )
    cost_estimate_minutes: float | None = None

    @model_validator(mode="after")
    def _one_step_at_least(self) -> ProxyProfile:
        per_step = self.train.batch_size * self.model.seq_len
        if per_step > self.train.tokens:
            raise ValueError(
                f"train.batch_size x model.seq_len is {per_step} tokens a step, more than train.tokens "
                f"({self.train.tokens}): not one training step"
            )
        return self


def proxy_profile_path(reference: str, base: Path) -> Path:
    """`cpu-tiny` → proxies/cpu-tiny.yaml (bundled); anything with a slash or .yaml → a path."""
    if "/" in reference or reference.endswith((".yaml", ".yml")):
        return Path(resolve_relative(base, reference))
    return bundled_dir("proxies") / f"{reference}.yaml"


def load_proxy_profile(path: Path) -> ProxyProfile:
    profile = YamlDocument(path).validate(ProxyProfile)
    base = path.resolve().parent
    tasks = [
        t.model_copy(update={"path": resolve_relative(base, t.path)}) if t.path else t for t in profile.lighteval_tasks
    ]
    if missing := [t.path for t in tasks if t.path and not Path(t.path).is_file()]:
        raise SpaceError(str(path), [f"lighteval_tasks: file not found: {m}" for m in missing])
    return profile.model_copy(update={"lighteval_tasks": tasks})
