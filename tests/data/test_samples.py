"""Windowing and the two split protocols, on tables small enough to check by hand."""

import pandas as pd
import pytest

from r2ec_pipeline.data.samples import (
    assign_splits,
    build_samples,
    fixed_users_last_samples,
    leave_one_out_split,
    temporal_split,
)


def test_every_interaction_but_the_first_is_a_target(tables):
    interactions, _ = tables
    samples = build_samples(interactions, window_size=20)
    assert len(samples) == len(interactions) - interactions["user_id"].nunique()
    user1 = samples[samples["user_id"] == 1]
    assert user1["target_item_id"].tolist() == [2, 3, 4]
    assert user1["history_item_ids"].tolist() == [[1], [1, 2], [1, 2, 3]]
    assert user1["history_ratings"].tolist() == [[5.0], [5.0, 4.0], [5.0, 4.0, 3.0]]
    assert user1["position"].tolist() == [1, 2, 3]


def test_window_keeps_the_latest_items_oldest_first(tables):
    interactions, _ = tables
    samples = build_samples(interactions, window_size=2)
    last = samples[(samples["user_id"] == 1) & (samples["target_item_id"] == 4)].iloc[0]
    assert last["history_item_ids"] == [2, 3]
    assert last["history_timestamps"] == [200, 300]


def test_history_is_in_time_order_whatever_the_input_order(tables):
    interactions, _ = tables
    shuffled = interactions.sample(frac=1.0, random_state=0)
    samples = build_samples(shuffled, window_size=20)
    for history in samples["history_timestamps"]:
        assert history == sorted(history)


def test_ties_in_time_keep_the_source_order(tables):
    interactions, _ = tables  # user 4 rated items 3 and 4 at the same second, 3 first
    samples = build_samples(interactions, window_size=20)
    user4 = samples[samples["user_id"] == 4]
    assert user4["target_item_id"].tolist() == [4, 5]
    assert user4["history_item_ids"].tolist() == [[3], [3, 4]]


def test_window_below_one_is_rejected(tables):
    with pytest.raises(ValueError, match="window_size must be >= 1, got 0"):
        build_samples(tables[0], window_size=0)


def test_leave_one_out_gives_one_test_and_one_valid_per_user(tables):
    samples = build_samples(tables[0], window_size=20)
    split = leave_one_out_split(samples)
    per_user = pd.crosstab(samples["user_id"], split)
    assert (per_user["test"] == 1).all()
    # user 3 has a single sample: it is the test sample, with no validation sample
    assert per_user.loc[3, "valid"] == 0 and per_user.loc[1, "valid"] == 1
    last = samples.loc[split == "test"].set_index("user_id")["target_item_id"].to_dict()
    assert last == {1: 4, 2: 6, 3: 6, 4: 5}


def test_temporal_split_cuts_by_target_time():
    samples = pd.DataFrame(
        {"user_id": [1] * 10, "position": range(1, 11), "target_timestamp": [50, 10, 20, 30, 40, 60, 70, 80, 90, 100]}
    )
    split = temporal_split(samples, (0.8, 0.1, 0.1))
    assert split.value_counts().to_dict() == {"train": 8, "valid": 1, "test": 1}
    assert samples.loc[split == "test", "target_timestamp"].tolist() == [100]
    assert samples.loc[split == "valid", "target_timestamp"].tolist() == [90]
    assert samples.loc[split == "train", "target_timestamp"].max() < 90


def test_unknown_protocol_is_named(tables):
    samples = build_samples(tables[0], window_size=2)
    with pytest.raises(ValueError, match="unknown split protocol 'random'"):
        assign_splits(samples, "random", (0.8, 0.1, 0.1))


def test_fixed_users_are_seeded_and_each_gives_its_last_sample(tables):
    interactions, _ = tables
    samples = build_samples(interactions, window_size=20)
    chosen = fixed_users_last_samples(samples, 2, seed=0)
    assert len(chosen) == 2 and chosen["user_id"].is_unique
    for _, row in chosen.iterrows():  # each user's latest target
        assert row["position"] == samples.loc[samples["user_id"] == row["user_id"], "position"].max()
    assert chosen.equals(fixed_users_last_samples(samples, 2, seed=0))  # the same set every run
    assert fixed_users_last_samples(samples, None, seed=0) is samples
    assert len(fixed_users_last_samples(samples, 99, seed=0)) == samples["user_id"].nunique()
