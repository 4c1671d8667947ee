"""The evaluation stage's reports: the curves' plot and tables (`dvc plots show`), the headline metrics files
(`dvc metrics show`)."""

from __future__ import annotations

from r2ec_pipeline.pipelines.evaluation.nodes import curve_tables, headline_metrics, training_curves


def test_training_curves_skip_absent_validation():
    figure = training_curves(
        {"reward_mean_by_step": [0.1, 0.2], "validation_by_step": {"reasoning": {}}},
        {"log": [{"epoch": 1, "valid_ndcg_at_10": 0.1}]},
    )
    assert figure.axes[0].get_legend_handles_labels()[1] == []  # no validation at all: an empty panel
    assert figure.axes[1].get_legend_handles_labels()[1] == ["reward"]
    assert len(figure.axes[3].lines) == 1  # SASRec per epoch


def test_training_curves_put_recpo_steps_after_the_sft_steps():
    recpo = {
        "validation_by_step": {"reasoning": {"0": 0.01, "3": 0.02}, "direct": {"0": 0.03, "3": 0.04}},
        "curves": {
            "reward_mean": [0.1, 0.2, 0.3],
            "reward_rank": [0.1, 0.2, 0.3],
            "reward_sim": [0.5, 0.5, 0.6],
            "completion_length": [30.0, 31.0, 33.0],
        },
    }
    sft = {"validation_by_step": {"0": 0.0, "8": 0.02, "16": 0.03}}
    figure = training_curves(recpo, {"log": []}, sft)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    assert list(lines["SFT direct"].get_xdata()) == [0, 8, 16]
    assert list(lines["RecPO reasoning"].get_xdata()) == [16, 19]  # RecPO step 0 is SFT's last step
    assert figure.axes[1].get_legend_handles_labels()[1] == ["reward", "rank part", "similarity part"]
    assert list(figure.axes[2].lines[0].get_ydata()) == [30.0, 31.0, 33.0]


def test_curve_tables_by_hand():
    recpo = {
        "curves": {
            "reward_mean": [0.1, 0.3],
            "reward_rank": [0.2, 0.4],
            "reward_sim": [0.0, 0.1],
            "completion_length": [30.0, 12.5],
        },
        "validation_by_step": {"reasoning": {"0": 0.01, "2": 0.03}, "direct": {"0": 0.02, "2": 0.02}},
    }
    sft = {"loss_by_step": [3.9, 3.5], "validation_by_step": {"12": 0.014, "0": 0.004}}
    tables = curve_tables(recpo, sft, {})
    assert tables["sft_loss"] == [{"step": 1, "loss": 3.9}, {"step": 2, "loss": 3.5}]
    assert tables["sft_validation"] == [{"step": 0, "ndcg_at_10": 0.004}, {"step": 12, "ndcg_at_10": 0.014}]
    assert tables["recpo_train"][1] == {
        "step": 2,
        "reward_mean": 0.3,
        "reward_rank": 0.4,
        "reward_sim": 0.1,
        "completion_length": 12.5,
    }
    assert tables["recpo_validation"] == [
        {"step": 0, "reasoning_ndcg_at_10": 0.01, "direct_ndcg_at_10": 0.02},
        {"step": 2, "reasoning_ndcg_at_10": 0.03, "direct_ndcg_at_10": 0.02},
    ]
    assert set(curve_tables({"validation_by_step": {"reasoning": {}, "direct": {}}}, None, {})) == set()  # nothing ran


def test_without_its_own_validation_sft_is_drawn_from_the_evaluation_stages_validation_users():
    """The CPU profile's SFT validates nothing itself: the plot still gets its file (dvc plots show fails on a
    declared file that is missing), from the zero-shot model (step 0) and the SFT model (its last step)."""
    metrics = {"valid": {"zero_shot": {"direct": {"ndcg_at_10": 0.005}}, "sft": {"direct": {"ndcg_at_10": 0.045}}}}
    tables = curve_tables({}, {"loss_by_step": [3.7] * 8, "steps_run": 8, "validation_by_step": {}}, metrics)
    assert tables["sft_validation"] == [{"step": 0, "ndcg_at_10": 0.005}, {"step": 8, "ndcg_at_10": 0.045}]


def test_headline_metrics_are_a_row_per_model_and_mode_and_per_ci():
    values = {"hit_at_5": 0.1, "hit_at_10": 0.2, "ndcg_at_10": 0.1, "mrr": 0.05, "users": 943}
    metrics = {
        "valid": {"sft": {"direct": values}},
        "test": {"popularity": {"direct": values}, "sft": {"direct": values, "reasoning": {**values, "users": 32}}},
        "comparisons": {
            "test": {
                "sft.direct-popularity.direct": {
                    "ndcg_at_10": {"difference": 0.0, "low": -0.01, "high": 0.01, "users": 943}
                }
            }
        },
    }
    rows = headline_metrics(metrics)
    assert set(rows) == {
        "test_popularity_direct",
        "test_sft_direct",
        "test_sft_reasoning",
        "test_ci_sft_direct_minus_popularity_direct",
    }
    assert rows["test_sft_reasoning"] == {"hit_at_10": 0.2, "ndcg_at_10": 0.1, "mrr": 0.05, "users": 32}
    assert rows["test_ci_sft_direct_minus_popularity_direct"] == {
        "ndcg_at_10_difference": 0.0,
        "ndcg_at_10_low": -0.01,
        "ndcg_at_10_high": 0.01,
    }
