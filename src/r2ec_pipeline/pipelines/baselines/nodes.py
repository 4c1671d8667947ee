"""Nodes of the baselines pipeline: training sequences, Popularity counts, SASRec with early stopping."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import SASRec, sasrec_scores, train_sasrec
from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import earlier_items
from r2ec_pipeline.metrics import ndcg_at_k
from r2ec_pipeline.model.scoring import mask_items, target_ranks
from r2ec_pipeline.pipelines.shared.costs import cost_metrics, peak_rss_mb

logger = logging.getLogger(__name__)


def training_sequences(interactions: pd.DataFrame, train_samples: pd.DataFrame) -> pd.DataFrame:
    """Per user, the time-ordered items up to their last training target: nothing from valid or test."""
    last = train_samples.groupby("user_id")["position"].max()
    users = pd.DataFrame({"user_id": last.index, "position": last.to_numpy() + 1})
    return users.assign(item_ids=earlier_items(interactions, users))[["user_id", "item_ids"]]


def fit_popularity(sequences: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Training interaction count of every catalog item (0 for items never seen in training)."""
    table = items[["item_id"]].astype({"item_id": int}).copy()
    ids = [int(i) for item_ids in sequences["item_ids"] for i in item_ids]
    counts = Popularity.fit(ids, int(table["item_id"].max())).counts
    table["count"] = counts[table["item_id"].to_numpy()].long().numpy()
    return table


def train_sasrec_model(
    sequences: pd.DataFrame,
    valid_samples: pd.DataFrame,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[SASRec, dict[str, list[dict[str, float]]], dict[str, Any]]:
    """SASRec early-stopped on validation N@10 over every validation user (history masked)."""
    config = parse_block("baselines", params).sasrec
    histories = earlier_items(interactions, valid_samples)
    targets = torch.tensor(valid_samples["target_item_id"].astype(int).to_numpy())

    def evaluate(model: SASRec) -> float:
        scores = mask_items(sasrec_scores(model, histories), histories)
        return ndcg_at_k(target_ranks(scores, targets).numpy(), 10)

    started = time.perf_counter()
    model, log = train_sasrec(int(items["item_id"].max()), sequences["item_ids"].tolist(), evaluate, config)
    seconds = time.perf_counter() - started
    best = max(log, key=lambda entry: entry["valid_ndcg_at_10"])
    logger.info(
        "SASRec: best valid N@10 %.4f at epoch %d of %d (%.0f s)",
        best["valid_ndcg_at_10"],
        best["epoch"],
        len(log),
        seconds,
    )
    history = {
        name: [{"value": entry[name], "step": entry["epoch"]} for entry in log] for name in ("loss", "valid_ndcg_at_10")
    }
    report = {
        "best_epoch": best["epoch"],
        "epochs": len(log),
        "valid_ndcg_at_10": best["valid_ndcg_at_10"],
        "training_sequences": len(sequences),
        "log": log,
    }
    return model, {**history, **cost_metrics(len(log), seconds=seconds, peak_rss_mb=peak_rss_mb())}, report
