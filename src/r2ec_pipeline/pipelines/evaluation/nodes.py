"""Nodes of the evaluation pipeline: rank every model on the same users, then metrics and exports.

Each ranking node returns one row per (split, sample, mode) with the target's rank and the top
``top_n`` items; ``summarise_rankings`` turns them into metrics.json, MLflow metrics and the rankings
export, so every model goes through the same metric code.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import SASRec, sasrec_scores
from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import mask_lists
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.rankings import first_in_order, rank_r2ec, rank_scores
from r2ec_pipeline.reporting import (
    comparisons_table,
    flatten,
    markdown_table,
    metrics_bar_chart,
    metrics_by_model,
    paired_comparisons,
    results_table,
)

logger = logging.getLogger(__name__)
SPLIT_NAMES = ("valid", "test")


def select_evaluation_samples(
    valid_samples: pd.DataFrame, test_samples: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """The users every model ranks in direct mode, per split, with their place in one seeded order (``order``).

    Smaller sets (greedy reasoning, the zero-shot model) are the first users of that order, so every
    smaller set is part of every larger one and paired comparisons have the same users.
    """
    config = parse_block("evaluation", params)
    parts = []
    for split, samples, size in (("valid", valid_samples, config.valid_users), ("test", test_samples, config.users)):
        order = np.random.RandomState(config.seed).permutation(len(samples))  # what seeded_subset draws from
        ranked = samples.assign(split=split, order=np.argsort(order))
        parts.append(ranked[ranked["order"] < (size or len(samples))])
    samples = pd.concat(parts, ignore_index=True)
    logger.info("evaluating on %s samples", samples["split"].value_counts().to_dict())
    return samples


def rank_popularity(
    counts: pd.DataFrame,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """Popularity ranked like every other model (history masked)."""
    masks = mask_lists(samples, interactions, parse_block("model", model_params).history_mask)
    popularity = Popularity.from_counts(counts)
    return rank_scores("popularity", popularity.score(masks), samples, masks, parse_block("evaluation", params).top_n)


def rank_sasrec(
    sasrec: SASRec,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """SASRec reads each user's full earlier history (its latest ``max_length`` items)."""
    masks = mask_lists(samples, interactions, parse_block("model", model_params).history_mask)
    full = mask_lists(samples, interactions, "full")
    return rank_scores("sasrec", sasrec_scores(sasrec, full), samples, masks, parse_block("evaluation", params).top_n)


def rank_zero_shot(
    backbone_lm: PreTrainedModel,
    backbone_tokenizer: PreTrainedTokenizerBase,
    item_prompts: pd.DataFrame,
    prompts_params: dict[str, Any],
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The untrained dual-head model: the backbone's own hidden states as user and item embeddings."""
    model = build_dual_head(backbone_lm, backbone_tokenizer, model_params, prompts_params)
    batch = parse_block("model", model_params).item_batch_size
    model.build_item_table(item_prompts["item_id"].astype(int).tolist(), item_prompts["prompt"].tolist(), batch)
    config = parse_block("evaluation", params)
    return rank_r2ec(
        "zero_shot",
        model,
        first_in_order(samples, config.zero_shot_users),
        interactions,
        model_params,
        params,
        config.reasoning_users,
    )


def rank_sft(
    sft_model: R2ecModel | None,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The SFT checkpoint (its saved item table)."""
    if sft_model is None:
        raise FileNotFoundError("no SFT checkpoint in data/06_models/sft: run `kedro run --pipelines sft` first")
    reasoning_users = parse_block("evaluation", params).reasoning_users
    return rank_r2ec("sft", sft_model, samples, interactions, model_params, params, reasoning_users)


def rank_recpo(
    recpo_model: R2ecModel,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The RecPO model (its saved item table), with greedy reasoning on ``recpo_reasoning_users``."""
    reasoning_users = parse_block("evaluation", params).recpo_reasoning_users
    return rank_r2ec("recpo", recpo_model, samples, interactions, model_params, params, reasoning_users)


def summarise_rankings(
    popularity: pd.DataFrame,
    sasrec: pd.DataFrame,
    zero_shot: pd.DataFrame,
    sft: pd.DataFrame,
    recpo: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]], pd.DataFrame, Figure]:
    """metrics.json, the same as MLflow metrics, every ranking in one table, and a bar chart."""
    config = parse_block("evaluation", params)
    rankings = pd.concat([popularity, sasrec, zero_shot, sft, recpo], ignore_index=True)
    metrics = metrics_by_model(rankings, config.ks)
    metrics["comparisons"] = {
        split: paired_comparisons(rankings, metrics, split, seed=config.seed)
        for split in SPLIT_NAMES
        if split in metrics
    }
    history = {name: [{"value": value, "step": 0}] for name, value in flatten(metrics).items()}
    logger.info("test results:\n%s", markdown_table(results_table(metrics, "test")))
    if metrics["comparisons"].get("test"):
        logger.info(
            "paired differences (95%% bootstrap CIs):\n%s",
            markdown_table(comparisons_table(metrics["comparisons"]["test"])),
        )
    return metrics, history, rankings, metrics_bar_chart(metrics, "test")


def export_rankings(
    rankings: pd.DataFrame,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    samples: pd.DataFrame,
    model_params: dict[str, Any],
) -> pd.DataFrame:
    """Test rankings with the dataset's raw ids, for scoring outside this project."""
    users = interactions.drop_duplicates("user_id").set_index("user_id")["raw_user_id"]
    raw_items = dict(zip(items["item_id"].astype(int), items["raw_item_id"].astype(str), strict=True))
    test = samples[samples["split"] == "test"]
    history_mask = parse_block("model", model_params).history_mask
    histories = dict(zip(test["user_id"].astype(int), mask_lists(test, interactions, history_mask), strict=True))
    rows = rankings[rankings["split"] == "test"]

    def raw(ids) -> list[str]:
        return [raw_items[int(i)] for i in ids]

    return pd.DataFrame(
        {
            "user_id": rows["user_id"].map(users).astype(str).to_numpy(),
            "target_item_id": raw(rows["target_item_id"]),
            "history_item_ids": [raw(histories[int(u)]) for u in rows["user_id"]],
            "topk_item_ids": [raw(ids) for ids in rows["topk_item_ids"]],
            "model": rows["model"].to_numpy(),
            "mode": rows["mode"].to_numpy(),
        }
    )


def reasoning_samples(rankings: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """A few users per R²ec model and split: target, top-5 titles and the greedy reasoning, to read."""
    keep = parse_block("evaluation", params).reasoning_samples
    titles = dict(zip(items["item_id"].astype(int), items["title"], strict=True))
    with_text = rankings[rankings["mode"] == "reasoning"]
    picked = with_text.groupby(["model", "split"], sort=False).head(keep)
    return pd.DataFrame(
        {
            "model": picked["model"],
            "split": picked["split"],
            "user_id": picked["user_id"],
            "target": picked["target_item_id"].map(titles),
            "target_rank": picked["rank"],
            "top5": [" | ".join(titles[int(i)] for i in ids[:5]) for ids in picked["topk_item_ids"]],
            "reasoning": picked["reasoning"],
        }
    )
