"""Smoke runs of a whole Kedro session (hooks, catalog, kedro-mlflow) on tiny local data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from r2ec_pipeline.config import ConfigError
from tests.helpers import free_port
from tests.kedro_project import TINY_TRAINING, run_cli, run_session


def test_default_pipeline_runs_end_to_end_and_is_tracked(project: Path):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.create_experiment("r2ec")  # a store from before mlflow.yml gave the experiment its tags
    run_session(project)  # the shipped checkpoint conf/base names was trained on other data: skipped
    test = pd.read_parquet(project / "data/05_model_input/test_samples.parquet")
    interactions = pd.read_parquet(project / "data/03_primary/interactions.parquet")
    assert len(test) == interactions["user_id"].nunique()  # leave-one-out: one test sample per user
    assert (project / "data/08_reporting/validation_report.json").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    [run] = mlflow.search_runs(experiment_names=["r2ec"], output_format="list")
    assert run.info.status == "FINISHED"
    tags = mlflow.get_experiment_by_name("r2ec").tags  # the UI opens it on its runs, with a description
    assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"]
    assert run.data.params["data_ingestion.source"] == "amazon_2023"
    # the run says what ran and what its numbers depend on
    assert run.info.run_name.startswith("all · base · ")
    assert {k: run.data.tags.get(k) for k in ("profile", "dataset")} == {"profile": "base", "dataset": "amazon_2023"}
    assert len(run.data.tags["data_hash"]) == 16 and run.data.tags["git_commit"]
    assert run.data.tags["evaluation_users"].startswith("users=3,valid_users=3")
    assert run.data.tags["runner"] == "SequentialRunner"  # the class, not the object's repr
    assert run.data.params["prompts.window_size"] == "5"
    assert run.data.metrics["prompt_metrics.test.samples"] == len(test)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {
        "ingestion_report.json",
        "validation_report.json",
        "prompt_summary.json",
        "sft_report.json",
        "data_docs",
    } <= artifacts
    assert (project / "data/08_reporting/data_docs/index.html").is_file()  # GX Data Docs, browsable
    # SFT: zero-shot (step 0) and trained validation metrics, and a checkpoint on disk
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "sft/valid.ndcg_at_10")
    assert [m.step for m in history] == [0, 1, 2]
    assert (project / "data/06_models/sft/r2ec_config.json").is_file()
    # RecPO: per-step metrics, validation with and without reasoning before/after, samples table, model
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "recpo/train.reward_mean")] == [1, 2]
    for name in (
        "recpo/train.token_loss",
        "recpo/train.item_loss",
        "recpo/train.clip_fraction",
        "recpo/train.completion_length",
        "recpo/train.stop_length_share",
        "recpo/train.stop_tag_share",
        "recpo/train.stop_end_of_turn_share",
        "recpo/train.item_clip_fraction",
        "recpo/train.item_ratio_mean",
        "recpo/train.learning_rate",
        "recpo/train.seconds_per_step",
        "recpo/train.advantage_std",
        "recpo/train.reward_rank",
    ):
        assert len(client.get_metric_history(run.info.run_id, name)) == 2, name
    # what each stage cost goes to MLflow, not into the reports DVC hashes
    for name in ("sft/run.seconds_per_step", "sft/run.peak_rss_mb", "recpo/run.peak_rss_mb", "sasrec/run.seconds"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 1, name
    for name in ("recpo/valid.reasoning.ndcg_at_10", "recpo/valid.direct.ndcg_at_10"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0, 2], name
    assert {"recpo_report.json", "recpo_samples.csv"} <= artifacts
    samples = pd.read_csv(project / "data/08_reporting/recpo_samples.csv")
    assert len(samples) == 2 * 2 * 2 and samples["text"].str.contains("<answer>", regex=False).all()
    assert (project / "data/06_models/recpo/r2ec_config.json").is_file()
    checkpoints = sorted(p.name for p in (project / "data/06_models/recpo_checkpoints").iterdir())
    assert checkpoints == ["checkpoint-1", "checkpoint-2"]  # save_steps 1, and the end
    # Evaluation: every model on the same 3 users per split in direct mode, the first 2 of them with
    # reasoning too (and by the zero-shot model), paired CIs on the users two rows share, exports and plots
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    valid = pd.read_parquet(project / "data/05_model_input/valid_samples.parquet")
    assert metrics["users"] == {"test": min(3, len(test)), "valid": min(3, len(valid))}
    for split in ("valid", "test"):
        assert set(metrics[split]) == {"popularity", "sasrec", "zero_shot", "sft", "recpo"}
        assert set(metrics[split]["recpo"]) == {"direct", "reasoning"} and set(metrics[split]["sasrec"]) == {"direct"}
        assert 0 < metrics[split]["recpo"]["reasoning"]["mrr"] <= 1
        ranked = metrics["users"][split]
        assert (metrics[split]["recpo"]["direct"]["users"], metrics[split]["recpo"]["reasoning"]["users"]) == (
            ranked,
            min(2, ranked),
        )
        assert metrics[split]["zero_shot"]["direct"]["users"] == min(2, ranked)
    comparisons = metrics["comparisons"]["test"]
    assert {"sft.direct-zero_shot.direct", "recpo.direct-sft.direct", "recpo.reasoning-recpo.direct"} <= set(
        comparisons
    )
    assert comparisons["recpo.direct-sft.direct"]["ndcg_at_10"]["users"] == 3
    assert comparisons["sft.direct-zero_shot.direct"]["hit_at_10"]["users"] == 2
    low, high = (comparisons["recpo.direct-sft.direct"]["ndcg_at_10"][k] for k in ("low", "high"))
    assert low <= comparisons["recpo.direct-sft.direct"]["ndcg_at_10"]["difference"] <= high
    exported = pd.read_parquet(project / "data/08_reporting/rankings_export.parquet")
    assert list(exported.columns) == ["user_id", "target_item_id", "history_item_ids", "topk_item_ids", "model", "mode"]
    # 3 test users × (2 baselines + SFT and RecPO direct) + 2 × (SFT, RecPO reasoning + zero-shot's 2 modes)
    assert len(exported) == 3 * 4 + 2 * 4
    raw_items = set(pd.read_parquet(project / "data/03_primary/items.parquet")["raw_item_id"])
    # top_n 4 of a 4-item catalog, the user's history masked: lists are shorter, never hold masked items
    assert all(
        set(ids) <= raw_items and len(ids) <= 4 - len(set(h))
        for ids, h in zip(exported["topk_item_ids"], exported["history_item_ids"], strict=True)
    )
    assert all(
        not set(ids) & set(h) for ids, h in zip(exported["topk_item_ids"], exported["history_item_ids"], strict=True)
    )
    assert set(exported["target_item_id"]) <= raw_items
    assert client.get_metric_history(run.info.run_id, "eval.test.recpo.reasoning.ndcg_at_10")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    curves = {p.name for p in (project / "data/08_reporting/curves").iterdir()}  # for `dvc plots show`
    assert {"sft_loss.json", "sft_validation.json", "recpo_train.json", "recpo_validation.json"} <= curves
    assert {
        "metrics_test.png",
        "training_curves.png",
        "reasoning_samples.csv",
        "rankings_export.parquet",
        "sasrec_report.json",
        "registration.json",
    } <= artifacts
    # Registration: the first version is both challenger and champion
    registration = json.loads((project / "data/08_reporting/registration.json").read_text())
    assert registration["version"] == 1 and registration["aliases"] == ["challenger", "champion"]
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == 1
    tags = client.get_model_version("r2ec", "1").tags
    assert tags["data_hash"] == run.data.tags["data_hash"] and tags["dataset"] == "amazon_2023"
    assert tags["promotion_users"] == f"valid: {min(2, metrics['users']['valid'])} users, seed 0"
    assert json.loads((project / "data/08_reporting/registration_shipped.json").read_text()) == {"versions": []}

    # the run's own last RecPO checkpoint, shipped: rebuilt, ranked on the same validation users as the RecPO
    # model (the same weights: the same MRR), registered after it (the rerun's RecPO model is version 2, the
    # shipped one 3) with the provenance of the run that trained it, and (a tie) not champion
    shutil.copytree(project / "data/06_models/recpo_checkpoints/checkpoint-2", project / "checkpoints/own-recpo-2")
    run_cli(project, "evaluation,registration", **{"evaluation.shipped_checkpoint": "checkpoints/own-recpo-2"})
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics["valid"]) - set(metrics["test"]) == {"shipped"}  # promotion reads validation only
    assert metrics["valid"]["shipped"]["reasoning"] == metrics["valid"]["recpo"]["reasoning"]
    assert "shipped.reasoning-recpo.reasoning" in metrics["comparisons"]["valid"]
    [shipped] = json.loads((project / "data/08_reporting/registration_shipped.json").read_text())["versions"]
    assert shipped["version"] == 3 and shipped["aliases"] == ["challenger"] and not shipped["promoted"]
    assert "does not beat the champion" in shipped["promotion"]
    shipped_tags = client.get_model_version("r2ec", "3").tags
    assert shipped_tags["checkpoint"] == "own-recpo-2" and shipped_tags["trained_stage"] == "recpo step 2"
    assert shipped_tags["promotion_users"] == tags["promotion_users"]
    assert int(client.get_model_version_by_alias("r2ec", "champion").version) == 1


@pytest.mark.parametrize(
    ("param", "value", "named"),
    [
        ("data_ingestion.source", "netflix", "data_ingestion.source"),
        ("prompts.split", "random", "prompts.split"),
        ("prompts.window_size", 0, "prompts.window_size"),
    ],
)
def test_bad_parameters_stop_before_any_node(project: Path, param, value, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        run_session(project, pipeline="data", **{param: value})
    assert not list(project.rglob("*.parquet"))


@pytest.mark.parametrize(
    ("param", "value", "named"),
    [
        ("recpo.reward_type", "ndcg", "recpo.reward_type"),
        ("recpo.advantage_type", "ppo", "recpo.advantage_type"),
        ("recpo.similarity_temperature", 0, "recpo.similarity_temperature"),
        ("recpo.num_generations", 1, "num_generations must be >= 2"),
        ("recpo.reward_beta", 2, "recpo.reward_beta"),
    ],
)
def test_bad_recpo_parameters_stop_before_any_node(project: Path, param, value, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        run_session(project, pipeline="recpo", **{param: value})
    assert not (project / "data").exists() or not list((project / "data").rglob("*"))


def test_missing_amazon_file_stops_ingestion_and_writes_nothing(project: Path):
    (project / "conf/local/globals.yml").write_text(yaml.safe_dump({"amazon_dir": str(project / "nowhere")}))
    with pytest.raises(Exception, match="Amazon Reviews 2023 file not found"):
        run_session(project, pipeline="data")
    assert not list(project.rglob("*.parquet"))


def test_recpo_under_torchrun_trains_on_two_processes_and_writes_once(project: Path):
    """`torchrun -m kedro run --pipelines recpo`: one global batch over 2 gloo processes, outputs and the
    MLflow run written by rank 0 only. No SFT checkpoint here, so RecPO starts from the zero-shot model."""
    run_session(project, pipeline="data")
    (project / "src").mkdir()  # the kedro CLI wants a source folder; the package itself is installed
    params = {**TINY_TRAINING, "recpo.per_device_train_batch_size": 1, "recpo.max_steps": 2}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs_before = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    done = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "kedro",
            "run",
            "--pipelines",
            "recpo",
            "--params",
            ",".join(f"{key}={value}" for key, value in params.items()),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((project / "data/08_reporting/recpo_report.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 2 and report["after"]
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == runs_before + 1  # one MLflow run for the 2-process launch, from rank 0
    [recpo_run] = [run for run in runs if "recpo/train.loss" in run.data.metrics]
    history = mlflow.MlflowClient().get_metric_history(recpo_run.info.run_id, "recpo/train.loss")
    assert [m.step for m in history] == [1, 2]


def test_the_same_seed_and_data_give_identical_metrics(project: Path):
    """Two default runs from scratch on the tiny model: metrics.json, RecPO rewards and SASRec agree exactly
    (same machine, same thread count: CPU kernels are deterministic there)."""
    reports = ("metrics.json", "recpo_report.json", "sasrec_report.json", "sft_report.json")

    def run_once() -> dict[str, str]:
        shutil.rmtree(project / "data", ignore_errors=True)
        run_cli(project)
        found = {name: (project / "data/08_reporting" / name).read_text() for name in reports}
        for model in ("sft", "recpo"):  # DVC hashes these folders: equal weights must give equal files
            folder = project / "data/06_models" / model
            found |= {str(f.relative_to(project)): f.read_bytes().hex() for f in folder.rglob("*") if f.is_file()}
        return found

    first, second = run_once(), run_once()
    assert first == second  # byte for byte: the reports DVC tracks hold no timings
    assert json.loads(first["recpo_report.json"])["reward_mean_by_step"]  # the comparison covers real values


def test_ablation_grid_trains_every_variant_as_a_child_run(project: Path):
    from r2ec_pipeline.config import ABLATION_VARIANTS

    run_cli(project)  # the SFT start point and the evaluation users every variant is ranked on
    run_cli(project, "ablations", **{"ablations.recpo.max_steps": 1})

    summary = json.loads((project / "data/08_reporting/ablations.json").read_text())
    assert set(summary) - {"users", "comparisons"} == set(ABLATION_VARIANTS)
    assert set(summary["rank_only"]["test"]) == {"direct", "reasoning"}
    assert summary["comparisons"]["reference"] == "fused_grpo"
    assert set(summary["comparisons"]["variants"]) == set(ABLATION_VARIANTS) - {"fused_grpo"}
    assert 0.0 <= summary["token_only"]["diagnostics"]["stop_length_share"] <= 1.0
    table = pd.read_csv(project / "data/08_reporting/ablations.csv")
    assert len(table) == len(ABLATION_VARIANTS) * 2
    assert {"ndcg_at_10", "hit_at_20", "reward_mean", "ndcg_at_10_vs_fused_grpo_low", "zero_advantage_share"} <= set(
        table
    )

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["r2ec"], output_format="list")
    [parent] = [
        run
        for run in runs
        if "ablations.csv" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    ]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(run.info.run_name for run in children) == sorted(ABLATION_VARIANTS)
    by_name = {run.info.run_name: run for run in children}
    assert by_name["sim_only"].data.params["recpo.reward_type"] == "sim_only"
    assert by_name["rloo"].data.params["recpo.advantage_type"] == "rloo"
    assert by_name["beta_02"].data.params["recpo.reward_beta"] == "0.2"
    assert "test.reasoning.ndcg_at_10" in by_name["fused_grpo"].data.metrics
    assert "recpo/train.reward_mean" in by_name["fused_grpo"].data.metrics  # the parent run's name for it
    assert "diagnostics.stop_length_share" in by_name["fused_grpo"].data.metrics
    assert "recpo/train.zero_advantage_share" in by_name["fused_grpo"].data.metrics


def test_cold_start_adds_the_held_out_items_after_training_and_ranks_their_users(project: Path):
    run_cli(project)  # make run's models, which knew every item, and its test users
    # the tiny catalog without its newest item leaves 1 RecPO training sample
    run_cli(project, "cold_start", **{"cold_start.held_out_fraction": 0.25, "recpo.per_device_train_batch_size": 1})

    items = pd.read_parquet(project / "data/03_primary/items.parquet")
    held = pd.read_parquet(project / "data/03_primary/cold_start/held_out_items.parquet")
    trained = pd.read_parquet(project / "data/03_primary/cold_start/items.parquet")
    assert len(held) == 1 and len(trained) == len(items) - 1  # ceil(0.25 · 4)
    assert list(trained["item_id"]) == list(range(1, len(trained) + 1))
    assert not set(held["raw_item_id"]) & set(trained["raw_item_id"])
    # nothing the cold-start models train on holds the held-out item
    interactions = pd.read_parquet(project / "data/03_primary/cold_start/interactions.parquet")
    assert interactions["item_id"].between(1, len(trained)).all()
    assert len(interactions) == (
        pd.read_parquet(project / "data/03_primary/interactions.parquet")["item_id"]
        .isin(items.loc[~items["raw_item_id"].isin(held["raw_item_id"]), "item_id"])
        .sum()
    )

    test = pd.read_parquet(project / "data/05_model_input/test_samples.parquet")
    users = int(test["target_item_id"].isin(held["item_id"]).sum())
    report = json.loads((project / "data/08_reporting/cold_start.json").read_text())
    assert report["users"] == users > 0
    assert report["update"]["items_before"] == len(trained) and report["update"]["items_after"] == len(items)
    assert set(report["metrics"]) == {"cold", "known"}
    assert set(report["metrics"]["cold"]) == {"recpo", "popularity", "sasrec"}
    rankings = pd.read_parquet(project / "data/07_model_output/cold_start_rankings.parquet")
    assert len(rankings) == users * 2 * (2 + 2)  # 2 settings × (R²ec in 2 modes, Pop, SASRec)
    assert set(rankings["target_raw_item_id"]) <= set(held["raw_item_id"])
    cold = rankings[rankings["setting"] == "cold"]
    # trained without the item: SASRec has no row for it and ranks it last; Pop never counted it
    assert (cold.loc[cold["model"] == "sasrec", "rank"] == len(items)).all()
    assert all(set(ids) <= set(items["raw_item_id"]) for ids in rankings["topk_raw_item_ids"])
    # R²ec after the update ranks the new item among the others: it can appear in its top lists
    assert cold.loc[cold["model"] == "recpo", "rank"].between(1, len(items)).all()
    comparisons = report["comparisons"]
    assert set(comparisons) == {
        f"cold.recpo.{mode}-{other}"
        for mode in ("direct", "reasoning")
        for other in ("cold.popularity.direct", "cold.sasrec.direct", f"known.recpo.{mode}")
    }
    assert all(value["ndcg_at_10"]["users"] == users for value in comparisons.values())
    # the same numbers in the run's MLflow metrics, the report as its artifact
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    [run] = [
        run
        for run in mlflow.search_runs(experiment_names=["r2ec"], output_format="list")
        if "cold_start.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    ]
    assert run.data.metrics["cold_start.users"] == users
    assert run.data.metrics["cold_start.metrics.cold.recpo.direct.mrr"] == pytest.approx(
        report["metrics"]["cold"]["recpo"]["direct"]["mrr"]
    )
    assert "cold_start.comparisons.cold.recpo.direct-known.recpo.direct.mrr.low" in run.data.metrics
