"""Nodes of the sft pipeline: pick validation users, train, report (the model: ``model.factory``)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import EarlierItems, mask_lists
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.evaluation import evaluate_without_reasoning
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.sft import train_sft
from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.pipelines.shared.costs import cost_metrics, peak_rss_mb
from r2ec_pipeline.pipelines.shared.provenance import training_provenance

logger = logging.getLogger(__name__)


def zero_shot_model(
    backbone_lm: PreTrainedModel,
    backbone_tokenizer: PreTrainedTokenizerBase,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
) -> R2ecModel:
    """The backbone with fresh adapters and the prompts' answer tag: the model SFT starts from."""
    answer_tag = parse_block("prompts", prompts_params).answer_tag
    return build_dual_head(backbone_lm, backbone_tokenizer, parse_block("model", model_params), answer_tag)


def train_sft_model(
    model: R2ecModel,
    train_samples: pd.DataFrame,
    eval_samples: pd.DataFrame,
    item_prompts: pd.DataFrame,
    interactions: pd.DataFrame,
    checkpoints: CheckpointStore,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
    sft_params: dict[str, Any],
) -> tuple[R2ecModel, dict[str, list[dict[str, float]]], dict[str, Any]]:
    """Zero-shot validation, SFT with periodic validation, best weights kept.

    With ``sft.save_steps`` (engine batched) resumable checkpoints go to ``checkpoints``, their manifests
    saying what trained them; ``sft.resume_from_checkpoint`` continues one. Returns the model, the metric
    history (MLflow only: the curves, and the run's seconds and memory) and the report (DVC-tracked, so
    only what the same code and data reproduce).
    """
    model_config, config = parse_block("model", model_params), parse_block("sft", sft_params)
    checkpoints.keep = config.save_total_limit
    checkpoints.provenance = training_provenance("sft", model, interactions, model_params, prompts_params, sft_params)
    item_ids = item_prompts["item_id"].astype(int).tolist()
    prompts_by_item = dict(zip(item_ids, item_prompts["prompt"], strict=True))
    masks = mask_lists(eval_samples, interactions, model_config.history_mask)
    eval_prompts, eval_targets = eval_samples["prompt"].tolist(), eval_samples["target_item_id"].astype(int).tolist()
    item_texts = item_prompts["prompt"].tolist()

    def evaluate(current: R2ecModel) -> dict[str, float]:
        return evaluate_without_reasoning(
            current, eval_prompts, eval_targets, masks, item_ids, item_texts, batch_size=model_config.encode_batch_size
        )

    histories = (
        EarlierItems(train_samples, interactions, model_config.history_mask)
        if config.softmax in ("catalog", "full")
        else None
    )
    result = train_sft(
        model,
        train_samples["prompt"].tolist(),
        train_samples["target_item_id"].astype(int).tolist(),
        prompts_by_item,
        evaluate if len(eval_samples) else None,
        config,
        histories,
        checkpoints,
    )
    steps_per_epoch = len(train_samples) / config.batch_size
    report = {
        "zero_shot": {"valid": result.initial_metrics},
        "sft": {"valid": result.best_metrics, "best_step": result.best_step},
        "validation_by_step": {
            str(point["step"]): point["value"] for point in result.history.get(f"valid.{config.selection_metric}", [])
        },
        "loss_by_step": [point["value"] for point in result.history.get("train.loss", [])],
        "eval_users": len(eval_samples),
        "train_samples": len(train_samples),
        "steps_run": result.steps_run,
        "samples_run": result.samples_run,
    }
    costs = cost_metrics(
        result.steps_run,
        seconds_per_step=result.seconds_per_step,
        samples_per_second=result.samples_per_second,
        estimated_seconds_per_epoch=result.seconds_per_step * steps_per_epoch,
        peak_rss_mb=peak_rss_mb(),
    )
    if result.best_metrics:
        logger.info(
            "zero-shot N@10 %.4f → SFT N@10 %.4f (step %d)",
            result.initial_metrics["ndcg_at_10"],
            result.best_metrics["ndcg_at_10"],
            result.best_step,
        )
    return model, {**result.history, **costs}, report
