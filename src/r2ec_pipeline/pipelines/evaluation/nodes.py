"""Nodes of the evaluation pipeline: rank every model on the same users, then metrics, exports and curves.

Each ranking node returns one row per (split, sample, mode) with the target's rank and the top
``top_n`` items; ``summarise_rankings`` turns them into metrics.json, MLflow metrics and the rankings
export, so every model goes through the same metric code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import SASRec, sasrec_scores
from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import mask_lists
from r2ec_pipeline.model.backbone import load_causal_lm
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.factory import build_dual_head, place_for
from r2ec_pipeline.model.rankings import RANKING_COLUMNS, first_in_order, rank_r2ec, rank_scores
from r2ec_pipeline.model.shipped import build_from_checkpoint, mismatch, read_shipped
from r2ec_pipeline.reporting.plots import metrics_bar_chart
from r2ec_pipeline.reporting.statistics import metrics_by_model, paired_comparisons
from r2ec_pipeline.reporting.tables import comparisons_table, flatten, lookup, markdown_table, results_table
from r2ec_pipeline.run_tags import data_hash

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
    model_config, config = parse_block("model", model_params), parse_block("evaluation", params)
    model = build_dual_head(
        backbone_lm, backbone_tokenizer, model_config, parse_block("prompts", prompts_params).answer_tag
    )
    batch = model_config.item_batch_size
    model.build_item_table(item_prompts["item_id"].astype(int).tolist(), item_prompts["prompt"].tolist(), batch)
    return rank_r2ec(
        "zero_shot",
        model,
        first_in_order(samples, config.zero_shot_users),
        interactions,
        model_config,
        config,
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
    config = parse_block("evaluation", params)
    return rank_r2ec(
        "sft", sft_model, samples, interactions, parse_block("model", model_params), config, config.reasoning_users
    )


def rank_recpo(
    recpo_model: R2ecModel,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The RecPO model (its saved item table), with greedy reasoning on ``recpo_reasoning_users``."""
    config = parse_block("evaluation", params)
    model_config = parse_block("model", model_params)
    return rank_r2ec("recpo", recpo_model, samples, interactions, model_config, config, config.recpo_reasoning_users)


def shipped_model(
    backbone_folder: Path,
    backbone_tokenizer: PreTrainedTokenizerBase,
    item_prompts: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, R2ecModel]:
    """``{name: model}`` for the checkpoint ``evaluation.shipped_checkpoint`` names, rebuilt on the backbone with
    its item table encoded from this run's catalog; empty without one, or when it was trained on other
    data or prompts (a warning says which)."""
    path = parse_block("evaluation", params).shipped_checkpoint
    if path is None:
        return {}
    checkpoint = read_shipped(path)
    problem = mismatch(checkpoint, data_hash(interactions), prompts_params)
    if problem:
        logger.warning("shipped checkpoint %s not evaluated: trained on other inputs (%s)", path, problem)
        return {}
    model_config = parse_block("model", model_params)
    lm = load_causal_lm(str(backbone_folder), backbone_folder.parent)
    model = place_for(build_from_checkpoint(checkpoint, lm, backbone_tokenizer), model_config)
    ids = item_prompts["item_id"].astype(int).tolist()
    model.build_item_table(ids, item_prompts["prompt"].tolist(), model_config.item_batch_size)
    logger.info("shipped checkpoint %s (%s weights, step %d)", path, checkpoint.selected, checkpoint.manifest["step"])
    return {checkpoint.name: model}


def rank_shipped(
    models: dict[str, R2ecModel],
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The shipped checkpoint ranked on the validation users exactly as the RecPO model is (the same users in
    both modes): what promotion compares. Not the test split: the checkpoint's own run reports that."""
    if not models:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    config, model_config = parse_block("evaluation", params), parse_block("model", model_params)
    valid = samples[samples["split"] == "valid"]
    (model,) = models.values()
    return rank_r2ec("shipped", model, valid, interactions, model_config, config, config.recpo_reasoning_users)


def summarise_rankings(
    popularity: pd.DataFrame,
    sasrec: pd.DataFrame,
    zero_shot: pd.DataFrame,
    sft: pd.DataFrame,
    recpo: pd.DataFrame,
    shipped: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]], pd.DataFrame, Figure]:
    """metrics.json, the same as MLflow metrics, every ranking in one table, and a bar chart."""
    config = parse_block("evaluation", params)
    frames = [popularity, sasrec, zero_shot, sft, recpo] + ([shipped] if len(shipped) else [])
    rankings = pd.concat(frames, ignore_index=True)
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


def _by_step(points: dict[str, float]) -> tuple[list[int], list[float]]:
    steps = sorted(points, key=int)
    return [int(step) for step in steps], [points[step] for step in steps]


def training_curves(
    recpo_report: dict[str, Any], sasrec_report: dict[str, Any], sft_report: dict[str, Any] | None = None
) -> Figure:
    """Four panels: validation N@10 against step for SFT and RecPO (both modes); RecPO's reward and its
    rank / similarity parts per step; its completion length per step; SASRec's validation N@10 per epoch."""
    figure = Figure(figsize=(11, 7.5))  # no pyplot: nothing global, nothing to close
    (ndcg_axis, reward_axis), (length_axis, sasrec_axis) = figure.subplots(2, 2)
    sft_points = (sft_report or {}).get("validation_by_step") or {}
    if sft_points:
        ndcg_axis.plot(*_by_step(sft_points), marker=".", label="SFT direct")
    offset = int(max(sft_points, key=int)) if sft_points else 0  # RecPO starts where SFT ended
    for name, points in (recpo_report.get("validation_by_step") or {}).items():
        if points:  # absent when RecPO ran without validation (eval_users: 0)
            steps, values = _by_step(points)
            ndcg_axis.plot([offset + step for step in steps], values, marker="o", label=f"RecPO {name}")
    if offset:
        ndcg_axis.axvline(offset, color="grey", linestyle=":", linewidth=1)
    ndcg_axis.set(title="validation N@10 (SFT steps, then RecPO steps)", xlabel="step", ylabel="NDCG@10")
    curves = recpo_report.get("curves") or {"reward_mean": recpo_report.get("reward_mean_by_step", [])}
    for name, label in (("reward_mean", "reward"), ("reward_rank", "rank part"), ("reward_sim", "similarity part")):
        values = curves.get(name) or []
        if values:
            reward_axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
    reward_axis.set(title="RecPO reward per step (group means)", xlabel="RecPO step", ylabel="reward")
    lengths = curves.get("completion_length") or []
    length_axis.plot(range(1, len(lengths) + 1), lengths, marker="o")
    length_axis.set(title="RecPO completion length per step", xlabel="RecPO step", ylabel="tokens (tag included)")
    log = sasrec_report.get("log", [])
    if log:
        sasrec_axis.plot([e["epoch"] for e in log], [e["valid_ndcg_at_10"] for e in log])
    sasrec_axis.set(title="SASRec validation N@10", xlabel="epoch", ylabel="NDCG@10")
    for axis in (ndcg_axis, reward_axis):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def curve_tables(
    recpo_report: dict[str, Any], sft_report: dict[str, Any] | None, metrics: dict[str, Any]
) -> dict[str, list[dict]]:
    """The training curves as tables (one JSON file each, ``dvc plots show`` draws them; step = optimizer step).

    ``sft_loss`` and ``sft_validation`` (N@10: SFT's own validation, or, when SFT ran without one, the
    evaluation stage's validation users at step 0, the zero-shot model, and at SFT's last step, the SFT
    model: every file ``dvc.yaml`` declares is written); ``recpo_train`` (mean reward, its rank and
    similarity parts, completion length per step); ``recpo_validation`` (N@10 in both modes, step 0 = the
    SFT start). RecPO curves a run did not produce (no validation) are left out.
    """
    sft_report = sft_report or {}
    own = sft_report.get("validation_by_step") or {}
    evaluated = {
        0: lookup(metrics, "valid.zero_shot.direct.ndcg_at_10"),
        int(sft_report.get("steps_run") or 0): lookup(metrics, "valid.sft.direct.ndcg_at_10"),
    }
    points = own or {str(step): value for step, value in evaluated.items() if value is not None}
    tables = {
        "sft_loss": [
            {"step": step, "loss": value} for step, value in enumerate(sft_report.get("loss_by_step") or [], 1)
        ],
        "sft_validation": [{"step": step, "ndcg_at_10": value} for step, value in zip(*_by_step(points), strict=True)],
    }
    curves = recpo_report.get("curves") or {}
    names = [name for name in ("reward_mean", "reward_rank", "reward_sim", "completion_length") if curves.get(name)]
    tables["recpo_train"] = (
        [
            {"step": step, **{name: curves[name][step - 1] for name in names}}
            for step in range(1, len(curves[names[0]]) + 1)
        ]
        if names
        else []
    )
    modes = {mode: points for mode, points in (recpo_report.get("validation_by_step") or {}).items() if points}
    steps = sorted({int(step) for points in modes.values() for step in points})
    tables["recpo_validation"] = [
        {
            "step": step,
            **{f"{mode}_ndcg_at_10": points[str(step)] for mode, points in modes.items() if str(step) in points},
        }
        for step in steps
    ]
    return {name: rows for name, rows in tables.items() if rows}


HEADLINE_METRICS = ("hit_at_10", "ndcg_at_10", "mrr", "users")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """metrics.json's test figures as one small file per model and mode (H@10, N@10, MRR, users) and per
    paired comparison (N@10 difference and its 95% CI), so `dvc metrics show` prints a row per file."""
    rows = {
        f"test_{model}_{mode}": {name: values[name] for name in HEADLINE_METRICS if name in values}
        for model, modes in metrics.get("test", {}).items()
        for mode, values in modes.items()
    }
    for pair, values in metrics.get("comparisons", {}).get("test", {}).items():
        ndcg = values.get("ndcg_at_10")
        if ndcg:
            name = pair.replace(".", "_").replace("-", "_minus_")
            rows[f"test_ci_{name}"] = {f"ndcg_at_10_{part}": ndcg[part] for part in ("difference", "low", "high")}
    return rows
