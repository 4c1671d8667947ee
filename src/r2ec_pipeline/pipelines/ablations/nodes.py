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
from r2ec_pipeline.reporting.statistics import metrics_by_model, paired_differences, rank_series
from r2ec_pipeline.reporting.tables import TABLE_METRICS, markdown_table

logger = logging.getLogger(__name__)

# each variant's signal (method §5.9): run means of the per-step diagnostics in its RecPO report
DIAGNOSTICS = (
    "zero_advantage_share",
    "reward_group_std",
    "stop_length_share",
    "completion_length",
    "ratio_std",
    "clip_fraction",
    "token_loss",
    "item_loss",
    "kl_to_start",
)
COMPARED_METRICS = ("ndcg_at_10", "mrr")  # paired against the reference variant, per split and mode


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
    """The variant ranked directly on the evaluation stage's users of the chosen splits, and with greedy
    reasoning on the first ``ablations.reasoning_users`` of them per split (the same users for every variant)."""
    ablations = parse_block("ablations", ablation_params)
    return rank_r2ec(
        variant,
        model,
        samples[samples["split"].isin(ablations.splits)],
        interactions,
        parse_block("model", model_params),
        parse_block("evaluation", evaluation_params),
        ablations.reasoning_users,
    )


def compare_to_reference(
    rankings: dict[str, pd.DataFrame], reference: str, splits: list[str], resamples: int = 2000
) -> dict[str, Any]:
    """``{variant: {split: {mode: {metric: {difference, low, high, users}}}}}``: paired bootstrap 95% CIs of
    each variant − ``reference`` on the users both ranked in that mode (``COMPARED_METRICS``)."""
    result: dict[str, Any] = {}
    for variant, frame in rankings.items():
        if variant == reference:
            continue
        for split in splits:
            for mode in ("direct", "reasoning"):
                differences = paired_differences(
                    rank_series(frame, split, variant, mode),
                    rank_series(rankings[reference], split, reference, mode),
                    COMPARED_METRICS,
                    resamples,
                )
                if differences is not None:
                    result.setdefault(variant, {}).setdefault(split, {})[mode] = differences
    return result


def diagnostics(report: dict[str, Any]) -> dict[str, float | None]:
    """The run means of the variant's per-step diagnostics (``DIAGNOSTICS``), as its RecPO report has them."""
    rollouts = report.get("rollouts", {})
    return {name: rollouts.get(name) for name in DIAGNOSTICS}


def _mlflow_run(
    variant: str, block: dict[str, Any], overrides: dict[str, Any], metrics: dict[str, Any], report: dict[str, Any]
) -> dict[str, Any]:
    """What the variant's nested MLflow run shows (written by the ``ChildRunsDataset`` of ``ablation_metrics``):
    its recpo block, metrics and diagnostics, and its per-step curves, tagged with its overrides."""
    signal = {name: value for name, value in diagnostics(report).items() if value is not None}
    return {
        "tags": {
            "ablation.variant": variant,
            "ablation.overrides": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none",
        },
        "params": {f"recpo.{key}": value for key, value in block.items()},
        "metrics": {**metrics, "diagnostics": signal},
        "curves": {  # as the parent run names them
            f"recpo/train.{name}": values for name, values in report.get("curves", {}).items() if values
        },
    }


def summarise_ablations(
    recpo_params: dict[str, Any],
    ablation_params: dict[str, Any],
    evaluation_params: dict[str, Any],
    *results: pd.DataFrame | dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, Figure]:
    """``results`` = each variant's rankings then its RecPO report, in ``ABLATION_VARIANTS`` order.

    Per variant: its metrics, mean training reward and diagnostics; per variant but the reference (the first,
    ``fused_grpo``), paired CIs of its difference to the reference (``comparisons``), also in the table."""
    config = parse_block("ablations", ablation_params)
    ks = parse_block("evaluation", evaluation_params).ks
    rankings = {str(frame["model"].iloc[0]): frame for frame in results[0::2]}
    reference = next(iter(rankings))
    comparisons = compare_to_reference(rankings, reference, config.splits)
    summary: dict[str, Any] = {}
    rows = []
    for (variant, frame), report in zip(rankings.items(), results[1::2], strict=True):
        metrics = metrics_by_model(frame, ks)
        by_split = {split: metrics[split][variant] for split in config.splits if split in metrics}
        rewards = report.get("reward_mean_by_step", [])
        summary[variant] = {
            **by_split,
            "reward_mean": sum(rewards) / len(rewards) if rewards else None,
            "diagnostics": diagnostics(report),
            "overrides": config.variants[variant],
            "mlflow_run": _mlflow_run(
                variant, config.recpo_block(recpo_params, variant), config.variants[variant], by_split, report
            ),
        }
        for split, modes in by_split.items():
            for mode, values in modes.items():
                versus = comparisons.get(variant, {}).get(split, {}).get(mode, {})
                rows.append(
                    {
                        "variant": variant,
                        "split": split,
                        "mode": mode,
                        "users": values["users"],
                        **{name: values[name] for name in TABLE_METRICS if name in values},
                        **{
                            f"{name}_vs_{reference}_{part}": versus[name][part] if versus else None
                            for name in COMPARED_METRICS
                            for part in ("difference", "low", "high")
                        },
                        "reward_mean": summary[variant]["reward_mean"],
                        **summary[variant]["diagnostics"],
                    }
                )
    table = pd.DataFrame(rows)
    summary["comparisons"] = {"reference": reference, "variants": comparisons}
    summary["users"] = metrics_by_model(pd.concat(rankings.values()), ks)["users"]
    logger.info("ablations:\n%s", markdown_table(table))
    return summary, table, variant_bar_chart(table)
