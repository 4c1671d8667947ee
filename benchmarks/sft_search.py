"""A small recorded search over SFT settings, every run on the same validation users (MLflow experiment).

Each configuration is `conf/base` with a few overrides (Kedro's --params syntax), trained for
``--steps`` steps on fresh training samples (the same seeded batches for every run) and validated on
the same seeded ``--valid-users`` validation users (full ranking, whole earlier history masked) every
``--eval-every`` steps; the best validation's weights are kept, as the sft stage keeps them. Every
run is one MLflow run in the experiment ``--experiment`` (the project's tracking URI: MLFLOW_TRACKING_URI
or sqlite:///mlflow.db), with its per-step curves and its users' ranks as an artifact. A finished run
of the same name is skipped, so a stopped search resumes where it was. The table at the end gives each
run's best N@10 and its paired 95% bootstrap CI against the first configuration, on the same users.

Usage: .venv/bin/python benchmarks/sft_search.py [--steps 32] [--eval-every 16] [--valid-users 300]
       [--only baseline,catalog_st]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from _common import CACHE, ROOT, print_measures  # benchmarks/_common.py (the script's folder is on sys.path)
from sft_fit import base_parameters, with_overrides

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import EarlierItems, mask_lists, seeded_subset
from r2ec_pipeline.metrics import paired_bootstrap, per_sample, ranking_metrics
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.evaluation import (
    evaluate_without_reasoning,
    rank_without_reasoning,
)
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.sft import train_sft

GRID = {  # name → overrides of conf/base (the first is the reference of the paired CIs)
    "baseline": "",
    # "catalog" (a finished run in sft-search) was the first catalog softmax, fresh target values: not rerun
    "catalog_st": "sft.softmax=catalog",  # straight through: the bank's values, the fresh encodings' gradient
    "catalog_st_lr3e-4": "sft.softmax=catalog,sft.learning_rate=3.0e-4",
    "catalog_st_tau0.05": "sft.softmax=catalog,model.similarity_temperature=0.05",
    "lr3e-4": "sft.learning_rate=3.0e-4",
    "batch16": "sft.batch_size=16",
}


def _finished(experiment: str) -> set[str]:
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string="attributes.status = 'FINISHED'", output_format="list"
    )
    return {run.info.run_name for run in runs}


def _run(name: str, overrides: str, args: argparse.Namespace, data: dict) -> np.ndarray:
    """Train one configuration, log it, and return its validation users' ranks under the kept weights."""
    params = with_overrides(base_parameters(), overrides)
    model_config, sft = parse_block("model", params["model"]), parse_block("sft", params["sft"])
    model = build_dual_head(
        load_causal_lm(model_config.backbone, CACHE),
        load_tokenizer(model_config.backbone, CACHE),
        model_config,
        parse_block("prompts", params["prompts"]).answer_tag,
    )
    valid, items = data["valid"], data["items"]

    def evaluate(current) -> dict[str, float]:
        return evaluate_without_reasoning(
            current,
            valid["prompt"].tolist(),
            valid["target_item_id"].tolist(),
            data["valid_masks"],
            items["item_id"].tolist(),
            items["prompt"].tolist(),
            batch_size=model_config.encode_batch_size,
        )

    settings = sft.model_copy(update={"steps": args.steps, "eval_every": args.eval_every})
    train = data["train"]
    started = time.perf_counter()
    result = train_sft(
        model,
        train["prompt"].tolist(),
        train["target_item_id"].astype(int).tolist(),
        dict(zip(items["item_id"], items["prompt"], strict=True)),
        evaluate,
        settings,
        histories=data["train_masks"],
    )
    ranks = rank_without_reasoning(
        model,
        valid["prompt"].tolist(),
        valid["target_item_id"].tolist(),
        data["valid_masks"],
        model_config.encode_batch_size,
        progress=False,
    ).ranks
    with mlflow.start_run(run_name=name):
        mlflow.set_tags(
            {
                "search": args.experiment,
                "overrides": overrides or "(conf/base)",
                "valid_users": len(valid),
                "dataset": "movielens_100k",
            }
        )
        mlflow.log_params(
            {"sft." + key: value for key, value in settings.__dict__.items()}
            | {
                "model.similarity_temperature": model_config.similarity_temperature,
                "model.adapters.top_layers": model_config.adapters.top_layers,
            }
        )
        for metric, points in result.history.items():
            for point in points:
                mlflow.log_metric(metric, point["value"], step=int(point["step"]))
        mlflow.log_metrics(
            {f"best.{key}": value for key, value in ranking_metrics(ranks).items()}
            | {"best_step": result.best_step, "minutes": (time.perf_counter() - started) / 60}
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "valid_ranks.json"
            path.write_text(json.dumps({"user_id": valid["user_id"].astype(int).tolist(), "rank": ranks.tolist()}))
            mlflow.log_artifact(str(path))
    return ranks


def _logged_ranks(experiment: str, name: str) -> np.ndarray:
    run = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"attributes.run_name = '{name}'",
        output_format="list",
        order_by=["attributes.start_time DESC"],
    )[0]
    folder = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="valid_ranks.json")
    return np.asarray(json.loads(Path(folder).read_text())["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--valid-users", type=int, default=300)
    parser.add_argument("--experiment", default="sft-search")
    parser.add_argument("--only", default="", help="comma-separated names of GRID (default: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"))
    mlflow.set_experiment(args.experiment)
    folder = ROOT / "data"
    interactions = pd.read_parquet(folder / "03_primary/interactions.parquet")
    train = pd.read_parquet(folder / "05_model_input/train_samples.parquet")
    valid = seeded_subset(pd.read_parquet(folder / "05_model_input/valid_samples.parquet"), args.valid_users, 0)
    history_mask = parse_block("model", base_parameters()["model"]).history_mask
    data = {
        "train": train,
        "valid": valid,
        "items": pd.read_parquet(folder / "05_model_input/item_prompts.parquet"),
        "train_masks": EarlierItems(train, interactions, history_mask),
        "valid_masks": mask_lists(valid, interactions, history_mask),
    }
    names = [name for name in GRID if not args.only or name in args.only.split(",")]
    done = _finished(args.experiment)
    ranks = {}
    for name in names:
        if name in done:
            print(f"{name}: finished earlier, skipped", flush=True)
            ranks[name] = _logged_ranks(args.experiment, name)
            continue
        print(f"{name}: {GRID[name] or '(conf/base)'}", flush=True)
        ranks[name] = _run(name, GRID[name], args, data)
    reference = names[0]
    rows = []
    for name in names:
        value = per_sample(ranks[name], "ndcg_at_10")
        ci = paired_bootstrap(value, per_sample(ranks[reference], "ndcg_at_10"))
        rows.append(
            (
                name,
                f"N@10 {value.mean():.4f}, H@10 {per_sample(ranks[name], 'hit_at_10').mean():.4f}, "
                f"Δ vs {reference} {ci['difference']:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}]",
            )
        )
    rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
    print(f"{len(valid)} validation users, {args.steps} steps per run, experiment {args.experiment!r}")
    print_measures(rows)


if __name__ == "__main__":
    main()
