"""The proposer LM: `dspy.LM` on an OpenAI-compatible server, with DSPy's cache in the study's folder.

The embedded backend serves SmolLM2-135M with its own `transformers serve` (sampling baked into the served
folder, as for the generator); the endpoint backend talks to the user's URL. Both go through DSPy's native
engine (`engine="lm15"`), which refuses to fall back to litellm, so nothing is fetched from the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dspy

from promptsearch.config import api_key_from_env
from promptsearch.embedded import EMBEDDED_MODEL_ID, ServerSettings, TransformersServer, embedded_model
from promptsearch.endpoint import wait_for_endpoint
from promptsearch.recipe import Sampling
from promptsearch.rephrase import sampling_variant
from promptsearch.space import ProposerLMSpec

# The proposer runs between trials, when the generator's server is idle: a small KV-cache pool is enough.
PROPOSER_SERVER = ServerSettings(num_blocks=128, max_batch_tokens=2048)


class ProposerLM:
    """`lm()` gives the `dspy.LM` (starting the embedded server the first time); `close()` stops it."""

    def __init__(self, spec: ProposerLMSpec, cache_root: Path, log_dir: Path):
        self.spec = spec
        self.cache_root = cache_root
        self.log_dir = log_dir
        self._server: TransformersServer | None = None
        self._lm: dspy.LM | None = None
        self._api_key = self._read_api_key()
        if spec.backend == "embedded":
            self.model_id, self.revision = EMBEDDED_MODEL_ID, embedded_model().revision
        else:
            self.model_id, self.revision = spec.model, spec.revision or "unversioned"

    def _read_api_key(self) -> str:
        if self.spec.api_key_env is None:
            return "unused"  # local servers ignore it; the OpenAI protocol requires one
        return api_key_from_env(self.spec.api_key_env, "proposal.lm")

    @property
    def name(self) -> str:
        return f"{self.model_id}@{self.revision}"

    def lm(self) -> dspy.LM:
        if self._lm is not None:
            return self._lm
        spec = self.spec
        if spec.backend == "embedded":
            folder = sampling_variant(
                embedded_model().path,
                Sampling(temperature=spec.temperature, top_p=spec.top_p, max_new_tokens=spec.max_tokens),
            )
            self._server = TransformersServer(folder, self.log_dir / "proposer-server.log", PROPOSER_SERVER)
            base, served = self._server.start(), str(folder)
        else:
            base, served = str(spec.endpoint_url), spec.model
            # dspy.LM would wait up to timeout_seconds per call in silence on a URL that never answers
            wait_for_endpoint(base, "proposal.lm", spec.ready_timeout_seconds)
        # DSPy's cache key covers the model string and request but not api_base: one cache folder per model
        # and revision keeps an endpoint serving a new revision under the same name from reading old answers.
        identity = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        dspy.configure_cache(disk_cache_dir=str(self.cache_root / identity))
        base = base.rstrip("/")
        self._lm = dspy.LM(
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
        return self._lm

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._lm = None
