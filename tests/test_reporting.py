"""metrics.json from per-sample ranks, dotted lookups for the promotion gate, and the results table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from r2ec_pipeline.reporting import flatten, lookup, metrics_by_model, results_table, training_curves


def _rankings() -> pd.DataFrame:
    rows = [("test", "sasrec", "direct", 1), ("test", "sasrec", "direct", 11),
            ("test", "recpo", "direct", 2), ("test", "recpo", "direct", 3),
            ("test", "recpo", "reasoning", 10), ("test", "recpo", "reasoning", 1),
            ("valid", "sasrec", "direct", 4), ("valid", "recpo", "direct", 4), ("valid", "recpo", "reasoning", 5)]
    return pd.DataFrame(rows, columns=["split", "model", "mode", "rank"])


def test_metrics_by_model_by_hand():
    metrics = metrics_by_model(_rankings(), ks=[10])
    assert metrics["users"] == {"test": 2, "valid": 1}
    assert metrics["test"]["sasrec"]["direct"]["hit_at_10"] == 0.5  # ranks 1 and 11: K and beyond
    assert metrics["test"]["recpo"]["reasoning"]["ndcg_at_10"] == pytest.approx((1 / math.log2(11) + 1) / 2)
    assert lookup(metrics, "valid.recpo.reasoning.mrr") == pytest.approx(1 / 5)
    assert lookup(metrics, "valid.sft.direct.mrr") is None  # absent model: the gate refuses, no KeyError
    assert flatten(metrics)["test.recpo.direct.mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_results_table_lists_baselines_then_r2ec_modes():
    table = results_table(metrics_by_model(_rankings(), ks=[10]), "test")
    assert table["model"].tolist() == ["SASRec", "RecPO (direct)", "RecPO (reasoning)"]


def test_training_curves_skip_absent_validation():
    figure = training_curves({"reward_mean_by_step": [0.1, 0.2], "validation_by_step": {"reasoning": {}}},
                             {"log": [{"epoch": 1, "valid_ndcg_at_10": 0.1}]})
    labels = figure.axes[1].get_legend_handles_labels()[1]
    assert labels == ["SASRec (epoch)"]
