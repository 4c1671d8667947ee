"""Parameters of the model and its training: adapters, the dual-head model, SFT, RecPO."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from r2ec_pipeline.config.base import _Params


class AdapterParams(_Params):
    """LoRA adapters (method §3: r=4, alpha=128, dropout 0 on every projection) or full fine-tuning."""

    full_finetune: bool = Field(False, description="Train every weight instead of LoRA adapters.")
    r: int = Field(4, ge=1, description="LoRA rank.")
    alpha: int = Field(128, ge=1, description="LoRA alpha (scaling alpha/r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    top_layers: int | None = Field(
        8,
        ge=1,
        description="Adapters on the top N layers only (null: all, the paper's setting, conf/paper). "
        "On a CPU this makes a training step ~3x cheaper, since backward stops at the lowest adapted layer.",
    )


METRIC_NAMES = Literal["hit_at_5", "ndcg_at_5", "hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr"]


class ModelParams(_Params):
    """The dual-head model (method §3). The backbone itself is ``backbone`` in globals.yml."""

    backbone: str = Field(..., min_length=1, description="Packaged GGUF spec or local HF checkpoint folder.")
    similarity_temperature: float = Field(0.02, gt=0, description="τ in s(v) = cos(h, H[v]) / τ.")
    history_mask: Literal["full", "window"] = Field(
        "full", description="Mask the user's whole earlier history (full) or only the prompt window."
    )
    adapters: AdapterParams = AdapterParams()
    encode_batch_size: int = Field(8, ge=1, description="Prompts per forward pass when encoding.")
    num_threads: int | None = Field(None, ge=1, description="torch threads (null: every core).")
    seed: int = Field(0, description="Seed of the adapters' initialisation (same seed, same model).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs (auto: this process's CUDA device when there is one, else the CPU)."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Precision of the frozen backbone weights (auto: bfloat16 on CUDA, float32 on the CPU); "
        "trainable weights and the rec head's math (cosine/τ, softmax, rewards, log-probs) stay float32.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each layer's activations in backward (HF's switch) in SFT and RecPO: less "
        "memory for ~30% more compute; the prompt's KV cache is then not shared across a user's paths.",
    )

    @property
    def item_batch_size(self) -> int:
        """Item prompts per pass when encoding (part of) the item table: at least 32, as they are short and
        share their prefix."""
        return max(self.encode_batch_size, 32)


class SFTParams(_Params):
    """SFT warm-start of the rec head (method §4), sized for a 2-core CPU by default."""

    steps: int = Field(8, ge=1, description="Optimizer steps (at most, with early stopping).")
    batch_size: int = Field(8, ge=2, description="Users per step; their targets are each other's negatives.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW, constant; 1e-4 learned nothing in 40 CPU steps.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    negatives: int = Field(
        32,
        ge=0,
        description="Uniform catalog negatives added to the in-batch softmax (in-batch negatives "
        "alone cancel the popularity signal).",
    )
    engine: Literal["prefix_cache", "batched"] = Field(
        "prefix_cache",
        description="prefix_cache: the prompt prefix every text shares run once per batch and the "
        "frozen bottom cached (cheapest on a CPU); batched: texts tokenized and length-bucketed once, plain padded "
        "passes, no host sync inside a step (the accelerator engine, model/sft_batched.py).",
    )
    softmax: Literal["sampled", "catalog", "full"] = Field(
        "sampled",
        description="sampled: each target against the batch's targets and the sampled negatives; "
        "catalog: against every item (the item table as a memory bank, the targets' rows encoded fresh), as "
        "evaluation ranks; full (engine batched): against every item, all encoded with gradient every step.",
    )
    epochs: float | None = Field(
        None, gt=0, description="engine batched: passes over the training samples (null: ``steps`` batches)."
    )
    adapter_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="engine batched: precision the adapters compute in; bfloat16 keeps float32 master "
        "weights for AdamW (no per-projection cast on a bfloat16 backbone).",
    )
    share_prefix: list[Literal["users", "items"]] = Field(
        ["users", "items"],
        description="engine batched: texts whose common prefix (system turn, instruction) runs once a pass with "
        "its KV cache repeated; the others run whole, right-padded with no attention mask (fewer kernels, flash "
        "attention on a GPU, more tokens).",
    )
    catalog_groups: int = Field(
        1,
        ge=1,
        description="softmax full (engine batched, item_chunk_size null): length groups the whole catalog is "
        "encoded in, its shared prefix run once for all (1: one batch padded to the longest item).",
    )
    table_refresh_every: int = Field(16, ge=1, description="softmax: catalog: steps between item-table refreshes.")
    item_chunk_size: int | None = Field(
        8,
        ge=1,
        description="softmax sampled (engine batched: full): item columns whose activations are held at once (the gradient-cache "
        "trick: same gradient, one extra forward of the adapted layers); null: all in one graph.",
    )
    eval_every: int = Field(20, ge=1, description="Steps between validation runs (and at the last step).")
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many validations without a better selection metric (null: "
        "train all steps); the best weights are kept either way.",
    )
    eval_users: int | None = Field(
        0,
        ge=0,
        description="Seeded subset of validation users (null: all; 0: no validation, keep the last "
        "weights); full ranking either way.",
    )
    selection_metric: METRIC_NAMES = Field("ndcg_at_10", description="Validation metric that picks the kept weights.")
    max_seconds: float | None = Field(
        None,
        gt=0,
        description="Stop once the training steps have taken this long (null: no limit; validation not "
        "counted); the best weights are kept either way, and with save_steps a checkpoint to resume from.",
    )
    save_steps: int | None = Field(
        None,
        ge=1,
        description="engine batched: resumable checkpoint every N steps and where training stops "
        "(sft_checkpoints; null: none).",
    )
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    resume_from_checkpoint: bool | str = Field(
        False,
        description="engine batched: true: the latest checkpoint in sft_checkpoints; a path (any folder, e.g. "
        "one the repository ships): that checkpoint. The run continues its schedule.",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _checkpoints_need_batched_engine(self) -> SFTParams:
        if (self.save_steps or self.resume_from_checkpoint) and self.engine != "batched":
            raise ValueError("sft.save_steps and sft.resume_from_checkpoint need sft.engine: batched")
        return self

    @model_validator(mode="after")
    def _softmax_fits_engine(self) -> SFTParams:
        if (self.softmax == "full") != (self.engine == "batched") and self.softmax != "sampled":
            raise ValueError(
                f"softmax {self.softmax!r} needs engine "
                f"{'batched' if self.softmax == 'full' else 'prefix_cache'}, got {self.engine!r}"
            )
        return self


class RecPOParams(_Params):
    """RecPO (method §5). Names follow TRL's GRPOConfig where the concept is the same; the rest are R²ec's.

    The defaults are a CPU profile (≤ 10 min on ML-100k with SmolLM2-135M on 2 cores); conf/paper
    has the paper's setting.
    """

    # rollout and policy loss (TRL names)
    num_generations: int = Field(4, ge=1, description="G: reasoning paths sampled per user.")
    temperature: float = Field(1.5, gt=0, description="Rollout sampling temperature.")
    top_k: int | None = Field(200, ge=1, description="Top-k sampling (null: the whole vocabulary).")
    max_completion_length: int = Field(32, ge=1, description="Reasoning tokens before <answer> is forced.")
    epsilon: float = Field(0.2, ge=0, lt=1, description="ε_low: ratios below 1 − ε are clipped.")
    epsilon_high: float = Field(0.28, ge=0, description="ε_high: ratios above 1 + ε_high are clipped.")
    beta: float = Field(0.0, ge=0, description="KL weight to the reference policy (LoRA: adapters disabled).")
    loss_type: Literal["token_mean", "sequence_mean"] = "token_mean"
    num_iterations: int = Field(1, ge=1, description="Policy updates per rollout.")
    # optimisation and schedule (TRL / transformers names)
    per_device_train_batch_size: int = Field(4, ge=1, description="Users per process per step.")
    max_steps: int | None = Field(6, ge=1, description="Optimizer steps (null: num_train_epochs).")
    num_train_epochs: float = Field(3.0, gt=0, description="Epochs when max_steps is null (paper: at most 3).")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW, constant after warmup (paper, on GPU: 1e-5).")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int | None = Field(3, ge=1, description="Checkpoint every N steps (and at the end).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    resume_from_checkpoint: bool | str = Field(
        False, description="true: the latest checkpoint in recpo_checkpoints; a path: that checkpoint."
    )
    eval_steps: int | None = Field(
        None, ge=1, description="Validation every N steps (null: none in between; always before and after)."
    )
    eval_users: int | None = Field(
        100, ge=0, description="Seeded subset of validation users (null: all; 0: no validation)."
    )
    log_completions_steps: int = Field(1, ge=0, description="Keep sampled reasoning texts every N steps (0: never).")
    metric_for_best_model: str | None = Field(
        "reasoning.mrr",
        description="Validation metric '<mode>.<metric>' whose best value selects the weights "
        "kept (method §5: validation N@10, conf/paper; the CPU profile's few users mostly tie at N@10 = 0, MRR "
        "separates them; null: keep the last weights).",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many validations without a better metric_for_best_model."
    )
    seed: int = 0
    # R²ec's own
    reward_type: Literal["fused", "rank_only", "sim_only"] = Field("fused", description="Reward (method §5.3).")
    reward_beta: float = Field(0.05, ge=0, le=1, description="β in R = (1 − β)·R_rank + β·R_sim.")
    ndcg_cutoff: int = Field(1000, ge=1, description="K_r of R_rank = NDCG@K_r.")
    advantage_type: Literal["grpo", "rloo"] = Field("grpo", description="Group-relative advantage (method §5.4).")
    relabel_topk: int = Field(1, ge=1, description="Best paths per user that train the rec head.")
    similarity_temperature: float | None = Field(
        None, gt=0, description="τ for rewards and the item loss (null: model.similarity_temperature)."
    )
    refresh_every: int | None = Field(
        None, ge=1, description="Re-encode the whole item table every N steps (targets' rows: every step)."
    )
    token_loss_weight: float = Field(1.0, ge=0, description="Weight of the clipped token loss (0: item loss only).")
    item_loss_weight: float = Field(1.0, ge=0, description="Weight of the clipped item loss (0: token loss only).")
    item_softmax: Literal["in_batch", "catalog"] = Field(
        "in_batch",
        description="p(v⁺) of the item loss: softmax over the batch's targets (the paper's) or over the whole "
        "catalog with the item table as memory bank (SFT's softmax: catalog; method §5.6).",
    )
    train_users: int | None = Field(
        None,
        ge=1,
        description="Train on the last training sample of this many seeded users only (null: every training "
        "sample): the fit check's fixed set.",
    )
    kl_to_start: bool = Field(
        True,
        description="Log the KL of each rollout's policy to the starting policy on the rollout's tokens (one "
        "forward without gradient per step; a diagnostic, never in the loss).",
    )
    merged_rollouts: bool = Field(
        False,
        description="Decode rollouts from a copy of the backbone with the adapters merged into its weights "
        "(model/merged.py), refreshed after every step: the same paths without the adapters' extra kernels "
        "(an accelerator's decoding is bound by kernel launches; on a CPU the copy only costs memory).",
    )
    # memory of the policy update (same gradient whatever the values)
    policy_micro_batch: int | None = Field(
        None,
        ge=1,
        description="Users per forward/backward of the policy update (null: all of the process's users "
        "at once); gradients are summed over the micro-batches, so the update is the same, for 1/N of the activations.",
    )
    logprob_chunk_tokens: int = Field(
        4096,
        ge=1,
        description="Completion tokens whose vocabulary logits exist at once when taking log-probs "
        "(recomputed in backward): never a float32 vocabulary copy of the whole batch.",
    )

    @model_validator(mode="after")
    def _selection_metric_exists(self) -> RecPOParams:
        metric = self.metric_for_best_model
        if metric is not None:
            mode, _, name = metric.partition(".")
            if mode not in ("reasoning", "direct") or name not in get_args(METRIC_NAMES):
                raise ValueError(
                    f"metric_for_best_model {metric!r} is not '<reasoning|direct>.<metric>' with a "
                    f"metric among {list(get_args(METRIC_NAMES))}"
                )
        return self

    @model_validator(mode="after")
    def _groups_are_usable(self) -> RecPOParams:
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 with advantage_type '{self.advantage_type}' "
                f"(a group of {self.num_generations} has no relative advantage)"
            )
        if self.relabel_topk > self.num_generations:
            raise ValueError(f"relabel_topk {self.relabel_topk} > num_generations {self.num_generations}")
        return self
