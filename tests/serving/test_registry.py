"""Registration: challenger always, champion only when the validation metric improves; the pyfunc predicts."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from r2ec_pipeline.serving.registry import basis_mismatch, promote, promotion_decision
from tests.serving.conftest import BASIS, log_and_register


def test_promotion_decision_by_hand():
    assert promotion_decision("m", 0.2, None).promoted
    assert promotion_decision("m", 0.2, 0.1).promoted
    assert not promotion_decision("m", 0.1, 0.1).promoted  # a tie keeps the champion
    refused = promotion_decision("m", 0.05, 0.1)
    assert not refused.promoted and "does not beat the champion's 0.1000" in refused.reason
    assert not promotion_decision("m", None, 0.1).promoted
    blocked = promotion_decision("m", 0.9, 0.1, "promotion_users 'valid: 32 users' vs 'valid: 943 users'")
    assert not blocked.promoted and "not comparable" in blocked.reason and "943" in blocked.reason


def test_basis_mismatch_names_each_differing_tag():
    assert basis_mismatch(BASIS, dict(BASIS)) is None
    other = {**BASIS, "promotion_users": "valid: 943 users, seed 0"}
    assert basis_mismatch(BASIS, other) == "promotion_users 'valid: 32 users, seed 0' vs 'valid: 943 users, seed 0'"
    assert "dataset 'untagged' vs 'fixture'" in basis_mismatch({}, BASIS)


def test_a_better_metric_on_other_users_does_not_take_the_champion(mlflow_store, tiny_checkpoint, tiny_backbone_dir):
    client = MlflowClient()
    first = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.10)
    other = log_and_register(
        tiny_checkpoint, tiny_backbone_dir, 0.50, {**BASIS, "promotion_users": "valid: 943 users, seed 0"}
    )
    assert first["promoted"] and not other["promoted"] and other["aliases"] == ["challenger"]
    tags = client.get_model_version("r2ec", str(other["version"])).tags
    assert "not comparable" in tags["promotion"] and tags["promotion_users"] == "valid: 943 users, seed 0"
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == first["version"]
    # a person decides: the refused version becomes champion, the rule's answer kept beside the decision
    assert promote("r2ec", other["version"], f"promoted by hand; the rule said: {tags['promotion']}") == [
        "challenger",
        "champion",
    ]
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == other["version"]
    kept = client.get_model_version("r2ec", str(other["version"])).tags["promotion"]
    assert kept.startswith("promoted by hand") and "not comparable" in kept


def test_a_worse_challenger_leaves_the_champion_and_a_better_one_takes_it(
    mlflow_store, tiny_checkpoint, tiny_backbone_dir
):
    client = MlflowClient()
    first = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.10)
    assert first["promoted"] and first["aliases"] == ["challenger", "champion"]

    worse = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.05)
    assert not worse["promoted"] and worse["aliases"] == ["challenger"]
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == first["version"]
    assert int(client.get_model_version_by_alias("r2ec", "challenger").version) == worse["version"]
    assert "not promoted" in client.get_model_version("r2ec", str(worse["version"])).tags["promotion"]

    better = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.20)
    assert better["promoted"] and better["aliases"] == ["challenger", "champion"]
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == better["version"] == 3


def test_the_registered_pyfunc_recommends_unseen_items_and_names_bad_requests(
    mlflow_store, tiny_checkpoint, tiny_backbone_dir
):
    log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.1)
    model = mlflow.pyfunc.load_model("models:/r2ec@champion")
    request = pd.DataFrame(
        [{"history_item_ids": ["B01", "B02"], "history_ratings": [5.0, 2.0], "history_timestamps": [100, 200], "k": 2}]
    )
    [answer] = model.predict(request).to_dict(orient="records")
    assert len(answer["item_ids"]) == 2 and not set(answer["item_ids"]) & {"B01", "B02"}
    assert answer["titles"] == [{"B03": "Comedy Two", "B04": "Action Three"}[i] for i in answer["item_ids"]]
    assert answer["scores"][0] >= answer["scores"][1] and answer["reasoning"].endswith("<answer>")
    for row, message in (
        ({"history_item_ids": ["B01", "NOPE"]}, r"unknown item ids \['NOPE'\]"),
        ({"history_item_ids": []}, "history_item_ids is empty"),
        ({"history_item_ids": ["B01"], "k": 9}, r"k must be an integer in 1\.\.3"),
    ):
        with pytest.raises(MlflowException, match=message):
            model.predict(pd.DataFrame([row]))


def test_the_backbone_is_stored_once_and_versions_hold_only_what_training_changed(
    mlflow_store, tiny_checkpoint, tiny_backbone_dir, tmp_path
):
    from r2ec_pipeline.serving.backbone_store import (
        EXPERIMENT,
        fetch_backbone,
        folder_digest,
    )

    first = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.1)
    second = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.2)
    client = MlflowClient()
    [backbone_run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert backbone_run.data.tags["backbone_sha256"] == folder_digest(tiny_backbone_dir)
    assert first["version"] == 1 and second["version"] == 2
    weights = list((tmp_path / "mlruns").rglob("model.safetensors"))  # the backbone's weights file
    assert len(weights) == 1 and "/artifacts/backbone/" in weights[0].as_posix()
    assert len(list((tmp_path / "mlruns").rglob("item_table.safetensors"))) == 2  # one per version
    # a fresh machine's cache gets the backbone from the store, checked against its hash
    fetched = fetch_backbone(
        f"runs:/{backbone_run.info.run_id}/backbone", folder_digest(tiny_backbone_dir), tmp_path / "fresh-cache"
    )
    assert folder_digest(fetched) == folder_digest(tiny_backbone_dir)
    with pytest.raises(ValueError, match="expects"):
        fetch_backbone(f"runs:/{backbone_run.info.run_id}/backbone", "0" * 64, tmp_path / "other-cache")
    assert not any((tmp_path / "other-cache").iterdir())  # nothing half-written is left
