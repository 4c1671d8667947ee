"""Bring a ``device_run`` result home: an MLflow run of ``r2ec-gpu``, and its checkpoint kept in ``checkpoints/``.

The GPU machine has no MLflow; its ``--out`` folder comes back (``run.json``, ``parameters.json``,
``nodes.json``, the reports, ``<model>_rankings.parquet``, ``<stage>_checkpoints/``) and this command, on
any machine with the project installed, logs it: the profile's parameters, each node's seconds and peak
GPU memory, the metrics of every ranked model per split and mode (named as `make run`'s
``eval.<split>.<model>.<mode>.<metric>``), the training curves by step, the GPU and the commit as tags.
With ``--ship NAME`` the run's newest checkpoint (RecPO's, else SFT's) is verified and copied to
``checkpoints/NAME``: `make run` then evaluates and registers it (``evaluation.shipped_checkpoint``), and the
next GPU run resumes from it.

  python -m r2ec_pipeline.serving.gpu_import <device_run folder> [--ship NAME]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from r2ec_pipeline.checkpoints import ship
from r2ec_pipeline.config import EvaluationParams
from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.reporting.statistics import metrics_by_model
from r2ec_pipeline.reporting.tables import flatten

EXPERIMENT = "r2ec-gpu"
PROJECT = Path(__file__).resolve().parents[3]
RANKED = ("zero_shot", "sft", "recpo")


def ranking_metrics_by_split(rankings: pd.DataFrame) -> dict[str, float]:
    """`make run`'s names, ``eval.<split>.<model>.<mode>.<metric>``: the evaluation's ``metrics_by_model``."""
    by_model = metrics_by_model(rankings, EvaluationParams().ks)
    by_model.pop("users")
    return flatten(by_model, "eval.")


def flat_parameters(parameters: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted parameter names → their values as text (MLflow parameters)."""
    flat: dict[str, str] = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat |= flat_parameters(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = str(value)[:500]
    return flat


def node_metrics(nodes: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"node.{name}.{key}": float(value) for name, values in nodes.items() for key, value in values.items()}


def log_curves(histories: dict[str, dict[str, list[dict[str, float]]]]) -> None:
    """Each curve point as a metric at its step (``sft/train.loss``, ``recpo/valid.reasoning.mrr``, ...)."""
    for stage, named in histories.items():
        for name, points in named.items():
            for point in points:
                mlflow.log_metric(f"{stage}/{name}", float(point["value"]), step=int(point["step"]))


def newest_checkpoint(run: Path) -> Path | None:
    """The run's last RecPO checkpoint, else its last SFT one."""
    for stage in ("recpo", "sft"):
        latest = CheckpointStore(run / f"{stage}_checkpoints").latest()
        if latest is not None:
            return latest
    return None


def import_run(run: Path, ship_as: str | None = None, shipped_root: Path = PROJECT / "checkpoints") -> dict[str, Any]:
    """Log ``run`` as an MLflow run of ``r2ec-gpu`` (and ship its checkpoint); what was done."""
    about = json.loads((run / "run.json").read_text())
    parameters = json.loads((run / "parameters.json").read_text())
    rankings = [
        pd.read_parquet(run / f"{model}_rankings.parquet")
        for model in RANKED
        if (run / f"{model}_rankings.parquet").is_file()
    ]
    histories = {
        stage: json.loads((run / f"{stage}_history.json").read_text())
        for stage in ("sft", "recpo")
        if (run / f"{stage}_history.json").is_file()
    }
    shipped = None
    if ship_as is not None:
        checkpoint = newest_checkpoint(run)
        if checkpoint is None:
            raise FileNotFoundError(f"{run} holds no training checkpoint to ship (sft_checkpoints, recpo_checkpoints)")
        shipped = ship(checkpoint, ship_as, shipped_root)
    mlflow.set_experiment(EXPERIMENT)
    mlflow.set_experiment_tags(
        {
            "mlflow.experimentKind": "custom_model_development",  # the UI opens on the runs, not GenAI pages
            "mlflow.note.content": "python -m r2ec_pipeline.device_run on a lent GPU (the Kedro pipelines' nodes, "
            "conf/<env> parameters); imported by python -m r2ec_pipeline.serving.gpu_import",
        }
    )
    with mlflow.start_run(run_name=f"{about['pipelines']} · {about['env']} · {about['machine']}") as active:
        mlflow.set_tags(
            {
                "gpu": about["machine"],
                "profile": about["env"],
                "git_commit": about["git_commit"],
                "source_folder": str(run),
                **({"shipped_checkpoint": str(shipped)} if shipped else {}),
            }
        )
        mlflow.log_params(flat_parameters(parameters))
        metrics = node_metrics(json.loads((run / "nodes.json").read_text()))
        if rankings:
            metrics |= ranking_metrics_by_split(pd.concat(rankings, ignore_index=True))
        mlflow.log_metrics(metrics)
        log_curves(histories)
        for path in sorted(run.glob("*.json")) + sorted(run.glob("*_rankings.parquet")):
            mlflow.log_artifact(str(path))
    return {"mlflow_run": active.info.run_id, "metrics": len(metrics), "shipped": str(shipped) if shipped else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a device_run --out folder")
    parser.add_argument("--ship", metavar="NAME", help="keep its newest checkpoint as checkpoints/NAME")
    args = parser.parse_args(argv)
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"{args.run} is not a device_run folder (run.json missing)")
    # the project's store, as conf/base/mlflow.yml names it (any server through MLFLOW_TRACKING_URI)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT / 'mlflow.db'}"))
    print(json.dumps(import_run(args.run, args.ship), indent=2))


if __name__ == "__main__":
    main()
