"""metrics.json from per-sample ranks, dotted lookups for the promotion gate, and the results table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from r2ec_pipeline.reporting.statistics import metrics_by_model, paired_comparisons
from r2ec_pipeline.reporting.tables import cold_start_tables, comparisons_table, flatten, lookup, results_table


def _rankings() -> pd.DataFrame:
    rows = [
        ("test", "sasrec", "direct", 1),
        ("test", "sasrec", "direct", 11),
        ("test", "recpo", "direct", 2),
        ("test", "recpo", "direct", 3),
        ("test", "recpo", "reasoning", 10),
        ("test", "recpo", "reasoning", 1),
        ("valid", "sasrec", "direct", 4),
        ("valid", "recpo", "direct", 4),
        ("valid", "recpo", "reasoning", 5),
    ]
    frame = pd.DataFrame(rows, columns=["split", "model", "mode", "rank"])
    frame["user_id"] = frame.groupby(["split", "model", "mode"]).cumcount() + 1
    frame["target_item_id"] = 7
    return frame


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
    assert table["users"].tolist() == [2, 2, 2]


def test_paired_comparisons_pair_the_same_users_and_pick_the_best_r2ec_row():
    rankings = _rankings()
    metrics = metrics_by_model(rankings, ks=[10])
    comparisons = paired_comparisons(rankings, metrics, "test", resamples=4000)
    # RecPO reasoning (N@10 0.645) beats RecPO direct (0.565): it is the best R²ec row against SASRec
    assert set(comparisons) == {"recpo.reasoning-recpo.direct", "recpo.reasoning-sasrec.direct"}
    # user 1: reasoning rank 10 vs direct rank 2 → N@10 1/log2(11) − 1/log2(3); user 2: rank 1 vs 3 → 1 − 1/2
    per_user = [1 / math.log2(11) - 1 / math.log2(3), 1 - 0.5]
    ndcg = comparisons["recpo.reasoning-recpo.direct"]["ndcg_at_10"]
    assert ndcg["users"] == 2 and ndcg["difference"] == pytest.approx(sum(per_user) / 2)
    assert (ndcg["low"], ndcg["high"]) == (pytest.approx(min(per_user)), pytest.approx(max(per_user)))
    # against SASRec (ranks 1 and 11): hits 1,1 vs 1,0 → H@10 difference 0.5 with CI [0, 1]
    hit = comparisons["recpo.reasoning-sasrec.direct"]["hit_at_10"]
    assert (hit["difference"], hit["low"], hit["high"]) == (0.5, 0.0, 1.0)
    table = comparisons_table(comparisons)
    assert table["difference"].tolist() == ["RecPO (reasoning) − RecPO (direct)", "RecPO (reasoning) − SASRec"]
    assert table.loc[1, "Δ hit_at_10"] == "+0.5000 [+0.0000, +1.0000]"


def test_cold_start_tables_name_each_setting_and_difference():
    values = {"hit_at_10": 0.5, "ndcg_at_10": 0.25, "mrr": 0.2, "median_rank": 3.0, "users": 2}
    ci = {"difference": 0.1, "low": -0.05, "high": 0.3, "users": 2}
    report = {
        "metrics": {
            "cold": {"recpo": {"direct": values}, "sasrec": {"direct": values}},
            "known": {"recpo": {"direct": values}},
        },
        "comparisons": {
            "cold.recpo.direct-cold.sasrec.direct": {"mrr": ci},
            "cold.recpo.direct-known.recpo.direct": {"mrr": ci},
        },
    }
    results, differences = cold_start_tables(report)
    assert list(results["model"]) == ["RecPO (direct)", "SASRec", "RecPO (direct)"]
    assert list(results["held-out items"]) == ["trained without them, added by a catalog update"] * 2 + [
        "in the catalog at training time"
    ]
    assert list(results.columns) == [
        "model",
        "held-out items",
        "users",
        "hit_at_10",
        "ndcg_at_10",
        "mrr",
        "median_rank",
    ]
    assert list(differences["difference"]) == [
        "RecPO (direct), cold − SASRec, cold",
        "RecPO (direct), cold − RecPO (direct), known",
    ]
    assert list(differences["Δ mrr"]) == ["+0.1000 [-0.0500, +0.3000]"] * 2
