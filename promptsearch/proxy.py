"""Stage 4, proxy: train a small Llama on the trial's synthetic + raw mixture and evaluate it.

In: a `Mixture` (the trial's selected outputs, raw mix-in text, held-out text, the rephrased
documents, the mix ratio) and a `ProxyProfile`.
Out: `ProxyResult` — held-out bits-per-byte, token counts, timings and an HF-format checkpoint.

The mixture is consumed the way the full nanotron ablation consumes it: each source is tokenized
by datatrove's `DocumentTokenizer` into its own folder of `.ds` files, read back with datatrove's
`DatatroveFolderDataset`, and sampled by weight. The model is transformers' `LlamaForCausalLM`
trained with torch (CPU or GPU, auto-detected) under a warmup-stable-decay schedule.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.tokens import DocumentTokenizer

from promptsearch.cloze import build_cloze_items, score_cloze
from promptsearch.corpus import read_corpus
from promptsearch.errors import UserError
from promptsearch.pipelines import run_local_pipeline
from promptsearch.proxy_profile import ProxyModelSpec, ProxyProfile, ProxyTrainSpec
from promptsearch.space import SearchSpace

EOS = "<eos>"


class TooLittleData(Exception):
    """A mixture part has fewer tokens than one training sequence (e.g. a template that yields nothing)."""


@dataclass(frozen=True)
class EvalCheckpoint:
    """One evaluation during training; the last one is the run's result."""

    index: int  # 1-based, out of the profile's eval_checkpoints
    train_tokens: int  # tokens trained on so far
    scores: dict[str, float]  # heldout_bpb, knowledge_bpb, knowledge_acc, knowledge_prob (+ suite.* if asked)
    item_probs: list[float]  # prob_norm_token per cloze item, in item order
    document_bpb: list[float]  # knowledge_bpb per rephrased document that fits heldout_tokens, in order


@dataclass
class ProxyResult:
    scores: dict[str, float]  # heldout_bpb, knowledge_bpb, knowledge_acc, knowledge_prob
    train_tokens: int
    synthetic_tokens: int
    mix_in_tokens: int
    checkpoint: Path
    seconds: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    checkpoints: list[EvalCheckpoint] = field(default_factory=list)


def corpus_tokenizer(texts: list[str], vocab_size: int, cache_dir: Path) -> Path:
    """A byte-level BPE trained on `texts` (deterministic; cached by content and size)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    digest = hashlib.sha256("\x00".join(texts).encode("utf-8") + str(vocab_size).encode()).hexdigest()[:16]
    path = cache_dir / f"bpe-{vocab_size}-{digest}.json"
    if path.is_file():
        return path
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
    tokenizer.save(str(partial))
    partial.rename(path)
    return path


def tokenize_folder(texts: list[str], tokenizer_path: Path, out_dir: Path, name: str, seed: int) -> int:
    """datatrove DocumentTokenizer → `<out_dir>/<name>.ds` (+ .index, .metadata); returns token count."""
    documents = [Document(text=t, id=f"{name}/{i}") for i, t in enumerate(texts) if t.strip()]
    if not documents:
        return 0
    step = DocumentTokenizer(
        output_folder=str(out_dir),
        tokenizer_name_or_path=str(tokenizer_path),
        eos_token=EOS,
        save_filename=name,
        seed=seed,
        shuffle_documents=True,
    )
    run_local_pipeline([documents, step], out_dir.parent / "logs" / name)
    return sum(p.stat().st_size for p in out_dir.glob("*.ds")) // 2


def _device(profile: ProxyProfile) -> str:
    import torch

    if profile.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"proxy profile {profile.name} asks for cuda but no GPU is visible")
    return profile.device


def wsd_schedule(optimizer: Any, steps: int, train: ProxyTrainSpec) -> Any:
    """Warmup-stable-decay, as the FinePhrase ablations: linear warmup, flat, linear decay to `min_lr_ratio`
    of the peak (transformers' own schedule)."""
    from transformers import get_wsd_schedule

    warmup = max(1, int(steps * train.warmup_fraction))
    decay_start = int(steps * (1 - train.decay_fraction))
    return get_wsd_schedule(
        optimizer,
        num_warmup_steps=warmup,
        num_stable_steps=decay_start - warmup,
        num_decay_steps=steps - decay_start,
        decay_type="linear",
        min_lr_ratio=train.min_lr_ratio,
    )


@dataclass(frozen=True)
class TokenStream:
    """Whole documents as one token stream, encoded once per run and scored at every eval checkpoint."""

    ids: list[int]
    doc_ends: list[int]  # index in `ids` just past each document's end-of-sequence token
    doc_bytes: list[int]  # each document's UTF-8 length

    @classmethod
    def encode(cls, tokenizer, texts: list[str], max_tokens: int, what: str) -> TokenStream:
        """Documents (a `tokenizers.Tokenizer`) up to `max_tokens`; a document that does not fit is skipped
        whole, so the byte count is exact."""
        eos_id = tokenizer.token_to_id(EOS)
        ids: list[int] = []
        doc_ends: list[int] = []
        doc_bytes: list[int] = []
        for text in texts:
            encoded = tokenizer.encode(text).ids
            room = max_tokens - len(ids)
            if room <= 1:
                break
            if len(encoded) + 1 > room:
                continue
            ids.extend([*encoded, eos_id])
            doc_ends.append(len(ids))
            doc_bytes.append(len(text.encode("utf-8")))
        if not doc_ends:
            raise UserError(f"no {what} document is short enough for the proxy's heldout_tokens")
        return cls(ids, doc_ends, doc_bytes)

    def bits_per_byte(self, model, seq_len: int, device: str) -> tuple[float, list[float]]:
        """Over the whole stream and per document: every token after the first is predicted once, in
        windows of the model's sequence length."""
        import torch

        stream = torch.tensor(self.ids, dtype=torch.long)
        losses = []
        model.eval()
        with torch.no_grad():
            for start in range(0, len(self.ids) - 1, seq_len):
                window = stream[start : start + seq_len + 1].unsqueeze(0).to(device)
                logits = model(window[:, :-1]).logits.float()
                losses.append(
                    torch.nn.functional.cross_entropy(
                        logits.view(-1, logits.size(-1)), window[:, 1:].reshape(-1), reduction="none"
                    ).cpu()
                )
        nll = torch.cat(losses).double()  # nll[j] is the loss of predicting token j + 1
        begins = [1, *self.doc_ends[:-1]]
        per_document = [
            nll[begin - 1 : end - 1].sum().item() / math.log(2) / n_bytes
            for begin, end, n_bytes in zip(begins, self.doc_ends, self.doc_bytes, strict=True)
        ]
        return nll.sum().item() / math.log(2) / sum(self.doc_bytes), per_document


@dataclass(frozen=True)
class Mixture:
    """What a proxy run trains and scores on."""

    synthetic: list[str]  # the trial's selected outputs
    mix_in: list[str]  # raw text mixed back in
    heldout: list[str]  # raw text never trained on (bits per byte)
    knowledge_sources: list[str]  # the documents that were rephrased (cloze items)
    mix_ratio: float  # synthetic share of training tokens


def train_llama(
    datasets: dict[str, Any],
    weights: dict[str, float],
    vocab_size: int,
    model_spec: ProxyModelSpec,
    train: ProxyTrainSpec,
    device: str,
    seed: int,
    after_step: Callable[[int, int, Any], None] | None = None,
) -> tuple[Any, list[float], int]:
    """Train a tied-embedding `LlamaForCausalLM` on sequences drawn from `datasets` (datatrove
    `DatatroveFolderDataset`s keyed like `weights`) by weight; returns (model, losses, steps).
    `after_step(step, steps, model)` runs after each optimizer step (1-based), e.g. to evaluate."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    seq = model_spec.seq_len
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=model_spec.hidden_size,
        intermediate_size=model_spec.intermediate_size,
        num_hidden_layers=model_spec.num_layers,
        num_attention_heads=model_spec.num_heads,
        num_key_value_heads=model_spec.num_kv_heads,
        max_position_embeddings=seq + 1,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    model = LlamaForCausalLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, betas=(0.9, 0.95), weight_decay=0.1)
    batch = train.batch_size
    steps = max(1, train.tokens // (batch * seq))
    names = list(datasets)
    probs = np.array([weights[n] for n in names]) / sum(weights[n] for n in names)
    schedule = wsd_schedule(optimizer, steps, train)
    losses: list[float] = []
    for step in range(steps):
        model.train()  # after_step may have evaluated
        picks = rng.choice(len(names), size=batch, p=probs)
        rows = [datasets[names[p]][int(rng.integers(len(datasets[names[p]])))]["input_ids"] for p in picks]
        tokens = torch.stack([torch.as_tensor(r, dtype=torch.long) for r in rows]).to(device)
        # lighteval 0.13 turns autograd off for the whole process when its transformers backend is imported
        # (module-level `torch.set_grad_enabled(False)` in lighteval/models/transformers/transformers_model.py):
        # a worker that scored one trial with lighteval would train the next without gradients.
        with torch.enable_grad():
            loss = model(input_ids=tokens, labels=tokens).loss  # the model shifts labels by one itself
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.item()))
        if after_step is not None:
            after_step(step + 1, steps, model)
    return model, losses, steps


def save_checkpoint(model: Any, tokenizer_path: Path, folder: Path) -> None:
    """The model and its tokenizer in Hugging Face format, as lighteval and the ablation converter load them."""
    from transformers import PreTrainedTokenizerFast
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()
    model.save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_path), eos_token=EOS).save_pretrained(folder)


def run_proxy(
    mixture: Mixture,
    profile: ProxyProfile,
    workdir: Path,
    seed: int,
    on_checkpoint: Callable[[EvalCheckpoint], None] | None = None,
) -> ProxyResult:
    """Tokenize, train and evaluate at `profile.eval_checkpoints` points; `on_checkpoint` sees each
    evaluation as it is made and may stop the run by raising (a pruned trial)."""
    import torch
    from datatrove.utils.dataset import DatatroveFolderDataset
    from tokenizers import Tokenizer

    seconds: dict[str, float] = {}
    started = time.monotonic()
    if profile.tokenizer.kind == "path":
        tokenizer_path = Path(profile.tokenizer.path or "")
    else:
        tokenizer_path = corpus_tokenizer(mixture.mix_in, profile.tokenizer.vocab_size, workdir.parent / "tokenizers")
    tok_dir = workdir / "tokenized"
    synthetic_tokens = tokenize_folder(mixture.synthetic, tokenizer_path, tok_dir / "synthetic", "synthetic", seed)
    mix_in_tokens = tokenize_folder(mixture.mix_in, tokenizer_path, tok_dir / "mix_in", "mix_in", seed)
    seconds["tokenize"] = time.monotonic() - started

    seq = profile.model.seq_len
    weights = {"synthetic": mixture.mix_ratio, "mix_in": 1 - mixture.mix_ratio}
    datasets = {}
    for name, count in (("synthetic", synthetic_tokens), ("mix_in", mix_in_tokens)):
        if weights[name] == 0:
            continue
        if count < seq + 1:
            raise TooLittleData(f"the {name} part has {count} tokens, fewer than one {seq}-token sequence")
        datasets[name] = DatatroveFolderDataset(
            str(tok_dir / name), seq_len=seq, filename_pattern="*.ds", recursive=False, token_size=2
        )

    device = _device(profile)
    if profile.threads:
        torch.set_num_threads(profile.threads)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    items = build_cloze_items(mixture.knowledge_sources, seed=seed)
    heldout = TokenStream.encode(tokenizer, mixture.heldout, profile.heldout_tokens, "held-out")
    sources = TokenStream.encode(tokenizer, mixture.knowledge_sources, profile.heldout_tokens, "source")
    checkpoints: list[EvalCheckpoint] = []
    seconds["eval"] = 0.0

    def evaluate_at_checkpoints(step: int, steps: int, model: Any) -> None:
        eval_at = {steps * k // profile.eval_checkpoints: k for k in range(1, profile.eval_checkpoints + 1)}
        if (index := eval_at.get(step)) is None:
            return
        eval_start = time.monotonic()
        heldout_bpb, _ = heldout.bits_per_byte(model, seq, device)
        knowledge_bpb, document_bpb = sources.bits_per_byte(model, seq, device)
        cloze, item_probs = score_cloze(model, tokenizer, items, device, seq + 1)
        scores = {"heldout_bpb": heldout_bpb, "knowledge_bpb": knowledge_bpb} | cloze
        if profile.suite is not None:
            from promptsearch.suite import evaluate_suite

            folder = workdir / "suite" / f"ck{index}"
            save_checkpoint(model, tokenizer_path, folder / "model")
            scores |= evaluate_suite(folder / "model", profile.suite, folder, device)
        train_tokens = step * profile.train.batch_size * seq
        checkpoints.append(EvalCheckpoint(index, train_tokens, scores, item_probs, document_bpb))
        seconds["eval"] += time.monotonic() - eval_start
        if on_checkpoint is not None:
            on_checkpoint(checkpoints[-1])

    train_start = time.monotonic()
    model, losses, steps = train_llama(
        datasets,
        weights,
        tokenizer.get_vocab_size(),
        profile.model,
        profile.train,
        device,
        seed + profile.train.seed,
        evaluate_at_checkpoints,
    )
    seconds["train"] = time.monotonic() - train_start - seconds["eval"]

    checkpoint = workdir / "checkpoint"
    save_checkpoint(model, tokenizer_path, checkpoint)
    scores = dict(checkpoints[-1].scores)
    if profile.lighteval_tasks:
        from promptsearch.lighteval_tasks import evaluate_checkpoint

        started = time.monotonic()
        scores |= evaluate_checkpoint(
            checkpoint,
            profile.lighteval_tasks,
            mixture.knowledge_sources,
            workdir / "lighteval",
            device,
            seed,
            profile.lighteval_max_samples,
        )
        seconds["lighteval"] = time.monotonic() - started
    return ProxyResult(
        scores=scores,
        train_tokens=steps * profile.train.batch_size * seq,
        synthetic_tokens=synthetic_tokens,
        mix_in_tokens=mix_in_tokens,
        checkpoint=checkpoint,
        seconds=seconds,
        losses=losses,
        checkpoints=checkpoints,
    )


def calibration_mixture(
    space: SearchSpace, outputs: dict[str, str] | None = None, mix_ratio: float | None = None
) -> Mixture:
    """The fixed mixture a noise floor is measured on. Given a trial's selected outputs (source document
    id → output) and mix ratio: that trial's mixture, the representative choice once a study has trials.
    Without: the space's source documents themselves as the synthetic part, at the middle of its mix-ratio
    range (no generation needed; the model memorizes them, so knowledge_bpb varies more there than on
    rephrasings)."""
    documents = read_corpus(space.source).documents
    mix_in = [d.text for d in read_corpus(space.mix_in).documents]
    heldout = [d.text for d in read_corpus(space.heldout).documents]
    if outputs is None:
        source = [d.text for d in documents]
        return Mixture(source, mix_in, heldout, source, space.mix_ratio.midpoint)
    rephrased = [d for d in documents if d.id in outputs]
    if not rephrased or mix_ratio is None:
        raise UserError("the trial has no selected outputs (or no mix ratio) to calibrate on")
    return Mixture([outputs[d.id] for d in rephrased], mix_in, heldout, [d.text for d in rephrased], mix_ratio)


def calibrate(mixture: Mixture, profile: ProxyProfile, workdir: Path, seeds: int) -> list[dict[str, float]]:
    """The same mixture trained with `seeds` training seeds and data orders; one score dict per run."""
    return [run_proxy(mixture, profile, workdir / f"seed-{seed}", seed).scores for seed in range(seeds)]


def weighted_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """`proxy.score`: a weighted sum of the run's scores (`proxy_weights`; each is also stored on its own)."""
    return sum(weight * scores[name] for name, weight in weights.items())
