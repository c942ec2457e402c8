"""The nanotron training config of an ablation.

In: an `AblationProfile`, the tokenized dataset folders with their weights, and output paths.
Out: a `NanotronConfig` — nanotron's YAML schema (branch `nanotron-working-branch`, as FinePhrase
used it) as typed models, so a config that nanotron's `get_config_from_file` would reject cannot be
written. nanotron itself is not a dependency: it is GPU-only and pins numpy<2, so this schema is
not checked against nanotron's own parser here. It is the one in the project notes
(`shared/notes/ablation.md` §1.2, a FinePhrase-style config that `get_config_from_file` parsed on
that branch); fields left out (e.g. Qwen2Config's `rope_scaling`, `pad_token_id`) take nanotron's
dataclass defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptsearch.ablation.profile import AblationProfile


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GeneralArgs(_Schema):
    project: str
    run: str
    seed: int
    step: int | None = None
    consumed_train_samples: int | None = None
    benchmark_csv_path: str | None = None
    ignore_sanity_checks: bool = True


class ParallelismArgs(_Schema):
    dp: int
    tp: int
    pp: int
    pp_engine: Literal["1f1b", "afab"] = "1f1b"
    context_parallel_size: int = 1
    expert_parallel_size: int = 1
    recompute_layer: bool = False
    tp_mode: Literal["REDUCE_SCATTER", "ALL_REDUCE"] = "REDUCE_SCATTER"
    tp_linear_async_communication: bool = True
    tp_recompute_allgather: bool = True


class Qwen2Config(_Schema):
    is_qwen2_config: bool = True
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    bos_token_id: int | None
    eos_token_id: int
    hidden_act: Literal["silu"] = "silu"
    rms_norm_eps: float
    rope_theta: float
    rope_interleaved: bool = False
    tie_word_embeddings: bool
    attn_implementation: str = Field("flash_attention_2", alias="_attn_implementation")
    use_doc_masking: bool = Field(True, alias="_use_doc_masking")
    fused_rms_norm: bool = Field(True, alias="_fused_rms_norm")
    fused_rotary_emb: bool = Field(True, alias="_fused_rotary_emb")
    use_qkv_packed: bool = Field(True, alias="_use_qkv_packed")


class InitMethod(_Schema):
    std: float


class ModelArgs(_Schema):
    dtype: Literal["bfloat16", "float32"]
    init_method: InitMethod
    make_vocab_size_divisible_by: int = 1
    ddp_bucket_cap_mb: int = 50
    model_config_: Qwen2Config = Field(alias="model_config")


class TokenizerArgs(_Schema):
    tokenizer_name_or_path: str
    tokenizer_max_length: int | None = None
    tokenizer_revision: str | None = None


class TokensArgs(_Schema):
    sequence_length: int
    micro_batch_size: int
    batch_accumulation_per_replica: int
    train_steps: int
    val_check_interval: int = 0
    limit_val_batches: int = 0
    limit_test_batches: int = 0


class OptimizerFactory(_Schema):
    name: Literal["adamW"] = "adamW"
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    torch_adam_is_fused: bool = True


class LRSchedulerArgs(_Schema):
    learning_rate: float
    lr_warmup_steps: int
    lr_warmup_style: Literal["linear", "constant"] = "linear"
    lr_decay_style: Literal["linear", "cosine", "1-sqrt"] = "linear"
    lr_decay_starting_step: int
    lr_decay_steps: int
    min_decay_lr: float


class OptimizerArgs(_Schema):
    optimizer_factory: OptimizerFactory
    learning_rate_scheduler: LRSchedulerArgs
    weight_decay: float
    weight_decay_exclude_named_params: list[str] = Field(default_factory=lambda: [".*token_embedding.*"])
    clip_grad: float
    accumulate_grad_in_fp32: bool = True
    zero_stage: int = 0


class NanosetDatasetsArgs(_Schema):
    dataset_folder: list[str]
    dataset_weights: list[float]
    token_size_in_bytes: Literal[2, 4]
    tokenizer_name: str
    vocab_size: int
    return_positions: bool = True
    use_old_brrr_dataloader: bool = False
    pad_samples_to_global_batch_size: bool = False

    @model_validator(mode="after")
    def _same_length(self) -> NanosetDatasetsArgs:
        if len(self.dataset_folder) != len(self.dataset_weights):
            raise ValueError("dataset_folder and dataset_weights must have the same length")
        return self


class DataArgs(_Schema):
    seed: int
    num_loading_workers: int = 0
    dataset: NanosetDatasetsArgs


class DatasetStageArgs(_Schema):
    name: str
    start_training_step: int
    data: DataArgs


class CheckpointsArgs(_Schema):
    checkpoints_path: str
    checkpoint_interval: int
    save_initial_state: bool = False
    save_final_state: bool = True
    resume_checkpoint_path: str | None = None
    load_optimizer: bool = True
    load_lr_scheduler: bool = True
    checkpoints_path_is_shared_file_system: bool = False


class LoggingArgs(_Schema):
    log_level: str = "info"
    log_level_replica: str = "info"
    iteration_step_info_interval: int = 5


class NanotronConfig(_Schema):
    general: GeneralArgs
    parallelism: ParallelismArgs
    model: ModelArgs
    tokenizer: TokenizerArgs
    tokens: TokensArgs
    optimizer: OptimizerArgs
    data_stages: list[DatasetStageArgs] = Field(min_length=1)
    checkpoints: CheckpointsArgs
    logging: LoggingArgs = LoggingArgs()

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def nanotron_config(
    profile: AblationProfile,
    run_name: str,
    tokenizer: str,
    folders: dict[str, str],
    weights: dict[str, float],
    checkpoints_path: str,
) -> NanotronConfig:
    """The training config: `folders` and `weights` are keyed by source (synthetic, mix-in)."""
    m, t = profile.model, profile.training
    names = list(folders)
    return NanotronConfig(
        general=GeneralArgs(project="promptsearch", run=run_name, seed=t.seed),
        parallelism=ParallelismArgs(dp=t.dp, tp=t.tp, pp=t.pp),
        model=ModelArgs(
            dtype=m.dtype,
            init_method=InitMethod(std=m.init_std),
            model_config=Qwen2Config(
                hidden_size=m.hidden_size,
                intermediate_size=m.intermediate_size,
                num_hidden_layers=m.num_layers,
                num_attention_heads=m.num_heads,
                num_key_value_heads=m.num_kv_heads,
                vocab_size=m.vocab_size,
                max_position_embeddings=t.sequence_length,
                bos_token_id=m.bos_token_id,
                eos_token_id=m.eos_token_id,
                rms_norm_eps=m.rms_norm_eps,
                rope_theta=m.rope_theta,
                tie_word_embeddings=m.tie_word_embeddings,
            ),
        ),
        tokenizer=TokenizerArgs(tokenizer_name_or_path=tokenizer, tokenizer_max_length=t.sequence_length),
        tokens=TokensArgs(
            sequence_length=t.sequence_length,
            micro_batch_size=t.micro_batch_size,
            batch_accumulation_per_replica=t.accumulation,
            train_steps=t.train_steps,
        ),
        optimizer=OptimizerArgs(
            optimizer_factory=OptimizerFactory(adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_eps=t.adam_eps),
            learning_rate_scheduler=LRSchedulerArgs(
                learning_rate=t.learning_rate,
                lr_warmup_steps=t.warmup_steps,
                lr_decay_starting_step=t.train_steps - t.decay_steps,
                lr_decay_steps=t.decay_steps,
                min_decay_lr=t.learning_rate * t.min_lr_ratio,
            ),
            weight_decay=t.weight_decay,
            clip_grad=t.clip_grad,
        ),
        data_stages=[
            DatasetStageArgs(
                name="stable",
                start_training_step=1,
                data=DataArgs(
                    seed=t.seed,
                    dataset=NanosetDatasetsArgs(
                        dataset_folder=[folders[n] for n in names],
                        dataset_weights=[weights[n] for n in names],
                        # datatrove writes uint16 ids when the vocabulary fits, uint32 otherwise
                        token_size_in_bytes=2 if m.vocab_size <= 65536 else 4,
                        tokenizer_name=tokenizer,
                        vocab_size=m.vocab_size,
                    ),
                ),
            )
        ],
        # A requeued job resumes: nanotron (nanotron-working-branch, serialize/main.py `parse_ckpt_path`) reads
        # `<resume_checkpoint_path>/latest.txt`, which its trainer writes into checkpoints_path at every save,
        # and loads that step; on the first run there is no latest.txt and it starts from scratch.
        checkpoints=CheckpointsArgs(
            checkpoints_path=checkpoints_path,
            checkpoint_interval=t.checkpoint_interval,
            resume_checkpoint_path=checkpoints_path,
        ),
    )
