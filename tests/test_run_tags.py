"""Run names and the tags that make metrics comparable (plain functions, values by hand)."""

from datetime import datetime

import pandas as pd

from r2ec_pipeline.run_tags import (
    data_hash,
    dataset_name,
    evaluation_users,
    git_commit,
    metric_users,
    missing_tags,
    run_name,
)


def test_run_name_says_pipelines_profile_and_time():
    started = datetime(2026, 11, 27, 10, 30)
    assert run_name(None, None, started) == "all · base · 2026-11-27 10:30"
    assert run_name(["recpo", "registration"], "learn", started) == "recpo+registration · learn · 2026-11-27 10:30"


def test_data_hash_changes_with_any_value_and_not_with_the_index():
    table = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    assert data_hash(table) == data_hash(table.set_axis([7, 8]))
    assert data_hash(table) != data_hash(table.assign(item_id=[3, 5]))
    assert data_hash(table) != data_hash(table.rename(columns={"item_id": "item"}))


def test_user_sets_and_dataset_as_tag_values():
    assert evaluation_users({"users": None, "valid_users": 32, "seed": 0}) == "users=all,valid_users=32,seed=0"
    assert metric_users("valid.recpo.reasoning.ndcg_at_10", 32, 0) == "valid: 32 users, seed 0"
    assert dataset_name({"source": "movielens_100k"}) == "movielens_100k"


def test_git_commit_outside_a_checkout_is_unknown_unless_the_sender_named_it(tmp_path, monkeypatch):
    monkeypatch.delenv("R2EC_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("R2EC_GIT_COMMIT", "abc123+dirty")  # a tree copied to a GPU machine without .git
    assert git_commit(tmp_path) == "abc123+dirty"


def test_an_experiment_gets_only_the_configured_tags_it_lacks():
    wanted = {"mlflow.experimentKind": "custom_model_development", "mlflow.note.content": "R²ec"}
    assert missing_tags({}, wanted) == wanted
    assert missing_tags({"mlflow.note.content": "edited in the UI"}, wanted) == {
        "mlflow.experimentKind": "custom_model_development"
    }
    assert missing_tags(wanted, wanted) == {}
