"""Parameters of the data pipelines: ingestion (ML-100k, Amazon 2023), validation, prompts."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from r2ec_pipeline.config.base import _Params


class AmazonParams(_Params):
    """Amazon Reviews 2023 preprocessing, as in the paper (method §1).

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
        2, ge=2, description="Users with fewer interactions give no sample (method §1) and are dropped."
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
    """Samples, splits and prompts (method §1–2)."""

    window_size: int = Field(
        5,
        ge=1,
        description="History items kept per sample, latest first (method §1: 20, conf/paper; the CPU "
        "profile keeps 5: prompts ~4.5x cheaper to encode).",
    )
    split: Literal["temporal", "leave_one_out"] = Field(
        "leave_one_out", description="temporal: 80/10/10 by target time (paper); leave_one_out: RecBole's."
    )
    temporal_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Train/validation/test shares of the temporal split."
    )
    max_user_prompt_tokens: int = Field(2048, ge=32, description="Cap; the oldest history lines go first.")
    max_item_prompt_tokens: int = Field(768, ge=16, description="Cap on the item prompt; its text is cut.")
    answer_tag: str = Field("<answer>", min_length=1, description="Plain-text control string (method §2).")
    user_instruction: str = Field(DEFAULT_USER_INSTRUCTION, min_length=1)
    item_instruction: str = Field(DEFAULT_ITEM_INSTRUCTION, min_length=1)

    @model_validator(mode="after")
    def _ratios_sum_to_one(self) -> PromptParams:
        if any(r <= 0 for r in self.temporal_ratios) or abs(sum(self.temporal_ratios) - 1.0) > 1e-6:
            raise ValueError(f"temporal_ratios {self.temporal_ratios} must be positive and sum to 1")
        return self
