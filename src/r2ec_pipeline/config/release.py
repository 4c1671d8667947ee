"""Parameters of what follows training: baselines, evaluation, registration, catalog updates, cold start,
ablations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from r2ec_pipeline.config.base import ConfigError, _describe, _Params
from r2ec_pipeline.config.training import RecPOParams


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


class EvaluationParams(_Params):
    """Full ranking of every model in both modes on validation and test (method §6)."""

    users: int | None = Field(
        None, ge=1, description="Seeded test users ranked by every model in direct mode (null: every user)."
    )
    valid_users: int | None = Field(
        200, ge=1, description="Seeded validation users ranked by every model in direct mode (null: every user)."
    )
    reasoning_users: int | None = Field(
        32,
        ge=1,
        description="Of those, per split, the first ones in the seeded order that the R²ec models also "
        "rank with greedy reasoning (null: all of them).",
    )
    recpo_reasoning_users: int | None = Field(
        200,
        ge=1,
        description="The RecPO model's greedy-reasoning users per split, the first ones in the seeded "
        "order (null: all of them); its reasoning − direct comparison needs more users than the others'.",
    )
    zero_shot_users: int | None = Field(
        None, ge=1, description="The zero-shot model ranks only the first ones per split (null: all of them)."
    )
    reasoning_tokens: int = Field(32, ge=1, description="Greedy reasoning tokens before <answer> is forced.")
    reasoning_batch_size: int = Field(
        16,
        ge=1,
        description="Users per batch when generating greedy reasoning (16 was 1.4x faster per user "
        "than 8 on 2 cores: benchmarks/evaluation_speed.py; direct mode uses model.encode_batch_size).",
    )
    ks: list[int] = Field([5, 10, 20], min_length=1, description="Cutoffs of Hit@K and NDCG@K.")
    top_n: int = Field(50, ge=1, description="Items per sample in the rankings export.")
    reasoning_samples: int = Field(5, ge=0, description="Reasoning texts kept per R²ec model and split.")
    shipped_checkpoint: str | None = Field(
        "checkpoints/cpu-sft24-recpo6-ae0df2e",
        description="A training checkpoint folder the repository ships (checkpoints/<name>): rebuilt, ranked on "
        "the validation users as the RecPO model is, and registered beside it (null: none).",
    )
    seed: int = 0


class RegistrationParams(_Params):
    """MLflow registration of the RecPO model and the champion/challenger gate."""

    model_name: str = Field("r2ec", min_length=1, description="Registered model name.")
    promotion_metric: str = Field(
        "valid.reasoning.mrr",
        description="split.mode.metric of metrics.json that each registered model (its own row: recpo, shipped) "
        "must beat the champion on; a validation split, never the test split.",
    )
    default_k: int = Field(10, ge=1, description="Recommendations returned when a request gives no k.")
    max_k: int = Field(100, ge=1, description="Largest k a request may ask for.")
    reasoning_tokens: int = Field(32, ge=0, description="Greedy reasoning tokens when serving (0: no reasoning).")

    @model_validator(mode="after")
    def _metric_is_qualified(self) -> RegistrationParams:
        parts = self.promotion_metric.split(".")
        if len(parts) != 3 or parts[0] != "valid" or parts[1] not in ("direct", "reasoning"):
            raise ValueError(
                f"promotion_metric {self.promotion_metric!r} must read valid.mode.metric (a validation split: "
                "the test split only reports), e.g. 'valid.reasoning.mrr'"
            )
        if self.default_k > self.max_k:
            raise ValueError(f"default_k {self.default_k} > max_k {self.max_k}")
        return self


class ColdStartParams(_Params):
    """The cold-start evaluation (``kedro run --pipelines cold_start``): the newest items are held out of
    everything the models train on, added after training by a catalog update, and the test users whose
    target is one of them are ranked (evaluation block: ks, top_n, reasoning_tokens, seed)."""

    held_out_fraction: float = Field(
        0.05, gt=0, lt=1, description="Share of the items held out: those whose first interaction is the latest."
    )


class CatalogUpdateParams(_Params):
    """Adding items to a registered model without retraining (``kedro run --pipelines catalog_update``).

    Which version it starts from and where the new rows are are IO settings: ``catalog_update_model``
    and ``new_items_path`` in ``conf/base/globals.yml``.
    """

    allow_updates: bool = Field(
        False,
        description="A row whose raw id the catalog already has replaces that item's text (its row is "
        "re-encoded); false: such a row stops the update (rule raw_item_id_not_in_catalog).",
    )


# The ablation grid's variants: one namespaced recpo + ranking pipeline each (Kedro's dynamic-pipeline
# pattern: names in code, each variant's RecPO overrides in parameters_ablations.yml).
ABLATION_VARIANTS = (  # the first is the reference every other variant is compared with
    "fused_grpo",
    "rank_only",
    "sim_only",
    "rloo",
    "relabel_top2",
    "beta_001",
    "beta_02",
    "catalog_softmax",
    "token_only",
)


class AblationParams(_Params):
    """RecPO variants (method §5 ablations) trained from the SFT checkpoint and ranked on the same users."""

    recpo: dict[str, Any] = Field(
        {"save_steps": None, "eval_users": 0, "eval_steps": None},
        description="Overrides of the recpo block shared by every variant (default: one checkpoint at the end, "
        "no in-training validation; the variants are ranked afterwards).",
    )
    variants: dict[str, dict[str, Any]] = Field(description="Variant name → its own recpo overrides.")
    splits: list[Literal["valid", "test"]] = Field(["test"], min_length=1, description="Splits to rank.")
    reasoning_users: int | None = Field(
        100,
        ge=1,
        description="Users per split also ranked with greedy reasoning (the evaluation's seeded order; null: all).",
    )

    @model_validator(mode="after")
    def _variants_are_valid_recpo_blocks(self) -> AblationParams:
        if set(self.variants) != set(ABLATION_VARIANTS):
            raise ValueError(
                f"variants must be exactly {list(ABLATION_VARIANTS)} (the pipeline's namespaces); "
                f"got {sorted(self.variants)}"
            )
        return self

    def recpo_block(self, base: dict[str, Any], variant: str) -> dict[str, Any]:
        """The variant's full recpo block: base, then the shared overrides, then its own; validated."""
        block = {**base, **self.recpo, **self.variants[variant]}
        try:
            RecPOParams.model_validate(block)
        except ValidationError as error:
            raise ConfigError(_describe(f"ablations.variants.{variant}", error)) from None
        return block
