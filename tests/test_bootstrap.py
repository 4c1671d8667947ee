"""Per-sample metrics and the paired bootstrap CI against hand-computed cases."""

import numpy as np
import pytest

from r2ec_pipeline.metrics import paired_bootstrap, per_sample, ranking_metrics


def test_per_sample_values_average_to_the_reported_metrics():
    ranks = [1, 3, 11, 2]
    assert per_sample(ranks, "hit_at_10").tolist() == [1.0, 1.0, 0.0, 1.0]
    assert per_sample(ranks, "ndcg_at_10") == pytest.approx([1.0, 0.5, 0.0, 1 / np.log2(3)])
    assert per_sample(ranks, "mrr") == pytest.approx([1.0, 1 / 3, 1 / 11, 0.5])
    for name, value in ranking_metrics(ranks).items():
        assert per_sample(ranks, name).mean() == pytest.approx(value), name
    with pytest.raises(ValueError, match="unknown metric 'recall_at_10'"):
        per_sample(ranks, "recall_at_10")


def test_two_users_with_differences_0_and_1_give_the_interval_0_to_1():
    # resampling 2 users: the mean difference is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are 0 and 1; the point estimate is 0.5
    result = paired_bootstrap(np.array([0.0, 1.0]), np.zeros(2), resamples=4000)
    assert result == {"difference": 0.5, "low": 0.0, "high": 1.0, "users": 2}


def test_pairing_cancels_what_varies_between_users():
    users = np.random.default_rng(1).uniform(0, 1, 500)  # large spread between users
    result = paired_bootstrap(users + 0.1, users)
    assert result["difference"] == pytest.approx(0.1) and result["high"] - result["low"] == pytest.approx(0, abs=1e-12)
    unpaired = paired_bootstrap(users + 0.1, np.random.default_rng(2).permutation(users))
    assert unpaired["high"] - unpaired["low"] > 0.05  # the same numbers, unpaired: a wide interval


def test_the_interval_is_seeded_and_the_users_must_match():
    a, b = np.random.default_rng(0).uniform(size=(2, 50))
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(a, b[:-1])
