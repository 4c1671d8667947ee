"""The RecPO report's selection CI: selected and last weights minus the start, paired over validation users."""

import numpy as np
import pytest

from r2ec_pipeline.pipelines.shared.recpo import selection_confidence
from r2ec_pipeline.rl.trainer import RecPOResult


def _result(selected: int, steps: int = 6) -> RecPOResult:
    evaluations = {0: {"reasoning.mrr": 0.3}, 3: {"reasoning.mrr": 0.5}, 6: {"reasoning.mrr": 0.2}}
    return RecPOResult(history={}, samples=[], evaluations=evaluations, steps=steps, selected_step=selected)


RANKS = [  # per validation in the order they ran (steps 0, 3, 6), 4 users each
    {"reasoning": np.array([2, 4, 10, 1]), "direct": np.array([1, 1, 1, 1])},
    {"reasoning": np.array([1, 4, 5, 1]), "direct": np.array([1, 1, 1, 1])},
    {"reasoning": np.array([2, 4, 10, 2]), "direct": np.array([1, 1, 1, 1])},
]


def test_differences_are_per_user_metric_means_against_step_0():
    report = selection_confidence(_result(selected=3), RANKS, "reasoning.mrr")
    assert report["metric"] == "reasoning.mrr" and report["users"] == 4
    # step 3 − step 0: users 0 and 2 moved, 1/1 − 1/2 and 1/5 − 1/10
    assert report["selected_minus_start"]["difference"] == pytest.approx((0.5 + 0.1) / 4)
    assert report["selected_minus_start"]["low"] <= report["selected_minus_start"]["difference"]
    # step 6 − step 0: user 3 went from rank 1 to 2
    assert report["last_minus_start"]["difference"] == pytest.approx(-0.5 / 4)


def test_keeping_the_start_gives_exactly_zero():
    report = selection_confidence(_result(selected=0), RANKS, "reasoning.mrr")
    assert report["selected_minus_start"] == {"difference": 0.0, "low": 0.0, "high": 0.0, "users": 4}


def test_no_ci_without_this_process_s_validations_or_a_metric():
    assert selection_confidence(_result(selected=3), RANKS[1:], "reasoning.mrr") is None  # resumed: step 0 not here
    assert selection_confidence(_result(selected=3), RANKS, None) is None
