"""Typed parameters of every pipeline, checked before any node runs.

Each pipeline reads one top-level block of ``conf/base/parameters_<pipeline>.yml``; the models here
say what each field means and which part of the method spec (``recpo-spec.md``) it comes from.
``validate_parameters`` turns a pydantic error into one message that names the parameter.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A parameter is missing, unknown or out of range; the message names it."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmazonParams(_Params):
    """Amazon Reviews 2023 preprocessing, as in the paper (spec §1).

    Which category and where its files lie are IO settings: ``amazon_dir`` / ``amazon_category``
    in ``conf/base/globals.yml``.
    """

    start_date: date = Field(date(2022, 10, 1), description="First day of the review window.")
    end_date: date = Field(date(2023, 10, 1), description="Day after the last review kept (exclusive).")
    min_items: int = Field(10_000, ge=1, description="Move start_date back until the catalog has this many items.")
    start_step_months: int = Field(3, ge=1, description="How far start_date moves back per step (the paper: 3).")
    max_title_words: int = Field(20, ge=1, description="Items whose cleaned title has more words are dropped.")
    min_title_chars: int = Field(2, ge=1, description="Items whose cleaned title is shorter are dropped.")
    title_markers: tuple[str, ...] = Field(("<span id",), description="Items whose title holds one are dropped.")
    require_price: bool = Field(True, description="Drop items whose price does not parse as a number.")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> AmazonParams:
        if self.start_date >= self.end_date:
            raise ValueError(f"start_date {self.start_date} must be before end_date {self.end_date}")
        return self


class IngestionParams(_Params):
    """Which dataset to read and how to turn it into canonical interactions and items."""

    source: Literal["movielens_100k", "amazon_2023"] = Field(
        "movielens_100k", description="movielens_100k (embedded default) or amazon_2023 (local files)."
    )
    min_user_interactions: int = Field(
        2, ge=2, description="Users with fewer interactions give no sample (spec §1) and are dropped."
    )
    amazon: AmazonParams = AmazonParams()


class ValidationParams(_Params):
    """Rules of the great-expectations suites (issue: data validation)."""

    rating_min: float = Field(1.0, description="Lowest rating of the dataset's scale.")
    rating_max: float = Field(5.0, description="Highest rating of the dataset's scale.")
    timestamp_min: int = Field(0, ge=0, description="Earliest valid Unix timestamp (seconds).")
    timestamp_max: int = Field(4_102_444_800, description="Latest valid Unix timestamp (2100-01-01).")
    min_user_interactions: int = Field(2, ge=1, description="Every user must have at least this many interactions.")
    example_rows: int = Field(5, ge=1, le=100, description="Failing rows quoted per failed expectation.")

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> ValidationParams:
        if self.rating_min > self.rating_max:
            raise ValueError(f"rating_min {self.rating_min} > rating_max {self.rating_max}")
        if self.timestamp_min >= self.timestamp_max:
            raise ValueError(f"timestamp_min {self.timestamp_min} >= timestamp_max {self.timestamp_max}")
        return self


DEFAULT_USER_INSTRUCTION = (
    "Here is a user's history of rated items, oldest first. Analyse the user's preferences step by "
    "step, then recommend the next item the user will interact with inside <answer> and </answer>."
)
DEFAULT_ITEM_INSTRUCTION = "Summarise the following item inside <answer> and </answer>."


class PromptParams(_Params):
    """Samples, splits and prompts (spec §1–2)."""

    window_size: int = Field(
        5, ge=1, description="History items kept per sample, latest first (spec §1: 20, conf/paper; the CPU "
        "profile keeps 5: prompts ~4.5x cheaper to encode)."
    )
    split: Literal["temporal", "leave_one_out"] = Field(
        "leave_one_out", description="temporal: 80/10/10 by target time (paper); leave_one_out: RecBole's."
    )
    temporal_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Train/validation/test shares of the temporal split."
    )
    max_user_prompt_tokens: int = Field(2048, ge=32, description="Cap; the oldest history lines go first.")
    max_item_prompt_tokens: int = Field(768, ge=16, description="Cap on the item prompt; its text is cut.")
    answer_tag: str = Field("<answer>", min_length=1, description="Plain-text control string (spec §2).")
    user_instruction: str = Field(DEFAULT_USER_INSTRUCTION, min_length=1)
    item_instruction: str = Field(DEFAULT_ITEM_INSTRUCTION, min_length=1)

    @model_validator(mode="after")
    def _ratios_sum_to_one(self) -> PromptParams:
        if any(r <= 0 for r in self.temporal_ratios) or abs(sum(self.temporal_ratios) - 1.0) > 1e-6:
            raise ValueError(f"temporal_ratios {self.temporal_ratios} must be positive and sum to 1")
        return self


class AdapterParams(_Params):
    """LoRA adapters (spec §3: r=4, alpha=128, dropout 0 on every projection) or full fine-tuning."""

    full_finetune: bool = Field(False, description="Train every weight instead of LoRA adapters.")
    r: int = Field(4, ge=1, description="LoRA rank.")
    alpha: int = Field(128, ge=1, description="LoRA alpha (scaling alpha/r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    top_layers: int | None = Field(
        8, ge=1, description="Adapters on the top N layers only (null: all, the paper's setting, conf/paper). "
        "On a CPU this makes a training step ~3x cheaper, since backward stops at the lowest adapted layer."
    )


METRIC_NAMES = Literal[
    "hit_at_5", "ndcg_at_5", "hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr"
]


class ModelParams(_Params):
    """The dual-head model (spec §3). The backbone itself is ``backbone`` in globals.yml."""

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
        "auto", description="Precision of the frozen backbone weights (auto: bfloat16 on CUDA, float32 on the CPU); "
        "trainable weights and the rec head's math (cosine/τ, softmax, rewards, log-probs) stay float32."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in backward (HF's switch) in SFT and RecPO: less "
        "memory for ~30% more compute; the prompt's KV cache is then not shared across a user's paths."
    )


class SFTParams(_Params):
    """SFT warm-start of the rec head (spec §4), sized for a 2-core CPU by default."""

    steps: int = Field(8, ge=1, description="Optimizer steps (at most, with early stopping).")
    batch_size: int = Field(8, ge=2, description="Users per step; their targets are each other's negatives.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW, constant; 1e-4 learned nothing in 40 CPU steps.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    negatives: int = Field(
        32, ge=0, description="Uniform catalog negatives added to the in-batch softmax (in-batch negatives "
        "alone cancel the popularity signal)."
    )
    softmax: Literal["sampled", "catalog"] = Field(
        "sampled", description="sampled: each target against the batch's targets and the sampled negatives; "
        "catalog: against every item (the item table as a memory bank, the targets' rows encoded fresh), as "
        "evaluation ranks."
    )
    table_refresh_every: int = Field(16, ge=1, description="softmax: catalog: steps between item-table refreshes.")
    item_chunk_size: int | None = Field(
        8, ge=1, description="softmax: sampled: item columns whose activations are held at once (the gradient-cache "
        "trick: same gradient, one extra forward of the adapted layers); null: all in one graph."
    )
    eval_every: int = Field(20, ge=1, description="Steps between validation runs (and at the last step).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many validations without a better selection metric (null: "
        "train all steps); the best weights are kept either way."
    )
    eval_users: int | None = Field(
        0, ge=0, description="Seeded subset of validation users (null: all; 0: no validation, keep the last "
        "weights); full ranking either way."
    )
    selection_metric: METRIC_NAMES = Field("ndcg_at_10", description="Validation metric that picks the kept weights.")
    max_seconds: float | None = Field(
        None, gt=0, description="Stop once the training steps have taken this long (null: no limit; validation not "
        "counted); the best weights are kept either way."
    )
    seed: int = 0


class RecPOParams(_Params):
    """RecPO (spec §5). Names follow TRL's GRPOConfig where the concept is the same; the rest are R²ec's.

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
    eval_steps: int | None = Field(3, ge=1, description="Validation every N steps (always before and after).")
    eval_users: int | None = Field(
        48, ge=0, description="Seeded subset of validation users (null: all; 0: no validation)."
    )
    log_completions_steps: int = Field(1, ge=0, description="Keep sampled reasoning texts every N steps (0: never).")
    metric_for_best_model: str | None = Field(
        "reasoning.mrr", description="Validation metric '<mode>.<metric>' whose best value selects the weights "
        "kept (spec: validation N@10, conf/paper; the CPU profile's few users mostly tie at N@10 = 0, MRR "
        "separates them; null: keep the last weights)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many validations without a better metric_for_best_model."
    )
    seed: int = 0
    # R²ec's own
    reward_type: Literal["fused", "rank_only", "sim_only"] = Field("fused", description="Reward (spec §5.3).")
    reward_beta: float = Field(0.05, ge=0, le=1, description="β in R = (1 − β)·R_rank + β·R_sim.")
    ndcg_cutoff: int = Field(1000, ge=1, description="K_r of R_rank = NDCG@K_r.")
    advantage_type: Literal["grpo", "rloo"] = Field("grpo", description="Group-relative advantage (spec §5.4).")
    relabel_topk: int = Field(1, ge=1, description="Best paths per user that train the rec head.")
    similarity_temperature: float | None = Field(
        None, gt=0, description="τ for rewards and the item loss (null: model.similarity_temperature)."
    )
    refresh_every: int | None = Field(
        None, ge=1, description="Re-encode the whole item table every N steps (targets' rows: every step)."
    )
    # memory of the policy update (same gradient whatever the values)
    policy_micro_batch: int | None = Field(
        None, ge=1, description="Users per forward/backward of the policy update (null: all of the process's users "
        "at once); gradients are summed over the micro-batches, so the update is the same, for 1/N of the activations."
    )
    logprob_chunk_tokens: int = Field(
        4096, ge=1, description="Completion tokens whose vocabulary logits exist at once when taking log-probs "
        "(recomputed in backward): never a float32 vocabulary copy of the whole batch."
    )

    @model_validator(mode="after")
    def _selection_metric_exists(self) -> RecPOParams:
        metric = self.metric_for_best_model
        if metric is not None:
            mode, _, name = metric.partition(".")
            if mode not in ("reasoning", "direct") or name not in get_args(METRIC_NAMES):
                raise ValueError(f"metric_for_best_model {metric!r} is not '<reasoning|direct>.<metric>' with a "
                                 f"metric among {list(get_args(METRIC_NAMES))}")
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


class SASRecParams(_Params):
    """SASRec baseline (Kang & McAuley 2018) with full-catalog cross-entropy at every position."""

    max_length: int = Field(50, ge=1, description="Latest items the model reads.")
    hidden_size: int = Field(64, ge=2)
    num_blocks: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1, description="Training windows per step.")
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(5, ge=1, description="Epochs without a better validation N@10 before stopping.")
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> SASRecParams:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


class BaselinesParams(_Params):
    """Non-LLM baselines, trained on the training split and ranked by the evaluation stage."""

    sasrec: SASRecParams = SASRecParams()


EVALUATED_MODELS = ("popularity", "sasrec", "zero_shot", "sft", "recpo")
R2EC_MODELS = ("zero_shot", "sft", "recpo")


class EvaluationParams(_Params):
    """Full ranking of every model in both modes on validation and test (spec §6)."""

    users: int | None = Field(
        None, ge=1, description="Seeded test users ranked by every model in direct mode (null: every user)."
    )
    valid_users: int | None = Field(
        32, ge=1, description="Seeded validation users ranked by every model in direct mode (null: every user)."
    )
    reasoning_users: int | None = Field(
        32, ge=1, description="Of those, per split, the first ones in the seeded order that the R²ec models also "
        "rank with greedy reasoning (null: all of them)."
    )
    recpo_reasoning_users: int | None = Field(
        200, ge=1, description="The RecPO model's greedy-reasoning users per split, the first ones in the seeded "
        "order (null: all of them); its reasoning − direct comparison needs more users than the others'."
    )
    zero_shot_users: int | None = Field(
        None, ge=1, description="The zero-shot model ranks only the first ones per split (null: all of them)."
    )
    reasoning_tokens: int = Field(32, ge=1, description="Greedy reasoning tokens before <answer> is forced.")
    reasoning_batch_size: int = Field(
        16, ge=1, description="Users per batch when generating greedy reasoning (16 was 1.4x faster per user "
        "than 8 on 2 cores: benchmarks/evaluation_speed.py; direct mode uses model.encode_batch_size)."
    )
    ks: list[int] = Field([5, 10, 20], min_length=1, description="Cutoffs of Hit@K and NDCG@K.")
    top_n: int = Field(50, ge=1, description="Items per sample in the rankings export.")
    reasoning_samples: int = Field(5, ge=0, description="Reasoning texts kept per R²ec model and split.")
    seed: int = 0


class RegistrationParams(_Params):
    """MLflow registration of the RecPO model and the champion/challenger gate."""

    model_name: str = Field("r2ec", min_length=1, description="Registered model name.")
    promotion_metric: str = Field(
        "valid.recpo.reasoning.ndcg_at_10",
        description="Key of metrics.json (split.model.mode.metric) the challenger must beat the champion on.",
    )
    default_k: int = Field(10, ge=1, description="Recommendations returned when a request gives no k.")
    max_k: int = Field(100, ge=1, description="Largest k a request may ask for.")
    reasoning_tokens: int = Field(32, ge=0, description="Greedy reasoning tokens when serving (0: no reasoning).")

    @model_validator(mode="after")
    def _metric_is_qualified(self) -> RegistrationParams:
        parts = self.promotion_metric.split(".")
        if len(parts) != 4 or parts[0] not in ("valid", "test") or parts[1] not in EVALUATED_MODELS:
            raise ValueError(f"promotion_metric {self.promotion_metric!r} must read split.model.mode.metric, "
                             f"e.g. 'valid.recpo.reasoning.ndcg_at_10'")
        if self.default_k > self.max_k:
            raise ValueError(f"default_k {self.default_k} > max_k {self.max_k}")
        return self


# The ablation grid's variants: one namespaced recpo + ranking pipeline each (Kedro's dynamic-pipeline
# pattern: names in code, each variant's RecPO overrides in parameters_ablations.yml).
ABLATION_VARIANTS = ("fused_grpo", "rank_only", "sim_only", "rloo", "relabel_top2", "beta_001", "beta_02")


class AblationParams(_Params):
    """RecPO variants (spec §5 ablations) trained from the SFT checkpoint and ranked on the same users."""

    recpo: dict[str, Any] = Field(
        {"save_steps": None, "eval_users": 0, "eval_steps": None},
        description="Overrides of the recpo block shared by every variant (default: one checkpoint at the end, "
        "no in-training validation; the variants are ranked afterwards).",
    )
    variants: dict[str, dict[str, Any]] = Field(description="Variant name → its own recpo overrides.")
    splits: list[Literal["valid", "test"]] = Field(["test"], min_length=1, description="Splits to rank.")

    @model_validator(mode="after")
    def _variants_are_valid_recpo_blocks(self) -> AblationParams:
        if set(self.variants) != set(ABLATION_VARIANTS):
            raise ValueError(f"variants must be exactly {list(ABLATION_VARIANTS)} (the pipeline's namespaces); "
                             f"got {sorted(self.variants)}")
        return self

    def recpo_block(self, base: dict[str, Any], variant: str) -> dict[str, Any]:
        """The variant's full recpo block: base, then the shared overrides, then its own; validated."""
        block = {**base, **self.recpo, **self.variants[variant]}
        try:
            RecPOParams.model_validate(block)
        except ValidationError as error:
            raise ConfigError(_describe(f"ablations.variants.{variant}", error)) from None
        return block


PARAMETER_MODELS: dict[str, type[_Params]] = {
    "data_ingestion": IngestionParams,
    "data_validation": ValidationParams,
    "prompts": PromptParams,
    "model": ModelParams,
    "sft": SFTParams,
    "recpo": RecPOParams,
    "baselines": BaselinesParams,
    "evaluation": EvaluationParams,
    "registration": RegistrationParams,
    "ablations": AblationParams,
}


def _describe(block: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (block, *item["loc"]))
        got = f" (got {item['input']!r})" if item["loc"] and item.get("type") != "missing" and "input" in item else ""
        lines.append(f"parameter '{where}': {item['msg']}{got}")
    return "; ".join(lines)


def parse_block(block: str, values: dict[str, Any] | None) -> Any:
    """Validate one parameter block and return its typed model; raise ``ConfigError`` naming the field."""
    model = PARAMETER_MODELS[block]
    try:
        return model.model_validate(values or {})
    except ValidationError as error:
        raise ConfigError(_describe(block, error)) from None


def validate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Check every known block of a Kedro ``params`` dict; collect all problems into one error."""
    problems, typed = [], {}
    for block in PARAMETER_MODELS:
        if block not in params:
            problems.append(f"parameter block '{block}' is missing (expected in parameters_{block}.yml)")
            continue
        try:
            typed[block] = parse_block(block, params[block])
        except ConfigError as error:
            problems.append(str(error))
    if not problems and "ablations" in typed:
        for variant in ABLATION_VARIANTS:  # each variant's merged recpo block must be valid too
            try:
                typed["ablations"].recpo_block(params["recpo"], variant)
            except ConfigError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError("invalid parameters: " + "; ".join(problems))
    return typed
