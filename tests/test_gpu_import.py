"""A device_run result brought home: its numbers named as `make run`'s, an MLflow run, its checkpoint kept."""

import json

import mlflow
import pandas as pd
import pytest
import torch

from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.serving.gpu_import import import_run, ranking_metrics_by_split


def test_metrics_are_make_runs_names_from_every_users_rank_per_split():
    rankings = pd.DataFrame(
        {
            "split": ["test"] * 4 + ["valid"],
            "model": ["sft"] * 2 + ["recpo"] * 2 + ["sft"],
            "mode": ["direct"] * 5,
            "user_id": [1, 2, 1, 2, 3],
            "rank": [1, 3, 11, 2, 1],
        }
    )
    metrics = ranking_metrics_by_split(rankings)
    assert metrics["eval.test.sft.direct.hit_at_10"] == 1.0 and metrics["eval.test.sft.direct.users"] == 2.0
    assert metrics["eval.test.sft.direct.ndcg_at_10"] == pytest.approx((1 + 1 / 2) / 2)  # 1/log2(2), 1/log2(4)
    assert metrics["eval.test.recpo.direct.mrr"] == pytest.approx((1 / 11 + 1 / 2) / 2)
    assert metrics["eval.valid.sft.direct.users"] == 1.0


def test_a_device_run_folder_becomes_an_mlflow_run_and_its_checkpoint_is_shipped(tmp_path, monkeypatch):
    run = tmp_path / "out"
    store = CheckpointStore(run / "recpo_checkpoints", provenance={"stage": "recpo"})
    store.save({"step": 3}, {"w": torch.ones(2)}, {"optimizer": {}})
    (run / "run.json").write_text(
        json.dumps({"env": "gpu", "pipelines": "sft,recpo", "machine": "H100", "git_commit": "abc"})
    )
    (run / "parameters.json").write_text(json.dumps({"sft": {"epochs": 2, "share_prefix": ["items"]}}))
    (run / "nodes.json").write_text(json.dumps({"train_sft": {"seconds": 12.5, "peak_gpu_gb": 60.0}}))
    (run / "sft_history.json").write_text(
        json.dumps({"train.loss": [{"value": 5.0, "step": 1}, {"value": 4.0, "step": 2}]})
    )
    pd.DataFrame({"split": ["test"], "model": ["sft"], "mode": ["direct"], "user_id": [1], "rank": [1]}).to_parquet(
        run / "sft_rankings.parquet"
    )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = import_run(run, "h100-recpo-3", tmp_path / "checkpoints")
    assert report["shipped"] == str(tmp_path / "checkpoints" / "h100-recpo-3")
    assert (tmp_path / "checkpoints" / "h100-recpo-3" / "manifest.json").is_file()
    logged = mlflow.get_run(report["mlflow_run"])
    assert logged.data.tags["gpu"] == "H100" and logged.data.tags["profile"] == "gpu"
    assert logged.data.params["sft.share_prefix"] == "['items']"
    assert logged.data.metrics["node.train_sft.peak_gpu_gb"] == 60.0
    assert logged.data.metrics["eval.test.sft.direct.ndcg_at_10"] == 1.0
    steps = mlflow.MlflowClient().get_metric_history(report["mlflow_run"], "sft/train.loss")
    assert [(m.step, m.value) for m in steps] == [(1, 5.0), (2, 4.0)]
    with pytest.raises(FileExistsError, match="never overwritten"):
        import_run(run, "h100-recpo-3", tmp_path / "checkpoints")


def test_the_checkpoints_command_lists_what_the_repository_keeps(tmp_path, monkeypatch, capsys):
    from r2ec_pipeline import checkpoints

    store = CheckpointStore(
        tmp_path / "run", provenance={"stage": "sft", "git_commit": "0123456789abcdef", "machine": "H200"}
    )
    source = store.save({"step": 7}, {"w": torch.ones(2)}, {"optimizer": {}})
    monkeypatch.chdir(tmp_path)
    assert checkpoints.main(["ship", str(source), "h200-sft-7"]) == 0
    assert checkpoints.main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()[-1]
    assert listed.startswith("h200-sft-7: sft step 7, commit 0123456789ab, H200, ") and listed.endswith(" MB")
    assert checkpoints.main(["unknown"]) == 2
