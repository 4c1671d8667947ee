"""Nodes of the ablations pipeline: each variant's recpo block, its ranking, and the side-by-side summary.

Training reuses the RecPO run functions unchanged (namespaced per variant in ``pipeline.py``); every
variant becomes an MLflow child run of the Kedro run, comparable by its parameters in the UI (the summary
says what each shows; the ``ablation_metrics`` dataset writes them).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.rankings import rank_r2ec
from r2ec_pipeline.pipelines.shared.recpo import start_policy
from r2ec_pipeline.reporting.plots import variant_bar_chart
from r2ec_pipeline.reporting.statistics import metrics_by_model
from r2ec_pipeline.reporting.tables import TABLE_METRICS, markdown_table

logger = logging.getLogger(__name__)


def variant_recpo_params(recpo_params: dict[str, Any], ablation_params: dict[str, Any], variant: str) -> dict[str, Any]:
    """The variant's recpo block: the base block, the shared overrides, then the variant's own."""
    return parse_block("ablations", ablation_params).recpo_block(recpo_params, variant)


def start_after(previous_rankings: pd.DataFrame, *args: Any) -> R2ecModel:
    """``start_policy``, run once the previous variant is ranked: one variant's models in memory at a time."""
    del previous_rankings  # only orders the nodes
    return start_policy(*args)


def rank_variant(
    model: R2ecModel,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    ablation_params: dict[str, Any],
    variant: str,
) -> pd.DataFrame:
    """The variant ranked in both modes on the evaluation stage's users of the chosen splits."""
    splits = parse_block("ablations", ablation_params).splits
    config = parse_block("evaluation", evaluation_params)
    return rank_r2ec(
        variant,
        model,
        samples[samples["split"].isin(splits)],
        interactions,
        parse_block("model", model_params),
        config,
        config.reasoning_users,
    )


def _mlflow_run(
    variant: str, block: dict[str, Any], overrides: dict[str, Any], metrics: dict[str, Any], report: dict[str, Any]
) -> dict[str, Any]:
    """What the variant's nested MLflow run shows (written by the ``ChildRunsDataset`` of ``ablation_metrics``):
    its recpo block, test metrics and reward curve, tagged with its overrides."""
    return {
        "tags": {
            "ablation.variant": variant,
            "ablation.overrides": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none",
        },
        "params": {f"recpo.{key}": value for key, value in block.items()},
        "metrics": metrics,
        "curves": {"recpo/train.reward_mean": report.get("reward_mean_by_step", [])},  # as in the parent run
    }


def summarise_ablations(
    recpo_params: dict[str, Any],
    ablation_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    *results: pd.DataFrame | dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, Figure]:
    """``results`` = each variant's rankings then its RecPO report, in ``ABLATION_VARIANTS`` order."""
    config = parse_block("ablations", ablation_params)
    ks = parse_block("evaluation", evaluation_params).ks
    rankings, reports = results[0::2], results[1::2]
    summary: dict[str, Any] = {}
    rows = []
    for frame, report in zip(rankings, reports, strict=True):
        variant = str(frame["model"].iloc[0])
        metrics = metrics_by_model(frame, ks)
        by_split = {split: metrics[split][variant] for split in config.splits if split in metrics}
        rewards = report.get("reward_mean_by_step", [])
        summary[variant] = {
            **by_split,
            "reward_mean": sum(rewards) / len(rewards) if rewards else None,
            "overrides": config.variants[variant],
            "mlflow_run": _mlflow_run(
                variant, config.recpo_block(recpo_params, variant), config.variants[variant], by_split, report
            ),
        }
        for split, modes in by_split.items():
            for mode, values in modes.items():
                rows.append(
                    {
                        "variant": variant,
                        "split": split,
                        "mode": mode,
                        **{name: values[name] for name in TABLE_METRICS if name in values},
                        "reward_mean": summary[variant]["reward_mean"],
                    }
                )
    table = pd.DataFrame(rows)
    summary["users"] = metrics_by_model(pd.concat(rankings), ks)["users"]
    logger.info("ablations:\n%s", markdown_table(table))
    return summary, table, variant_bar_chart(table)
