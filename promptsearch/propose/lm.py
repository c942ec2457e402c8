"""The proposer LM: `dspy.LM` on an OpenAI-compatible server, with DSPy's cache in the study's folder.

The embedded backend asks the worker's running generator servers (`GeneratorServers`) for the embedded model,
so proposing starts no second server; the endpoint backend talks to the user's URL. Both go through DSPy's
native engine (`engine="lm15"`), which refuses to fall back to litellm, so nothing is fetched from the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dspy

from promptsearch.config import api_key_from_env
from promptsearch.endpoint import wait_for_endpoint
from promptsearch.recipe import GeneratorSpec
from promptsearch.rephrase import GeneratorServers
from promptsearch.space import ProposerLMSpec

EMBEDDED_PROPOSER = GeneratorSpec(name="proposer", backend="embedded", model="embedded")


class ProposerLM:
    """`lm()` gives the `dspy.LM` (the first time for the embedded backend, the generator servers serve it)."""

    def __init__(self, spec: ProposerLMSpec, cache_root: Path, generators: GeneratorServers):
        self.spec = spec
        self.cache_root = cache_root
        self.generators = generators
        self._api_key = self._read_api_key()
        if spec.backend == "embedded":
            self.model_id, self.revision = generators.identity(EMBEDDED_PROPOSER)
        else:
            self.model_id, self.revision = spec.model, spec.revision or "unversioned"

    def _read_api_key(self) -> str:
        if self.spec.api_key_env is None:
            return "unused"  # local servers ignore it; the OpenAI protocol requires one
        return api_key_from_env(self.spec.api_key_env, "proposal.lm")

    @property
    def name(self) -> str:
        return f"{self.model_id}@{self.revision}"

    def wait_ready(self) -> None:
        """Before a round: an endpoint is waited for within `ready_timeout_seconds` (dspy.LM would wait up to
        `timeout_seconds` per call in silence on a URL that never answers); raises a `UserError` naming it."""
        if self.spec.backend == "endpoint":
            wait_for_endpoint(str(self.spec.endpoint_url), "proposal.lm", self.spec.ready_timeout_seconds)

    def lm(self) -> dspy.LM:
        """A `dspy.LM` on the server as it runs now (the generator's servers may have moved since the last round)."""
        spec = self.spec
        if spec.backend == "embedded":
            base, served = self.generators.embedded_endpoint(EMBEDDED_PROPOSER)
        else:
            base, served = str(spec.endpoint_url), spec.model
        # DSPy's cache key covers the model string and request but not api_base: one cache folder per model
        # and revision keeps an endpoint serving a new revision under the same name from reading old answers.
        identity = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        dspy.configure_cache(disk_cache_dir=str(self.cache_root / identity))
        base = base.rstrip("/")
        return dspy.LM(
            f"openai/{served}",
            api_base=base if base.endswith("/v1") else f"{base}/v1",
            api_key=self._api_key,
            engine="lm15",
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_tokens,
            timeout=spec.timeout_seconds,
            num_retries=0,
        )
