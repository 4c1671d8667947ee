"""The datasets that write MLflow on the nodes' behalf: registration (report, tags) and nested variant runs."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from kedro.io import DatasetError
from mlflow import MlflowClient

from r2ec_pipeline.datasets.mlflow_runs import ChildRunsDataset, RegisteredModelDataset
from tests.serving.conftest import BASIS, RUN_TAGS, log_and_register


def test_registration_writes_its_report_and_tags_the_version_with_the_runs_profile_and_commit(
    mlflow_store, tiny_checkpoint, tiny_backbone_dir
):
    report = log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.1)
    assert json.loads(Path("registration.json").read_text()) == report
    tags = MlflowClient().get_model_version("r2ec", str(report["version"])).tags
    assert {key: tags[key] for key in ("profile", "git_commit", "evaluation_users")} == {
        key: RUN_TAGS[key] for key in ("profile", "git_commit", "evaluation_users")
    }
    assert "unrelated" not in tags and {key: tags[key] for key in BASIS} == BASIS
    [run] = [
        run
        for run in mlflow.search_runs(output_format="list", search_all_experiments=True)
        if run.data.tags.get("git_commit") == RUN_TAGS["git_commit"]
    ]  # the registering run
    assert "registration.json" in {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}


def test_a_report_not_written_yet_is_named(tmp_path):
    with pytest.raises(DatasetError, match="registration.json is missing"):
        RegisteredModelDataset(str(tmp_path / "registration.json")).load()


def _variant(reward_type: str) -> dict:
    return {
        "test": {"direct": {"ndcg_at_10": 0.25}},
        "mlflow_run": {
            "tags": {"ablation.variant": reward_type},
            "params": {"recpo.reward_type": reward_type},
            "metrics": {"test": {"direct": {"ndcg_at_10": 0.25}}},
            "curves": {"train.reward_mean": [0.1, 0.3]},
        },
    }


def test_each_variant_becomes_a_nested_run_with_its_params_metrics_and_curve(mlflow_store, tmp_path):
    summary = {"fused": _variant("fused"), "sim_only": _variant("sim_only"), "users": {"test": 3}}
    dataset = ChildRunsDataset(str(tmp_path / "ablations.json"))
    with mlflow.start_run() as parent:
        dataset.save(summary)
    assert dataset.load() == summary
    runs = mlflow.search_runs(output_format="list", search_all_experiments=True)
    children = {run.info.run_name: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["fused", "sim_only"]
    child = children["sim_only"]
    assert child.data.params == {"recpo.reward_type": "sim_only"} and child.data.tags["ablation.variant"] == "sim_only"
    assert child.data.metrics["test.direct.ndcg_at_10"] == 0.25
    curve = MlflowClient().get_metric_history(child.info.run_id, "train.reward_mean")
    assert [(point.step, point.value) for point in curve] == [(1, 0.1), (2, 0.3)]


def test_without_a_run_only_the_summary_is_written(mlflow_store, tmp_path):
    ChildRunsDataset(str(tmp_path / "ablations.json")).save({"fused": _variant("fused")})
    assert (tmp_path / "ablations.json").is_file()
    (tmp_path / "plain.json").write_text("{}")  # the report is as readable as any file written with open()
    assert (tmp_path / "ablations.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode
    assert not mlflow.search_runs(output_format="list", search_all_experiments=True)
