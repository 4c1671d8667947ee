"""Node of the registration pipeline: what to register, with the tags its promotion metric depends on.

Logging, registering and the champion gate happen in the ``registered_model`` dataset (no MLflow call here)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.model.training_state import verify_manifest
from r2ec_pipeline.reporting.tables import lookup
from r2ec_pipeline.run_tags import data_hash, dataset_name, metric_users
from r2ec_pipeline.serving.pyfunc import ServingSettings
from r2ec_pipeline.serving.registry import Registration

logger = logging.getLogger(__name__)


def example_request(samples: pd.DataFrame, items: pd.DataFrame, k: int) -> pd.DataFrame:
    """One real user's latest history in raw ids: the model's input example in MLflow."""
    raw = dict(zip(items["item_id"].astype(int), items["raw_item_id"].astype(str), strict=True))
    sample = samples.iloc[0]
    return pd.DataFrame(
        [
            {
                "history_item_ids": [raw[int(i)] for i in sample["history_item_ids"]][-5:],
                "history_ratings": [float(r) for r in sample["history_ratings"]][-5:],
                "history_timestamps": [int(t) for t in sample["history_timestamps"]][-5:],
                "k": k,
            }
        ]
    )


def model_metric(metric: str, model: str) -> str:
    """The metrics.json key of ``promotion_metric`` (split.mode.metric) for ``model``'s own row."""
    split, mode, name = metric.split(".")
    return f"{split}.{model}.{mode}.{name}"


def version_tags(
    interactions: pd.DataFrame,
    metrics: dict[str, Any],
    metric: str,
    model: str,
    ingestion_params: dict[str, Any],
    evaluation_params: dict[str, Any],
) -> dict[str, str]:
    """What the promotion metric depends on: the dataset, the data hash and the users it was computed on."""
    users = lookup(metrics, model_metric(metric, model).rsplit(".", 1)[0] + ".users")
    evaluation = parse_block("evaluation", evaluation_params)
    return {
        "dataset": dataset_name(ingestion_params),
        "data_hash": data_hash(interactions),
        "promotion_users": metric_users(metric, None if users is None else int(users), evaluation.seed),
    }


def register_model(
    checkpoint: Path,
    backbone: Path,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    test_samples: pd.DataFrame,
    metrics: dict[str, Any],
    ingestion_params: dict[str, Any],
    prompts_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    params: dict[str, Any],
    model: str = "recpo",
) -> Registration:
    """``model``'s checkpoint (its row of metrics.json: this run's RecPO model by default) as a model to register
    (the ``registered_model`` dataset logs it as a pyfunc, registers it and moves ``champion`` only if it
    wins on the same dataset and users)."""
    prompts, config = parse_block("prompts", prompts_params), parse_block("registration", params)
    settings = ServingSettings(
        user_instruction=prompts.user_instruction,
        window_size=prompts.window_size,
        max_user_prompt_tokens=prompts.max_user_prompt_tokens,
        reasoning_tokens=config.reasoning_tokens,
        default_k=config.default_k,
        max_k=config.max_k,
    )
    key = model_metric(config.promotion_metric, model)
    value = lookup(metrics, key)
    if value is None:
        logger.warning("metrics.json has no %s: the new version cannot become champion", key)
    return Registration(
        checkpoint=checkpoint,
        backbone=backbone,
        items=items,
        settings=settings,
        input_example=example_request(test_samples, items, config.default_k),
        model_name=config.model_name,
        metric=config.promotion_metric,
        value=value,
        tags=version_tags(interactions, metrics, config.promotion_metric, model, ingestion_params, evaluation_params),
    )


def register_shipped(
    shipped: dict[str, Path],
    registered: dict[str, Any],
    backbone: Path,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    test_samples: pd.DataFrame,
    metrics: dict[str, Any],
    ingestion_params: dict[str, Any],
    prompts_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    params: dict[str, Any],
) -> list[Registration]:
    """The shipped checkpoint (if the evaluation rebuilt one) as a version to register after this run's
    (``registered``): the same gate decides which of the two is champion. The version carries the commit,
    machine and stage of the run that trained it (its manifest), not this run's."""
    path = parse_block("evaluation", evaluation_params).shipped_checkpoint
    if not shipped or path is None:
        return []
    manifest = verify_manifest(Path(path))
    logger.info(
        "registering the shipped checkpoint %s after %s version %s",
        path,
        registered["model_name"],
        registered["version"],
    )
    (folder,) = shipped.values()
    inputs = (backbone, items, interactions, test_samples, metrics, ingestion_params, prompts_params)
    registration = register_model(folder, *inputs, evaluation_params, params, model="shipped")
    provenance = {
        "checkpoint": Path(path).name,
        "git_commit": str(manifest.get("git_commit")),
        "trained_on": str(manifest.get("machine")),
        "trained_stage": f"{manifest.get('stage')} step {manifest.get('step')}",
    }
    return [dataclasses.replace(registration, tags=registration.tags | provenance)]
