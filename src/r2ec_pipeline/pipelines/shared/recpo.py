"""A RecPO run from tables and parameter blocks: the starting policy, training and its report.

The recpo pipeline's nodes, and each ablation variant's (namespaced); plain functions, no Kedro. The
training loop itself is ``rl.trainer.train_recpo`` (typed parameters, plain PyTorch).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from transformers import PreTrainedTokenizerBase

from r2ec_pipeline.config import ConfigError, parse_block
from r2ec_pipeline.data.samples import fixed_users_last_samples, mask_lists
from r2ec_pipeline.metrics import paired_bootstrap, per_sample
from r2ec_pipeline.model.adapters import enable_training
from r2ec_pipeline.model.backbone import load_causal_lm
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.evaluation import both_modes_metrics, rank_both_modes
from r2ec_pipeline.model.factory import build_dual_head, place_for
from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.pipelines.shared.costs import cost_metrics, peak_rss_mb
from r2ec_pipeline.pipelines.shared.provenance import training_provenance
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.trainer import RecPOData, RecPOResult, train_recpo

logger = logging.getLogger(__name__)


def _check_matches(sft_model: R2ecModel, field: str, value: str, parameter: str) -> None:
    """The SFT checkpoint must have been trained with the current value of ``parameter``."""
    trained = getattr(sft_model.config, field)
    if trained != value:
        raise ConfigError(
            f"the SFT checkpoint was trained with {field} {trained!r} but parameter '{parameter}' is "
            f"{value!r}: rerun `kedro run --pipeline sft` first"
        )


def start_policy(
    sft_model: R2ecModel | None,
    backbone_folder: Path,
    backbone_tokenizer: PreTrainedTokenizerBase,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
    recpo_params: dict[str, Any],
) -> R2ecModel:
    """The SFT checkpoint (or the zero-shot model if SFT never ran), trainable, with RecPO's τ.

    The backbone comes as its folder and is loaded only when there is no SFT checkpoint (which holds
    its own copy), so the usual start does not keep a second backbone in memory.
    """
    model_config, config = parse_block("model", model_params), parse_block("recpo", recpo_params)
    if sft_model is None:
        logger.warning("no SFT checkpoint found: RecPO starts from the zero-shot backbone")
        lm = load_causal_lm(str(backbone_folder), backbone_folder.parent)
        model = build_dual_head(lm, backbone_tokenizer, model_config, parse_block("prompts", prompts_params).answer_tag)
    else:
        _check_matches(sft_model, "backbone", model_config.backbone, "model.backbone")
        _check_matches(sft_model, "answer_tag", parse_block("prompts", prompts_params).answer_tag, "prompts.answer_tag")
        model = sft_model
    trainable = enable_training(model.lm)
    tau = config.similarity_temperature or model_config.similarity_temperature
    model.config = dataclasses.replace(model.config, similarity_temperature=tau)
    logger.info("RecPO policy: %s trainable parameters, τ = %g", f"{trainable:,}", tau)
    return model


def train_recpo_model(
    model: R2ecModel,
    train_samples: pd.DataFrame,
    eval_samples: pd.DataFrame,
    item_prompts: pd.DataFrame,
    interactions: pd.DataFrame,
    checkpoints: CheckpointStore,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
    recpo_params: dict[str, Any],
) -> tuple[R2ecModel, dict[str, list[dict[str, float]]], pd.DataFrame, dict[str, Any]]:
    """RecPO with validation (greedy reasoning and direct) before and after; model, history, samples, report.

    Resumable checkpoints go to ``checkpoints`` every ``save_steps``, their manifests saying what trained them."""
    model_config, config = parse_block("model", model_params), parse_block("recpo", recpo_params)
    checkpoints.provenance = training_provenance(
        "recpo", model, interactions, model_params, prompts_params, recpo_params
    )
    PartialState()  # joins the process group under `accelerate launch` / torchrun
    place_for(model, model_config)  # this process's device (LOCAL_RANK), model.dtype
    collective = Collective()
    item_prompt = dict(zip(item_prompts["item_id"].astype(int).tolist(), item_prompts["prompt"], strict=True))
    train_samples = fixed_users_last_samples(train_samples, config.train_users, config.seed)
    data = RecPOData(
        prompts=train_samples["prompt"].tolist(),
        targets=train_samples["target_item_id"].astype(int).tolist(),
        histories=mask_lists(train_samples, interactions, model_config.history_mask),
        item_prompt=item_prompt,
        user_ids=train_samples["user_id"].astype(int).tolist(),
    )
    eval_prompts = eval_samples["prompt"].tolist()
    eval_targets = eval_samples["target_item_id"].astype(int).tolist()
    eval_masks = mask_lists(eval_samples, interactions, model_config.history_mask)

    validation_ranks: list[dict[str, np.ndarray]] = []  # per validation, in order: each mode's per-user ranks

    def evaluate(current: R2ecModel) -> dict[str, float]:
        rankings, texts = rank_both_modes(
            current,
            eval_prompts,
            eval_targets,
            eval_masks,
            config.max_completion_length,
            model_config.encode_batch_size,
        )
        validation_ranks.append({mode: ranking.ranks for mode, ranking in rankings.items()})
        return both_modes_metrics(current, rankings, texts)

    checkpoints.keep = config.save_total_limit
    result = train_recpo(
        model, data, config, evaluate=evaluate if len(eval_samples) else None, store=checkpoints, collective=collective
    )
    report = recpo_report(result, config.metric_for_best_model if len(eval_samples) else None)
    report.update(
        eval_users=len(eval_samples),
        world_size=collective.world_size,
        selection_ci=selection_confidence(result, validation_ranks, config.metric_for_best_model),
    )
    history = {
        **result.history,
        "selected_step": [{"value": float(result.selected_step), "step": result.steps}],
        **cost_metrics(result.steps, seconds_per_step=result.seconds_per_step, peak_rss_mb=peak_rss_mb()),
    }
    for mode in ("reasoning", "direct"):
        key = f"{mode}.ndcg_at_10"
        if key in result.initial_metrics and key in result.selected_metrics:
            logger.info(
                "RecPO %s N@10: %.4f → %.4f (selected step %d of %d)",
                mode,
                result.initial_metrics[key],
                result.selected_metrics[key],
                result.selected_step,
                result.steps,
            )
    model.to(torch.device("cpu"))
    return model, history, pd.DataFrame(result.samples), report


# the per-step training curves a report keeps: reward, the signal (method §5.9), how paths end, the update
CURVES = (
    "reward_mean",
    "reward_rank",
    "reward_sim",
    "reward_group_std",
    "zero_advantage_share",
    "completion_length",
    "stop_length_share",
    "token_loss",
    "item_loss",
    "item_logprob",
    "ratio_std",
    "clip_fraction",
    "kl_to_start",
)


def _run_mean(history: dict[str, list[dict[str, float]]], name: str) -> float | None:
    points = history.get(f"train.{name}", [])
    return sum(point["value"] for point in points) / len(points) if points else None


def selection_confidence(
    result: RecPOResult, validation_ranks: list[dict[str, np.ndarray]], metric: str | None
) -> dict[str, Any] | None:
    """Can the selection tell the weights apart? Paired bootstrap 95% CIs, over the validation users, of the
    selected and of the last weights' ``metric`` minus the starting weights' (method §5.9: the CI's width
    says how small a difference the validation users can resolve). None without the validations of this
    process (a resumed run's earlier ones are not kept) or without a metric."""
    if metric is None or len(validation_ranks) != len(result.evaluations) or 0 not in result.evaluations:
        return None
    by_step = dict(zip(result.evaluations, validation_ranks, strict=True))  # validations in the order they ran
    mode, name = metric.split(".", 1)

    def values(step: int) -> np.ndarray:
        return per_sample(by_step[step][mode], name)

    return {
        "metric": metric,
        "users": len(values(0)),
        "selected_minus_start": paired_bootstrap(values(result.selected_step), values(0)),
        "last_minus_start": paired_bootstrap(values(result.steps), values(0)) if result.steps in by_step else None,
    }


def recpo_report(result: RecPOResult, metric: str | None) -> dict[str, Any]:
    """What a run did: validation before / of the selected weights / after the last step, the selection, and
    run means of the rollout statistics (completion length, how paths stopped, clipping)."""
    rewards = [point["value"] for point in result.history.get("train.reward_mean", [])]
    return {
        "before": result.initial_metrics,
        "after": result.selected_metrics,  # the weights the recpo model holds
        "last": result.final_metrics,  # the weights after the last step
        "selected_step": result.selected_step,
        "metric_for_best_model": metric,
        "stopped_early": result.stopped_early,
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        "skipped_steps": result.skipped_steps,
        "reward_mean_by_step": rewards,
        "curves": {name: [point["value"] for point in result.history.get(f"train.{name}", [])] for name in CURVES},
        "validation_by_step": {
            mode: {
                str(step): values[f"{mode}.ndcg_at_10"]
                for step, values in sorted(result.evaluations.items())
                if f"{mode}.ndcg_at_10" in values
            }
            for mode in ("reasoning", "direct")
        },
        "rollouts": {
            name: _run_mean(result.history, name)
            for name in (
                "completion_length",
                "stop_tag_share",
                "stop_end_of_turn_share",
                "stop_length_share",
                "reward_group_std",
                "zero_advantage_share",
                "token_loss",
                "item_loss",
                "ratio_std",
                "clip_fraction",
                "item_clip_fraction",
                "item_ratio_mean",
                "kl_to_start",
            )
        },
    }
