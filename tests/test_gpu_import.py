"""The GPU run's import into MLflow: its numbers, named as `make run`'s (the MLflow side runs in the slow test)."""

import pandas as pd
import pytest

from r2ec_pipeline.gpu_import import split_metrics, stage_metrics


def test_stage_metrics_flatten_every_number_a_stage_reported():
    results = {
        "stages": {
            "sft": {
                "seconds": 12.5,
                "peak_gpu_gb": 3.0,
                "valid_best": {"ndcg_at_10": 0.1},
                "loss_first_last": [1.0, 0.5],
                "ok": True,
            }
        }
    }
    assert stage_metrics(results) == {
        "stage.sft.seconds": 12.5,
        "stage.sft.peak_gpu_gb": 3.0,
        "stage.sft.valid_best.ndcg_at_10": 0.1,
    }


def test_test_metrics_are_make_runs_names_from_every_users_rank():
    rankings = pd.DataFrame({"model": ["sft"] * 2 + ["recpo"] * 2, "mode": ["direct"] * 4, "rank": [1, 3, 11, 2]})
    metrics = split_metrics(rankings)
    assert metrics["eval.test.sft.direct.hit_at_10"] == 1.0 and metrics["eval.test.sft.direct.users"] == 2.0
    assert metrics["eval.test.sft.direct.ndcg_at_10"] == pytest.approx((1 + 1 / 2) / 2)  # 1/log2(2), 1/log2(4)
    assert metrics["eval.test.recpo.direct.mrr"] == pytest.approx((1 / 11 + 1 / 2) / 2)
