"""Rankings as table rows, shared by the evaluation and ablations stages (pandas in, pandas out; no Kedro).

Every evaluated sample carries ``order``, its place in one seeded order per split: a smaller set of
users (greedy reasoning, the zero-shot model) is the first ones of that order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from r2ec_pipeline.config import EvaluationParams, ModelParams
from r2ec_pipeline.data.samples import mask_lists
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.evaluation import (
    Ranking,
    rank_both_modes,
    rank_without_reasoning,
)
from r2ec_pipeline.model.factory import place_for
from r2ec_pipeline.model.scoring import mask_items


def first_in_order(samples: pd.DataFrame, count: int | None) -> pd.DataFrame:
    """The first ``count`` samples of each split in the seeded order (all if None)."""
    return samples if count is None else samples[samples["order"] < count]


RANKING_COLUMNS = [
    "model",
    "mode",
    "split",
    "user_id",
    "target_item_id",
    "rank",
    "topk_item_ids",
    "topk_scores",
    "reasoning",
]


def ranking_rows(
    model: str, mode: str, samples: pd.DataFrame, ranking: Ranking, reasoning: list[str] | None
) -> pd.DataFrame:
    """One row per sample; masked items (score −inf) never appear in a top list, so lists may be shorter."""
    finite = np.isfinite(ranking.top_scores)
    return pd.DataFrame(
        {
            "model": model,
            "mode": mode,
            "split": samples["split"].to_numpy(),
            "user_id": samples["user_id"].astype(int).to_numpy(),
            "target_item_id": samples["target_item_id"].astype(int).to_numpy(),
            "rank": ranking.ranks.astype(int),
            "topk_item_ids": [ids[keep] for ids, keep in zip(ranking.top_ids.astype(int), finite, strict=True)],
            "topk_scores": [
                values[keep] for values, keep in zip(ranking.top_scores.astype(float), finite, strict=True)
            ],
            "reasoning": reasoning if reasoning is not None else [None] * len(samples),
        }
    )


def rank_scores(
    model: str, scores: torch.Tensor, samples: pd.DataFrame, masks: Sequence[Sequence[int]], top_n: int
) -> pd.DataFrame:
    """Rows of a model that scores the catalog in one pass (Pop, SASRec): ``masks`` set to −inf first."""
    ranking = Ranking.from_scores(mask_items(scores, masks), samples["target_item_id"].astype(int).tolist(), top_n)
    return ranking_rows(model, "direct", samples, ranking, None)


def rank_r2ec(
    name: str,
    model: R2ecModel,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_config: ModelParams,
    config: EvaluationParams,
    reasoning_users: int | None,
) -> pd.DataFrame:
    """Direct mode on every sample; greedy reasoning too on the first ``reasoning_users`` per split (null: all).

    Both modes come from one prompt pass for those users.
    """
    place_for(model, model_config)  # a checkpoint loads on the CPU in float32
    both = first_in_order(samples, reasoning_users)
    rest = samples.drop(both.index)
    batch = model_config.encode_batch_size
    rankings, texts = rank_both_modes(
        model,
        both["prompt"].tolist(),
        both["target_item_id"].astype(int).tolist(),
        mask_lists(both, interactions, model_config.history_mask),
        config.reasoning_tokens,
        config.reasoning_batch_size,
        top_n=config.top_n,
    )
    parts = [
        ranking_rows(name, "direct", both, rankings["direct"], None),
        ranking_rows(name, "reasoning", both, rankings["reasoning"], texts),
    ]
    if len(rest):
        direct = rank_without_reasoning(
            model,
            rest["prompt"].tolist(),
            rest["target_item_id"].astype(int).tolist(),
            mask_lists(rest, interactions, model_config.history_mask),
            batch,
            top_n=config.top_n,
        )
        parts.insert(1, ranking_rows(name, "direct", rest, direct, None))
    return pd.concat(parts, ignore_index=True)
