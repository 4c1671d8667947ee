"""Metrics per model and mode, and paired bootstrap CIs of the differences that say whether each stage learns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from r2ec_pipeline.metrics import paired_bootstrap, per_sample, ranking_metrics
from r2ec_pipeline.reporting.tables import CI_METRICS, R2EC_MODELS


def metrics_by_model(rankings: pd.DataFrame, ks: Iterable[int]) -> dict[str, Any]:
    """``{split: {model: {mode: {metric: value, "users": n}}}}`` plus ``users`` (distinct users ranked) per split."""
    ks = list(ks)
    result: dict[str, Any] = {}
    for (split, model, mode), group in rankings.groupby(["split", "model", "mode"], sort=False):
        result.setdefault(split, {}).setdefault(model, {})[mode] = {
            **ranking_metrics(group["rank"], ks),
            "users": int(group["user_id"].nunique()),
        }
    result["users"] = rankings.groupby("split")["user_id"].nunique().astype(int).to_dict() if len(rankings) else {}
    return result


def rank_series(rankings: pd.DataFrame, split: str, model: str, mode: str) -> pd.Series:
    """One model's target ranks in one split and mode, indexed by (user, target): what paired CIs join on."""
    rows = rankings[(rankings["split"] == split) & (rankings["model"] == model) & (rankings["mode"] == mode)]
    return rows.set_index(["user_id", "target_item_id"])["rank"]


def comparison_pairs(metrics: dict[str, Any], split: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The differences that say whether each stage learns: SFT − zero-shot, RecPO − SFT (per mode),
    reasoning − direct (per R²ec model), and the best R²ec row (test N@10) − Pop and − SASRec; and the
    shipped checkpoint − this run's RecPO model (what promotion decides on)."""
    present = {(model, mode) for model, modes in metrics.get(split, {}).items() for mode in modes}
    pairs = [
        ((later, mode), (earlier, mode))
        for mode in ("direct", "reasoning")
        for later, earlier in (("sft", "zero_shot"), ("recpo", "sft"), ("shipped", "recpo"))
    ]
    pairs += [((model, "reasoning"), (model, "direct")) for model in R2EC_MODELS]
    r2ec = [(model, mode) for model in R2EC_MODELS for mode in ("direct", "reasoning") if (model, mode) in present]
    if r2ec:  # ties go to the first row in this fixed order, so the choice is the same in every run
        best = max(r2ec, key=lambda row: metrics[split][row[0]][row[1]]["ndcg_at_10"])
        pairs += [(best, ("popularity", "direct")), (best, ("sasrec", "direct"))]
    return [(a, b) for a, b in pairs if a in present and b in present]


def paired_differences(
    a: pd.Series, b: pd.Series, names: Iterable[str] = CI_METRICS, resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, float]] | None:
    """Per metric, the paired bootstrap 95% CI of mean(a) − mean(b) over the users (index) both rank series
    share; None when they share none."""
    joined = pd.concat([a, b], axis=1, join="inner", keys=["a", "b"])
    if joined.empty:
        return None
    return {
        name: paired_bootstrap(per_sample(joined["a"], name), per_sample(joined["b"], name), resamples, seed=seed)
        for name in names
    }


def paired_comparisons(
    rankings: pd.DataFrame,
    metrics: dict[str, Any],
    split: str = "test",
    names: Iterable[str] = CI_METRICS,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"<model>.<mode>-<model>.<mode>": {metric: {difference, low, high, users}}}``: paired bootstrap 95% CIs
    of each difference in ``comparison_pairs``, on the users both rows ranked (the same resampled users for both)."""
    result: dict[str, Any] = {}
    for a, b in comparison_pairs(metrics, split):
        differences = paired_differences(
            rank_series(rankings, split, *a), rank_series(rankings, split, *b), names, resamples, seed
        )
        if differences is not None:
            result[f"{a[0]}.{a[1]}-{b[0]}.{b[1]}"] = differences
    return result
