"""The ablation summary's paired comparisons with the reference variant and its diagnostics, by hand."""

import pandas as pd
import pytest

from r2ec_pipeline.pipelines.ablations.nodes import DIAGNOSTICS, compare_to_reference, diagnostics


def _rankings(model: str, ranks: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        {"split": "test", "model": model, "mode": mode, "user_id": user, "target_item_id": 10 + user, "rank": rank}
        for mode, values in ranks.items()
        for user, rank in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_each_variant_is_compared_with_the_reference_on_the_users_both_ranked():
    reference = _rankings("fused_grpo", {"direct": [1, 4, 10, 100], "reasoning": [2, 2]})
    variant = _rankings("rank_only", {"direct": [1, 2, 10, 100], "reasoning": [1, 2, 5]})
    result = compare_to_reference({"fused_grpo": reference, "rank_only": variant}, "fused_grpo", ["test"])
    assert set(result) == {"rank_only"}
    direct = result["rank_only"]["test"]["direct"]
    # only user 1 differs: MRR 1/2 vs 1/4 over 4 users
    assert direct["mrr"]["difference"] == pytest.approx((1 / 2 - 1 / 4) / 4)
    assert direct["mrr"]["users"] == 4
    # N@10 of rank 2 vs rank 4: 1/log2(3) − 1/log2(5)
    assert direct["ndcg_at_10"]["difference"] == pytest.approx((1 / 1.5849625 - 1 / 2.3219281) / 4, rel=1e-6)
    reasoning = result["rank_only"]["test"]["reasoning"]
    assert reasoning["mrr"]["users"] == 2  # the variant's third reasoning user is not the reference's
    assert reasoning["mrr"]["difference"] == pytest.approx((1 - 1 / 2) / 2)


def test_a_variant_equal_to_the_reference_differs_by_exactly_zero():
    frame = _rankings("fused_grpo", {"direct": [3, 7, 50]})
    same = frame.assign(model="beta_001")
    result = compare_to_reference({"fused_grpo": frame, "beta_001": same}, "fused_grpo", ["test"])
    for values in result["beta_001"]["test"]["direct"].values():
        assert values["difference"] == values["low"] == values["high"] == 0.0


def test_diagnostics_are_the_reports_run_means_with_none_where_a_run_has_no_value():
    report = {"rollouts": {"stop_length_share": 0.75, "kl_to_start": None, "unrelated": 3.0}}
    result = diagnostics(report)
    assert list(result) == list(DIAGNOSTICS)
    assert result["stop_length_share"] == 0.75 and result["kl_to_start"] is None and result["token_loss"] is None
